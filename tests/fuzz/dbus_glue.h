/*
 * The D-Bus fuzz target reaches static functions of three project files.
 * Each is included by its own glue translation unit (their static names
 * clash: pump, on_properties_changed, match_rules, ...), which exports
 * these wrappers.
 */
#ifndef ALSABT_FUZZ_DBUS_GLUE_H
#define ALSABT_FUZZ_DBUS_GLUE_H

#include <dbus/dbus.h>

#define FUZZ_ENDPOINT_PATH  "/org/alsa_bt/a2dp_source0"
/* bluetoothd's unique name in the seeds (make_seeds.c BLUEZ_UNIQUE). */
#define FUZZ_BLUEZ_UNIQUE   ":1.7"
#define FUZZ_DEVICE_PATH    "/org/bluez/hci0/dev_00_1B_66_AA_BB_CC"
#define FUZZ_DEVICE_ADDR    "00:1B:66:AA:BB:CC"
#define FUZZ_ADAPTER_PATH   "/org/bluez/hci0"
#define FUZZ_TRANSPORT_PATH FUZZ_DEVICE_PATH "/sep1/fd0"

/* glue_endpoint.c: a2dp/endpoint.c */
struct a2dp_endpoint;
struct a2dp_endpoint *glue_endpoint_new(int configured, unsigned rate, unsigned bitpool);
void glue_endpoint_free(struct a2dp_endpoint *ep);
/* endpoint_message (only for messages to our object path, as libdbus routes them). */
DBusHandlerResult glue_endpoint_message(struct a2dp_endpoint *ep, DBusMessage *msg);
void glue_endpoint_filter(struct a2dp_endpoint *ep, DBusMessage *msg);
/* Aborts on a broken invariant of the endpoint's state. */
void glue_endpoint_check(const struct a2dp_endpoint *ep);
/* A digest of the state the handlers write, to see whether a message changed it. */
unsigned long glue_endpoint_digest(const struct a2dp_endpoint *ep);

/* glue_bluez.c: bluez/bluez.c */
/* parse_objects + the device lookups over its result, scan_transports. */
void glue_bluez_objects(DBusMessage *reply);

/* glue_ctl.c: ctl_bt/ctl_bluetooth.c */
struct bt_ctl;
struct bt_ctl *glue_ctl_new(int with_transport, int with_battery);
void glue_ctl_free(struct bt_ctl *ctl);
void glue_ctl_filter(struct bt_ctl *ctl, DBusMessage *msg);
void glue_ctl_check(const struct bt_ctl *ctl);
int glue_ctl_gone(const struct bt_ctl *ctl);

#endif
