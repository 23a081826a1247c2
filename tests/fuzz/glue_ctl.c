/* Glue of fuzz_dbus_endpoint to ctl_bt/ctl_bluetooth.c (its filter is static). */
/* As the plugin is built (-DPIC): SND_CTL_PLUGIN_SYMBOL then needs no snd_dlsym_start. */
#ifndef PIC
#define PIC 1
#endif
#include "../../ctl_bt/ctl_bluetooth.c"

#include "dbus_glue.h"
#include "fuzz_common.h"

struct bt_ctl *glue_ctl_new(int with_transport, int with_battery)
{
	struct bt_ctl *ctl = calloc(1, sizeof(*ctl));

	if (!ctl)
		abort();
	/* No volume file (volume_store_load gives defaults, save -ENOENT), no fds. */
	ctl->vs.inotify_fd = ctl->epoll_fd = ctl->pending_fd = -1;
	snprintf(ctl->dev.path, sizeof(ctl->dev.path), "%s", FUZZ_DEVICE_PATH);
	snprintf(ctl->dev.address, sizeof(ctl->dev.address), "%s", FUZZ_DEVICE_ADDR);
	ctl->speaker_volume = -1;
	ctl->battery = with_battery ? 50 : -1;
	ctl->voice_battery = -1;
	/* The plugins only listen to bluetoothd's unique name (no bus: conn NULL). */
	if (!(ctl->bz = calloc(1, sizeof(*ctl->bz))))
		abort();
	snprintf(ctl->bz->owner, sizeof(ctl->bz->owner), "%s", FUZZ_BLUEZ_UNIQUE);
	if (with_transport) {
		snprintf(ctl->transport, sizeof(ctl->transport), "%s", FUZZ_TRANSPORT_PATH);
		ctl->speaker_volume = 64;
	}
	return ctl;
}

void glue_ctl_free(struct bt_ctl *ctl)
{
	free(ctl->bz);
	free(ctl);
}

void glue_ctl_filter(struct bt_ctl *ctl, DBusMessage *msg)
{
	INVARIANT(ctl_filter(NULL, msg, ctl) == DBUS_HANDLER_RESULT_NOT_YET_HANDLED,
		  "the ctl filter must not swallow messages");
}

void glue_ctl_check(const struct bt_ctl *ctl)
{
	INVARIANT(memchr(ctl->transport, 0, sizeof(ctl->transport)), "transport unterminated");
	INVARIANT(ctl->speaker_volume >= -1 && ctl->speaker_volume <= 65535,
		  "speaker_volume %d", ctl->speaker_volume);
	INVARIANT(ctl->battery >= -1 && ctl->battery <= 255, "battery %d", ctl->battery);
	INVARIANT(!ctl->transport[0] || !strncmp(ctl->transport, FUZZ_DEVICE_PATH "/",
						 strlen(FUZZ_DEVICE_PATH) + 1),
		  "transport %s not under the device", ctl->transport);
	INVARIANT((ctl->dirty & ~((1u << EL_COUNT) - 1)) == 0, "dirty 0x%x", ctl->dirty);
	if (fuzz_strict()) {
		/* The elements' ranges (bt_get_integer_info): volume 0..127, battery 0..100. */
		INVARIANT(ctl->speaker_volume <= VOLUME_MAX,
			  "[strict] speaker volume %d outside the element's 0..127", ctl->speaker_volume);
		INVARIANT(ctl->battery <= 100,
			  "[strict] battery %d outside the element's 0..100", ctl->battery);
	}
}

/* Whether the ctl ended, or listens to another bluetoothd than the one it
 * started with (a spoofed NameOwnerChanged must change neither). */
int glue_ctl_gone(const struct bt_ctl *ctl)
{
	return ctl->gone * 2 + !!strcmp(ctl->bz->owner, FUZZ_BLUEZ_UNIQUE);
}
