/*
 * The BlueZ client both plugins use: one private connection to the system bus,
 * the adapter/device lookup, and property access on bluetoothd's objects.
 * Failures are logged here, once, with what the user should do; callers only
 * pass the negative errno on.
 */
#ifndef ALSABT_BLUEZ_H
#define ALSABT_BLUEZ_H

#include <stdint.h>
#include <dbus/dbus.h>

#define BLUEZ_SERVICE "org.bluez"
#define A2DP_SOURCE_UUID "0000110a-0000-1000-8000-00805f9b34fb"
#define A2DP_SINK_UUID   "0000110b-0000-1000-8000-00805f9b34fb"
/* Lowercase and 128-bit: BlueZ compares profile UUIDs as strings. */
#define HFP_HF_UUID      "0000111e-0000-1000-8000-00805f9b34fb"
#define HFP_AG_UUID      "0000111f-0000-1000-8000-00805f9b34fb"

struct bluez {
	DBusConnection *conn;
	/* bluetoothd's unique name, learnt from its first reply. Only it may
	 * call our endpoint or speak for BlueZ: the system bus lets any local
	 * user send signals to any connection. */
	char owner[64];
};

/* A method call to bluetoothd that never starts it by D-Bus activation:
 * only the first look at the bus (the device lookup) may do that. A later
 * call (Release, Unregister, a volume) to a bluetoothd that has gone then
 * fails at once instead of starting a new one that knows nothing of ours. */
DBusMessage *bluez_method_call(const char *path, const char *iface, const char *method);

/* Did this message come from bluetoothd? */
int bluez_from_bluez(const struct bluez *bz, DBusMessage *msg);
/* Does it say bluetoothd or the bus went away (NameOwnerChanged from the bus
 * itself, or the connection's own Disconnected)? */
int bluez_lost(DBusMessage *msg);
/* Does it say bluetoothd started again (org.bluez has a new owner)? Then
 * that owner is the one listened to from now on. */
int bluez_returned(struct bluez *bz, DBusMessage *msg);
/* Reads, writes and dispatches what is there without blocking; -ECONNRESET
 * once the bus connection is gone. */
int bluez_dispatch(struct bluez *bz);

struct bluez_device {
	char path[128];
	char address[18];
	char adapter[64];        /* "hci0" */
	char adapter_path[64];
	char adapter_address[18];  /* its own address (the SCO socket binds to it) */
	char name[64];
	int paired, connected, audio_sink, audio_source, adapter_powered;
	int hands_free;          /* offers HFP Hands-Free: a headset */
};

/* Opens a private connection to the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured)
 * that never calls exit() and leaves the process's SIGPIPE alone. */
int bluez_open(struct bluez **bz);
void bluez_close(struct bluez *bz);

/* Finds the device to play to. adapter: "hciN", an adapter address, or NULL for
 * any; address: the device, or NULL for the connected A2DP sink. */
int bluez_find_device(struct bluez *bz, const char *adapter, const char *address,
		      int64_t deadline_ms, struct bluez_device *dev);
/* The same for a role: want_source BLUEZ_SOURCE finds a device that plays to
 * us (a phone: A2DP Source), for the capture PCM; BLUEZ_EITHER (the mixer,
 * with an address) a speaker or a phone; BLUEZ_HEADSET one with HFP
 * Hands-Free; address NULL: the connected one. */
enum { BLUEZ_SINK, BLUEZ_SOURCE, BLUEZ_EITHER, BLUEZ_HEADSET };
int bluez_find_device_role(struct bluez *bz, const char *adapter, const char *address,
			   int want_source, int64_t deadline_ms, struct bluez_device *dev);

/* Path of a MediaTransport1 of this device other than `except` (NULL: any):
 * 1 and the path, 0 if none, or negative errno. With except = our own
 * transport, a hit means another audio service streams to the speaker. */
int bluez_find_transport(struct bluez *bz, const char *device_path, const char *except,
			 int64_t deadline_ms, char *path, size_t size);

/* The speaker's A2DP Sink endpoints as BlueZ exports them (once it has seen
 * them: after a connection): codec id and capabilities. Returns the count. */
#define A2DP_MAX_REMOTE_SEPS 16
struct bluez_remote_sep {
	uint8_t codec;
	uint8_t caps[32];
	int caps_len;
};
int bluez_remote_seps(struct bluez *bz, const char *device_path, int64_t deadline_ms,
		      struct bluez_remote_sep *seps, int max);

/* Properties.Get / Set of a uint16 (MediaTransport1.Volume) and Get of a byte. */
int bluez_get_property(struct bluez *bz, const char *path, const char *iface,
		       const char *name, int type, void *out, int64_t deadline_ms);
int bluez_set_uint16(struct bluez *bz, const char *path, const char *iface,
		     const char *name, uint16_t value, int64_t deadline_ms);

/* The same without waiting for the answer (from the I/O thread, which must not block). */
int bluez_set_uint16_async(struct bluez *bz, const char *path, const char *iface,
			   const char *name, uint16_t value);

/* Calls method on path/iface with no arguments or one string; 0 or negative errno.
 * On an error reply, *error_name and *error_msg are set (static strings or "" ). */
int bluez_call_simple(struct bluez *bz, const char *path, const char *iface,
		      const char *method, const char *arg, int64_t deadline_ms,
		      char *error_name, size_t name_size, char *error_msg, size_t msg_size);

/* Is "XX:XX:XX:XX:XX:XX" a valid Bluetooth address? */
int bluez_valid_address(const char *address);

#endif
