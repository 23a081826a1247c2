/* The software gain from the device's AVRCP volume and the mixer's store. */
#include <stdatomic.h>

#include "bluez.h"
#include "device_volume.h"

#define UNITY 65536

static void apply_store(struct device_volume *dv)
{
	struct volume_state st;

	volume_store_load(dv->vs, &st);
	atomic_store(&dv->gain, dv->seen >= 0 && !dv->we_apply ? (st.muted ? 0 : UNITY)
							      : volume_gain_q16(st.volume, st.muted));
}

/* The device reported a volume: it appeared (push a change made while no
 * stream was open) or it changed (its knob or slider, or our write
 * acknowledged). */
static void on_device_volume(struct device_volume *dv, int volume)
{
	struct volume_state st;
	int appeared = dv->seen < 0;

	dv->seen = volume;
	volume_store_lock();
	volume_store_load(dv->vs, &st);
	if (appeared && st.pending) {
		bluez_set_uint16_async(dv->ep->bz, dv->ep->transport, "org.bluez.MediaTransport1",
				       "Volume", st.volume);
		st.pending = 0;
	} else {
		st.volume = volume;
	}
	volume_store_save(dv->vs, &st);
	volume_store_unlock();
}

void device_volume_init(struct device_volume *dv, struct a2dp_endpoint *ep,
			struct volume_store *vs, int we_apply)
{
	dv->ep = ep;
	dv->vs = vs;
	dv->we_apply = we_apply;
	dv->seen = -1;
	atomic_init(&dv->gain, UNITY);
	if (vs)
		apply_store(dv);
}

void device_volume_follow(struct device_volume *dv)
{
	int volume = atomic_load(&dv->ep->volume), changed = 0;

	if (!dv->vs)
		return;
	if (volume >= 0 && volume != dv->seen) {
		on_device_volume(dv, volume);
		changed = 1;
	}
	/* Read only when something changed: this runs at every D-Bus dispatch. */
	if (volume_store_changed(dv->vs) || changed)
		apply_store(dv);
}

int device_volume_fd(const struct device_volume *dv)
{
	return dv->vs ? dv->vs->inotify_fd : -1;
}

uint32_t device_volume_gain(const struct device_volume *dv)
{
	return atomic_load(&dv->gain);
}

int device_volume_unity(const struct device_volume *dv)
{
	return atomic_load(&dv->gain) == UNITY;
}

void device_volume_apply(const struct device_volume *dv, void *pcm, unsigned samples,
			 unsigned sample_bytes)
{
	uint32_t gain = atomic_load(&dv->gain);

	if (gain == UNITY)
		return;
	if (sample_bytes == 4)
		volume_apply_s32(pcm, samples, gain);
	else
		volume_apply(pcm, samples, gain);
}
