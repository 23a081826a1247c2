/*
 * Writes the seed corpora of the fuzz targets into DIR/<target>/ (default
 * tests/fuzz/corpus). Reproducible: the same files every run.
 *   cc tests/fuzz/make_seeds.c $(pkg-config --cflags --libs dbus-1) -o make_seeds
 *   ./make_seeds tests/fuzz/corpus tests/fuzz/crashes-found
 * (also writes the D-Bus reproducers of the findings into the second dir).
 * The D-Bus seeds are real messages marshalled with dbus_message_marshal:
 * what bluetoothd and the bus send, and wrong-typed variants of them.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dbus/dbus.h>

#define ENDPOINT_PATH  "/org/alsa_bt/a2dp_source0"
#define DEVICE_PATH    "/org/bluez/hci0/dev_00_1B_66_AA_BB_CC"
#define ADAPTER_PATH   "/org/bluez/hci0"
#define TRANSPORT_PATH DEVICE_PATH "/sep1/fd0"
#define ENDPOINT_IFACE "org.bluez.MediaEndpoint1"
#define TRANSPORT_IFACE "org.bluez.MediaTransport1"
#define OM_IFACE "org.freedesktop.DBus.ObjectManager"
#define SINK_UUID "0000110b-0000-1000-8000-00805f9b34fb"
#define BLUEZ_UNIQUE ":1.7"
#define OUR_UNIQUE ":1.42"

static const char *root, *crashes_root;
static unsigned serial = 100;

static void die(const char *what)
{
	fprintf(stderr, "make_seeds: %s\n", what);
	exit(1);
}

static void mkdir_p(const char *dir)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				die(buf);
			*p = '/';
		}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		die(buf);
}

static void write_in(const char *dir, const char *target, const char *name, const void *data, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, target);
	mkdir_p(path);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
	if (!(f = fopen(path, "wb")) || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		die(path);
}

static void write_file(const char *target, const char *name, const void *data, size_t len)
{
	write_in(root, target, name, data, len);
}

static void write_text(const char *target, const char *name, const char *text)
{
	write_file(target, name, text, strlen(text));
}

/* --- D-Bus -------------------------------------------------------------- */

/* Messages of one seed, marshalled back to back. */
struct seq {
	char *buf;
	size_t len;
};

static void seq_add(struct seq *s, DBusMessage *m)
{
	char *bytes;
	int n;

	if (!dbus_message_get_serial(m))
		dbus_message_set_serial(m, serial++);
	if (!dbus_message_marshal(m, &bytes, &n))
		die("dbus_message_marshal");
	s->buf = realloc(s->buf, s->len + n);
	memcpy(s->buf + s->len, bytes, n);
	s->len += n;
	dbus_free(bytes);
	dbus_message_unref(m);
}

static void seq_write_in(const char *dir, struct seq *s, const char *name)
{
	write_in(dir, "fuzz_dbus_endpoint", name, s->buf, s->len);
	free(s->buf);
	s->buf = NULL;
	s->len = 0;
}

static void seq_write(struct seq *s, const char *name)
{
	write_file("fuzz_dbus_endpoint", name, s->buf, s->len);
	free(s->buf);
	s->buf = NULL;
	s->len = 0;
}

static void one(DBusMessage *m, const char *name)
{
	struct seq s = { 0 };

	seq_add(&s, m);
	seq_write(&s, name);
}

/* A reproducer of a finding (README.md), for crashes-found/: kept out of the
 * seed corpus while the bug stands, or every run would stop at it. */
static void found(DBusMessage *m, const char *name)
{
	struct seq s = { 0 };

	seq_add(&s, m);
	seq_write_in(crashes_root, &s, name);
}

/* A reproducer of a finding that only ALSA_BT_FUZZ_STRICT=1 checks: in the
 * corpus (it crashes nothing) and in crashes-found/strict/. */
static void strict_found(DBusMessage *(*make)(void), const char *name)
{
	char dir[512];
	struct seq s = { 0 };

	one(make(), name);
	snprintf(dir, sizeof(dir), "%s/strict", crashes_root);
	seq_add(&s, make());
	seq_write_in(dir, &s, name);
}

static DBusMessage *call(const char *member)
{
	DBusMessage *m = dbus_message_new_method_call(OUR_UNIQUE, ENDPOINT_PATH, ENDPOINT_IFACE, member);

	if (!m)
		die("new_method_call");
	dbus_message_set_sender(m, BLUEZ_UNIQUE);
	return m;
}

static DBusMessage *signal_from(const char *sender, const char *path, const char *iface,
				const char *member)
{
	DBusMessage *m = dbus_message_new_signal(path, iface, member);

	if (!m)
		die("new_signal");
	dbus_message_set_sender(m, sender);
	return m;
}

static void append_bytes(DBusMessageIter *it, const uint8_t *b, int n)
{
	DBusMessageIter arr;

	dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "y", &arr);
	dbus_message_iter_append_fixed_array(&arr, DBUS_TYPE_BYTE, &b, n);
	dbus_message_iter_close_container(it, &arr);
}

static void dict_basic(DBusMessageIter *dict, const char *key, int type, const void *value)
{
	DBusMessageIter e, v;
	char sig[2] = { (char)type, 0 };

	dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &e);
	dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &key);
	dbus_message_iter_open_container(&e, DBUS_TYPE_VARIANT, sig, &v);
	dbus_message_iter_append_basic(&v, type, value);
	dbus_message_iter_close_container(&e, &v);
	dbus_message_iter_close_container(dict, &e);
}

static void dict_str(DBusMessageIter *d, const char *key, const char *s) { dict_basic(d, key, DBUS_TYPE_STRING, &s); }
static void dict_path(DBusMessageIter *d, const char *key, const char *s) { dict_basic(d, key, DBUS_TYPE_OBJECT_PATH, &s); }
static void dict_bool(DBusMessageIter *d, const char *key, dbus_bool_t b) { dict_basic(d, key, DBUS_TYPE_BOOLEAN, &b); }
static void dict_byte(DBusMessageIter *d, const char *key, uint8_t y) { dict_basic(d, key, DBUS_TYPE_BYTE, &y); }
static void dict_u16(DBusMessageIter *d, const char *key, uint16_t q) { dict_basic(d, key, DBUS_TYPE_UINT16, &q); }
static void dict_u32(DBusMessageIter *d, const char *key, uint32_t u) { dict_basic(d, key, DBUS_TYPE_UINT32, &u); }

static void dict_bytes(DBusMessageIter *dict, const char *key, const uint8_t *b, int n)
{
	DBusMessageIter e, v;

	dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &e);
	dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &key);
	dbus_message_iter_open_container(&e, DBUS_TYPE_VARIANT, "ay", &v);
	append_bytes(&v, b, n);
	dbus_message_iter_close_container(&e, &v);
	dbus_message_iter_close_container(dict, &e);
}

static void dict_strings(DBusMessageIter *dict, const char *key, const char *const *s, int n)
{
	DBusMessageIter e, v, arr;

	dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &e);
	dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &key);
	dbus_message_iter_open_container(&e, DBUS_TYPE_VARIANT, "as", &v);
	dbus_message_iter_open_container(&v, DBUS_TYPE_ARRAY, "s", &arr);
	for (int i = 0; i < n; i++)
		dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &s[i]);
	dbus_message_iter_close_container(&v, &arr);
	dbus_message_iter_close_container(&e, &v);
	dbus_message_iter_close_container(dict, &e);
}

static DBusMessage *select_configuration(const uint8_t *caps, int n)
{
	DBusMessage *m = call("SelectConfiguration");
	DBusMessageIter it;

	dbus_message_iter_init_append(m, &it);
	append_bytes(&it, caps, n);
	return m;
}

enum set_variant { SET_GOOD, SET_OTHER_DEVICE, SET_DEVICE_STRING, SET_CONFIG_STRINGS,
		   SET_CODEC_U32, SET_NO_CONFIG, SET_BAD_CONFIG, SET_VOLUME_HIGH, SET_OTHER_TRANSPORT };

static DBusMessage *set_configuration(enum set_variant v)
{
	static const uint8_t config[] = { 0x21, 0x15, 2, 53 }, bad[] = { 0x31, 0x15, 2, 53 };
	static const char *const cfg_strings[] = { "21", "15" };
	const char *transport = v == SET_OTHER_TRANSPORT ? DEVICE_PATH "/sep1/fd1" : TRANSPORT_PATH;
	DBusMessage *m = call("SetConfiguration");
	DBusMessageIter it, dict;

	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &transport);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict);
	if (v == SET_DEVICE_STRING)
		dict_str(&dict, "Device", DEVICE_PATH);
	else
		dict_path(&dict, "Device", v == SET_OTHER_DEVICE ? "/org/bluez/hci0/dev_11_22_33_44_55_66"
								  : DEVICE_PATH);
	dict_str(&dict, "UUID", SINK_UUID);
	if (v == SET_CODEC_U32)
		dict_u32(&dict, "Codec", 0);
	else
		dict_byte(&dict, "Codec", 0);
	if (v == SET_CONFIG_STRINGS)
		dict_strings(&dict, "Configuration", cfg_strings, 2);
	else if (v == SET_BAD_CONFIG)
		dict_bytes(&dict, "Configuration", bad, sizeof(bad));
	else if (v != SET_NO_CONFIG)
		dict_bytes(&dict, "Configuration", config, sizeof(config));
	dict_str(&dict, "State", "idle");
	dict_u16(&dict, "Delay", 150);
	dict_u16(&dict, "Volume", v == SET_VOLUME_HIGH ? 300 : 100);
	dbus_message_iter_close_container(&it, &dict);
	return m;
}

static DBusMessage *clear_configuration(int as_string)
{
	DBusMessage *m = call("ClearConfiguration");
	const char *path = TRANSPORT_PATH;

	dbus_message_append_args(m, as_string ? DBUS_TYPE_STRING : DBUS_TYPE_OBJECT_PATH, &path,
				 DBUS_TYPE_INVALID);
	return m;
}

static DBusMessage *properties_changed(const char *path, const char *iface, int wrong_types)
{
	DBusMessage *m = signal_from(BLUEZ_UNIQUE, path, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged");
	DBusMessageIter it, dict, arr;

	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &iface);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict);
	if (!strcmp(iface, TRANSPORT_IFACE)) {
		if (wrong_types) {
			dict_u32(&dict, "Volume", 64);
			dict_str(&dict, "Delay", "200");
		} else {
			dict_u16(&dict, "Volume", 64);
			dict_u16(&dict, "Delay", 200);
			dict_str(&dict, "State", "active");
		}
	} else {
		if (wrong_types)
			dict_u16(&dict, "Percentage", 80);
		else
			dict_byte(&dict, "Percentage", 80);
	}
	dbus_message_iter_close_container(&it, &dict);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr);
	dbus_message_iter_close_container(&it, &arr);
	return m;
}

static DBusMessage *interfaces_added(const char *path)
{
	DBusMessage *m = signal_from(BLUEZ_UNIQUE, "/", OM_IFACE, "InterfacesAdded");
	DBusMessageIter it, ifaces, e, props;
	const char *iface = TRANSPORT_IFACE;

	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &path);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sa{sv}}", &ifaces);
	dbus_message_iter_open_container(&ifaces, DBUS_TYPE_DICT_ENTRY, NULL, &e);
	dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &iface);
	dbus_message_iter_open_container(&e, DBUS_TYPE_ARRAY, "{sv}", &props);
	dict_path(&props, "Device", DEVICE_PATH);
	dict_u16(&props, "Volume", 90);
	dict_str(&props, "State", "idle");
	dbus_message_iter_close_container(&e, &props);
	dbus_message_iter_close_container(&ifaces, &e);
	dbus_message_iter_close_container(&it, &ifaces);
	return m;
}

/* InterfacesAdded whose dict keys are not strings: oa{ta{sv}} or oa{ya{sv}}. */
static DBusMessage *interfaces_added_key(int key_type)
{
	DBusMessage *m = signal_from(BLUEZ_UNIQUE, "/", OM_IFACE, "InterfacesAdded");
	DBusMessageIter it, ifaces, e, props;
	const char *path = TRANSPORT_PATH;
	char sig[] = "{?a{sv}}";
	dbus_uint64_t t = 0x4141414141414141ull;
	uint8_t y = 0x41;

	sig[1] = (char)key_type;
	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &path);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, sig, &ifaces);
	dbus_message_iter_open_container(&ifaces, DBUS_TYPE_DICT_ENTRY, NULL, &e);
	dbus_message_iter_append_basic(&e, key_type, key_type == DBUS_TYPE_UINT64 ? (void *)&t : (void *)&y);
	dbus_message_iter_open_container(&e, DBUS_TYPE_ARRAY, "{sv}", &props);
	dict_u16(&props, "Volume", 90);
	dbus_message_iter_close_container(&e, &props);
	dbus_message_iter_close_container(&ifaces, &e);
	dbus_message_iter_close_container(&it, &ifaces);
	return m;
}

static DBusMessage *interfaces_removed(const char *path)
{
	DBusMessage *m = signal_from(BLUEZ_UNIQUE, "/", OM_IFACE, "InterfacesRemoved");
	DBusMessageIter it, arr;
	const char *iface = TRANSPORT_IFACE;

	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &path);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr);
	dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &iface);
	dbus_message_iter_close_container(&it, &arr);
	return m;
}

static DBusMessage *name_owner_changed(const char *name, const char *old_owner, const char *new_owner)
{
	DBusMessage *m = signal_from(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS,
				     "NameOwnerChanged");

	dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING, &old_owner,
				 DBUS_TYPE_STRING, &new_owner, DBUS_TYPE_INVALID);
	return m;
}

/* One interface of an object in a GetManagedObjects reply. */
static void begin_iface(DBusMessageIter *ifaces, const char *iface, DBusMessageIter *e,
			DBusMessageIter *props)
{
	dbus_message_iter_open_container(ifaces, DBUS_TYPE_DICT_ENTRY, NULL, e);
	dbus_message_iter_append_basic(e, DBUS_TYPE_STRING, &iface);
	dbus_message_iter_open_container(e, DBUS_TYPE_ARRAY, "{sv}", props);
}

static void end_iface(DBusMessageIter *ifaces, DBusMessageIter *e, DBusMessageIter *props)
{
	dbus_message_iter_close_container(e, props);
	dbus_message_iter_close_container(ifaces, e);
}

static void begin_object(DBusMessageIter *objs, const char *path, DBusMessageIter *e,
			 DBusMessageIter *ifaces)
{
	dbus_message_iter_open_container(objs, DBUS_TYPE_DICT_ENTRY, NULL, e);
	dbus_message_iter_append_basic(e, DBUS_TYPE_OBJECT_PATH, &path);
	dbus_message_iter_open_container(e, DBUS_TYPE_ARRAY, "{sa{sv}}", ifaces);
}

static void end_object(DBusMessageIter *objs, DBusMessageIter *e, DBusMessageIter *ifaces)
{
	dbus_message_iter_close_container(e, ifaces);
	dbus_message_iter_close_container(objs, e);
}

static void add_device(DBusMessageIter *objs, const char *path, const char *addr,
		       dbus_bool_t paired, dbus_bool_t connected, int sink)
{
	static const char *const uuids[] = { "0000110d-0000-1000-8000-00805f9b34fb", SINK_UUID };
	DBusMessageIter oe, ifaces, ie, props;

	begin_object(objs, path, &oe, &ifaces);
	begin_iface(&ifaces, "org.bluez.Device1", &ie, &props);
	dict_str(&props, "Address", addr);
	dict_str(&props, "Alias", "Speaker");
	dict_path(&props, "Adapter", ADAPTER_PATH);
	dict_bool(&props, "Paired", paired);
	dict_bool(&props, "Connected", connected);
	dict_strings(&props, "UUIDs", uuids, sink ? 2 : 1);
	end_iface(&ifaces, &ie, &props);
	begin_iface(&ifaces, "org.bluez.Battery1", &ie, &props);
	dict_byte(&props, "Percentage", 70);
	end_iface(&ifaces, &ie, &props);
	end_object(objs, &oe, &ifaces);
}

static DBusMessage *managed_objects(int with_transport, int second_device)
{
	DBusMessage *m = dbus_message_new(DBUS_MESSAGE_TYPE_METHOD_RETURN);
	DBusMessageIter it, objs, oe, ifaces, ie, props;

	dbus_message_set_reply_serial(m, 5);
	dbus_message_set_sender(m, BLUEZ_UNIQUE);
	dbus_message_set_destination(m, OUR_UNIQUE);
	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{oa{sa{sv}}}", &objs);

	begin_object(&objs, "/org/bluez", &oe, &ifaces);
	begin_iface(&ifaces, "org.bluez.AgentManager1", &ie, &props);
	end_iface(&ifaces, &ie, &props);
	end_object(&objs, &oe, &ifaces);

	begin_object(&objs, ADAPTER_PATH, &oe, &ifaces);
	begin_iface(&ifaces, "org.bluez.Adapter1", &ie, &props);
	dict_str(&props, "Address", "00:11:22:33:44:55");
	dict_bool(&props, "Powered", TRUE);
	end_iface(&ifaces, &ie, &props);
	begin_iface(&ifaces, "org.bluez.Media1", &ie, &props);
	end_iface(&ifaces, &ie, &props);
	end_object(&objs, &oe, &ifaces);

	add_device(&objs, DEVICE_PATH, "00:1B:66:AA:BB:CC", TRUE, TRUE, 1);
	if (second_device)
		add_device(&objs, "/org/bluez/hci0/dev_11_22_33_44_55_66", "11:22:33:44:55:66",
			   TRUE, FALSE, 1);
	if (with_transport) {
		begin_object(&objs, TRANSPORT_PATH, &oe, &ifaces);
		begin_iface(&ifaces, TRANSPORT_IFACE, &ie, &props);
		dict_path(&props, "Device", DEVICE_PATH);
		dict_u16(&props, "Volume", 100);
		end_iface(&ifaces, &ie, &props);
		end_object(&objs, &oe, &ifaces);
	}
	dbus_message_iter_close_container(&it, &objs);
	return m;
}

/* What anyone on the system bus may send us: signals, which the bus policy
 * lets through, shaped as the endpoint's method calls or as the bus's own. */
static DBusMessage *signal_release(void)
{
	return signal_from(":1.99", ENDPOINT_PATH, ENDPOINT_IFACE, "Release");
}

static DBusMessage *signal_clear(void)
{
	DBusMessage *m = signal_from(":1.99", ENDPOINT_PATH, ENDPOINT_IFACE, "ClearConfiguration");

	dbus_message_append_args(m, DBUS_TYPE_OBJECT_PATH, &(const char *){ TRANSPORT_PATH }, DBUS_TYPE_INVALID);
	return m;
}

static DBusMessage *name_owner_spoofed(void)
{
	DBusMessage *m = name_owner_changed("org.bluez", BLUEZ_UNIQUE, "");

	dbus_message_set_sender(m, ":1.99");
	return m;
}

/* Out of range values from bluetoothd: Volume is 0..127, Percentage 0..100. */
static DBusMessage *set_volume_300(void)
{
	return set_configuration(SET_VOLUME_HIGH);
}

static DBusMessage *battery_200(void)
{
	DBusMessage *m = signal_from(BLUEZ_UNIQUE, DEVICE_PATH, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged");
	DBusMessageIter it, dict, arr;
	const char *iface = "org.bluez.Battery1";

	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &iface);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict);
	dict_byte(&dict, "Percentage", 200);
	dbus_message_iter_close_container(&it, &dict);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr);
	dbus_message_iter_close_container(&it, &arr);
	return m;
}

static void dbus_seeds(void)
{
	static const uint8_t all_caps[] = { 0xff, 0xff, 2, 250 };
	static const uint8_t speaker_caps[] = { 0x31, 0xf5, 2, 53 };
	static const uint8_t long_caps[33] = { 0xff, 0xff, 2, 250 };
	struct seq s = { 0 };
	DBusMessage *m;

	one(select_configuration(all_caps, sizeof(all_caps)), "select_all");
	one(select_configuration(speaker_caps, sizeof(speaker_caps)), "select_speaker");
	one(select_configuration(long_caps, sizeof(long_caps)), "select_33_bytes");
	one(call("SelectConfiguration"), "select_no_args");
	m = call("SelectConfiguration");
	dbus_message_append_args(m, DBUS_TYPE_STRING, &(const char *){ "ffff02fa" }, DBUS_TYPE_INVALID);
	one(m, "select_string");

	one(set_configuration(SET_GOOD), "set_good");
	one(set_configuration(SET_OTHER_DEVICE), "set_other_device");
	one(set_configuration(SET_DEVICE_STRING), "set_device_string");
	one(set_configuration(SET_CONFIG_STRINGS), "set_config_strings");
	one(set_configuration(SET_CODEC_U32), "set_codec_u32");
	one(set_configuration(SET_NO_CONFIG), "set_no_config");
	one(set_configuration(SET_BAD_CONFIG), "set_bad_config");
	one(set_configuration(SET_OTHER_TRANSPORT), "set_other_transport");
	one(call("SetConfiguration"), "set_no_args");

	one(clear_configuration(0), "clear");
	one(clear_configuration(1), "clear_string");
	one(call("Release"), "release");

	one(properties_changed(TRANSPORT_PATH, TRANSPORT_IFACE, 0), "props_transport");
	one(properties_changed(TRANSPORT_PATH, TRANSPORT_IFACE, 1), "props_transport_wrong_types");
	one(properties_changed(DEVICE_PATH, "org.bluez.Battery1", 0), "props_battery");
	one(properties_changed(DEVICE_PATH, "org.bluez.Battery1", 1), "props_battery_wrong_types");
	one(interfaces_added(TRANSPORT_PATH), "interfaces_added");
	found(interfaces_added_key(DBUS_TYPE_UINT64), "ctl_interfaces_added_u64_key");
	found(interfaces_added_key(DBUS_TYPE_BYTE), "ctl_interfaces_added_byte_key");
	strict_found(signal_release, "signal_release");
	strict_found(signal_clear, "signal_clear");
	strict_found(name_owner_spoofed, "name_owner_spoofed");
	strict_found(set_volume_300, "set_volume_300");
	strict_found(battery_200, "props_battery_200");
	m = signal_from(BLUEZ_UNIQUE, TRANSPORT_PATH, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged");
	dbus_message_append_args(m, DBUS_TYPE_UINT32, &(dbus_uint32_t){ 7 }, DBUS_TYPE_INVALID);
	one(m, "props_not_string");
	one(interfaces_removed(TRANSPORT_PATH), "interfaces_removed");
	m = signal_from(BLUEZ_UNIQUE, "/", OM_IFACE, "InterfacesRemoved");
	dbus_message_append_args(m, DBUS_TYPE_STRING, &(const char *){ TRANSPORT_PATH }, DBUS_TYPE_INVALID);
	one(m, "interfaces_removed_string");
	one(name_owner_changed("org.bluez", BLUEZ_UNIQUE, ""), "name_owner_lost");
	one(name_owner_changed("org.bluez", "", BLUEZ_UNIQUE), "name_owner_new");
	m = signal_from(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS, "NameOwnerChanged");
	dbus_message_append_args(m, DBUS_TYPE_STRING, &(const char *){ "org.bluez" }, DBUS_TYPE_INVALID);
	one(m, "name_owner_short");

	one(managed_objects(1, 0), "objects_transport");
	one(managed_objects(0, 1), "objects_two_devices");
	m = dbus_message_new(DBUS_MESSAGE_TYPE_METHOD_RETURN);
	dbus_message_set_reply_serial(m, 5);
	dbus_message_append_args(m, DBUS_TYPE_STRING, &(const char *){ "not objects" }, DBUS_TYPE_INVALID);
	one(m, "objects_wrong_signature");
	m = dbus_message_new(DBUS_MESSAGE_TYPE_ERROR);
	dbus_message_set_error_name(m, "org.freedesktop.DBus.Error.ServiceUnknown");
	dbus_message_set_reply_serial(m, 5);
	dbus_message_append_args(m, DBUS_TYPE_STRING, &(const char *){ "no bluez" }, DBUS_TYPE_INVALID);
	one(m, "error_reply");

	/* Sequences: a stream's life as bluetoothd tells it. */
	seq_add(&s, select_configuration(speaker_caps, sizeof(speaker_caps)));
	seq_add(&s, set_configuration(SET_GOOD));
	seq_add(&s, properties_changed(TRANSPORT_PATH, TRANSPORT_IFACE, 0));
	seq_add(&s, clear_configuration(0));
	seq_write(&s, "seq_stream_life");
	seq_add(&s, set_configuration(SET_GOOD));
	seq_add(&s, interfaces_added(TRANSPORT_PATH));
	seq_add(&s, properties_changed(DEVICE_PATH, "org.bluez.Battery1", 0));
	seq_add(&s, interfaces_removed(TRANSPORT_PATH));
	seq_add(&s, name_owner_changed("org.bluez", BLUEZ_UNIQUE, ""));
	seq_write(&s, "seq_transport_gone");
	seq_add(&s, set_configuration(SET_GOOD));
	seq_add(&s, set_configuration(SET_OTHER_TRANSPORT));
	seq_add(&s, call("Release"));
	seq_write(&s, "seq_reconfigure");
}

/* --- SBC ------------------------------------------------------------------ */

/* Header: rate pick, bitpool override, MTU (2 bytes, big endian), caps_rates max. */
static void sbc_seed(const char *name, uint8_t rate, uint8_t bitpool, unsigned mtu, uint8_t max,
		     const uint8_t *blob, size_t len)
{
	uint8_t buf[64] = { rate, bitpool, mtu >> 8, mtu & 0xff, max };

	memcpy(buf + 5, blob, len);
	write_file("fuzz_sbc_caps", name, buf, 5 + len);
}

static void sbc_seeds(void)
{
	static const uint8_t all[] = { 0xff, 0xff, 2, 250 };
	static const uint8_t speaker[] = { 0x31, 0xf5, 2, 53 };
	static const uint8_t mono16[] = { 0x88, 0x88, 2, 32 };
	static const uint8_t high_min[] = { 0x21, 0x15, 200, 250 };
	static const uint8_t cfg_joint[] = { 0x21, 0x15, 2, 53 };
	static const uint8_t cfg_mono4[] = { 0x18, 0x89, 2, 64 };
	static const uint8_t cfg_max[] = { 0x11, 0x15, 250, 250 };
	static const uint8_t five[] = { 0xff, 0xff, 2, 250, 0 };

	sbc_seed("caps_all_default", 0, 0, 672, 4, all, sizeof(all));
	sbc_seed("caps_all_48k_bp35", 4, 35, 895, 4, all, sizeof(all));
	sbc_seed("caps_speaker_44k", 3, 0, 672, 2, speaker, sizeof(speaker));
	sbc_seed("caps_mono_16k", 1, 0, 100, 1, mono16, sizeof(mono16));
	sbc_seed("caps_min_too_high", 0, 0, 672, 4, high_min, sizeof(high_min));
	sbc_seed("config_joint", 0, 0, 672, 4, cfg_joint, sizeof(cfg_joint));
	sbc_seed("config_mono_4sb", 0, 0, 48, 4, cfg_mono4, sizeof(cfg_mono4));
	sbc_seed("config_bitpool_250", 0, 250, 1021, 4, cfg_max, sizeof(cfg_max));
	sbc_seed("caps_5_bytes", 0, 0, 672, 4, five, sizeof(five));
	sbc_seed("caps_empty", 0, 0, 672, 4, NULL, 0);
}

/* --- RTP ------------------------------------------------------------------ */

static void rtp_seeds(void)
{
	uint8_t p[64] = { 0x80, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x01, 0x9c, 0xbd, 0x35 };

	write_file("fuzz_rtp", "plain", p, 16);
	p[0] = 0x82;   /* two CSRCs */
	write_file("fuzz_rtp", "csrc", p, 24);
	p[0] = 0x90;   /* extension of one word */
	memcpy(p + 12, "\xbe\xde\x00\x01\x11\x22\x33\x44\x01", 9);
	write_file("fuzz_rtp", "extension", p, 21);
	p[0] = 0xa0;   /* padding of 3 */
	memcpy(p + 12, "\x01\x9c\xbd\x35\x00\x00\x03", 7);
	write_file("fuzz_rtp", "padding", p, 19);
	p[0] = 0xbf;   /* everything, truncated */
	write_file("fuzz_rtp", "truncated", p, 14);
	write_file("fuzz_rtp", "short", p, 5);
}

/* --- volume state and options ------------------------------------------------ */

static void text_seeds(void)
{
	write_text("fuzz_volume_state", "saved", "volume 100 muted 0 pending 1\n");
	write_text("fuzz_volume_state", "muted_max", "volume 127 muted 1 pending 0\n");
	write_text("fuzz_volume_state", "negative", "volume -5 muted -1 pending 7\n");
	write_text("fuzz_volume_state", "huge", "volume 99999999999999999999 muted 1 pending 0\n");
	write_text("fuzz_volume_state", "truncated", "volume 40 muted");
	write_text("fuzz_volume_state", "garbage", "\x00\xffvolume\n");
	write_text("fuzz_volume_state", "empty", "");
	write_text("fuzz_volume_state", "offers", "volume 90 muted 0 pending 0 codec aptx wanted - "
		   "offers aptx:sbc:sbc_xq\n");
	write_text("fuzz_volume_state", "offers_bad", "volume 90 muted 0 pending 0 codec sbc wanted sbc "
		   "offers sbc;rm:-rf:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");

	write_text("fuzz_options", "full",
		   "type bluetooth\ndevice \"00:1B:66:AA:BB:CC\"\nadapter \"hci0\"\n"
		   "bitpool 53\nconnect_timeout 5000\n");
	write_text("fuzz_options", "strings", "device \"\" adapter \"00:11:22:33:44:55\" "
		   "bitpool \"35\" connect_timeout \"100\"");
	write_text("fuzz_options", "any_device", "device \"00:00:00:00:00:00\"");
	write_text("fuzz_options", "hint", "hint { show on description \"Bluetooth\" }\ncomment \"x\"");
	write_text("fuzz_options", "unknown", "rate 44100");
	write_text("fuzz_options", "bad_device", "device \"00:1B:66:AA:BB\"");
	write_text("fuzz_options", "bad_numbers", "bitpool 251 connect_timeout \"5s\"");
	write_text("fuzz_options", "typed", "device 12 adapter 1.5 bitpool -1");
	write_text("fuzz_options", "assign", "device = \"00:1b:66:aa:bb:cc\"; bitpool = 0;");
}

/* fuzz_mix_proto: byte 0 the stand-in speaker's behaviour, then [op a b c]
 * records (see the target): two programs through HELLO, SETUP with a ring,
 * PREPARE, writes, START, the clock, DRAIN, hang-ups. */
struct mix_seed { uint8_t b[512]; size_t n; };

static void mix_rec(struct mix_seed *m, int op, int a, int b, int c)
{
	uint8_t r[4] = { (uint8_t)op, (uint8_t)a, (uint8_t)b, (uint8_t)c };

	if (m->n + 4 <= sizeof(m->b)) {
		memcpy(m->b + m->n, r, 4);
		m->n += 4;
	}
}

static void mix_two_programs(struct mix_seed *m, int setup_flags)
{
	mix_rec(m, 0, 0, 0, 0);
	mix_rec(m, 0, 1, 0, 0);
	for (int p = 0; p < 2; p++) {
		mix_rec(m, 1, p, 0, 0);                 /* HELLO */
		mix_rec(m, 1, p, 0x09, setup_flags);    /* SETUP, 512 frames */
		mix_rec(m, 1, p, 2, 0);                 /* PREPARE */
		mix_rec(m, 3, p, 0, 10);                /* 370 frames written */
		mix_rec(m, 1, p, 3, 0);                 /* START */
	}
	for (int t = 0; t < 6; t++) {
		mix_rec(m, 4, 3, 0, 0);                 /* 256 frames played */
		mix_rec(m, 3, 0, 0, 5);
		mix_rec(m, 3, 1, 0, 5);
	}
}

static void mix_seeds(void)
{
	struct mix_seed m = { .b = { 0 }, .n = 1 };

	mix_two_programs(&m, 0x04);
	mix_rec(&m, 1, 0, 6, 0);                        /* DRAIN */
	for (int t = 0; t < 4; t++)
		mix_rec(&m, 4, 7, 0, 0);
	mix_rec(&m, 7, 0, 0, 0);
	mix_rec(&m, 6, 1, 0, 0);
	mix_rec(&m, 6, 0, 0, 0);
	write_file("fuzz_mix_proto", "two_play_drain", m.b, m.n);

	m = (struct mix_seed){ .b = { 4 }, .n = 1 };    /* 32-bit samples */
	mix_two_programs(&m, 0x04);
	mix_rec(&m, 1, 0x14, 5, 0);                     /* PAUSE (program 20 % 20: 0) */
	mix_rec(&m, 4, 3, 0, 0);
	mix_rec(&m, 3, 1, 4, 1);                        /* a hostile appl */
	mix_rec(&m, 3, 1, 2, 9);                        /* it writes hw */
	mix_rec(&m, 4, 3, 0, 0);
	mix_rec(&m, 5, 0, 0, 0);                        /* the stream late: -EPIPE */
	mix_rec(&m, 5, 1, 0, 0);                        /* the speaker gone */
	mix_rec(&m, 1, 0, 3, 0);
	write_file("fuzz_mix_proto", "pause_hostile_gone", m.b, m.n);

	m = (struct mix_seed){ .b = { 0 }, .n = 1 };
	mix_rec(&m, 0, 0, 0, 0);
	mix_rec(&m, 1, 0, 0, 0x80);                     /* HELLO, options unended */
	mix_rec(&m, 1, 0, 0, 0x01);                     /* another version */
	mix_rec(&m, 0, 1, 0, 0);
	mix_rec(&m, 1, 1, 0, 0);
	mix_rec(&m, 1, 1, 0x09, 0x04 | 0x08);           /* an unsealed ring */
	mix_rec(&m, 1, 1, 0x09, 0x04 | 0x10);           /* a ring too small */
	mix_rec(&m, 1, 1, 0x09, 0x04 | 0x20);           /* a wrong magic */
	mix_rec(&m, 1, 1, 0x09, 0x04 | 0x40);           /* another rate */
	mix_rec(&m, 1, 1, 0x01, 0x80 | 0x04);           /* a huge buffer */
	mix_rec(&m, 2, 1, 8, 0);                        /* a short raw request */
	memcpy(m.b + m.n, "\x03\0\0\0\x01\0\0\0", 8);
	m.n += 8;
	mix_rec(&m, 1, 1, 7, 0);                        /* an unknown type */
	write_file("fuzz_mix_proto", "refusals", m.b, m.n);

	m = (struct mix_seed){ .b = { 1 }, .n = 1 };    /* the speaker cannot be opened */
	mix_rec(&m, 0, 0, 0, 0);
	mix_rec(&m, 1, 0, 0, 0);
	mix_rec(&m, 1, 0, 0x09, 0x04);
	mix_rec(&m, 7, 0, 0, 0);
	write_file("fuzz_mix_proto", "no_speaker", m.b, m.n);
}

int main(int argc, char **argv)
{
	root = argc > 1 ? argv[1] : "tests/fuzz/corpus";
	crashes_root = argc > 2 ? argv[2] : "tests/fuzz/crashes-found";
	dbus_seeds();
	sbc_seeds();
	rtp_seeds();
	text_seeds();
	mix_seeds();
	printf("make_seeds: wrote the corpora under %s\n", root);
	return 0;
}
