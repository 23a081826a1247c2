/* HFP Audio Gateway through BlueZ's Profile API: register, connect, take the
 * RFCOMM channel, bring the Service Level Connection up (see profile.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#include "dbus.h"
#include "profile.h"

#define PROFILE_IFACE "org.bluez.Profile1"
#define HFP_AG_VERSION 0x0107       /* HFP 1.7: mSBC and HF indicators */
#define SDP_AG_WIDEBAND 0x0020      /* the SDP record's bit for mSBC */
#define RETRY_PAUSE_MS 200
#define CLOSE_STEP_MS 1000
#define WRITE_WAIT_MS 500

/* --- Profile1, which bluetoothd calls ------------------------------------- */

static void reply_error(DBusConnection *conn, DBusMessage *call, const char *name, const char *text)
{
	DBusMessage *reply = dbus_message_new_error(call, name, text);

	if (reply) {
		dbus_connection_send(conn, reply, NULL);
		dbus_message_unref(reply);
	}
}

static int channel_prop(const char *key, DBusMessageIter *v, void *data)
{
	struct hfp_profile *p = data;

	if (!strcmp(key, "Version"))
		dbusx_variant_basic(v, DBUS_TYPE_UINT16, &p->hf_version);
	else if (!strcmp(key, "Features"))
		dbusx_variant_basic(v, DBUS_TYPE_UINT16, &p->hf_features);
	return 0;
}

/* NewConnection(o device, h fd, a{sv} props): the RFCOMM channel. Only for
 * our headset, and only once: any other is refused, and bluetoothd then
 * drops its side. */
static void new_connection(struct hfp_profile *p, DBusConnection *conn, DBusMessage *call)
{
	DBusMessageIter it;
	const char *device = NULL;
	DBusMessage *reply;
	int fd = -1;

	if (!dbus_message_iter_init(call, &it) ||
	    dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_OBJECT_PATH) {
		reply_error(conn, call, "org.bluez.Error.InvalidArguments", "expected (oha{sv})");
		return;
	}
	dbus_message_iter_get_basic(&it, &device);
	if (!dbus_message_iter_next(&it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_UNIX_FD) {
		reply_error(conn, call, "org.bluez.Error.InvalidArguments", "expected (oha{sv})");
		return;
	}
	dbus_message_iter_get_basic(&it, &fd);      /* a descriptor of our own now */
	if (strcmp(device, p->dev.path) || p->fd >= 0) {
		close(fd);
		reply_error(conn, call, "org.bluez.Error.Rejected", "not the headset this program opened");
		return;
	}
	if (dbus_message_iter_next(&it))
		dbusx_dict_foreach(&it, channel_prop, p);     /* only when BlueZ has the record */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	p->fd = fd;
	p->channel_up = 1;
	if ((reply = dbus_message_new_method_return(call))) {
		dbus_connection_send(conn, reply, NULL);
		dbus_message_unref(reply);
	}
}

static DBusHandlerResult profile_message(DBusConnection *conn, DBusMessage *call, void *data)
{
	struct hfp_profile *p = data;
	const char *member = dbus_message_get_member(call);
	DBusMessage *reply;

	if (dbus_message_get_type(call) != DBUS_MESSAGE_TYPE_METHOD_CALL ||
	    !dbus_message_has_interface(call, PROFILE_IFACE) || !member)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	if (!bluez_from_bluez(p->bz, call)) {
		reply_error(conn, call, "org.bluez.Error.NotAuthorized", "only bluetoothd may call this profile");
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	if (!strcmp(member, "NewConnection")) {
		new_connection(p, conn, call);
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	if (!strcmp(member, "RequestDisconnection") || !strcmp(member, "Release")) {
		/* The user disconnected the headset, or bluetoothd drops us. */
		if (!strcmp(member, "Release"))
			p->registered = 0;
		atomic_store(&p->gone, 1);
	} else if (strcmp(member, "Cancel")) {
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	}
	if (!dbus_message_get_no_reply(call) && (reply = dbus_message_new_method_return(call))) {
		dbus_connection_send(conn, reply, NULL);
		dbus_message_unref(reply);
	}
	return DBUS_HANDLER_RESULT_HANDLED;
}

static DBusHandlerResult profile_filter(DBusConnection *conn, DBusMessage *msg, void *data)
{
	struct hfp_profile *p = data;

	(void)conn;
	if (bluez_lost(msg)) {
		p->bz->owner[0] = 0;      /* nothing to unregister at close */
		p->registered = 0;
		atomic_store(&p->gone, 1);
	}
	return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

static int export_profile(struct hfp_profile *p)
{
	static const DBusObjectPathVTable vtable = { .message_function = profile_message };
	static atomic_uint counter;

	snprintf(p->path, sizeof(p->path), "/org/alsa_bt/hfp_ag%u", atomic_fetch_add(&counter, 1));
	if (!dbus_connection_register_object_path(p->bz->conn, p->path, &vtable, p)) {
		p->path[0] = 0;
		return -ENOMEM;
	}
	if (!dbus_connection_add_filter(p->bz->conn, profile_filter, p, NULL))
		return -ENOMEM;
	p->exported = 1;
	return 0;
}

/* --- ProfileManager1 and Device1 ------------------------------------------ */

static DBusMessage *register_message(const struct hfp_profile *p)
{
	const char *path = p->path, *uuid = HFP_AG_UUID, *name = "alsa-bt HFP Audio Gateway";
	uint16_t version = HFP_AG_VERSION;
	uint16_t features = p->slc.msbc_possible ? SDP_AG_WIDEBAND : 0;
	DBusMessage *msg = bluez_method_call("/org/bluez", "org.bluez.ProfileManager1", "RegisterProfile");
	DBusMessageIter it, dict;

	if (!msg)
		return NULL;
	dbus_message_iter_init_append(msg, &it);
	if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &path) ||
	    !dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &uuid) ||
	    !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) ||
	    dbusx_dict_append(&dict, "Name", DBUS_TYPE_STRING, &name) < 0 ||
	    dbusx_dict_append(&dict, "Version", DBUS_TYPE_UINT16, &version) < 0 ||
	    dbusx_dict_append(&dict, "Features", DBUS_TYPE_UINT16, &features) < 0 ||
	    !dbus_message_iter_close_container(&it, &dict)) {
		dbus_message_unref(msg);
		return NULL;
	}
	return msg;
}

static int register_profile(struct hfp_profile *p, int64_t deadline_ms)
{
	DBusMessage *msg = register_message(p), *reply;
	const char *name, *text = "";
	int err;

	if (!msg)
		return -ENOMEM;
	err = dbusx_call(p->bz->conn, msg, deadline_ms, &reply);
	dbus_message_unref(msg);
	if (err == -ETIMEDOUT) {
		SNDERR("bluetoothd did not answer RegisterProfile in time");
		return err;
	}
	if (err < 0)
		return err;
	if ((name = dbus_message_get_error_name(reply))) {
		dbus_message_get_args(reply, NULL, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID);
		if (strstr(name, "NotPermitted") || strstr(name, "AlreadyExists")) {
			SNDERR("cannot talk through %s: another program or audio service (PipeWire, "
			       "PulseAudio, oFono, bluez-alsa) owns the headset profile (HFP); stop it first",
			       p->dev.address);
			err = -EBUSY;
		} else {
			SNDERR("bluetoothd refused our headset profile (HFP): %s", *text ? text : name);
			err = -EIO;
		}
	} else {
		p->registered = 1;
	}
	dbus_message_unref(reply);
	return err;
}

static int connect_error(const struct hfp_profile *p, const char *name, const char *text, int err)
{
	const char *addr = p->dev.address;

	if (err == -ETIMEDOUT) {
		SNDERR("no answer from %s within connect_timeout: is it switched on and in range?", addr);
		return err;
	}
	if (err == -ECONNRESET) {
		SNDERR("lost the D-Bus system bus while connecting to %s", addr);
		return err;
	}
	if (err < 0 && err != -EIO)
		return err;
	if (strstr(name, "NotReady")) {
		SNDERR("Bluetooth adapter %s is not ready (powered off?): run 'bluetoothctl power on'",
		       p->dev.adapter);
		return -ENETDOWN;
	}
	if (strstr(name, "DoesNotExist")) {
		SNDERR("device %s was removed from BlueZ: pair it again", addr);
		return -ENODEV;
	}
	SNDERR("cannot connect the headset profile of %s: %s; is it switched on, in range and free?",
	       addr, *text ? text : name);
	return -EHOSTDOWN;
}

/* ConnectProfile(Hands-Free): answered only once our NewConnection reply is
 * (we dispatch while waiting). Busy links are retried until the deadline. */
static int connect_headset(struct hfp_profile *p, int64_t deadline_ms)
{
	char name[128], text[256];
	int err;

	for (;;) {
		err = bluez_call_simple(p->bz, p->dev.path, "org.bluez.Device1", "ConnectProfile",
					HFP_HF_UUID, deadline_ms, name, sizeof(name), text, sizeof(text));
		if (p->channel_up)
			return 0;
		if (err == 0)        /* connected, but by someone else's profile */
			name[0] = 0, snprintf(text, sizeof(text), "bluetoothd connected it without us");
		if (err == 0 || !(strstr(name, "InProgress") || strstr(name, "Failed")) ||
		    dbusx_now_ms() + RETRY_PAUSE_MS >= deadline_ms)
			return connect_error(p, name, text, err == 0 ? -EIO : err);
		dbusx_wait_flag(p->bz->conn, &p->channel_up, dbusx_now_ms() + RETRY_PAUSE_MS);
		if (p->channel_up)
			return 0;
	}
}

/* --- the Service Level Connection ----------------------------------------- */

/* "< AT+BRSF=916\\r" or "> \\r\\nOK\\r\\n", control bytes escaped. */
static void trace(const struct hfp_profile *p, char dir, const char *buf, size_t len)
{
	if (!p->trace)
		return;
	fputc(dir, p->trace);
	fputc(' ', p->trace);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\r' || c == '\n')
			fputs(c == '\r' ? "\\r" : "\\n", p->trace);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(p->trace, "\\x%02x", c);
		else
			fputc(c, p->trace);
	}
	fputc('\n', p->trace);
	fflush(p->trace);
}

static int write_answers(struct hfp_profile *p)
{
	size_t len;
	const char *out = slc_output(&p->slc, &len);
	ssize_t n;

	if (!len)
		return 0;
	n = send(p->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -ECONNRESET;
	trace(p, '>', out, (size_t)n);
	slc_consumed(&p->slc, (size_t)n);
	return 0;
}

/* Our answers filled `out` and the headset is not reading them: wait a
 * little for room, as what it sent next must be answered after them. */
static int wait_writable(struct hfp_profile *p)
{
	struct pollfd w = { .fd = p->fd, .events = POLLOUT };

	if (poll(&w, 1, WRITE_WAIT_MS) <= 0 || write_answers(p) < 0 ||
	    p->slc.out_len == SLC_OUT_MAX)
		return -ECONNRESET;
	return 0;
}

int hfp_profile_service(struct hfp_profile *p)
{
	char buf[512];
	ssize_t n;
	int err;

	while ((n = read(p->fd, buf, sizeof(buf))) > 0) {
		size_t done = 0;

		trace(p, '<', buf, (size_t)n);
		while (done < (size_t)n) {
			size_t took = slc_input(&p->slc, buf + done, (size_t)n - done);

			done += took;
			if (write_answers(p) < 0)
				return -ECONNRESET;
			if (!took && (err = wait_writable(p)) < 0)
				return err;
		}
	}
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
		return -ECONNRESET;
	return write_answers(p);
}

/* Where the headset stopped, for the one line a timeout gets. */
static const char *slc_step(const struct slc *s)
{
	if (!s->hf_features && !s->cmer_seen)
		return "sent no AT+BRSF (does it need pairing again?)";
	if (!s->cmer_seen)
		return "stopped before AT+CMER (the indicators)";
	if (s->state == SLC_STARTING)
		return "did not finish the HF indicators (AT+BIND)";
	return "did not agree to our codec choice (+BCS)";
}

static int wait_channel(struct hfp_profile *p, int64_t until_ms)
{
	struct pollfd fds[2] = {
		{ .fd = p->fd, .events = POLLIN | (p->slc.out_len ? POLLOUT : 0) },
		{ .fd = -1, .events = POLLIN },
	};
	int64_t left = until_ms - dbusx_now_ms();

	if (!dbus_connection_get_unix_fd(p->bz->conn, &fds[1].fd))
		fds[1].fd = -1;
	if (left <= 0)
		return -ETIMEDOUT;
	if (poll(fds, 2, (int)left) < 0 && errno != EINTR)
		return -errno;
	if (fds[1].revents && bluez_dispatch(p->bz) < 0)
		return -ECONNRESET;
	return 0;
}

/* Answers the headset until the SLC is up and a codec agreed. */
static int bring_up_slc(struct hfp_profile *p, int64_t deadline_ms)
{
	int64_t bcs_sent = 0;
	int tries = 0, err;

	for (;;) {
		if ((err = hfp_profile_service(p)) < 0 || atomic_load(&p->gone)) {
			SNDERR("%s closed the headset channel while connecting (%s)", p->dev.address,
			       slc_step(&p->slc));
			return -ECONNRESET;
		}
		if (p->slc.state == SLC_FAILED) {
			SNDERR("%s and we have no voice codec in common", p->dev.address);
			return -EPROTO;
		}
		if (p->slc.codec && !p->slc.codec_pending)
			return write_answers(p);
		if (p->slc.state == SLC_CONNECTED && !p->slc.codec_pending && !p->slc.codec) {
			/* Without negotiation CVSD is agreed at once: look again
			 * now, not after the headset's next line, which an HFP 1.5
			 * headset may never send. */
			slc_choose_codec(&p->slc);
			continue;
		}
		if (p->slc.codec_pending && p->slc.bcs_tries != tries) {
			tries = p->slc.bcs_tries;       /* a +BCS just went out */
			bcs_sent = dbusx_now_ms();
		} else if (p->slc.codec_pending && dbusx_now_ms() >= bcs_sent + SLC_BCS_TIMEOUT_MS) {
			slc_codec_timeout(&p->slc);
			tries = -1;
			continue;
		}
		if ((err = write_answers(p)) < 0)
			return err;
		err = wait_channel(p, p->slc.codec_pending && bcs_sent + SLC_BCS_TIMEOUT_MS < deadline_ms
					      ? bcs_sent + SLC_BCS_TIMEOUT_MS : deadline_ms);
		if (err == -ETIMEDOUT && dbusx_now_ms() >= deadline_ms) {
			SNDERR("%s: the headset connection did not complete within connect_timeout: it %s",
			       p->dev.address, slc_step(&p->slc));
			return err;
		}
		if (err < 0 && err != -ETIMEDOUT)
			return err;
	}
}

int hfp_profile_choose_again(struct hfp_profile *p, int msbc_possible, int64_t deadline_ms)
{
	p->slc.msbc_possible = msbc_possible;
	p->slc.codec = 0;
	return bring_up_slc(p, deadline_ms);
}

/* --- open and close ------------------------------------------------------- */

int hfp_profile_open(struct bluez *bz, const struct bluez_device *dev, int msbc_possible,
		     FILE *trace, int64_t deadline_ms, struct hfp_profile **out)
{
	struct hfp_profile *p = calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	p->bz = bz;
	p->dev = *dev;
	p->fd = -1;
	p->trace = trace;
	slc_init(&p->slc, msbc_possible);
	if ((err = export_profile(p)) < 0 || (err = register_profile(p, deadline_ms)) < 0 ||
	    (err = connect_headset(p, deadline_ms)) < 0 || (err = bring_up_slc(p, deadline_ms)) < 0) {
		hfp_profile_close(p);
		return err;
	}
	*out = p;
	return 0;
}

void hfp_profile_close(struct hfp_profile *p)
{
	if (!p)
		return;
	if (p->fd >= 0) {
		/* bluetoothd keeps its own copy of the channel: without the
		 * shutdown the link would stay up after our close. */
		shutdown(p->fd, SHUT_RDWR);
		close(p->fd);
	}
	if (p->registered && p->bz->owner[0]) {
		const char *path = p->path;
		DBusMessage *msg = bluez_method_call("/org/bluez", "org.bluez.ProfileManager1",
						     "UnregisterProfile"), *reply;

		if (msg && dbus_message_append_args(msg, DBUS_TYPE_OBJECT_PATH, &path, DBUS_TYPE_INVALID) &&
		    dbusx_call(p->bz->conn, msg, dbusx_now_ms() + CLOSE_STEP_MS, &reply) == 0)
			dbus_message_unref(reply);
		if (msg)
			dbus_message_unref(msg);
	}
	if (p->exported)
		dbus_connection_remove_filter(p->bz->conn, profile_filter, p);
	if (p->path[0])
		dbus_connection_unregister_object_path(p->bz->conn, p->path);
	dbus_connection_flush(p->bz->conn);
	free(p);
}
