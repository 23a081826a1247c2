/*
 * pcm.bluetooth with PROFILE=hfp: a headset's earpiece (playback) and
 * microphone (capture), the ALSA ioplug callbacks of both.  The headset is
 * connected and its voice carried by hfp/link.c; both PCMs of one program
 * share that link.  The PCM is what the link carries: mono S16 at 8 kHz
 * (CVSD) or 16 kHz (mSBC); pcm.bluetooth's plug converts the rest.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

#include "hw_limits.h"
#include "../common/alsa_pointer.h"
#include "../hfp/link.h"
#include "../hfp/slc.h"
#include "pcm_voice.h"

#define MIN_PERIOD_FRAMES 64
#define MIN_BUFFER_FRAMES 256
#define MAX_BUFFER_FRAMES (1 << 20)

struct bt_voice {
	snd_pcm_ioplug_t io;
	struct hfp_link *link;
	int dir;                        /* HFP_PLAYBACK or HFP_CAPTURE */
	snd_pcm_uframes_t boundary;     /* where alsa-lib's pointers wrap */
};

static struct hfp_side *side_of(struct bt_voice *v)
{
	return &v->link->side[v->dir];
}

static int link_error(struct bt_voice *v)
{
	return atomic_load(&v->link->error);
}

static int voice_start(snd_pcm_ioplug_t *io)
{
	struct bt_voice *v = io->private_data;

	if (link_error(v))
		return -ENODEV;
	hfp_link_run(v->link, v->dir, 1);
	return 0;
}

static int voice_stop(snd_pcm_ioplug_t *io)
{
	struct bt_voice *v = io->private_data;

	hfp_link_run(v->link, v->dir, 0);
	return 0;
}

/* A playback ring run dry while running is an underrun, as on a card;
 * a capture ring overfilled is an overrun. Draining runs dry by design. */
static int xrun(struct bt_voice *v, const snd_pcm_ioplug_t *io)
{
	struct hfp_side *s = side_of(v);
	uint64_t hw = atomic_load(&s->hw), appl = atomic_load(&s->appl);

	if (io->state != SND_PCM_STATE_RUNNING)
		return 0;
	return v->dir == HFP_PLAYBACK ? hw >= appl : hw - appl > s->size;
}

static snd_pcm_sframes_t voice_pointer(snd_pcm_ioplug_t *io)
{
	struct bt_voice *v = io->private_data;
	uint64_t hw = v->dir == HFP_CAPTURE ? hfp_capture_hw(side_of(v)) : atomic_load(&side_of(v)->hw);

	if (link_error(v)) {
		snd_pcm_ioplug_set_state(io, SND_PCM_STATE_DISCONNECTED);
		return -ENODEV;
	}

	if (xrun(v, io))
		return -EPIPE;
	/* ioplug ends a drain once the ring is empty: one frame is kept
	 * pending until the last samples have reached the headset. */
	if (io->state == SND_PCM_STATE_DRAINING && hw && hw == atomic_load(&side_of(v)->appl) &&
	    !hfp_link_played_out(v->link))
		hw--;
	return hw % io->buffer_size;
}

/* n frames between the program's areas (at offset) and our ring (at `at`),
 * into the ring for playback, out of it for capture. */
static void copy_frames(struct bt_voice *v, const snd_pcm_channel_area_t *areas,
			snd_pcm_uframes_t offset, uint64_t at, snd_pcm_uframes_t n)
{
	struct hfp_side *s = side_of(v);
	const snd_pcm_channel_area_t ring = { .addr = s->ring, .first = 0, .step = 16 };
	int in = v->dir == HFP_PLAYBACK;
	unsigned pos = at % s->size;
	snd_pcm_uframes_t first = s->size - pos < n ? s->size - pos : n;

	snd_pcm_areas_copy(in ? &ring : areas, in ? pos : offset, in ? areas : &ring,
			   in ? offset : pos, 1, first, SND_PCM_FORMAT_S16);
	if (n > first)
		snd_pcm_areas_copy(in ? &ring : areas, in ? 0 : offset + first, in ? areas : &ring,
				   in ? offset + first : 0, 1, n - first, SND_PCM_FORMAT_S16);
}

/* Playback: the frames go where alsa-lib's pointer says (a rewind moves
 * it back, and they are written again). */
static snd_pcm_sframes_t write_frames(struct bt_voice *v, const snd_pcm_ioplug_t *io,
				      const snd_pcm_channel_area_t *areas,
				      snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	struct hfp_side *s = side_of(v);
	uint64_t at = alsa_pointer_unwrap(atomic_load(&s->appl), io->appl_ptr, v->boundary);

	copy_frames(v, areas, offset, at, size);
	atomic_store(&s->appl, at + size);
	return size;
}

/* Capture: what alsa-lib has already (alsa_capture_delivered) is not copied again. */
static snd_pcm_sframes_t read_frames(struct bt_voice *v, const snd_pcm_ioplug_t *io,
				     const snd_pcm_channel_area_t *areas,
				     snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	struct hfp_side *s = side_of(v);
	uint64_t appl = atomic_load(&s->appl);
	uint64_t start = alsa_pointer_unwrap(appl, io->appl_ptr, v->boundary);
	snd_pcm_uframes_t skip = alsa_capture_delivered(appl, start, size,
						       io->access == SND_PCM_ACCESS_MMAP_INTERLEAVED);

	copy_frames(v, areas, offset + skip, start + skip, size - skip);
	if (start + size > appl)
		atomic_store(&s->appl, start + size);
	return size;
}

static snd_pcm_sframes_t voice_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
					snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	struct bt_voice *v = io->private_data;

	if (link_error(v))
		return -ENODEV;
	return v->dir == HFP_PLAYBACK ? write_frames(v, io, areas, offset, size)
				      : read_frames(v, io, areas, offset, size);
}

static int voice_delay(snd_pcm_ioplug_t *io, snd_pcm_sframes_t *delayp)
{
	struct bt_voice *v = io->private_data;
	struct hfp_side *s = side_of(v);
	uint64_t hw = atomic_load(&s->hw), appl = atomic_load(&s->appl);

	if (link_error(v))
		return -ENODEV;
	if (v->dir == HFP_PLAYBACK)
		*delayp = (snd_pcm_sframes_t)(appl - hw) + hfp_link_queued(v->link);
	else
		*delayp = (snd_pcm_sframes_t)(hw - appl);
	return 0;
}

static int voice_prepare(snd_pcm_ioplug_t *io)
{
	struct bt_voice *v = io->private_data;

	if (link_error(v))
		return -ENODEV;
	hfp_link_prepare(v->link, v->dir);
	return 0;
}

static snd_pcm_uframes_t avail_of(struct bt_voice *v)
{
	struct hfp_side *s = side_of(v);
	uint64_t appl = atomic_load(&s->appl);

	return v->dir == HFP_PLAYBACK ? s->size - (appl - atomic_load(&s->hw))
				      : hfp_capture_hw(s) - appl;
}

static int voice_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned nfds,
			      unsigned short *revents)
{
	struct bt_voice *v = io->private_data;

	(void)pfd;
	(void)nfds;
	hfp_link_ack(v->link, v->dir);
	if (link_error(v) || xrun(v, io)) {
		hfp_link_notify(v->link, v->dir);   /* an error is a level */
		if (link_error(v))
			snd_pcm_ioplug_set_state(io, SND_PCM_STATE_DISCONNECTED);
		*revents = POLLERR;
		return 0;
	}
	*revents = 0;
	if (avail_of(v) >= atomic_load(&side_of(v)->avail_min)) {
		hfp_link_notify(v->link, v->dir);   /* level-triggered, like a card */
		*revents = v->dir == HFP_PLAYBACK ? POLLOUT : POLLIN;
	}
	return 0;
}

static int voice_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params)
{
	struct bt_voice *v = io->private_data;

	(void)params;
	atomic_store(&side_of(v)->avail_min, io->period_size);
	atomic_store(&side_of(v)->period, io->period_size);
	return hfp_link_set_buffer(v->link, v->dir, io->buffer_size);
}

static int voice_sw_params(snd_pcm_ioplug_t *io, snd_pcm_sw_params_t *params)
{
	struct bt_voice *v = io->private_data;
	snd_pcm_uframes_t avail_min, boundary;

	(void)io;
	if (snd_pcm_sw_params_get_avail_min(params, &avail_min) == 0)
		atomic_store(&side_of(v)->avail_min, avail_min ? avail_min : 1);
	if (snd_pcm_sw_params_get_boundary(params, &boundary) == 0)
		v->boundary = boundary;
	return 0;
}

static int voice_close(snd_pcm_ioplug_t *io)
{
	struct bt_voice *v = io->private_data;

	hfp_link_release(v->link, v->dir);
	free(v);
	return 0;
}

static void voice_dump(snd_pcm_ioplug_t *io, snd_output_t *out)
{
	struct bt_voice *v = io->private_data;

	snd_output_printf(out, "Bluetooth HFP %s %s (%s) on %s, %s %u Hz mono\n",
			  v->dir == HFP_PLAYBACK ? "to" : "from", v->link->name, v->link->address,
			  v->link->adapter, v->link->codec == HFP_CODEC_MSBC ? "mSBC" : "CVSD",
			  v->link->rate);
	if (io->state != SND_PCM_STATE_OPEN) {
		snd_output_printf(out, "Its setup is:\n");
		snd_pcm_dump_setup(io->pcm, out);
	}
}

static const snd_pcm_ioplug_callback_t voice_callbacks = {
	.start = voice_start,
	.stop = voice_stop,
	.pointer = voice_pointer,
	.transfer = voice_transfer,
	.delay = voice_delay,
	.prepare = voice_prepare,
	.poll_revents = voice_poll_revents,
	.hw_params = voice_hw_params,
	.sw_params = voice_sw_params,
	.close = voice_close,
	.dump = voice_dump,
};

static int set_constraints(struct bt_voice *v)
{
	unsigned rate = v->link->rate;
	struct hw_limits l = {
		.channels = 1, .sample_bits = 16, .rates = &rate, .n_rates = 1,
		.min_period_frames = MIN_PERIOD_FRAMES, .min_buffer_frames = MIN_BUFFER_FRAMES,
		.max_buffer_bytes = MAX_BUFFER_FRAMES * 2,
	};

	return hw_limits_set(&v->io, &l);
}

int bt_voice_open(snd_pcm_t **pcmp, const char *name, const struct bt_options *opt,
		  snd_pcm_stream_t stream, int mode)
{
	struct bt_voice *v = calloc(1, sizeof(*v));
	int err;

	if (!v)
		return -ENOMEM;
	v->dir = stream == SND_PCM_STREAM_PLAYBACK ? HFP_PLAYBACK : HFP_CAPTURE;
	if ((err = hfp_link_acquire(opt, v->dir, &v->link)) < 0) {
		free(v);
		return err;
	}
	v->io.version = SND_PCM_IOPLUG_VERSION;
	v->io.name = "Bluetooth HFP";
	v->io.callback = &voice_callbacks;
	v->io.private_data = v;
	v->io.poll_fd = side_of(v)->event_fd;
	v->io.poll_events = POLLIN;          /* the eventfd; revents say which */
	v->io.mmap_rw = 0;
	atomic_store(&side_of(v)->avail_min, 1);
	if ((err = snd_pcm_ioplug_create(&v->io, name, stream, mode)) < 0) {
		hfp_link_release(v->link, v->dir);
		free(v);
		return err;
	}
	v->io.nonblock = !!(mode & SND_PCM_NONBLOCK);
	if ((err = set_constraints(v)) < 0) {
		snd_pcm_ioplug_delete(&v->io);   /* calls voice_close */
		return err;
	}
	*pcmp = v->io.pcm;
	return 0;
}
