/* libdbus helpers shared by the BlueZ client of both plugins. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dbus.h"

int64_t dbusx_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pump(DBusConnection *conn, int64_t deadline_ms)
{
	int64_t left = deadline_ms - dbusx_now_ms();

	if (left <= 0)
		return -ETIMEDOUT;
	/* Wake at least every 100 ms so a completed pending call is seen promptly. */
	if (!dbus_connection_read_write_dispatch(conn, left > 100 ? 100 : (int)left))
		return -ECONNRESET;
	return 0;
}

int dbusx_call(DBusConnection *conn, DBusMessage *msg, int64_t deadline_ms,
	       DBusMessage **reply)
{
	DBusPendingCall *pending = NULL;
	int64_t left = deadline_ms - dbusx_now_ms();
	int err = 0;

	if (left <= 0)
		return -ETIMEDOUT;
	if (!dbus_connection_send_with_reply(conn, msg, &pending, (int)left) || !pending)
		return dbus_connection_get_is_connected(conn) ? -ENOMEM : -ECONNRESET;
	while (!dbus_pending_call_get_completed(pending)) {
		if ((err = pump(conn, deadline_ms)) < 0) {
			dbus_pending_call_cancel(pending);
			dbus_pending_call_unref(pending);
			return err;
		}
	}
	*reply = dbus_pending_call_steal_reply(pending);
	dbus_pending_call_unref(pending);
	if (!*reply)
		return -ECONNRESET;
	return 0;
}

int dbusx_call_all(DBusConnection *conn, DBusMessage *const *msgs, int n, int64_t deadline_ms)
{
	DBusPendingCall **pending = calloc(n > 0 ? n : 1, sizeof(*pending));
	int64_t left = deadline_ms - dbusx_now_ms();
	int err = pending ? 0 : -ENOMEM;

	for (int i = 0; i < n && !err; i++)
		if (left <= 0 || !dbus_connection_send_with_reply(conn, msgs[i], &pending[i], (int)left))
			err = left <= 0 ? -ETIMEDOUT : -ENOMEM;
	for (int i = 0; i < n && !err; i++)
		while (pending[i] && !dbus_pending_call_get_completed(pending[i]) && !err)
			err = pump(conn, deadline_ms);
	for (int i = 0; pending && i < n; i++)
		if (pending[i]) {
			dbus_pending_call_cancel(pending[i]);
			dbus_pending_call_unref(pending[i]);
		}
	free(pending);
	return err;
}

int dbusx_wait_flag(DBusConnection *conn, const volatile int *flag, int64_t deadline_ms)
{
	int err;

	/* Messages already read from the socket are dispatched before waiting. */
	while (!*flag && dbus_connection_dispatch(conn) == DBUS_DISPATCH_DATA_REMAINS)
		;
	while (!*flag)
		if ((err = pump(conn, deadline_ms)) < 0)
			return err;
	return 0;
}

int dbusx_dict_foreach(DBusMessageIter *iter, dbusx_dict_fn fn, void *data)
{
	DBusMessageIter array;

	if (dbus_message_iter_get_arg_type(iter) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(iter) != DBUS_TYPE_DICT_ENTRY)
		return -EINVAL;
	dbus_message_iter_recurse(iter, &array);
	for (; dbus_message_iter_get_arg_type(&array) == DBUS_TYPE_DICT_ENTRY;
	     dbus_message_iter_next(&array)) {
		DBusMessageIter entry, variant;
		const char *key;
		int err;

		dbus_message_iter_recurse(&array, &entry);
		if (dbus_message_iter_get_arg_type(&entry) != DBUS_TYPE_STRING)
			return -EINVAL;
		dbus_message_iter_get_basic(&entry, &key);
		dbus_message_iter_next(&entry);
		if (dbus_message_iter_get_arg_type(&entry) != DBUS_TYPE_VARIANT)
			return -EINVAL;
		dbus_message_iter_recurse(&entry, &variant);
		if ((err = fn(key, &variant, data)) < 0)
			return err;
	}
	return 0;
}

int dbusx_variant_basic(DBusMessageIter *variant, int type, void *out)
{
	if (dbus_message_iter_get_arg_type(variant) != type)
		return -EINVAL;
	dbus_message_iter_get_basic(variant, out);
	return 0;
}

int dbusx_read_bytes(DBusMessageIter *iter, uint8_t *buf, int size)
{
	DBusMessageIter sub, inner;
	const uint8_t *bytes;
	int n;

	if (dbus_message_iter_get_arg_type(iter) == DBUS_TYPE_VARIANT) {
		dbus_message_iter_recurse(iter, &inner);
		iter = &inner;
	}
	if (dbus_message_iter_get_arg_type(iter) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(iter) != DBUS_TYPE_BYTE)
		return -EINVAL;
	dbus_message_iter_recurse(iter, &sub);
	dbus_message_iter_get_fixed_array(&sub, &bytes, &n);
	if (n > size)
		return -ENOSPC;
	if (n > 0)          /* libdbus gives NULL for an empty array */
		memcpy(buf, bytes, n);
	return n;
}

static const char *type_signature(int type)
{
	switch (type) {
	case DBUS_TYPE_STRING: return DBUS_TYPE_STRING_AS_STRING;
	case DBUS_TYPE_OBJECT_PATH: return DBUS_TYPE_OBJECT_PATH_AS_STRING;
	case DBUS_TYPE_BYTE: return DBUS_TYPE_BYTE_AS_STRING;
	case DBUS_TYPE_BOOLEAN: return DBUS_TYPE_BOOLEAN_AS_STRING;
	case DBUS_TYPE_UINT16: return DBUS_TYPE_UINT16_AS_STRING;
	default: return NULL;
	}
}

int dbusx_dict_append(DBusMessageIter *dict, const char *key, int type, const void *value)
{
	DBusMessageIter entry, variant;
	const char *sig = type_signature(type);

	if (!sig)
		return -EINVAL;
	if (!dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
	    !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) ||
	    !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, sig, &variant) ||
	    !dbus_message_iter_append_basic(&variant, type, value) ||
	    !dbus_message_iter_close_container(&entry, &variant) ||
	    !dbus_message_iter_close_container(dict, &entry))
		return -ENOMEM;
	return 0;
}

int dbusx_dict_append_bytes(DBusMessageIter *dict, const char *key, const uint8_t *buf, int len)
{
	DBusMessageIter entry, variant, array;

	if (!dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
	    !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) ||
	    !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "ay", &variant) ||
	    !dbus_message_iter_open_container(&variant, DBUS_TYPE_ARRAY, "y", &array) ||
	    !dbus_message_iter_append_fixed_array(&array, DBUS_TYPE_BYTE, &buf, len) ||
	    !dbus_message_iter_close_container(&variant, &array) ||
	    !dbus_message_iter_close_container(&entry, &variant) ||
	    !dbus_message_iter_close_container(dict, &entry))
		return -ENOMEM;
	return 0;
}
