/*
 * ctl.bluetooth: the speaker's volume (AVRCP absolute volume, or software
 * volume in pcm_bt when the speaker has none), a mute switch and the battery,
 * as ALSA mixer elements. The ctl_ext callbacks and the D-Bus signals they
 * follow; the volume state it shares with the PCM is in common/volume.c.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <alsa/asoundlib.h>
#include <alsa/control_external.h>

#include "../bluez/bluez.h"
#include "../bluez/dbus.h"
#include "../codecs/codec.h"
#include "../common/options.h"
#include "../common/volume.h"

#define TRANSPORT_IFACE "org.bluez.MediaTransport1"
#define BATTERY_IFACE "org.bluez.Battery1"
#define CALL_TIMEOUT_MS 1000

/* Keys; an element is listed only where the device has it (present()). */
enum { EL_VOLUME, EL_SWITCH, EL_CODEC, EL_VOICE_SPEAKER, EL_VOICE_MIC, EL_BATTERY, EL_COUNT };
#define ALL_ELEMS ((1u << EL_COUNT) - 1)

static const char *const elem_names[EL_COUNT] = {
	[EL_VOLUME] = "A2DP Playback Volume",
	[EL_SWITCH] = "A2DP Playback Switch",
	/* What the speaker plays with; choosing one is used at the next open. */
	[EL_CODEC] = "A2DP Codec",
	/* A headset's HFP gains, 0..15 (AT+VGS, AT+VGM): one simple element,
	 * "Headset", with a playback and a capture volume. */
	[EL_VOICE_SPEAKER] = "Headset Playback Volume",
	[EL_VOICE_MIC] = "Headset Capture Volume",
	/* Read-only; named as a volume so that mixers show it as a bar. */
	[EL_BATTERY] = "Battery Playback Volume",
};

/* A phone plays to us (the capture PCM): its volume slider is a gain on
 * what we capture. */
static const char *const phone_names[EL_SWITCH + 1] = {
	[EL_VOLUME] = "A2DP Capture Volume",
	[EL_SWITCH] = "A2DP Capture Switch",
};

/* The volume element's dB scale: 0 mutes, 1..127 linear in dB up to 0 dB. */
static const unsigned int volume_tlv[] = {
	SND_CTL_TLVT_DB_MINMAX_MUTE, 2 * sizeof(unsigned int),
	(unsigned int)(int)(VOLUME_MIN_DB * 100), 0,
};

struct bt_ctl {
	snd_ctl_ext_t ext;
	struct bt_options opt;
	struct bluez *bz;
	struct bluez_device dev;
	int phone;                  /* the device plays to us (A2DP Source only) */
	struct volume_store vs;
	char transport[192];        /* a MediaTransport1 of the device, "" if none */
	int speaker_volume;         /* its Volume, -1 while it has none */
	int battery;                /* Battery1.Percentage, -1 if none */
	int voice_battery;          /* a headset's HFP report (the state file), -1 if none at open */
	int gone;                   /* the bus went away */
	int reread;                 /* bluetoothd is back: read the device's state anew */
	int filtering;              /* ctl_filter is installed */
	unsigned dirty;             /* elements with a change to report */
	int subscribed;
	/* The one descriptor applications poll (hctl assumes one revents per
	 * descriptor and reads slots a plugin cannot fill): an epoll of the bus,
	 * the volume file's inotify and an eventfd that stays readable while
	 * events are pending (signals libdbus read during a call included). */
	int epoll_fd, pending_fd;
};

static const char *const match_rules[] = {
	"type='signal',sender='org.bluez',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
	"type='signal',sender='org.bluez',interface='org.freedesktop.DBus.ObjectManager'",
	"type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
	"member='NameOwnerChanged',arg0='org.bluez'",
};

static int present(const struct bt_ctl *ctl, int key)
{
	if (key == EL_VOICE_SPEAKER || key == EL_VOICE_MIC)
		return ctl->dev.hands_free;
	return key != EL_BATTERY || ctl->battery >= 0 || ctl->voice_battery >= 0;
}

static int n_elems(const struct bt_ctl *ctl)
{
	int n = 0;

	for (int key = 0; key < EL_COUNT; key++)
		n += present(ctl, key);
	return n;
}

/* The key of the offset-th element listed, -1 past the end. */
static int key_at(const struct bt_ctl *ctl, unsigned offset)
{
	for (int key = 0; key < EL_COUNT; key++)
		if (present(ctl, key) && offset-- == 0)
			return key;
	return -1;
}

static void mark(struct bt_ctl *ctl, unsigned elems)
{
	ctl->dirty |= elems;
	if (ctl->dirty && ctl->pending_fd >= 0)
		eventfd_write(ctl->pending_fd, 1);
}

static void clear_pending(struct bt_ctl *ctl)
{
	eventfd_t v;

	if (ctl->pending_fd >= 0)
		eventfd_read(ctl->pending_fd, &v);
}

/* --- what bluetoothd tells us --------------------------------------------- */

static int hardware_volume(const struct bt_ctl *ctl)
{
	return ctl->transport[0] && ctl->speaker_volume >= 0;
}

/* The speaker reported a volume: remember it for when no stream is open. */
static void remember_speaker_volume(struct bt_ctl *ctl, int volume)
{
	struct volume_state st;

	ctl->speaker_volume = volume;
	volume_store_lock();
	volume_store_load(&ctl->vs, &st);
	if (st.volume != volume || st.pending) {
		st.volume = volume;
		st.pending = 0;
		volume_store_save(&ctl->vs, &st);
	}
	volume_store_unlock();
	mark(ctl, 1u << EL_VOLUME);
}

static int changed_prop(const char *key, DBusMessageIter *v, void *data)
{
	struct bt_ctl *ctl = data;
	uint16_t q;
	uint8_t y;

	/* Out-of-range values are not the speaker's to give: ignored. */
	if (!strcmp(key, "Volume") && !dbusx_variant_basic(v, DBUS_TYPE_UINT16, &q) && q <= VOLUME_MAX)
		remember_speaker_volume(ctl, q);
	else if (!strcmp(key, "Percentage") && !dbusx_variant_basic(v, DBUS_TYPE_BYTE, &y) && y <= 100) {
		ctl->battery = ctl->battery >= 0 ? y : ctl->battery;
		mark(ctl, 1u << EL_BATTERY);
	}
	return 0;
}

static void on_properties_changed(struct bt_ctl *ctl, DBusMessage *sig)
{
	const char *path = dbus_message_get_path(sig), *iface;
	DBusMessageIter it;

	if (!dbus_message_has_signature(sig, "sa{sv}as") || !dbus_message_iter_init(sig, &it))
		return;
	dbus_message_iter_get_basic(&it, &iface);
	if (!dbus_message_iter_next(&it))
		return;
	if ((!strcmp(iface, TRANSPORT_IFACE) && ctl->transport[0] && !strcmp(path, ctl->transport)) ||
	    (!strcmp(iface, BATTERY_IFACE) && !strcmp(path, ctl->dev.path)))
		dbusx_dict_foreach(&it, changed_prop, ctl);
}

static int under_device(const struct bt_ctl *ctl, const char *path)
{
	size_t n = strlen(ctl->dev.path);

	return !strncmp(path, ctl->dev.path, n) && path[n] == '/';
}

/* A transport of our device appeared (a stream was set up, by us or another). */
static void on_interfaces_added(struct bt_ctl *ctl, DBusMessage *sig)
{
	DBusMessageIter it, arr;
	const char *path;

	/* The key types are read blindly below: check the whole signature first. */
	if (!dbus_message_has_signature(sig, "oa{sa{sv}}") || !dbus_message_iter_init(sig, &it))
		return;
	dbus_message_iter_get_basic(&it, &path);
	if (!under_device(ctl, path) || !dbus_message_iter_next(&it) ||
	    dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY)
		return;
	dbus_message_iter_recurse(&it, &arr);
	for (; dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next(&arr)) {
		DBusMessageIter entry;
		const char *iface;

		dbus_message_iter_recurse(&arr, &entry);
		dbus_message_iter_get_basic(&entry, &iface);
		if (strcmp(iface, TRANSPORT_IFACE))
			continue;
		snprintf(ctl->transport, sizeof(ctl->transport), "%s", path);
		ctl->speaker_volume = -1;
		dbus_message_iter_next(&entry);
		dbusx_dict_foreach(&entry, changed_prop, ctl);
		mark(ctl, 1u << EL_VOLUME);
	}
}

static void on_interfaces_removed(struct bt_ctl *ctl, DBusMessage *sig)
{
	const char *path;

	if (dbus_message_get_args(sig, NULL, DBUS_TYPE_OBJECT_PATH, &path, DBUS_TYPE_INVALID) &&
	    ctl->transport[0] && !strcmp(path, ctl->transport)) {
		ctl->transport[0] = 0;
		ctl->speaker_volume = -1;
		mark(ctl, 1u << EL_VOLUME);
	}
}

static void set_gone(struct bt_ctl *ctl)
{
	if (!ctl->gone)
		mark(ctl, ALL_ELEMS);   /* one last event so mixers re-read */
	ctl->gone = 1;
}

/* bluetoothd stopped: no speaker volume until it is back; the mixer stays
 * open and shows the last known value, as with no stream. The battery keeps
 * its last value too: the elements cannot change under an open mixer. */
static void bluetoothd_left(struct bt_ctl *ctl)
{
	ctl->bz->owner[0] = 0;
	ctl->transport[0] = 0;
	ctl->speaker_volume = -1;
	mark(ctl, ALL_ELEMS);
}

static DBusHandlerResult ctl_filter(DBusConnection *conn, DBusMessage *msg, void *data)
{
	struct bt_ctl *ctl = data;

	(void)conn;
	if (dbus_message_is_signal(msg, DBUS_INTERFACE_LOCAL, "Disconnected")) {
		set_gone(ctl);
	} else if (bluez_lost(msg)) {
		bluetoothd_left(ctl);
	} else if (bluez_returned(ctl->bz, msg)) {
		ctl->reread = 1;        /* not from inside dispatch: pump() does it */
		mark(ctl, ALL_ELEMS);
	} else if (!bluez_from_bluez(ctl->bz, msg)) {
		/* anyone else's signal says nothing about the speaker */
	} else if (dbus_message_is_signal(msg, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged")) {
		on_properties_changed(ctl, msg);
	} else if (dbus_message_is_signal(msg, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded")) {
		on_interfaces_added(ctl, msg);
	} else if (dbus_message_is_signal(msg, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved")) {
		on_interfaces_removed(ctl, msg);
	}
	return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

static void read_device_state(struct bt_ctl *ctl, int64_t deadline);

/* Handles whatever arrived, without blocking (but a re-read after bluetoothd
 * came back, bounded by CALL_TIMEOUT_MS). */
static void pump(struct bt_ctl *ctl)
{
	if (bluez_dispatch(ctl->bz) < 0)
		set_gone(ctl);
	if (ctl->reread && !ctl->gone) {
		ctl->reread = 0;
		read_device_state(ctl, dbusx_now_ms() + CALL_TIMEOUT_MS);
		mark(ctl, ALL_ELEMS);
	}
	if (volume_store_changed(&ctl->vs))
		mark(ctl, 1u << EL_VOLUME | 1u << EL_SWITCH | 1u << EL_CODEC |
			  1u << EL_VOICE_SPEAKER | 1u << EL_VOICE_MIC | 1u << EL_BATTERY);
}

/* --- ctl_ext callbacks ----------------------------------------------------- */

static int bt_elem_count(snd_ctl_ext_t *ext)
{
	return n_elems(ext->private_data);
}

static const char *elem_name(const struct bt_ctl *ctl, int elem)
{
	return ctl->phone && elem <= EL_SWITCH ? phone_names[elem] : elem_names[elem];
}

static void fill_id(const struct bt_ctl *ctl, snd_ctl_elem_id_t *id, int elem)
{
	snd_ctl_elem_id_set_interface(id, SND_CTL_ELEM_IFACE_MIXER);
	snd_ctl_elem_id_set_name(id, elem_name(ctl, elem));
}

static int bt_elem_list(snd_ctl_ext_t *ext, unsigned int offset, snd_ctl_elem_id_t *id)
{
	int key = key_at(ext->private_data, offset);

	if (key < 0)
		return -EINVAL;
	fill_id(ext->private_data, id, key);
	return 0;
}

static snd_ctl_ext_key_t bt_find_elem(snd_ctl_ext_t *ext, const snd_ctl_elem_id_t *id)
{
	const char *name = snd_ctl_elem_id_get_name(id);

	for (int key = 0; key < EL_COUNT; key++)
		if (present(ext->private_data, key) && !strcmp(name, elem_name(ext->private_data, key)))
			return key;
	return SND_CTL_EXT_KEY_NOT_FOUND;
}

static int bt_get_attribute(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, int *type,
			    unsigned int *acc, unsigned int *count)
{
	const struct bt_ctl *ctl = ext->private_data;

	*count = 1;
	switch (key) {
	case EL_VOLUME:
		*type = SND_CTL_ELEM_TYPE_INTEGER;
		*acc = SND_CTL_EXT_ACCESS_READWRITE | SND_CTL_EXT_ACCESS_TLV_READ |
		       SND_CTL_EXT_ACCESS_TLV_CALLBACK;
		return 0;
	case EL_SWITCH:
		*type = SND_CTL_ELEM_TYPE_BOOLEAN;
		*acc = SND_CTL_EXT_ACCESS_READWRITE;
		return 0;
	case EL_CODEC:
		*type = SND_CTL_ELEM_TYPE_ENUMERATED;
		/* A phone chooses the codec it sends: shown, not chosen. */
		*acc = ctl->phone ? SND_CTL_EXT_ACCESS_READ : SND_CTL_EXT_ACCESS_READWRITE;
		return 0;
	case EL_VOICE_SPEAKER:
	case EL_VOICE_MIC:
		*type = SND_CTL_ELEM_TYPE_INTEGER;
		*acc = SND_CTL_EXT_ACCESS_READWRITE;
		return 0;
	case EL_BATTERY:
		*type = SND_CTL_ELEM_TYPE_INTEGER;
		*acc = SND_CTL_EXT_ACCESS_READ;
		return 0;
	}
	return -EINVAL;
}

/* --- the codec element: the table's codecs, by name --------------------------- */

static unsigned n_codecs(void)
{
	unsigned n = 0;

	while (a2dp_codecs[n])
		n++;
	return n;
}

static int bt_get_enumerated_info(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, unsigned int *items)
{
	(void)ext;
	if (key != EL_CODEC)
		return -EINVAL;
	*items = n_codecs();
	return 0;
}

static int bt_get_enumerated_name(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, unsigned int item,
				  char *name, size_t name_max_len)
{
	(void)ext;
	if (key != EL_CODEC || item >= n_codecs())
		return -EINVAL;
	snprintf(name, name_max_len, "%s", a2dp_codecs[item]->name);
	return 0;
}

/* The codec the last stream played with, else the one asked for, else SBC. */
static int bt_read_enumerated(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, unsigned int *item)
{
	struct bt_ctl *ctl = ext->private_data;
	const struct a2dp_codec *c;
	struct volume_state st;

	pump(ctl);
	if (ctl->gone)
		return -ENODEV;
	if (key != EL_CODEC)
		return -EINVAL;
	volume_store_load(&ctl->vs, &st);
	if (!(c = a2dp_codec_by_name(st.codec)) && !(c = a2dp_codec_by_name(st.wanted)))
		c = &a2dp_codec_sbc;
	for (*item = 0; a2dp_codecs[*item] != c; (*item)++)
		;
	return 0;
}

/* Asks for a codec: the next stream offers it first (CODEC= overrides). */
static int bt_write_enumerated(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, unsigned int *item)
{
	struct bt_ctl *ctl = ext->private_data;
	struct volume_state st;
	const char *name;
	int err;

	pump(ctl);
	if (ctl->gone)
		return -ENODEV;
	if (key != EL_CODEC || *item >= n_codecs())
		return -EINVAL;
	if (ctl->phone)
		return -EPERM;
	name = a2dp_codecs[*item]->name;
	volume_store_load(&ctl->vs, &st);
	if (!strcmp(st.codec, name) && !strcmp(st.wanted, name))
		return 0;
	snprintf(st.wanted, sizeof(st.wanted), "%s", name);
	snprintf(st.codec, sizeof(st.codec), "%s", name);   /* shown until a stream says otherwise */
	if ((err = volume_store_save(&ctl->vs, &st)) < 0)
		return err;
	return 1;
}

static int bt_get_integer_info(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, long *min,
			       long *max, long *step)
{
	(void)ext;
	*min = 0;
	*step = 1;
	*max = key == EL_BATTERY ? 100 : key == EL_SWITCH ? 1 :
	       key == EL_VOICE_SPEAKER || key == EL_VOICE_MIC ? VOICE_GAIN_MAX : VOLUME_MAX;
	return 0;
}

static int bt_read_integer(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, long *value)
{
	struct bt_ctl *ctl = ext->private_data;
	struct volume_state st;

	pump(ctl);
	if (ctl->gone)
		return -ENODEV;
	volume_store_load(&ctl->vs, &st);
	switch (key) {
	case EL_VOLUME:
		*value = hardware_volume(ctl) ? ctl->speaker_volume : st.volume;
		return 0;
	case EL_SWITCH:
		*value = !st.muted;
		return 0;
	case EL_VOICE_SPEAKER:
	case EL_VOICE_MIC: {
		int gain = key == EL_VOICE_SPEAKER ? st.voice_speaker : st.voice_mic;

		*value = gain >= 0 ? gain : VOICE_GAIN_MAX;   /* not yet reported: full */
		return 0;
	}
	case EL_BATTERY:
		/* BlueZ's when it has one; a headset's HFP report otherwise. */
		*value = ctl->battery >= 0 ? ctl->battery : st.voice_battery >= 0 ? st.voice_battery
										     : ctl->voice_battery;
		return 0;
	}
	return -EINVAL;
}

static int write_volume(struct bt_ctl *ctl, struct volume_state *st, long value)
{
	int err;

	if (value < 0 || value > VOLUME_MAX)
		return -EINVAL;
	if (value == (hardware_volume(ctl) ? ctl->speaker_volume : st->volume))
		return 0;
	st->volume = value;
	/* Without a speaker that takes it now, the next open applies it. */
	st->pending = !hardware_volume(ctl);
	if (hardware_volume(ctl) &&
	    (err = bluez_set_uint16(ctl->bz, ctl->transport, TRANSPORT_IFACE, "Volume", value,
				    dbusx_now_ms() + CALL_TIMEOUT_MS)) < 0)
		return err == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
	return 1;
}

static int bt_write_integer(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, long *value)
{
	struct bt_ctl *ctl = ext->private_data;
	struct volume_state st;
	int changed, err;

	pump(ctl);
	if (ctl->gone)
		return -ENODEV;
	volume_store_load(&ctl->vs, &st);
	if (key == EL_VOLUME) {
		if ((changed = write_volume(ctl, &st, *value)) <= 0)
			return changed;
	} else if (key == EL_SWITCH) {
		if (st.muted == !*value)
			return 0;
		st.muted = !*value;
	} else if (key == EL_VOICE_SPEAKER || key == EL_VOICE_MIC) {
		/* A voice link (this process or another) sends it to the headset. */
		int *gain = key == EL_VOICE_SPEAKER ? &st.voice_speaker : &st.voice_mic;

		if (*value < 0 || *value > VOICE_GAIN_MAX)
			return -EINVAL;
		if (*gain == *value)
			return 0;
		*gain = (int)*value;
	} else {
		return -EPERM;
	}
	if ((err = volume_store_save(&ctl->vs, &st)) < 0)
		return err;
	pump(ctl);    /* what arrived while we waited for bluetoothd */
	return 1;
}

static void bt_subscribe_events(snd_ctl_ext_t *ext, int subscribe)
{
	struct bt_ctl *ctl = ext->private_data;

	ctl->subscribed = subscribe;
}

static int bt_read_event(snd_ctl_ext_t *ext, snd_ctl_elem_id_t *id, unsigned int *event_mask)
{
	struct bt_ctl *ctl = ext->private_data;

	pump(ctl);
	for (int key = 0; key < EL_COUNT; key++) {
		if (!(ctl->dirty & 1u << key))
			continue;
		ctl->dirty &= ~(1u << key);
		if (!ctl->subscribed || !present(ctl, key))
			continue;
		fill_id(ctl, id, key);
		*event_mask = SND_CTL_EVENT_MASK_VALUE;
		return 1;
	}
	ctl->dirty = 0;
	clear_pending(ctl);
	return -EAGAIN;
}

static int bt_poll_descriptors_count(snd_ctl_ext_t *ext)
{
	(void)ext;
	return 1;
}

static int bt_poll_descriptors(snd_ctl_ext_t *ext, struct pollfd *pfd, unsigned int space)
{
	struct bt_ctl *ctl = ext->private_data;

	if (space < 1)
		return -EINVAL;
	pfd[0] = (struct pollfd){ .fd = ctl->epoll_fd, .events = POLLIN };
	return 1;
}

static int bt_poll_revents(snd_ctl_ext_t *ext, struct pollfd *pfd, unsigned int nfds,
			   unsigned short *revents)
{
	struct bt_ctl *ctl = ext->private_data;

	(void)pfd;
	(void)nfds;
	pump(ctl);
	if (!ctl->dirty)
		clear_pending(ctl);
	*revents = ctl->dirty && ctl->subscribed ? POLLIN : 0;
	return 0;
}

static int bt_tlv(snd_ctl_ext_t *ext, snd_ctl_ext_key_t key, int op_flag, unsigned int numid,
		  unsigned int *tlv, unsigned int tlv_size)
{
	(void)ext;
	(void)numid;
	if (key != EL_VOLUME || op_flag != 0)
		return -ENXIO;
	if (tlv_size < sizeof(volume_tlv))
		return -ENOMEM;
	memcpy(tlv, volume_tlv, sizeof(volume_tlv));
	return 0;
}

static void bt_free(struct bt_ctl *ctl)
{
	if (ctl->bz) {
		for (size_t i = 0; i < sizeof(match_rules) / sizeof(match_rules[0]); i++)
			dbus_bus_remove_match(ctl->bz->conn, match_rules[i], NULL);
		/* libdbus aborts the program on removing a filter it does not have */
		if (ctl->filtering)
			dbus_connection_remove_filter(ctl->bz->conn, ctl_filter, ctl);
		bluez_close(ctl->bz);
	}
	volume_store_close(&ctl->vs);
	if (ctl->epoll_fd >= 0)
		close(ctl->epoll_fd);
	if (ctl->pending_fd >= 0)
		close(ctl->pending_fd);
	free(ctl);
}

static void bt_close(snd_ctl_ext_t *ext)
{
	bt_free(ext->private_data);
}

static const snd_ctl_ext_callback_t bt_callbacks = {
	.elem_count = bt_elem_count,
	.elem_list = bt_elem_list,
	.find_elem = bt_find_elem,
	.get_attribute = bt_get_attribute,
	.get_integer_info = bt_get_integer_info,
	.read_integer = bt_read_integer,
	.write_integer = bt_write_integer,
	.get_enumerated_info = bt_get_enumerated_info,
	.get_enumerated_name = bt_get_enumerated_name,
	.read_enumerated = bt_read_enumerated,
	.write_enumerated = bt_write_enumerated,
	.subscribe_events = bt_subscribe_events,
	.read_event = bt_read_event,
	.poll_descriptors_count = bt_poll_descriptors_count,
	.poll_descriptors = bt_poll_descriptors,
	.poll_revents = bt_poll_revents,
	.close = bt_close,
};

/* What the device has now: a transport and its Volume, a battery. */
static void read_device_state(struct bt_ctl *ctl, int64_t deadline)
{
	uint16_t volume;
	uint8_t pct;

	/* The battery keeps its last value if bluetoothd has none to give now:
	 * whether the element exists cannot change under an open mixer. */
	ctl->speaker_volume = -1;
	ctl->transport[0] = 0;
	if (bluez_find_transport(ctl->bz, ctl->dev.path, NULL, deadline, ctl->transport,
				    sizeof(ctl->transport)) <= 0)
		ctl->transport[0] = 0;
	else if (bluez_get_property(ctl->bz, ctl->transport, TRANSPORT_IFACE, "Volume",
				    DBUS_TYPE_UINT16, &volume, deadline) == 0 && volume <= VOLUME_MAX)
		remember_speaker_volume(ctl, volume);
	if (bluez_get_property(ctl->bz, ctl->dev.path, BATTERY_IFACE, "Percentage", DBUS_TYPE_BYTE,
			       &pct, deadline) == 0 && pct <= 100)
		ctl->battery = pct;
	ctl->dirty = 0;
}

static int watch_fd(struct bt_ctl *ctl, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return fd < 0 || epoll_ctl(ctl->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

static int open_poll_fds(struct bt_ctl *ctl)
{
	int bus_fd = -1, err;

	ctl->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	ctl->pending_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctl->epoll_fd < 0 || ctl->pending_fd < 0)
		return -errno;
	dbus_connection_get_unix_fd(ctl->bz->conn, &bus_fd);
	if ((err = watch_fd(ctl, bus_fd)) < 0 || (err = watch_fd(ctl, ctl->vs.inotify_fd)) < 0 ||
	    (err = watch_fd(ctl, ctl->pending_fd)) < 0)
		return err;
	return 0;
}

static int bt_connect(struct bt_ctl *ctl)
{
	int64_t deadline = dbusx_now_ms() + ctl->opt.connect_timeout_ms;
	int err;

	if ((err = bluez_open(&ctl->bz)) < 0 ||
	    (err = bluez_find_device_role(ctl->bz, ctl->opt.adapter,
					  ctl->opt.device[0] ? ctl->opt.device : NULL,
					  ctl->opt.device[0] ? BLUEZ_EITHER : BLUEZ_SINK, deadline,
					  &ctl->dev)) < 0)
		return err;
	ctl->phone = ctl->dev.audio_source && !ctl->dev.audio_sink;
	if ((err = volume_store_open(&ctl->vs, ctl->dev.address, 1)) < 0) {
		SNDERR("bluetooth: cannot keep the volume in $XDG_STATE_HOME or ~/.local/state: %s",
		       strerror(-err));
		return err;
	}
	if (!dbus_connection_add_filter(ctl->bz->conn, ctl_filter, ctl, NULL))
		return -ENOMEM;
	ctl->filtering = 1;
	for (size_t i = 0; i < sizeof(match_rules) / sizeof(match_rules[0]); i++)
		dbus_bus_add_match(ctl->bz->conn, match_rules[i], NULL);
	read_device_state(ctl, deadline);
	if (ctl->dev.hands_free) {
		struct volume_state st;

		volume_store_load(&ctl->vs, &st);
		ctl->voice_battery = st.voice_battery;
	}
	return open_poll_fds(ctl);
}

static void set_names(struct bt_ctl *ctl)
{
	snd_ctl_ext_t *ext = &ctl->ext;

	snprintf(ext->id, sizeof(ext->id), "bluetooth");
	snprintf(ext->driver, sizeof(ext->driver), "alsa-bt");
	snprintf(ext->name, sizeof(ext->name), "%.31s", ctl->dev.name[0] ? ctl->dev.name : ctl->dev.address);
	snprintf(ext->longname, sizeof(ext->longname), "Bluetooth %.40s (%s)", ctl->dev.name, ctl->dev.address);
	snprintf(ext->mixername, sizeof(ext->mixername), "Bluetooth A2DP");
}

SND_CTL_PLUGIN_DEFINE_FUNC(bluetooth)
{
	struct bt_ctl *ctl;
	int err;

	(void)root;
	if (!(ctl = calloc(1, sizeof(*ctl))))
		return -ENOMEM;
	ctl->vs.inotify_fd = ctl->epoll_fd = ctl->pending_fd = -1;
	ctl->battery = ctl->voice_battery = -1;
	if ((err = bt_options_parse(conf, "bluetooth", &ctl->opt)) < 0 || (err = bt_connect(ctl)) < 0)
		goto fail;
	ctl->ext.version = SND_CTL_EXT_VERSION;
	ctl->ext.card_idx = -1;
	ctl->ext.poll_fd = -1;
	ctl->ext.callback = &bt_callbacks;
	ctl->ext.private_data = ctl;
	ctl->ext.tlv.c = bt_tlv;
	set_names(ctl);
	if ((err = snd_ctl_ext_create(&ctl->ext, name, mode)) < 0)
		goto fail;
	*handlep = ctl->ext.handle;
	return 0;
fail:
	bt_free(ctl);
	return err;
}

SND_CTL_PLUGIN_SYMBOL(bluetooth);
