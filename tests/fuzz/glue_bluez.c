/* Glue of fuzz_dbus_endpoint to bluez/bluez.c (GetManagedObjects parsing is static). */
#include "../../bluez/bluez.c"

#include "dbus_glue.h"
#include "fuzz_common.h"

static void check_dev(const struct bluez_device *d)
{
	INVARIANT(memchr(d->path, 0, sizeof(d->path)), "device path unterminated");
	INVARIANT(memchr(d->address, 0, sizeof(d->address)), "address unterminated");
	INVARIANT(memchr(d->adapter, 0, sizeof(d->adapter)), "adapter unterminated");
	INVARIANT(memchr(d->adapter_path, 0, sizeof(d->adapter_path)), "adapter path unterminated");
	INVARIANT(memchr(d->name, 0, sizeof(d->name)), "name unterminated");
}

static void lookups(const struct objects *o)
{
	static const char *const adapters[] = { NULL, "", "hci0", "hci1", "00:11:22:33:44:55" };
	struct bluez_device dev;

	/* source = 0: a speaker for playback; 1: a phone for the capture */
	for (size_t i = 0; i < 2 * sizeof(adapters) / sizeof(adapters[0]); i++) {
		const char *adapter = adapters[i / 2];
		int source = i % 2;

		if (check_adapters(o, adapter) < 0)
			continue;
		memset(&dev, 0, sizeof(dev));
		if (find_default(o, adapter, source, &dev) == 0) {
			check_dev(&dev);
			INVARIANT(dev.paired && (source ? dev.audio_source : dev.audio_sink) &&
				  dev.adapter_powered, "find_default chose a device that cannot play");
		}
		memset(&dev, 0, sizeof(dev));
		if (find_by_address(o, adapter, FUZZ_DEVICE_ADDR, source, &dev) == 0) {
			check_dev(&dev);
			INVARIANT(!strcasecmp(dev.address, FUZZ_DEVICE_ADDR), "found %s", dev.address);
		}
	}
}

/* The speaker's endpoints as bluez_remote_seps reads them (codec choice and
 * the -ENOTSUP message): bounded, and each blob within its array. */
static void remote_seps(DBusMessage *reply)
{
	struct bluez_remote_sep seps[3];
	struct sep_list l = { seps, 0, 3, 0 };
	int r = walk_device(reply, FUZZ_DEVICE_PATH, add_sep, &l);

	INVARIANT(r == 0 && l.n >= 0 && l.n <= 3, "remote seps %d, %d", r, l.n);
	for (int i = 0; i < l.n; i++) {
		char name[48];

		INVARIANT(seps[i].caps_len >= 0 && seps[i].caps_len <= (int)sizeof(seps[i].caps),
			  "caps_len %d", seps[i].caps_len);
		a2dp_codec_describe(seps[i].codec, seps[i].caps, seps[i].caps_len, name, sizeof(name));
		INVARIANT(memchr(name, 0, sizeof(name)) && name[0], "codec name");
	}
}

void glue_bluez_objects(DBusMessage *reply)
{
	struct objects *o;
	char path[192];
	int r;

	/* managed_objects() hands on every reply that is not an error. */
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR)
		return;
	if (!(o = calloc(1, sizeof(*o))))
		abort();
	if (parse_objects(reply, o) == 0) {
		INVARIANT(o->n_adapters >= 0 && o->n_adapters <= MAX_ADAPTERS, "%d adapters", o->n_adapters);
		INVARIANT(o->n_devices >= 0 && o->n_devices <= MAX_DEVICES, "%d devices", o->n_devices);
		for (int i = 0; i < o->n_devices; i++)
			check_dev(&o->devices[i]);
		for (int i = 0; i < o->n_adapters; i++) {
			INVARIANT(memchr(o->adapters[i].path, 0, sizeof(o->adapters[i].path)), "adapter path");
			INVARIANT(memchr(o->adapters[i].address, 0, sizeof(o->adapters[i].address)), "address");
		}
		lookups(o);
	}
	free(o);
	/* bluez_find_transport checks the signature before walking. */
	if (strcmp(dbus_message_get_signature(reply), "a{oa{sa{sv}}}"))
		return;
	for (int i = 0; i < 2; i++) {
		const char *except = i ? FUZZ_TRANSPORT_PATH : NULL;

		struct transport_search t = { except, path, sizeof(path) };

		memset(path, 0x55, sizeof(path));
		r = walk_device(reply, FUZZ_DEVICE_PATH, is_other_transport, &t);
		INVARIANT(r == 0 || r == 1, "transport search returned %d", r);
		if (r == 1) {
			INVARIANT(memchr(path, 0, sizeof(path)), "transport path unterminated");
			INVARIANT(!strncmp(path, FUZZ_DEVICE_PATH "/", strlen(FUZZ_DEVICE_PATH) + 1),
				  "transport %s is not under the device", path);
			INVARIANT(!except || strcmp(path, except), "returned the excepted transport");
		}
	}
	remote_seps(reply);
}
