/* Small libdbus helpers: bounded calls that keep dispatching, and dict walking. */
#ifndef ALSABT_DBUS_H
#define ALSABT_DBUS_H

#include <stdint.h>
#include <dbus/dbus.h>

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t dbusx_now_ms(void);

/* Sends msg and waits for the reply until deadline_ms (CLOCK_MONOTONIC ms),
 * dispatching incoming messages meanwhile: bluetoothd calls our endpoint while
 * our ConnectProfile is pending, and libdbus's blocking call would not answer.
 * Returns 0 with *reply set (possibly an error reply), -ETIMEDOUT, or -ECONNRESET
 * when the bus went away. Takes no ownership of msg. */
int dbusx_call(DBusConnection *conn, DBusMessage *msg, int64_t deadline_ms,
	       DBusMessage **reply);

/* Sends every one of n calls at once, then waits until all are answered or
 * deadline_ms passes (dispatching meanwhile); the replies are dropped. One
 * slow answer then holds up none of the others, and a call made after this
 * one reaches the peer after all of them. 0, -ETIMEDOUT, -ENOMEM or
 * -ECONNRESET. */
int dbusx_call_all(DBusConnection *conn, DBusMessage *const *msgs, int n, int64_t deadline_ms);

/* Pumps the connection for up to timeout_ms, or until *flag becomes nonzero. */
int dbusx_wait_flag(DBusConnection *conn, const volatile int *flag, int64_t deadline_ms);

/* Calls fn(key, variant_iter, data) for each entry of an a{sv} at iter.
 * Stops and returns fn's value if it is negative. -EINVAL if iter is not a{sv}. */
typedef int (*dbusx_dict_fn)(const char *key, DBusMessageIter *variant, void *data);
int dbusx_dict_foreach(DBusMessageIter *iter, dbusx_dict_fn fn, void *data);

/* Reads basic values out of a variant; -EINVAL on a type mismatch. */
int dbusx_variant_basic(DBusMessageIter *variant, int type, void *out);
/* Reads an ay (in a variant or not) into buf; returns its length or -EINVAL/-ENOSPC. */
int dbusx_read_bytes(DBusMessageIter *iter, uint8_t *buf, int size);

/* Appends {key: variant(type value)} to an open a{sv} container. */
int dbusx_dict_append(DBusMessageIter *dict, const char *key, int type, const void *value);
/* Appends {key: variant(ay)}. */
int dbusx_dict_append_bytes(DBusMessageIter *dict, const char *key, const uint8_t *buf, int len);

#endif
