/* Our A2DP Source or Sink MediaEndpoint1 and the transport bluetoothd configures for it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#include "dbus.h"
#include "endpoint.h"
#include "volume.h"

#define ENDPOINT_IFACE "org.bluez.MediaEndpoint1"
#define TRANSPORT_IFACE "org.bluez.MediaTransport1"
#define CLOSE_STEP_MS 1000
#define RETRY_PAUSE_MS 500
/* bluetoothd replies to ConnectProfile once the stream is configured, so our
 * SetConfiguration has come first; the grace only covers reordering. */
#define CONFIG_GRACE_MS 1000
#define ACQUIRE_TIMEOUT_MS 3000

/* The profile we connect to on the device: the other role of ours. */
static const char *remote_uuid(const struct a2dp_endpoint *ep)
{
	return ep->sink ? A2DP_SOURCE_UUID : A2DP_SINK_UUID;
}

static int state_of(const char *s)
{
	return !strcmp(s, "pending") ? A2DP_PENDING : !strcmp(s, "active") ? A2DP_ACTIVE : A2DP_IDLE;
}

static const char *const match_rules[] = {
	"type='signal',sender='org.bluez',interface='org.freedesktop.DBus.Properties',"
	"member='PropertiesChanged',arg0='org.bluez.MediaTransport1'",
	"type='signal',sender='org.bluez',interface='org.freedesktop.DBus.ObjectManager',"
	"member='InterfacesRemoved'",
	"type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
	"member='NameOwnerChanged',arg0='org.bluez'",
};

static DBusMessage *error_reply(DBusMessage *call, const char *name, const char *text)
{
	return dbus_message_new_error(call, name, text);
}

/* The best configuration any listed codec with this endpoint's key finds in
 * the sink's capabilities (SBC-XQ, then plain SBC, if both are listed). */
static int choose_config(struct a2dp_endpoint *ep, const struct a2dp_sep *sep, uint8_t *config,
			 size_t size)
{
	int n = -ENOTSUP;

	for (int i = 0; i < ep->ncodecs; i++) {
		const struct a2dp_codec *c = ep->codecs[i];

		if (!a2dp_codec_key_equal(&c->key, &sep->codec->key))
			continue;
		if ((n = c->select_config(ep->sink_caps, ep->sink_caps_len, &ep->prefs,
					  config, size)) > 0) {
			ep->selected_codec = c;
			return n;
		}
	}
	return n;
}

/* MediaEndpoint1.SelectConfiguration(ay capabilities) -> ay */
static DBusMessage *select_configuration(struct a2dp_endpoint *ep, const struct a2dp_sep *sep,
					 DBusMessage *call)
{
	static char why[96];
	uint8_t config[A2DP_MAX_CAPS];
	DBusMessage *reply;
	DBusMessageIter it, arr;
	const uint8_t *p;
	int n;

	if (!dbus_message_has_signature(call, "ay") || !dbus_message_iter_init(call, &it) ||
	    (ep->sink_caps_len = dbusx_read_bytes(&it, ep->sink_caps, sizeof(ep->sink_caps))) < 0) {
		ep->sink_caps_len = 0;
		ep->rejected = "bluetoothd sent malformed capabilities";
		return error_reply(call, "org.bluez.Error.InvalidArguments", "capabilities must be ay");
	}
	n = choose_config(ep, sep, config, sizeof(config));
	if (n < 0) {
		/* BlueZ tries our next endpoint, if it has one for this speaker. */
		snprintf(why, sizeof(why), "its %s capabilities are malformed or offer nothing playable",
			 sep->codec->title);
		ep->rejected = why;
		return error_reply(call, "org.bluez.Error.InvalidArguments",
				   "no usable configuration in these capabilities");
	}
	memcpy(ep->selected, config, n);
	ep->selected_len = n;
	if (!(reply = dbus_message_new_method_return(call)))
		return NULL;
	p = config;
	dbus_message_iter_init_append(reply, &it);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "y", &arr);
	dbus_message_iter_append_fixed_array(&arr, DBUS_TYPE_BYTE, &p, n);
	dbus_message_iter_close_container(&it, &arr);
	return reply;
}

struct transport_props {
	struct a2dp_endpoint *ep;
	const char *device;
	uint8_t config[A2DP_MAX_CAPS];
	int config_len;
	int codec;
	int delay, volume, state;
};

static int transport_prop(const char *key, DBusMessageIter *v, void *data)
{
	struct transport_props *t = data;
	const char *s;
	uint16_t q;
	uint8_t y;

	if (!strcmp(key, "Device"))
		return dbusx_variant_basic(v, DBUS_TYPE_OBJECT_PATH, &t->device);
	if (!strcmp(key, "Configuration"))
		return (t->config_len = dbusx_read_bytes(v, t->config, sizeof(t->config)));
	if (!strcmp(key, "Codec") && !dbusx_variant_basic(v, DBUS_TYPE_BYTE, &y))
		t->codec = y;
	else if (!strcmp(key, "Delay") && !dbusx_variant_basic(v, DBUS_TYPE_UINT16, &q))
		t->delay = q;
	else if (!strcmp(key, "Volume") && !dbusx_variant_basic(v, DBUS_TYPE_UINT16, &q) &&
		 q <= VOLUME_MAX)
		t->volume = q;
	else if (!strcmp(key, "State") && !dbusx_variant_basic(v, DBUS_TYPE_STRING, &s))
		t->state = state_of(s);
	return 0;
}

/* The listed codec a configuration of this endpoint is for: the one whose
 * choice it is, else the first that accepts it (the speaker chose itself). */
static const struct a2dp_codec *codec_of_config(struct a2dp_endpoint *ep,
						 const struct a2dp_sep *sep,
						 const uint8_t *config, int len)
{
	struct a2dp_format fmt;

	if (ep->selected_codec && a2dp_codec_key_equal(&ep->selected_codec->key, &sep->codec->key) &&
	    ep->selected_len == len && !memcmp(ep->selected, config, len))
		return ep->selected_codec;
	for (int i = 0; i < ep->ncodecs; i++)
		if (a2dp_codec_key_equal(&ep->codecs[i]->key, &sep->codec->key) &&
		    ep->codecs[i]->parse_config(config, len, &fmt) == 0)
			return ep->codecs[i];
	return NULL;
}

/* MediaEndpoint1.SetConfiguration(o transport, a{sv} properties) */
static DBusMessage *set_configuration(struct a2dp_endpoint *ep, const struct a2dp_sep *sep,
				      DBusMessage *call)
{
	static char why[96];
	const struct a2dp_codec *codec;
	struct transport_props t = { .ep = ep, .config_len = -1, .codec = -1, .delay = 0, .volume = -1,
					    .state = A2DP_IDLE };
	DBusMessageIter it;
	const char *path;

	if (!dbus_message_has_signature(call, "oa{sv}") || !dbus_message_iter_init(call, &it)) {
		ep->rejected = "bluetoothd sent malformed transport properties";
		return error_reply(call, "org.bluez.Error.InvalidArguments", "expected (oa{sv})");
	}
	dbus_message_iter_get_basic(&it, &path);
	dbus_message_iter_next(&it);
	if (dbusx_dict_foreach(&it, transport_prop, &t) < 0 || !t.device || t.config_len < 0) {
		ep->rejected = "bluetoothd sent malformed transport properties";
		return error_reply(call, "org.bluez.Error.InvalidArguments", "malformed transport properties");
	}
	/* Another speaker that connects while we play must not take over our stream. */
	if (strcmp(t.device, ep->dev.path))
		return error_reply(call, "org.bluez.Error.Rejected", "endpoint serves another device");
	if ((t.codec >= 0 && t.codec != sep->codec->key.id) ||
	    !(codec = codec_of_config(ep, sep, t.config, t.config_len))) {
		snprintf(why, sizeof(why), "it asked for an invalid or unsupported %s configuration",
			 sep->codec->title);
		ep->rejected = why;
		return error_reply(call, "org.bluez.Error.InvalidArguments", "invalid configuration");
	}
	if (ep->configured && strcmp(path, ep->transport))
		return error_reply(call, "org.bluez.Error.Rejected", "endpoint already configured");
	snprintf(ep->transport, sizeof(ep->transport), "%s", path);
	memcpy(ep->config, t.config, t.config_len);
	ep->config_len = t.config_len;
	ep->codec = codec;
	atomic_store(&ep->delay, t.delay);
	atomic_store(&ep->volume, t.volume);
	atomic_store(&ep->state, t.state);
	ep->configured = 1;
	return dbus_message_new_method_return(call);
}

/* MediaEndpoint1.ClearConfiguration(o transport) */
static DBusMessage *clear_configuration(struct a2dp_endpoint *ep, DBusMessage *call)
{
	const char *path;

	if (!dbus_message_get_args(call, NULL, DBUS_TYPE_OBJECT_PATH, &path, DBUS_TYPE_INVALID))
		return error_reply(call, "org.bluez.Error.InvalidArguments", "expected (o)");
	if (ep->configured && !strcmp(path, ep->transport)) {
		ep->configured = 0;
		atomic_store(&ep->gone, 1);
	}
	return dbus_message_new_method_return(call);
}

static const struct a2dp_sep *sep_of_path(const struct a2dp_endpoint *ep, const char *path)
{
	for (int i = 0; path && i < ep->nseps; i++)
		if (!strcmp(ep->seps[i].path, path))
			return &ep->seps[i];
	return NULL;
}

static DBusHandlerResult endpoint_message(DBusConnection *conn, DBusMessage *call, void *data)
{
	struct a2dp_endpoint *ep = data;
	const char *member = dbus_message_get_member(call);
	const struct a2dp_sep *sep = sep_of_path(ep, dbus_message_get_path(call));
	DBusMessage *reply;

	if (dbus_message_get_type(call) != DBUS_MESSAGE_TYPE_METHOD_CALL ||
	    !dbus_message_has_interface(call, ENDPOINT_IFACE) || !member || !sep)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	if (!bluez_from_bluez(ep->bz, call)) {
		reply = error_reply(call, "org.bluez.Error.NotAuthorized", "only bluetoothd may configure this endpoint");
		if (reply) {
			dbus_connection_send(conn, reply, NULL);
			dbus_message_unref(reply);
		}
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	if (!strcmp(member, "SelectConfiguration"))
		reply = select_configuration(ep, sep, call);
	else if (!strcmp(member, "SetConfiguration"))
		reply = set_configuration(ep, sep, call);
	else if (!strcmp(member, "ClearConfiguration"))
		reply = clear_configuration(ep, call);
	else if (!strcmp(member, "Release")) {
		/* bluetoothd is shutting down or dropped our endpoint. */
		((struct a2dp_sep *)sep)->registered = 0;
		atomic_store(&ep->gone, 1);
		reply = dbus_message_new_method_return(call);
	} else
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	if (reply) {
		dbus_connection_send(conn, reply, NULL);
		dbus_message_unref(reply);
	}
	return DBUS_HANDLER_RESULT_HANDLED;
}

static int transport_changed(const char *key, DBusMessageIter *v, void *data)
{
	struct a2dp_endpoint *ep = data;
	const char *s;
	uint16_t q;

	if (!strcmp(key, "State") && !dbusx_variant_basic(v, DBUS_TYPE_STRING, &s))
		atomic_store(&ep->state, state_of(s));
	else if (!strcmp(key, "Delay") && !dbusx_variant_basic(v, DBUS_TYPE_UINT16, &q))
		atomic_store(&ep->delay, q);
	else if (!strcmp(key, "Volume") && !dbusx_variant_basic(v, DBUS_TYPE_UINT16, &q) &&
		 q <= VOLUME_MAX)
		atomic_store(&ep->volume, q);
	return 0;
}

static void on_properties_changed(struct a2dp_endpoint *ep, DBusMessage *sig)
{
	DBusMessageIter it;

	if (!ep->configured || strcmp(dbus_message_get_path(sig), ep->transport) ||
	    !dbus_message_has_signature(sig, "sa{sv}as"))
		return;
	if (dbus_message_iter_init(sig, &it) && dbus_message_iter_next(&it))
		dbusx_dict_foreach(&it, transport_changed, ep);
}

static void on_interfaces_removed(struct a2dp_endpoint *ep, DBusMessage *sig)
{
	const char *path;

	if (dbus_message_get_args(sig, NULL, DBUS_TYPE_OBJECT_PATH, &path, DBUS_TYPE_INVALID) &&
	    ep->configured && !strcmp(path, ep->transport))
		atomic_store(&ep->gone, 1);
}

static DBusHandlerResult endpoint_filter(DBusConnection *conn, DBusMessage *msg, void *data)
{
	struct a2dp_endpoint *ep = data;

	(void)conn;
	if (bluez_lost(msg)) {
		/* Nothing to release or unregister at close: a bluetoothd that
		 * starts again knows nothing of us. */
		ep->bz->owner[0] = 0;
		atomic_store(&ep->gone, 1);
	} else if (!bluez_from_bluez(ep->bz, msg)) {
		/* anyone else's signal says nothing about our stream */
	} else if (dbus_message_is_signal(msg, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged")) {
		on_properties_changed(ep, msg);
	} else if (dbus_message_is_signal(msg, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved")) {
		on_interfaces_removed(ep, msg);
	}
	return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

/* Exports the endpoints under paths of a number not used before (in this
 * process). A setup after a teardown gets new ones: BlueZ's Release and
 * ClearConfiguration for the old registration come before its answer to
 * UnregisterEndpoint, and when read with it they are dispatched only after
 * the new registration; at the old paths they would end the new stream. */
static int name_endpoints(struct a2dp_endpoint *ep)
{
	static const DBusObjectPathVTable vtable = { .message_function = endpoint_message };
	static atomic_uint counter;
	unsigned n = atomic_fetch_add(&counter, 1);

	for (int i = 0; i < ep->nseps; i++) {
		if (ep->seps[i].path[0])
			dbus_connection_unregister_object_path(ep->bz->conn, ep->seps[i].path);
		snprintf(ep->seps[i].path, sizeof(ep->seps[i].path), "/org/alsa_bt/a2dp_%s%u/%s",
			 ep->sink ? "sink" : "source", n, ep->seps[i].codec->name);
		if (!dbus_connection_register_object_path(ep->bz->conn, ep->seps[i].path, &vtable, ep)) {
			ep->seps[i].path[0] = 0;    /* not ours to unregister */
			return -ENOMEM;
		}
	}
	return 0;
}

static int export_endpoint(struct a2dp_endpoint *ep)
{
	int err;

	if ((err = name_endpoints(ep)) < 0)
		return err;
	if (!dbus_connection_add_filter(ep->bz->conn, endpoint_filter, ep, NULL))
		return -ENOMEM;
	ep->exported = 1;
	/* Without an error argument these do not wait for the bus's answer. */
	for (size_t i = 0; i < sizeof(match_rules) / sizeof(match_rules[0]); i++)
		dbus_bus_add_match(ep->bz->conn, match_rules[i], NULL);
	return 0;
}

static void unexport_endpoint(struct a2dp_endpoint *ep)
{
	for (size_t i = 0; i < sizeof(match_rules) / sizeof(match_rules[0]); i++)
		dbus_bus_remove_match(ep->bz->conn, match_rules[i], NULL);
	/* libdbus aborts the program on removing a filter, or unregistering a
	 * path, that it does not have */
	if (ep->exported)
		dbus_connection_remove_filter(ep->bz->conn, endpoint_filter, ep);
	for (int i = 0; i < ep->nseps; i++)
		if (ep->seps[i].path[0])
			dbus_connection_unregister_object_path(ep->bz->conn, ep->seps[i].path);
	dbus_connection_flush(ep->bz->conn);
}

static DBusMessage *register_message(struct a2dp_endpoint *ep, const struct a2dp_sep *sep)
{
	const char *uuid = ep->sink ? A2DP_SINK_UUID : A2DP_SOURCE_UUID, *path = sep->path;
	uint8_t caps[A2DP_MAX_CAPS], codec = sep->codec->key.id;
	dbus_bool_t delay_reporting = TRUE;
	DBusMessageIter it, dict;
	DBusMessage *msg;
	int n = sep->codec->fill_caps(caps, sizeof(caps));

	msg = bluez_method_call(ep->dev.adapter_path, "org.bluez.Media1", "RegisterEndpoint");
	if (!msg)
		return NULL;
	dbus_message_iter_init_append(msg, &it);
	if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &path) ||
	    !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) ||
	    dbusx_dict_append(&dict, "UUID", DBUS_TYPE_STRING, &uuid) < 0 ||
	    dbusx_dict_append(&dict, "Codec", DBUS_TYPE_BYTE, &codec) < 0 ||
	    dbusx_dict_append_bytes(&dict, "Capabilities", caps, n) < 0 ||
	    dbusx_dict_append(&dict, "DelayReporting", DBUS_TYPE_BOOLEAN, &delay_reporting) < 0 ||
	    !dbus_message_iter_close_container(&it, &dict)) {
		dbus_message_unref(msg);
		return NULL;
	}
	return msg;
}

static int register_endpoint(struct a2dp_endpoint *ep, struct a2dp_sep *sep, int64_t deadline_ms)
{
	DBusMessage *msg = register_message(ep, sep), *reply;
	int err;

	if (!msg)
		return -ENOMEM;
	err = dbusx_call(ep->bz->conn, msg, deadline_ms, &reply);
	dbus_message_unref(msg);
	if (err < 0) {
		SNDERR("bluetoothd did not answer RegisterEndpoint in time (connect_timeout)");
		return err;
	}
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR) {
		const char *text = "";

		dbus_message_get_args(reply, NULL, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID);
		SNDERR("bluetoothd refused our A2DP endpoint on %s: %s (is the A2DP plugin of bluetoothd enabled?)",
		       ep->dev.adapter, text);
		err = -EIO;
	} else {
		sep->registered = 1;
	}
	dbus_message_unref(reply);
	return err;
}

static int busy_error(struct a2dp_endpoint *ep, int64_t deadline_ms)
{
	char other[192];
	int r = bluez_find_transport(ep->bz, ep->dev.path, ep->transport[0] ? ep->transport : NULL,
					deadline_ms, other, sizeof(other));

	if (r <= 0)
		return r;
	SNDERR("%s is busy: another program or audio service is streaming to it (%s); stop it or disconnect it first",
	       ep->dev.address, other);
	return -EBUSY;
}

/* Maps a final ConnectProfile error to an errno, logging what to do. */
static int connect_error(struct a2dp_endpoint *ep, const char *name, const char *text, int err)
{
	const char *addr = ep->dev.address;

	if (err == -ETIMEDOUT) {
		SNDERR("no answer from %s within connect_timeout: is it switched on and in range? (raise connect_timeout if it is slow)", addr);
		return -ETIMEDOUT;
	}
	if (err == -EPROTO) {
		SNDERR("cannot play to %s: %s", addr, ep->rejected);
		return -EPROTO;
	}
	if (err == -ECONNRESET) {
		SNDERR("lost the D-Bus system bus while connecting to %s", addr);
		return -ECONNRESET;
	}
	if (strstr(name, "ServiceUnknown") || strstr(name, "NameHasNoOwner")) {
		SNDERR("bluetoothd stopped while connecting to %s", addr);
		return -ECONNREFUSED;
	}
	if (strstr(name, "NotReady")) {
		SNDERR("Bluetooth adapter %s is not ready (powered off?): run 'bluetoothctl power on'", ep->dev.adapter);
		return -ENETDOWN;
	}
	if (strstr(name, "DoesNotExist")) {
		SNDERR("device %s was removed from BlueZ: pair it again", addr);
		return -ENODEV;
	}
	SNDERR("cannot connect to %s: %s; is it switched on, in range and free?", addr,
	       *text ? text : name);
	return -EHOSTDOWN;
}

static int retryable(const char *name)
{
	return strstr(name, "Error.Failed") || strstr(name, "InProgress") ||
	       strstr(name, "NotAvailable") || strstr(name, "AlreadyConnected");
}

static int pause_dispatching(struct a2dp_endpoint *ep, int64_t ms, int64_t deadline_ms)
{
	int64_t until = dbusx_now_ms() + ms;
	int err = dbusx_wait_flag(ep->bz->conn, &ep->configured, until < deadline_ms ? until : deadline_ms);

	return err == -ETIMEDOUT ? 0 : err;
}

/* One ConnectProfile round: 0 configured, 1 try again, or a final negative errno. */
static int connect_once(struct a2dp_endpoint *ep, int64_t deadline_ms, char *name, char *text)
{
	int64_t grace;
	int err = bluez_call_simple(ep->bz, ep->dev.path, "org.bluez.Device1", "ConnectProfile",
				    remote_uuid(ep), deadline_ms, name, 128, text, 256);

	if (err < 0 && err != -EIO)
		return err;
	if (ep->rejected && !ep->configured)
		return -EPROTO;    /* we refused it: retrying gets the same answer */
	grace = dbusx_now_ms() + CONFIG_GRACE_MS;
	if ((!*name || strstr(name, "AlreadyConnected")) &&
	    dbusx_wait_flag(ep->bz->conn, &ep->configured,
			    grace < deadline_ms ? grace : deadline_ms) == 0)
		return 0;
	/* Success or AlreadyConnected without calling us: someone else has the speaker. */
	if ((err = busy_error(ep, deadline_ms)) < 0 && err != -ETIMEDOUT)
		return err;
	if (!*name || strstr(name, "AlreadyConnected")) {
		/* A stale A2DP link of an earlier user: drop it and connect anew. */
		bluez_call_simple(ep->bz, ep->dev.path, "org.bluez.Device1", "DisconnectProfile",
				  remote_uuid(ep), deadline_ms, NULL, 0, NULL, 0);
		if (!*name)
			snprintf(text, 256, "bluetoothd connected %s but never configured our endpoint",
				 ep->dev.address);
		return 1;
	}
	return retryable(name) ? 1 : -EIO;
}

static int connect_profile(struct a2dp_endpoint *ep, int64_t deadline_ms)
{
	char name[128] = "", text[256] = "";
	int err;

	ep->configured = 0;
	ep->rejected = NULL;
	/* Real headsets often refuse the first page or are still busy with an
	 * earlier link; retry until the user's timeout. */
	while ((err = connect_once(ep, deadline_ms, name, text)) == 1) {
		if ((err = pause_dispatching(ep, RETRY_PAUSE_MS, deadline_ms)) < 0)
			break;
		if (ep->configured)
			return 0;
		if (dbusx_now_ms() + 50 >= deadline_ms) {
			err = *name || *text ? -EIO : -ETIMEDOUT;
			break;
		}
	}
	if (err == 0)
		return 0;
	if (err == -EBUSY)
		return err;
	return connect_error(ep, name, text, err);
}

int a2dp_endpoint_config_is_ours(const struct a2dp_endpoint *ep)
{
	return ep->selected_len == ep->config_len &&
	       !memcmp(ep->selected, ep->config, ep->config_len);
}

static int acquire(struct a2dp_endpoint *ep, int64_t deadline_ms)
{
	DBusMessage *msg, *reply;
	int err, fd = -1;

	msg = bluez_method_call(ep->transport, TRANSPORT_IFACE, "Acquire");
	if (!msg)
		return -ENOMEM;
	err = dbusx_call(ep->bz->conn, msg, deadline_ms, &reply);
	dbus_message_unref(msg);
	if (err < 0) {
		SNDERR("bluetoothd did not hand over the audio transport of %s in time", ep->dev.address);
		return err;
	}
	if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_UNIX_FD, &fd, DBUS_TYPE_UINT16,
				   &ep->read_mtu, DBUS_TYPE_UINT16, &ep->write_mtu,
				   DBUS_TYPE_INVALID)) {
		const char *text = "", *name = dbus_message_get_error_name(reply);
		/* NotAuthorized: someone else holds it; anything else is a failure. */
		int busy = name && (strstr(name, "NotAuthorized") || strstr(name, "NotAvailable"));

		dbus_message_get_args(reply, NULL, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID);
		SNDERR("cannot acquire the audio transport of %s: %s%s", ep->dev.address,
		       name ? text : "bad reply from bluetoothd",
		       busy ? " (another program holds it)" : "");
		dbus_message_unref(reply);
		return busy ? -EBUSY : -EIO;
	}
	dbus_message_unref(reply);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	ep->fd = fd;
	return 0;
}

static int setup(struct a2dp_endpoint *ep, int64_t deadline_ms)
{
	int err;

	atomic_store(&ep->gone, 0);
	ep->transport[0] = 0;
	if ((err = busy_error(ep, deadline_ms)) < 0)
		return err;
	for (int i = 0; i < ep->nseps; i++)
		if ((err = register_endpoint(ep, &ep->seps[i], deadline_ms)) < 0)
			return err;
	if ((err = connect_profile(ep, deadline_ms)) < 0)
		return err;
	/* A Sink acquires when the phone starts streaming, not before. */
	return ep->sink ? 0 : acquire(ep, deadline_ms);
}

static void cancel_acquire(struct a2dp_endpoint *ep)
{
	if (!ep->acquiring)
		return;
	dbus_pending_call_cancel(ep->acquiring);
	dbus_pending_call_unref(ep->acquiring);
	ep->acquiring = NULL;
}

/* Every endpoint's UnregisterEndpoint at once, answered within one step: a
 * hung bluetoothd costs 1 s, not 1 s each, and a slow one has them all
 * before the RegisterEndpoint of a setup that follows (drop_codec). */
static void unregister_endpoints(struct a2dp_endpoint *ep)
{
	DBusMessage *msgs[A2DP_MAX_CODECS];
	int n = 0;

	for (int i = 0; i < ep->nseps; i++) {
		const char *path = ep->seps[i].path;
		DBusMessage *msg;

		/* never registered, or bluetoothd is gone: calling it would only wait */
		if (!ep->seps[i].registered || !ep->bz->owner[0]) {
			ep->seps[i].registered = 0;
			continue;
		}
		ep->seps[i].registered = 0;
		msg = bluez_method_call(ep->dev.adapter_path, "org.bluez.Media1", "UnregisterEndpoint");
		if (msg && dbus_message_append_args(msg, DBUS_TYPE_OBJECT_PATH, &path, DBUS_TYPE_INVALID))
			msgs[n++] = msg;
		else if (msg)
			dbus_message_unref(msg);
	}
	dbusx_call_all(ep->bz->conn, msgs, n, dbusx_now_ms() + CLOSE_STEP_MS);
	for (int i = 0; i < n; i++)
		dbus_message_unref(msgs[i]);
}

static void teardown(struct a2dp_endpoint *ep)
{
	int64_t deadline = dbusx_now_ms() + CLOSE_STEP_MS;

	cancel_acquire(ep);
	if (ep->fd >= 0) {
		close(ep->fd);
		ep->fd = -1;
		if (ep->configured && !atomic_load(&ep->gone))
			bluez_call_simple(ep->bz, ep->transport, TRANSPORT_IFACE, "Release", NULL,
					  deadline, NULL, 0, NULL, 0);
	}
	unregister_endpoints(ep);
	ep->configured = 0;
}

static int offered(const struct bluez_remote_sep *rs, int nrs, const struct a2dp_codec *c)
{
	struct a2dp_codec_key key;

	for (int i = 0; i < nrs; i++)
		if (a2dp_codec_key_of(rs[i].codec, rs[i].caps, rs[i].caps_len, &key) == 0 &&
		    a2dp_codec_key_equal(&key, &c->key))
			return 1;
	return 0;
}

static void list_offered(const struct bluez_remote_sep *rs, int nrs, char *buf, size_t size)
{
	size_t pos = 0;

	buf[0] = 0;
	for (int i = 0; i < nrs && pos < size; i++) {
		char name[48];

		a2dp_codec_describe(rs[i].codec, rs[i].caps, rs[i].caps_len, name, sizeof(name));
		pos += snprintf(buf + pos, size - pos, "%s%s", i ? ", " : "", name);
	}
}

static int none_left(struct a2dp_endpoint *ep, const struct a2dp_codec *const *codecs, int n,
		     const struct bluez_remote_sep *rs, int nrs)
{
	char wanted[96], offer[160];

	a2dp_codec_list_names(codecs, n, wanted, sizeof(wanted));
	if (ep->sink) {
		const struct a2dp_codec *dec[A2DP_MAX_CODECS];
		int ndec = 0;

		for (int i = 0; a2dp_codecs[i] && ndec < A2DP_MAX_CODECS; i++)
			if (a2dp_codecs[i]->decoder_new &&
			    (!a2dp_codecs[i]->available || a2dp_codecs[i]->available() == 0))
				dec[ndec++] = a2dp_codecs[i];
		a2dp_codec_list_names(dec, ndec, offer, sizeof(offer));
		SNDERR("cannot receive from %s with CODEC=%s: the capture decodes only %s here; "
		       "choose from those", ep->dev.address, wanted, offer);
		return -ENOTSUP;
	}
	if (!nrs) {
		SNDERR("cannot play to %s: none of CODEC=%s can be used here (see the lines above)",
		       ep->dev.address, wanted);
		return -ENOTSUP;
	}
	list_offered(rs, nrs, offer, sizeof(offer));
	SNDERR("cannot play to %s with CODEC=%s: it offers %s; choose from those",
	       ep->dev.address, wanted, offer);
	return -ENOTSUP;
}

/* Our codecs whose key the speaker offers, for the next open to remember. */
static void note_offers(struct a2dp_endpoint *ep, const struct bluez_remote_sep *rs, int nrs)
{
	const struct a2dp_codec *offer[A2DP_MAX_CODECS];
	int n = 0;

	for (int i = 0; a2dp_codecs[i] && n < A2DP_MAX_CODECS; i++)
		if (offered(rs, nrs, a2dp_codecs[i]))
			offer[n++] = a2dp_codecs[i];
	a2dp_codec_list_names(offer, n, ep->offers, sizeof(ep->offers));
}

/* After connecting, when the open did not know: BlueZ lists them now. Only
 * a memory, so a failure costs nothing but the next open's saving. */
static void learn_offers(struct a2dp_endpoint *ep, int64_t deadline_ms)
{
	struct bluez_remote_sep rs[A2DP_MAX_REMOTE_SEPS];
	int nrs;

	if (ep->sink || ep->offers[0])
		return;
	if ((nrs = bluez_remote_seps(ep->bz, ep->dev.path, deadline_ms, rs, A2DP_MAX_REMOTE_SEPS)) > 0)
		note_offers(ep, rs, nrs);
}

/* Appends the codecs of `codecs` that can run here and that the speaker
 * offers (rs), or else that it offered last time (known, when nknown > 0);
 * one endpoint of ours per codec key. Loads a codec's library only then. */
static void keep_codecs(struct a2dp_endpoint *ep, const struct a2dp_codec *const *codecs, int n,
			const struct bluez_remote_sep *rs, int nrs,
			const struct a2dp_codec *const *known, int nknown)
{
	for (int i = 0; i < n && ep->ncodecs < A2DP_MAX_CODECS; i++) {
		const struct a2dp_codec *c = codecs[i];
		int j;

		if ((nrs && !offered(rs, nrs, c)) || (!nrs && nknown > 0 && !a2dp_codec_listed(known, nknown, c)) ||
		    (ep->sink && !c->decoder_new) || (c->available && c->available() < 0))
			continue;
		ep->codecs[ep->ncodecs++] = c;
		for (j = 0; j < ep->nseps; j++)
			if (a2dp_codec_key_equal(&ep->seps[j].codec->key, &c->key))
				break;
		if (j == ep->nseps)
			ep->seps[ep->nseps++].codec = c;
	}
}

/* Keeps the listed codecs that can run here and that the speaker offers. BlueZ
 * knows a speaker's endpoints only once it has been connected; before that the
 * memory of its last connection spares loading libraries it cannot use (all of
 * libavcodec for AAC), unless it leaves nothing: the speaker may have changed. */
static int choose_codecs(struct a2dp_endpoint *ep, const struct a2dp_codec *const *codecs, int n,
			 const char *remembered, int64_t deadline_ms)
{
	struct bluez_remote_sep rs[A2DP_MAX_REMOTE_SEPS];
	const struct a2dp_codec *known[A2DP_MAX_CODECS];
	/* A Sink offers what it can decode; the phone configures what it has. */
	int nrs = ep->sink ? 0 : bluez_remote_seps(ep->bz, ep->dev.path, deadline_ms, rs,
						    A2DP_MAX_REMOTE_SEPS);
	int nknown = 0;

	if (nrs < 0)
		return nrs;
	if (nrs)
		note_offers(ep, rs, nrs);
	else if (!ep->sink && remembered && remembered[0])
		nknown = a2dp_codec_parse_list(remembered, known, A2DP_MAX_CODECS, NULL);
	keep_codecs(ep, codecs, n, rs, nrs, known, nknown);
	if (!ep->ncodecs && nknown > 0)
		keep_codecs(ep, codecs, n, rs, nrs, NULL, 0);
	return ep->ncodecs ? 0 : none_left(ep, codecs, n, rs, nrs);
}

static int open_role(struct bluez *bz, const struct bluez_device *dev, int sink,
		     const struct a2dp_codec *const *codecs, int ncodecs,
		     const struct a2dp_codec_prefs *prefs, const char *remembered,
		     int64_t deadline_ms, struct a2dp_endpoint **out)
{
	struct a2dp_endpoint *ep = calloc(1, sizeof(*ep));
	int err;

	if (!ep)
		return -ENOMEM;
	ep->sink = sink;
	ep->bz = bz;
	ep->dev = *dev;
	ep->prefs = *prefs;
	ep->fd = -1;
	atomic_init(&ep->volume, -1);
	if ((err = choose_codecs(ep, codecs, ncodecs, remembered, deadline_ms)) < 0 ||
	    (err = export_endpoint(ep)) < 0 || (err = setup(ep, deadline_ms)) < 0) {
		a2dp_endpoint_close(ep);
		return err;
	}
	learn_offers(ep, deadline_ms);
	*out = ep;
	return 0;
}

int a2dp_endpoint_open(struct bluez *bz, const struct bluez_device *dev,
		       const struct a2dp_codec *const *codecs, int ncodecs,
		       const struct a2dp_codec_prefs *prefs, const char *remembered,
		       int64_t deadline_ms, struct a2dp_endpoint **out)
{
	return open_role(bz, dev, 0, codecs, ncodecs, prefs, remembered, deadline_ms, out);
}

int a2dp_endpoint_open_sink(struct bluez *bz, const struct bluez_device *dev,
			    const struct a2dp_codec *const *codecs, int ncodecs,
			    const struct a2dp_codec_prefs *prefs,
			    int64_t deadline_ms, struct a2dp_endpoint **out)
{
	return open_role(bz, dev, 1, codecs, ncodecs, prefs, NULL, deadline_ms, out);
}

int a2dp_endpoint_try_acquire(struct a2dp_endpoint *ep)
{
	DBusMessage *msg;
	int ok;

	if (ep->acquiring || ep->fd >= 0)
		return 0;
	msg = bluez_method_call(ep->transport, TRANSPORT_IFACE, "TryAcquire");
	if (!msg)
		return -ENOMEM;
	ok = dbus_connection_send_with_reply(ep->bz->conn, msg, &ep->acquiring, ACQUIRE_TIMEOUT_MS);
	dbus_message_unref(msg);
	if (!ok || !ep->acquiring) {
		ep->acquiring = NULL;
		return -ENOMEM;
	}
	dbus_connection_flush(ep->bz->conn);
	return 0;
}

/* The transport's fd from an Acquire/TryAcquire reply; -EAGAIN when the
 * phone stopped again before we asked (NotAvailable: wait for the next
 * "pending"), else -EIO, logged. */
static int take_fd(struct a2dp_endpoint *ep, DBusMessage *reply)
{
	const char *name = dbus_message_get_error_name(reply), *text = "";
	int fd = -1;

	if (dbus_message_get_args(reply, NULL, DBUS_TYPE_UNIX_FD, &fd, DBUS_TYPE_UINT16,
				  &ep->read_mtu, DBUS_TYPE_UINT16, &ep->write_mtu, DBUS_TYPE_INVALID)) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		ep->fd = fd;
		return 1;
	}
	if (name && strstr(name, "NotAvailable"))
		return -EAGAIN;
	dbus_message_get_args(reply, NULL, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID);
	SNDERR("cannot acquire the audio transport of %s: %s", ep->dev.address,
	       name ? text : "bad reply from bluetoothd");
	return -EIO;
}

int a2dp_endpoint_acquired(struct a2dp_endpoint *ep)
{
	DBusMessage *reply;
	int r;

	if (ep->fd >= 0)
		return 1;
	if (!ep->acquiring || !dbus_pending_call_get_completed(ep->acquiring))
		return 0;
	reply = dbus_pending_call_steal_reply(ep->acquiring);
	dbus_pending_call_unref(ep->acquiring);
	ep->acquiring = NULL;
	if (!reply)
		return -EIO;
	r = take_fd(ep, reply);
	dbus_message_unref(reply);
	return r == -EAGAIN ? 0 : r;
}

void a2dp_endpoint_report_delay(struct a2dp_endpoint *ep, unsigned tenths_ms)
{
	if (ep->fd < 0 || !strcmp(ep->delay_reported, ep->transport))
		return;
	/* No reply is awaited: the I/O thread must not block on bluetoothd. */
	if (bluez_set_uint16_async(ep->bz, ep->transport, TRANSPORT_IFACE, "Delay",
				   tenths_ms > 0xffff ? 0xffff : tenths_ms) == 0)
		snprintf(ep->delay_reported, sizeof(ep->delay_reported), "%s", ep->transport);
}

void a2dp_endpoint_drop_fd(struct a2dp_endpoint *ep)
{
	DBusMessage *msg;

	if (ep->fd < 0)
		return;
	close(ep->fd);
	ep->fd = -1;
	if (!ep->configured || atomic_load(&ep->gone))
		return;
	/* Without waiting: the I/O thread must not block on bluetoothd. */
	msg = bluez_method_call(ep->transport, TRANSPORT_IFACE, "Release");
	if (msg) {
		dbus_message_set_no_reply(msg, TRUE);
		dbus_connection_send(ep->bz->conn, msg, NULL);
		dbus_message_unref(msg);
	}
}

/* A setup after a teardown: under new paths (name_endpoints). */
static int setup_renamed(struct a2dp_endpoint *ep, int64_t deadline_ms)
{
	int err = name_endpoints(ep);

	return err < 0 ? err : setup(ep, deadline_ms);
}

int a2dp_endpoint_drop_codec(struct a2dp_endpoint *ep, int64_t deadline_ms)
{
	const struct a2dp_codec *gone = ep->codec;
	int n = 0, k = 0;

	teardown(ep);
	for (int i = 0; i < ep->ncodecs; i++)
		if (ep->codecs[i] != gone)
			ep->codecs[n++] = ep->codecs[i];
	ep->ncodecs = n;
	/* Its endpoint goes too, unless another listed codec shares it. */
	for (int i = 0; i < ep->nseps; i++) {
		int used = 0;

		for (int j = 0; j < n; j++)
			used |= a2dp_codec_key_equal(&ep->codecs[j]->key, &ep->seps[i].codec->key);
		if (!used)
			dbus_connection_unregister_object_path(ep->bz->conn, ep->seps[i].path);
		else
			ep->seps[k++] = ep->seps[i];
	}
	ep->nseps = k;
	ep->codec = NULL;
	if (!n) {
		SNDERR("cannot play to %s: no other codec left to try", ep->dev.address);
		return -ENOTSUP;
	}
	return setup_renamed(ep, deadline_ms);
}

int a2dp_endpoint_reconfigure(struct a2dp_endpoint *ep, const struct a2dp_codec_prefs *prefs,
			      int64_t deadline_ms)
{
	teardown(ep);
	ep->prefs = *prefs;
	/* Another rate, the same codec: its endpoint alone. */
	if (ep->codec) {
		for (int i = 0; i < ep->nseps; i++)
			if (!a2dp_codec_key_equal(&ep->seps[i].codec->key, &ep->codec->key))
				dbus_connection_unregister_object_path(ep->bz->conn, ep->seps[i].path);
			else
				ep->seps[0] = ep->seps[i];
		ep->nseps = 1;
		ep->codecs[0] = ep->codec;
		ep->ncodecs = 1;
	}
	return setup_renamed(ep, deadline_ms);
}

void a2dp_endpoint_close(struct a2dp_endpoint *ep)
{
	if (!ep)
		return;
	teardown(ep);
	unexport_endpoint(ep);
	free(ep);
}

int a2dp_endpoint_bus_fd(struct a2dp_endpoint *ep)
{
	int fd = -1;

	/* A dead connection's fd would poll as readable for ever. */
	if (!dbus_connection_get_is_connected(ep->bz->conn))
		return -1;
	dbus_connection_get_unix_fd(ep->bz->conn, &fd);
	return fd;
}

void a2dp_endpoint_dispatch(struct a2dp_endpoint *ep)
{
	if (bluez_dispatch(ep->bz) < 0)
		atomic_store(&ep->gone, 1);
	dbus_connection_flush(ep->bz->conn);   /* our replies to bluetoothd */
}
