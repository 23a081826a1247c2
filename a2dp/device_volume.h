/*
 * A stream's software gain, kept in step with the device's AVRCP absolute
 * volume (MediaTransport1.Volume, as the endpoint last saw it) and with the
 * volume store the mixer writes (common/volume.h).
 *
 * Playback: a speaker that reports a volume applies it itself, so the gain
 * is only the mute; without one, the gain is the volume. Capture: the
 * phone's slider is ours to apply, so the gain is always the volume. Either
 * way a change made in the mixer while no stream was open is sent to the
 * device when its volume first appears.
 *
 * device_volume_follow() runs on the I/O thread; the gain is read by
 * whoever applies it.
 */
#ifndef A2DP_DEVICE_VOLUME_H
#define A2DP_DEVICE_VOLUME_H

#include <stdint.h>

#include "endpoint.h"
#include "volume.h"

struct device_volume {
	struct a2dp_endpoint *ep;
	struct volume_store *vs;       /* NULL: no store, unity gain */
	int we_apply;                  /* the gain is the volume even with AVRCP (capture) */
	int seen;                      /* the device's last Volume, -1 none */
	_Atomic uint32_t gain;         /* Q16, 65536 = unity */
};

void device_volume_init(struct device_volume *dv, struct a2dp_endpoint *ep,
			struct volume_store *vs, int we_apply);
/* After the bus was dispatched or the store's descriptor became readable. */
void device_volume_follow(struct device_volume *dv);
/* The store's inotify descriptor to poll, -1 without a store. */
int device_volume_fd(const struct device_volume *dv);
uint32_t device_volume_gain(const struct device_volume *dv);
/* The samples pass unchanged: device_volume_apply() would not touch them. */
int device_volume_unity(const struct device_volume *dv);
/* Scales interleaved samples of sample_bytes (2: S16, 4: S32) in place. */
void device_volume_apply(const struct device_volume *dv, void *pcm, unsigned samples,
			 unsigned sample_bytes);

#endif
