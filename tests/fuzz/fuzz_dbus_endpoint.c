/*
 * fuzz_dbus_endpoint: D-Bus messages from outside (bluetoothd, the bus,
 * anyone who can send to us) into every parser of them:
 *   - a2dp/endpoint.c: endpoint_message (SelectConfiguration, SetConfiguration,
 *     ClearConfiguration, Release) and endpoint_filter (PropertiesChanged,
 *     InterfacesRemoved, NameOwnerChanged);
 *   - bluez/bluez.c: parse_objects + the device lookups, scan_transports
 *     (GetManagedObjects replies);
 *   - ctl_bt/ctl_bluetooth.c: ctl_filter (PropertiesChanged, InterfacesAdded,
 *     InterfacesRemoved, NameOwnerChanged).
 * The input is one or more marshalled messages back to back (as
 * dbus_message_marshal writes them); each goes through dbus_message_demarshal
 * and then to all of the above, once against a fresh endpoint/ctl and once
 * against a configured one, in order, so a sequence can configure and then
 * change the stream.
 *
 * No bus is needed: the handlers' only use of the connection is
 * dbus_connection_send(conn, reply, NULL), which this file replaces (an
 * executable's definition takes precedence over libdbus's) to collect and
 * check the reply.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>
#include <dbus/dbus.h>

#include "dbus_glue.h"
#include "fuzz_common.h"

#define MAX_MESSAGES 8

static DBusMessage *last_reply;
static int n_replies;

/* Replaces libdbus's: the endpoint's replies end here. */
dbus_bool_t dbus_connection_send(DBusConnection *conn, DBusMessage *msg, dbus_uint32_t *serial)
{
	(void)conn;
	if (serial)
		*serial = 1;
	if (last_reply)
		dbus_message_unref(last_reply);
	last_reply = dbus_message_ref(msg);
	n_replies++;
	return TRUE;
}

static void silent(const char *file, int line, const char *function, int err, const char *fmt, ...)
{
	(void)file; (void)line; (void)function; (void)err; (void)fmt;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc; (void)argv;
	snd_lib_error_set_handler(silent);
	/* A misuse of the libdbus API ("arguments to dbus_... were incorrect")
	 * aborts instead of printing a warning and going on. */
	setenv("DBUS_FATAL_WARNINGS", "1", 1);
	return 0;
}

static void check_reply(DBusMessage *call)
{
	INVARIANT(n_replies == 1, "%d replies to one call", n_replies);
	INVARIANT(dbus_message_get_type(last_reply) == DBUS_MESSAGE_TYPE_METHOD_RETURN ||
		  dbus_message_get_type(last_reply) == DBUS_MESSAGE_TYPE_ERROR,
		  "reply of type %d", dbus_message_get_type(last_reply));
	INVARIANT(dbus_message_get_reply_serial(last_reply) == dbus_message_get_serial(call),
		  "reply to the wrong serial");
	if (dbus_message_get_type(last_reply) == DBUS_MESSAGE_TYPE_METHOD_RETURN &&
	    dbus_message_is_method_call(call, "org.bluez.MediaEndpoint1", "SelectConfiguration")) {
		DBusMessageIter it, sub;
		const uint8_t *bytes;
		int n;

		INVARIANT(!strcmp(dbus_message_get_signature(last_reply), "ay"),
			  "SelectConfiguration answered %s", dbus_message_get_signature(last_reply));
		dbus_message_iter_init(last_reply, &it);
		dbus_message_iter_recurse(&it, &sub);
		dbus_message_iter_get_fixed_array(&sub, &bytes, &n);
		INVARIANT(n > 0 && n <= 32, "configuration of %d bytes", n);
	}
}

/* ALSA_BT_FUZZ_SKIP_KNOWN=1 keeps from ctl_filter the messages of finding 1
 * (README.md: InterfacesAdded whose keys are not strings crash it), so that
 * a long run explores past it. Off by default. */
static int skip_known_ctl_crash(DBusMessage *msg)
{
	static int skip = -1;

	if (skip < 0) {
		const char *s = getenv("ALSA_BT_FUZZ_SKIP_KNOWN");
		skip = s && *s && *s != '0';
	}
	return skip && dbus_message_is_signal(msg, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded") &&
	       strncmp(dbus_message_get_signature(msg), "oa{s", 4) &&
	       strncmp(dbus_message_get_signature(msg), "oa{o", 4) &&
	       strncmp(dbus_message_get_signature(msg), "oa{g", 4);
}

/* The bus stamps the sender of every message it routes, and only its own
 * signals carry org.freedesktop.DBus: a NameOwnerChanged from anyone else is
 * another client's. */
static int spoofed_bus_signal(DBusMessage *msg)
{
	return dbus_message_is_signal(msg, DBUS_INTERFACE_DBUS, "NameOwnerChanged") &&
	       !dbus_message_has_sender(msg, DBUS_SERVICE_DBUS);
}

static void run_one(struct a2dp_endpoint *ep, struct bt_ctl *ctl, DBusMessage *msg)
{
	unsigned long before = glue_endpoint_digest(ep);
	DBusHandlerResult r;

	n_replies = 0;
	r = glue_endpoint_message(ep, msg);
	if (r == DBUS_HANDLER_RESULT_HANDLED)
		check_reply(msg);
	else
		INVARIANT(n_replies == 0, "a reply to a message left unhandled");
	if (fuzz_strict() && dbus_message_get_type(msg) != DBUS_MESSAGE_TYPE_METHOD_CALL) {
		/* Anyone on the system bus may send us a signal; only bluetoothd may call. */
		INVARIANT(r == DBUS_HANDLER_RESULT_NOT_YET_HANDLED,
			  "[strict] endpoint_message handled a message of type %s as a method call",
			  dbus_message_type_to_string(dbus_message_get_type(msg)));
		INVARIANT(glue_endpoint_digest(ep) == before,
			  "[strict] a %s changed the endpoint's state",
			  dbus_message_type_to_string(dbus_message_get_type(msg)));
	}
	glue_endpoint_check(ep);
	before = glue_endpoint_digest(ep);
	glue_endpoint_filter(ep, msg);
	glue_endpoint_check(ep);
	if (fuzz_strict() && spoofed_bus_signal(msg))
		INVARIANT(glue_endpoint_digest(ep) == before,
			  "[strict] NameOwnerChanged from %s (not the bus) changed the endpoint",
			  dbus_message_get_sender(msg) ? dbus_message_get_sender(msg) : "nobody");

	if (!skip_known_ctl_crash(msg)) {
		int was_gone = glue_ctl_gone(ctl);

		glue_ctl_filter(ctl, msg);
		glue_ctl_check(ctl);
		if (fuzz_strict() && spoofed_bus_signal(msg))
			INVARIANT(glue_ctl_gone(ctl) == was_gone,
				  "[strict] NameOwnerChanged from %s (not the bus) ended the ctl or changed its bluetoothd",
				  dbus_message_get_sender(msg) ? dbus_message_get_sender(msg) : "nobody");
	}
	if (last_reply) {
		dbus_message_unref(last_reply);
		last_reply = NULL;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	DBusMessage *msgs[MAX_MESSAGES];
	int n = 0;

	/* Split into messages: each starts where the previous one ended. */
	while (size >= 16 && n < MAX_MESSAGES) {
		DBusError err;
		int len = dbus_message_demarshal_bytes_needed((const char *)data, (int)(size > 1 << 20 ? 1 << 20 : size));

		if (len <= 0 || (size_t)len > size)
			break;
		dbus_error_init(&err);
		msgs[n] = dbus_message_demarshal((const char *)data, len, &err);
		if (!msgs[n]) {
			dbus_error_free(&err);
			break;
		}
		n++;
		data += len;
		size -= len;
	}
	for (int i = 0; i < n; i++)
		glue_bluez_objects(msgs[i]);
	for (int scenario = 0; scenario < 2; scenario++) {
		struct a2dp_endpoint *ep = glue_endpoint_new(scenario, scenario ? 48000 : 0,
							     scenario ? 35 : 0);
		struct bt_ctl *ctl = glue_ctl_new(scenario, scenario);

		for (int i = 0; i < n; i++)
			run_one(ep, ctl, msgs[i]);
		glue_endpoint_free(ep);
		glue_ctl_free(ctl);
	}
	for (int i = 0; i < n; i++)
		dbus_message_unref(msgs[i]);
	return 0;
}
