/* One headset's voice in this process: the Service Level Connection
 * (hfp/profile.c), the SCO socket, and the I/O thread that carries both
 * directions over it.  The playback and the capture PCM a program opens on
 * one headset share it (a second PCM of the same direction gets -EBUSY).
 *
 * The headset's controller sends a SCO packet every few milliseconds; each
 * one read is decoded into the capture ring and answered at once with a
 * packet of the same size from the playback ring (silence when there is
 * none), so that both directions run on the link's own clock.  A headset
 * side that sends nothing until it is sent something gets our own clock
 * instead (link.c, the own clock).
 *
 * Who writes what: the program's thread writes a side's appl, ring
 * contents (playback), avail_min and running; the I/O thread writes hw,
 * ring contents (capture) and error.  The ring is replaced (hw_params) only
 * under `lock`, which the I/O thread holds while it handles a packet. */
#ifndef ALSABT_HFP_LINK_H
#define ALSABT_HFP_LINK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "msbc.h"
#include "options.h"
#include "volume.h"

enum { HFP_PLAYBACK, HFP_CAPTURE };

struct hfp_side {
	int open;                   /* under the registry's lock */
	int16_t *ring;              /* mono S16, size frames */
	unsigned size;
	_Atomic uint64_t hw;        /* frames the link took (playback) or gave (capture) */
	_Atomic uint64_t appl;      /* frames the program wrote (playback) or read (capture) */
	atomic_int running;
	atomic_uint avail_min;
	atomic_uint period;         /* frames; capture is shown a period at a time */
	int event_fd;               /* the program's poll descriptor */
};

/* What capture shows the program: whole periods, as a sound card does. A
 * packet is not a period (24 samples against 160), and a program that reads
 * a period and waits for avail_min again would otherwise fall behind by the
 * difference on every read, its playback starving. */
static inline uint64_t hfp_capture_hw(struct hfp_side *s)
{
	uint64_t hw = atomic_load(&s->hw);
	unsigned period = atomic_load(&s->period);

	return period ? hw - hw % period : hw;
}

/* The link's time: the I/O thread's alone. */
struct hfp_clock {
	int64_t start, last_rx;     /* CLOCK_MONOTONIC ns: connected, the last packet (0: none yet) */
	int own;                    /* none came at first: we send on our clock */
	size_t len;                 /* then: bytes a tick sends */
	unsigned samples;           /* the samples they carry */
	int64_t tick_ns, next;      /* how long they last; the next tick */
};

struct hfp_link {
	struct hfp_link *next;      /* the process's links, under the registry's lock */
	int users;
	char address[18], adapter[64], name[64];
	struct bluez *bz;
	struct hfp_profile *profile;
	int sco_fd;
	int codec;                  /* HFP_CODEC_CVSD or HFP_CODEC_MSBC */
	unsigned rate;
	struct hfp_side side[2];
	pthread_mutex_t lock;
	pthread_t thread;
	int wake_fd;
	atomic_int quit;
	atomic_int error;           /* -ENODEV once the link is lost */
	struct msbc_encoder enc;
	struct msbc_decoder dec;
	uint8_t out[4 * MSBC_FRAME_LEN + 1024];   /* encoded, not yet sent */
	size_t out_len;
	struct hfp_clock clock;
	atomic_uint dry_frames;     /* mSBC frames encoded with nothing of the ring since it ran dry */
	/* The headset's gains as the mixer (ctl_bt, any process) sees them:
	 * the device's state file, watched; the I/O thread's once it runs. */
	struct volume_store gains;
	int have_gains;
};

/* The link to the headset of opt (its DEV, or the connected headset),
 * made if this process has none, with `dir` taken: 0, or -errno logged
 * once (-EBUSY that direction is open already; what hfp_profile_open and
 * the SCO connection say otherwise). */
int hfp_link_acquire(const struct bt_options *opt, int dir, struct hfp_link **out);
/* Gives `dir` back; the last user's release tears the link down. */
void hfp_link_release(struct hfp_link *l, int dir);

/* The side's ring (hw_params): 0 or -ENOMEM. */
int hfp_link_set_buffer(struct hfp_link *l, int dir, unsigned frames);
void hfp_link_prepare(struct hfp_link *l, int dir);
void hfp_link_run(struct hfp_link *l, int dir, int running);
/* Playback's queue after the ring (encoded, not yet on the air), in frames. */
unsigned hfp_link_queued(struct hfp_link *l);
/* Has everything taken from the playback ring reached the headset's ears?
 * mSBC needs the frames after the last to flush the headset's decoder. */
int hfp_link_played_out(struct hfp_link *l);
/* Wakes the side's poll (an error or avail is a level). */
void hfp_link_notify(struct hfp_link *l, int dir);
void hfp_link_ack(struct hfp_link *l, int dir);

#endif
