/* D-Bus client of bluetoothd: connection, object lookup, properties. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <alsa/asoundlib.h>

#include "bluez.h"
#include "dbus.h"

#define DEFAULT_SYSTEM_BUS "unix:path=/var/run/dbus/system_bus_socket"
#define MAX_ADAPTERS 16
#define MAX_DEVICES 256

struct adapter {
	char path[64];
	char address[18];
	int powered;
};

/* What GetManagedObjects told us, reduced to what device lookup needs. */
struct objects {
	struct adapter adapters[MAX_ADAPTERS];
	int n_adapters;
	struct bluez_device devices[MAX_DEVICES];
	int n_devices;
};

int bluez_valid_address(const char *a)
{
	if (!a || strlen(a) != 17)
		return 0;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? a[i] != ':' : !isxdigit((unsigned char)a[i]))
			return 0;
	return 1;
}

int bluez_open(struct bluez **out)
{
	const char *address = getenv("DBUS_SYSTEM_BUS_ADDRESS");
	struct bluez *bz;
	DBusError err;

	if (!address || !*address)
		address = DEFAULT_SYSTEM_BUS;
	/* We run inside other people's programs: their SIGPIPE is not ours to change. */
	dbus_connection_set_change_sigpipe(FALSE);
	if (!(bz = calloc(1, sizeof(*bz))))
		return -ENOMEM;
	dbus_error_init(&err);
	bz->conn = dbus_connection_open_private(address, &err);
	if (bz->conn && !dbus_bus_register(bz->conn, &err)) {
		dbus_connection_close(bz->conn);
		dbus_connection_unref(bz->conn);
		bz->conn = NULL;
	}
	if (!bz->conn) {
		SNDERR("cannot reach the D-Bus system bus (%s): is dbus running?",
		       err.message ? err.message : address);
		dbus_error_free(&err);
		free(bz);
		return -ECONNREFUSED;
	}
	dbus_connection_set_exit_on_disconnect(bz->conn, FALSE);
	*out = bz;
	return 0;
}

void bluez_close(struct bluez *bz)
{
	if (!bz)
		return;
	dbus_connection_close(bz->conn);
	dbus_connection_unref(bz->conn);
	free(bz);
}

int bluez_from_bluez(const struct bluez *bz, DBusMessage *msg)
{
	const char *sender = dbus_message_get_sender(msg);

	return bz->owner[0] && sender && !strcmp(sender, bz->owner);
}

/* bluetoothd's new unique name ("" when it left) if msg is the bus saying
 * that org.bluez changed hands, else NULL. Only the bus itself may say who
 * owns a name. */
static const char *bluez_owner_change(DBusMessage *msg)
{
	const char *sender = dbus_message_get_sender(msg), *name, *old_owner, *new_owner;

	if (dbus_message_is_signal(msg, DBUS_INTERFACE_DBUS, "NameOwnerChanged") &&
	    sender && !strcmp(sender, DBUS_SERVICE_DBUS) &&
	    dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING,
				  &old_owner, DBUS_TYPE_STRING, &new_owner, DBUS_TYPE_INVALID) &&
	    !strcmp(name, BLUEZ_SERVICE))
		return new_owner;
	return NULL;
}

int bluez_lost(DBusMessage *msg)
{
	const char *owner;

	if (dbus_message_is_signal(msg, DBUS_INTERFACE_LOCAL, "Disconnected"))
		return 1;
	return (owner = bluez_owner_change(msg)) && !*owner;
}

int bluez_returned(struct bluez *bz, DBusMessage *msg)
{
	const char *owner = bluez_owner_change(msg);

	if (!owner || !*owner)
		return 0;
	snprintf(bz->owner, sizeof(bz->owner), "%s", owner);
	return 1;
}

int bluez_dispatch(struct bluez *bz)
{
	int alive = dbus_connection_read_write(bz->conn, 0);

	while (dbus_connection_dispatch(bz->conn) == DBUS_DISPATCH_DATA_REMAINS)
		;
	return alive ? 0 : -ECONNRESET;
}

static const char *reply_error(DBusMessage *reply, const char **msg)
{
	if (dbus_message_get_type(reply) != DBUS_MESSAGE_TYPE_ERROR)
		return NULL;
	if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_STRING, msg, DBUS_TYPE_INVALID))
		*msg = "";
	return dbus_message_get_error_name(reply);
}

/* bluetoothd is not there. Where D-Bus can start it on demand (its service
 * file, as Debian ships it), a call starts it, and a start that failed
 * (bluetooth.service stopped or masked) comes back as a Spawn error. */
static int is_service_missing(const char *name)
{
	return !strcmp(name, DBUS_ERROR_SERVICE_UNKNOWN) ||
	       !strcmp(name, DBUS_ERROR_NAME_HAS_NO_OWNER) ||
	       !strncmp(name, "org.freedesktop.DBus.Error.Spawn.", 33) ||
	       !strncmp(name, "org.freedesktop.systemd1.", 25);
}

/* Property parsing of the objects we care about. */
static int adapter_prop(const char *key, DBusMessageIter *v, void *data)
{
	struct adapter *a = data;
	const char *s;
	dbus_bool_t b;

	if (!strcmp(key, "Address") && !dbusx_variant_basic(v, DBUS_TYPE_STRING, &s))
		snprintf(a->address, sizeof(a->address), "%s", s);
	else if (!strcmp(key, "Powered") && !dbusx_variant_basic(v, DBUS_TYPE_BOOLEAN, &b))
		a->powered = b;
	return 0;
}

static int has_uuid(DBusMessageIter *v, const char *uuid)
{
	DBusMessageIter arr;

	if (dbus_message_iter_get_arg_type(v) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(v) != DBUS_TYPE_STRING)
		return 0;
	dbus_message_iter_recurse(v, &arr);
	for (; dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRING;
	     dbus_message_iter_next(&arr)) {
		const char *s;

		dbus_message_iter_get_basic(&arr, &s);
		if (!strcasecmp(s, uuid))
			return 1;
	}
	return 0;
}

static int device_prop(const char *key, DBusMessageIter *v, void *data)
{
	struct bluez_device *d = data;
	const char *s;
	dbus_bool_t b;

	if (!strcmp(key, "Address") && !dbusx_variant_basic(v, DBUS_TYPE_STRING, &s))
		snprintf(d->address, sizeof(d->address), "%s", s);
	else if (!strcmp(key, "Alias") && !dbusx_variant_basic(v, DBUS_TYPE_STRING, &s))
		snprintf(d->name, sizeof(d->name), "%s", s);
	else if (!strcmp(key, "Adapter") && !dbusx_variant_basic(v, DBUS_TYPE_OBJECT_PATH, &s))
		snprintf(d->adapter_path, sizeof(d->adapter_path), "%s", s);
	else if (!strcmp(key, "Paired") && !dbusx_variant_basic(v, DBUS_TYPE_BOOLEAN, &b))
		d->paired = b;
	else if (!strcmp(key, "Connected") && !dbusx_variant_basic(v, DBUS_TYPE_BOOLEAN, &b))
		d->connected = b;
	else if (!strcmp(key, "UUIDs")) {
		d->audio_sink = has_uuid(v, A2DP_SINK_UUID);
		d->audio_source = has_uuid(v, A2DP_SOURCE_UUID);
		d->hands_free = has_uuid(v, HFP_HF_UUID);
	}
	return 0;
}

static void parse_object(struct objects *o, const char *path, DBusMessageIter *ifaces)
{
	DBusMessageIter arr;

	dbus_message_iter_recurse(ifaces, &arr);
	for (; dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_DICT_ENTRY;
	     dbus_message_iter_next(&arr)) {
		DBusMessageIter entry;
		const char *iface;

		dbus_message_iter_recurse(&arr, &entry);
		dbus_message_iter_get_basic(&entry, &iface);
		dbus_message_iter_next(&entry);
		if (!strcmp(iface, "org.bluez.Adapter1") && o->n_adapters < MAX_ADAPTERS) {
			struct adapter *a = &o->adapters[o->n_adapters++];

			snprintf(a->path, sizeof(a->path), "%s", path);
			dbusx_dict_foreach(&entry, adapter_prop, a);
		} else if (!strcmp(iface, "org.bluez.Device1") && o->n_devices < MAX_DEVICES) {
			struct bluez_device *d = &o->devices[o->n_devices++];

			snprintf(d->path, sizeof(d->path), "%s", path);
			dbusx_dict_foreach(&entry, device_prop, d);
		}
	}
}

static int parse_objects(DBusMessage *reply, struct objects *o)
{
	DBusMessageIter it, arr;

	if (!dbus_message_iter_init(reply, &it) ||
	    strcmp(dbus_message_get_signature(reply), "a{oa{sa{sv}}}"))
		return -EINVAL;
	dbus_message_iter_recurse(&it, &arr);
	for (; dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_DICT_ENTRY;
	     dbus_message_iter_next(&arr)) {
		DBusMessageIter entry;
		const char *path;

		dbus_message_iter_recurse(&arr, &entry);
		dbus_message_iter_get_basic(&entry, &path);
		dbus_message_iter_next(&entry);
		parse_object(o, path, &entry);
	}
	return 0;
}

/* GetManagedObjects, with the reply left to the caller. may_start: the
 * device lookup at open, the one call that may start bluetoothd (activation):
 * the user asked for a Bluetooth device. */
static int managed_objects(struct bluez *bz, int64_t deadline_ms, DBusMessage **reply,
			   int may_start)
{
	DBusMessage *msg;
	const char *name, *text;
	int err;

	msg = bluez_method_call("/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects");
	if (!msg)
		return -ENOMEM;
	dbus_message_set_auto_start(msg, may_start);
	err = dbusx_call(bz->conn, msg, deadline_ms, reply);
	dbus_message_unref(msg);
	if (err == -ETIMEDOUT) {
		SNDERR("bluetoothd does not answer on D-Bus: restart it (systemctl restart bluetooth)");
		return err;
	}
	if (err < 0) {
		SNDERR("lost the D-Bus system bus while asking bluetoothd for devices");
		return err;
	}
	if (!(name = reply_error(*reply, &text)) && dbus_message_get_sender(*reply))
		snprintf(bz->owner, sizeof(bz->owner), "%s", dbus_message_get_sender(*reply));
	if (name) {
		if (is_service_missing(name))
			SNDERR("bluetoothd is not running: start it (systemctl start bluetooth)");
		else
			SNDERR("bluetoothd refused to list devices: %s", text);
		dbus_message_unref(*reply);
		return is_service_missing(name) ? -ECONNREFUSED : -EIO;
	}
	return 0;
}

static int load_objects(struct bluez *bz, int64_t deadline_ms, struct objects *o)
{
	DBusMessage *reply;
	int err;

	if ((err = managed_objects(bz, deadline_ms, &reply, 1)) < 0)
		return err;
	err = parse_objects(reply, o);
	dbus_message_unref(reply);
	if (err < 0)
		SNDERR("bluetoothd sent a malformed object list");
	return err;
}

static const struct adapter *adapter_of(const struct objects *o, const char *path)
{
	for (int i = 0; i < o->n_adapters; i++)
		if (!strcmp(o->adapters[i].path, path))
			return &o->adapters[i];
	return NULL;
}

static int adapter_matches(const struct adapter *a, const char *want)
{
	const char *name = strrchr(a->path, '/');

	return !want || !*want || (name && !strcmp(name + 1, want)) ||
	       !strcasecmp(a->address, want);
}

/* Fills in the adapter fields of a device; 0 if the device is on a wanted adapter. */
static int bind_adapter(const struct objects *o, struct bluez_device *d, const char *want)
{
	const struct adapter *a = adapter_of(o, d->adapter_path);
	const char *name;

	if (!a || !adapter_matches(a, want))
		return -1;
	name = strrchr(a->path, '/');
	snprintf(d->adapter, sizeof(d->adapter), "%s", name ? name + 1 : a->path);
	d->adapter_powered = a->powered;
	snprintf(d->adapter_address, sizeof(d->adapter_address), "%s", a->address);
	return 0;
}

static int check_adapters(const struct objects *o, const char *want)
{
	for (int i = 0; i < o->n_adapters; i++)
		if (adapter_matches(&o->adapters[i], want))
			return 0;
	if (want && *want)
		SNDERR("no Bluetooth adapter '%s' (see 'bluetoothctl list')", want);
	else
		SNDERR("no Bluetooth adapter found: is the controller plugged in and not blocked (rfkill)?");
	return -ENODEV;
}

/* The role the device must play: our A2DP Source needs its Sink, and the
 * other way round. */
static int has_role(const struct bluez_device *d, int role)
{
	switch (role) {
	case BLUEZ_EITHER:
		return d->audio_source || d->audio_sink;
	case BLUEZ_SOURCE:
		return d->audio_source;
	case BLUEZ_HEADSET:
		return d->hands_free;
	default:
		return d->audio_sink;
	}
}

static int check_device(const struct bluez_device *d, int want_source)
{
	if (!d->adapter_powered) {
		SNDERR("Bluetooth adapter %s is powered off: run 'bluetoothctl power on'", d->adapter);
		return -ENETDOWN;
	}
	if (!d->paired) {
		SNDERR("%s is not paired: run 'bluetoothctl pair %s' and 'bluetoothctl trust %s'",
		       d->address, d->address, d->address);
		return -EACCES;
	}
	if (!has_role(d, want_source) && want_source == BLUEZ_HEADSET) {
		SNDERR("%s is not a headset (it offers no HFP Hands-Free profile): for music, "
		       "leave PROFILE=hfp out", d->address);
		return -ENOTSUP;
	}
	if (!has_role(d, want_source) && want_source == BLUEZ_EITHER) {
		SNDERR("%s offers neither A2DP Sink nor A2DP Source: it is not an audio device",
		       d->address);
		return -ENOTSUP;
	}
	if (!has_role(d, want_source)) {
		SNDERR(want_source ? "%s is not an audio source (it offers no A2DP Source profile): it cannot play to us"
				   : "%s is not an audio sink (it offers no A2DP Sink profile)", d->address);
		return -ENOTSUP;
	}
	return 0;
}

static int find_by_address(const struct objects *o, const char *adapter, const char *address,
			   int want_source, struct bluez_device *dev)
{
	for (int i = 0; i < o->n_devices; i++) {
		struct bluez_device d = o->devices[i];

		if (strcasecmp(d.address, address) || bind_adapter(o, &d, adapter) < 0)
			continue;
		*dev = d;
		return check_device(dev, want_source);
	}
	SNDERR("device %s is not known to BlueZ: pair it first ('bluetoothctl pair %s')",
	       address, address);
	return -ENODEV;
}

/* DEV left out: the connected A2DP sink; a single paired one if none is connected. */
static int find_default(const struct objects *o, const char *adapter, int want_source,
			struct bluez_device *dev)
{
	int connected = -1, paired = -1, n_paired = 0;

	for (int i = 0; i < o->n_devices; i++) {
		struct bluez_device d = o->devices[i];

		if (bind_adapter(o, &d, adapter) < 0 || !d.paired || !has_role(&d, want_source) ||
		    !d.adapter_powered)
			continue;
		if (d.connected && connected < 0)
			connected = i;
		if (paired < 0)
			paired = i;
		n_paired++;
	}
	if (connected < 0 && n_paired != 1 && want_source == BLUEZ_HEADSET) {
		SNDERR(n_paired ? "no headset is connected and several are paired: choose one with DEV=XX:XX:XX:XX:XX:XX"
				: "no paired headset (HFP Hands-Free): pair one ('bluetoothctl pair XX:XX:XX:XX:XX:XX') or give DEV=");
		return -ENODEV;
	}
	if (connected < 0 && n_paired != 1 && want_source) {
		SNDERR(n_paired ? "no A2DP source (phone) is connected and several are paired: choose one with DEV=XX:XX:XX:XX:XX:XX"
				: "no paired A2DP source (phone): pair one ('bluetoothctl pair XX:XX:XX:XX:XX:XX') or give DEV=");
		return -ENODEV;
	}
	if (connected < 0 && n_paired != 1) {
		SNDERR(n_paired ? "no A2DP speaker is connected and several are paired: choose one with DEV=XX:XX:XX:XX:XX:XX"
				: "no paired A2DP speaker: pair one ('bluetoothctl pair XX:XX:XX:XX:XX:XX') or give DEV=");
		return -ENODEV;
	}
	*dev = o->devices[connected >= 0 ? connected : paired];
	bind_adapter(o, dev, adapter);
	return 0;
}

int bluez_find_device(struct bluez *bz, const char *adapter, const char *address,
		      int64_t deadline_ms, struct bluez_device *dev)
{
	return bluez_find_device_role(bz, adapter, address, 0, deadline_ms, dev);
}

int bluez_find_device_role(struct bluez *bz, const char *adapter, const char *address,
			   int want_source, int64_t deadline_ms, struct bluez_device *dev)
{
	struct objects *o = calloc(1, sizeof(*o));
	int err;

	if (!o)
		return -ENOMEM;
	if ((err = load_objects(bz, deadline_ms, o)) == 0 && (err = check_adapters(o, adapter)) == 0)
		err = address ? find_by_address(o, adapter, address, want_source, dev)
			      : find_default(o, adapter, want_source, dev);
	free(o);
	return err;
}

/* Looks for a MediaTransport1 under the device's path other than `except`. */
/* Calls fn(path, iface, props) for each interface of each object below
 * device_path, until fn returns nonzero (which is returned). */
typedef int (*iface_fn)(const char *path, const char *iface, DBusMessageIter *props, void *data);

static int walk_device(DBusMessage *reply, const char *device_path, iface_fn fn, void *data)
{
	DBusMessageIter it, arr;
	size_t dlen = strlen(device_path);
	int r;

	dbus_message_iter_init(reply, &it);
	dbus_message_iter_recurse(&it, &arr);
	for (; dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_DICT_ENTRY;
	     dbus_message_iter_next(&arr)) {
		DBusMessageIter entry, ifaces;
		const char *p;

		dbus_message_iter_recurse(&arr, &entry);
		dbus_message_iter_get_basic(&entry, &p);
		dbus_message_iter_next(&entry);
		if (strncmp(p, device_path, dlen) || p[dlen] != '/')
			continue;
		dbus_message_iter_recurse(&entry, &ifaces);
		for (; dbus_message_iter_get_arg_type(&ifaces) == DBUS_TYPE_DICT_ENTRY;
		     dbus_message_iter_next(&ifaces)) {
			DBusMessageIter e;
			const char *iface;

			dbus_message_iter_recurse(&ifaces, &e);
			dbus_message_iter_get_basic(&e, &iface);
			dbus_message_iter_next(&e);
			if ((r = fn(p, iface, &e, data)))
				return r;
		}
	}
	return 0;
}

/* Loads GetManagedObjects and walks the device's objects. */
static int walk_device_objects(struct bluez *bz, const char *device_path, int64_t deadline_ms,
			       iface_fn fn, void *data)
{
	DBusMessage *reply;
	int err;

	if ((err = managed_objects(bz, deadline_ms, &reply, 0)) < 0)
		return err;
	if (strcmp(dbus_message_get_signature(reply), "a{oa{sa{sv}}}"))
		err = -EINVAL;
	else
		err = walk_device(reply, device_path, fn, data);
	dbus_message_unref(reply);
	return err;
}

struct transport_search {
	const char *except;
	char *path;
	size_t size;
};

static int is_other_transport(const char *path, const char *iface, DBusMessageIter *props, void *data)
{
	struct transport_search *t = data;

	(void)props;
	if (strcmp(iface, "org.bluez.MediaTransport1") || (t->except && !strcmp(path, t->except)))
		return 0;
	snprintf(t->path, t->size, "%s", path);
	return 1;
}

int bluez_find_transport(struct bluez *bz, const char *device_path, const char *except,
			 int64_t deadline_ms, char *path, size_t size)
{
	struct transport_search t = { except, path, size };

	return walk_device_objects(bz, device_path, deadline_ms, is_other_transport, &t);
}

struct sep_list {
	struct bluez_remote_sep *seps;
	int n, max;
	int is_sink;
};

static int sep_prop(const char *key, DBusMessageIter *v, void *data)
{
	struct sep_list *l = data;
	struct bluez_remote_sep *rs = &l->seps[l->n];
	const char *s;
	uint8_t y;

	if (!strcmp(key, "UUID") && !dbusx_variant_basic(v, DBUS_TYPE_STRING, &s))
		l->is_sink = !strcasecmp(s, A2DP_SINK_UUID);
	else if (!strcmp(key, "Codec") && !dbusx_variant_basic(v, DBUS_TYPE_BYTE, &y))
		rs->codec = y;
	else if (!strcmp(key, "Capabilities"))
		rs->caps_len = dbusx_read_bytes(v, rs->caps, sizeof(rs->caps));
	return 0;
}

static int add_sep(const char *path, const char *iface, DBusMessageIter *props, void *data)
{
	struct sep_list *l = data;

	(void)path;
	if (strcmp(iface, "org.bluez.MediaEndpoint1") || l->n >= l->max)
		return 0;
	memset(&l->seps[l->n], 0, sizeof(l->seps[l->n]));
	l->is_sink = 0;
	l->seps[l->n].caps_len = -1;
	dbusx_dict_foreach(props, sep_prop, l);
	if (l->is_sink && l->seps[l->n].caps_len >= 0)
		l->n++;
	return 0;
}

int bluez_remote_seps(struct bluez *bz, const char *device_path, int64_t deadline_ms,
		      struct bluez_remote_sep *seps, int max)
{
	struct sep_list l = { seps, 0, max, 0 };
	int err = walk_device_objects(bz, device_path, deadline_ms, add_sep, &l);

	return err < 0 ? err : l.n;
}

static void copy_error(DBusMessage *reply, char *name, size_t nsize, char *msg, size_t msize)
{
	const char *n, *text = "";

	n = reply_error(reply, &text);
	if (name)
		snprintf(name, nsize, "%s", n ? n : "");
	if (msg)
		snprintf(msg, msize, "%s", text);
}

DBusMessage *bluez_method_call(const char *path, const char *iface, const char *method)
{
	DBusMessage *msg = dbus_message_new_method_call(BLUEZ_SERVICE, path, iface, method);

	if (msg)
		dbus_message_set_auto_start(msg, FALSE);
	return msg;
}

int bluez_call_simple(struct bluez *bz, const char *path, const char *iface,
		      const char *method, const char *arg, int64_t deadline_ms,
		      char *error_name, size_t name_size, char *error_msg, size_t msg_size)
{
	DBusMessage *msg, *reply;
	int err;

	if (error_name)
		*error_name = 0;
	if (error_msg)
		*error_msg = 0;
	msg = bluez_method_call(path, iface, method);
	if (!msg || (arg && !dbus_message_append_args(msg, DBUS_TYPE_STRING, &arg,
						      DBUS_TYPE_INVALID))) {
		if (msg)
			dbus_message_unref(msg);
		return -ENOMEM;
	}
	err = dbusx_call(bz->conn, msg, deadline_ms, &reply);
	dbus_message_unref(msg);
	if (err < 0)
		return err;
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR) {
		copy_error(reply, error_name, name_size, error_msg, msg_size);
		err = -EIO;
	}
	dbus_message_unref(reply);
	return err;
}

int bluez_get_property(struct bluez *bz, const char *path, const char *iface,
		       const char *name, int type, void *out, int64_t deadline_ms)
{
	DBusMessage *msg, *reply;
	DBusMessageIter it, v;
	int err;

	msg = bluez_method_call(path, DBUS_INTERFACE_PROPERTIES, "Get");
	if (!msg || !dbus_message_append_args(msg, DBUS_TYPE_STRING, &iface,
					      DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID)) {
		if (msg)
			dbus_message_unref(msg);
		return -ENOMEM;
	}
	err = dbusx_call(bz->conn, msg, deadline_ms, &reply);
	dbus_message_unref(msg);
	if (err < 0)
		return err;
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR ||
	    !dbus_message_iter_init(reply, &it) ||
	    dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_VARIANT) {
		err = -ENOENT;
	} else {
		dbus_message_iter_recurse(&it, &v);
		err = dbusx_variant_basic(&v, type, out);
	}
	dbus_message_unref(reply);
	return err;
}

static DBusMessage *set_message(const char *path, const char *iface, const char *name,
				uint16_t value)
{
	DBusMessage *msg;
	DBusMessageIter it, v;

	msg = bluez_method_call(path, DBUS_INTERFACE_PROPERTIES, "Set");
	if (!msg)
		return NULL;
	dbus_message_iter_init_append(msg, &it);
	if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &iface) ||
	    !dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &name) ||
	    !dbus_message_iter_open_container(&it, DBUS_TYPE_VARIANT, "q", &v) ||
	    !dbus_message_iter_append_basic(&v, DBUS_TYPE_UINT16, &value) ||
	    !dbus_message_iter_close_container(&it, &v)) {
		dbus_message_unref(msg);
		return NULL;
	}
	return msg;
}

int bluez_set_uint16(struct bluez *bz, const char *path, const char *iface,
		     const char *name, uint16_t value, int64_t deadline_ms)
{
	DBusMessage *msg = set_message(path, iface, name, value), *reply;
	int err;

	if (!msg)
		return -ENOMEM;
	err = dbusx_call(bz->conn, msg, deadline_ms, &reply);
	dbus_message_unref(msg);
	if (err < 0)
		return err;
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR)
		err = -EIO;
	dbus_message_unref(reply);
	return err;
}

int bluez_set_uint16_async(struct bluez *bz, const char *path, const char *iface,
			   const char *name, uint16_t value)
{
	DBusMessage *msg = set_message(path, iface, name, value);
	int ok;

	if (!msg)
		return -ENOMEM;
	dbus_message_set_no_reply(msg, TRUE);
	ok = dbus_connection_send(bz->conn, msg, NULL);
	dbus_message_unref(msg);
	return ok ? 0 : -ENOMEM;
}
