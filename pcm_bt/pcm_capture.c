/*
 * pcm.bluetooth for capture: the ALSA ioplug callbacks of the receive side.
 * Receiving happens in a2dp/capture.c; the phone is found and connected by
 * a2dp/endpoint.c (as an A2DP Sink).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

#include "hw_limits.h"
#include "../bluez/bluez.h"
#include "../a2dp/capture.h"
#include "../codecs/codec.h"
#include "../bluez/dbus.h"
#include "../a2dp/endpoint.h"
#include "../common/alsa_pointer.h"
#include "pcm_capture.h"

#define MIN_PERIOD_FRAMES 128
#define MIN_BUFFER_FRAMES 1024
#define MAX_BUFFER_BYTES (4 * 1024 * 1024)

struct bt_capture {
	snd_pcm_ioplug_t io;
	struct bt_options opt;
	struct bluez *bz;
	struct a2dp_endpoint *ep;
	struct a2dp_capture *cap;
	const struct a2dp_codec *codec;
	unsigned avail_min;
	snd_pcm_uframes_t boundary;    /* where alsa-lib's pointers wrap */
	struct volume_store volume;    /* the phone's volume and mute, shared with the mixer */
	int have_volume_store;
};

static int error_of(struct bt_capture *pcm)
{
	return a2dp_capture_error(pcm->cap);
}

static int cap_start(snd_pcm_ioplug_t *io)
{
	struct bt_capture *pcm = io->private_data;

	if (error_of(pcm) == -ENODEV)
		return -ENODEV;
	a2dp_capture_start(pcm->cap);
	return 0;
}

static int cap_stop(snd_pcm_ioplug_t *io)
{
	struct bt_capture *pcm = io->private_data;

	a2dp_capture_stop(pcm->cap);
	return 0;
}

/* snd_pcm_forward moves alsa-lib's pointer past ours: those frames are
 * skipped, not still to be read (the I/O thread would call it an overrun). */
static void skip_forwarded(struct bt_capture *pcm, const snd_pcm_ioplug_t *io)
{
	uint64_t appl = a2dp_capture_appl(pcm->cap);
	uint64_t theirs = alsa_pointer_unwrap(appl, io->appl_ptr, pcm->boundary);

	if (theirs > appl)
		a2dp_capture_consume(pcm->cap, (unsigned)(theirs - appl));
}

static snd_pcm_sframes_t cap_pointer(snd_pcm_ioplug_t *io)
{
	struct bt_capture *pcm = io->private_data;
	int err = error_of(pcm);

	if (err == -EPIPE)
		return -EPIPE;
	if (err == -ENODEV) {
		snd_pcm_ioplug_set_state(io, SND_PCM_STATE_DISCONNECTED);
		return -ENODEV;
	}
	skip_forwarded(pcm, io);
	return a2dp_capture_hw(pcm->cap) % io->buffer_size;
}

static snd_pcm_sframes_t cap_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
				      snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	struct bt_capture *pcm = io->private_data;
	unsigned ch = io->channels, bits = a2dp_capture_sample_bits(pcm->cap);
	uint64_t appl = a2dp_capture_appl(pcm->cap);
	uint64_t start = alsa_pointer_unwrap(appl, io->appl_ptr, pcm->boundary);
	int mmap = io->access == SND_PCM_ACCESS_MMAP_INTERLEAVED ||
		   io->access == SND_PCM_ACCESS_MMAP_NONINTERLEAVED;
	snd_pcm_uframes_t skip = alsa_capture_delivered(appl, start, size, mmap);
	unsigned pos = (start + skip) % io->buffer_size;
	snd_pcm_uframes_t n = size - skip, first = io->buffer_size - pos;
	snd_pcm_channel_area_t ring[2];

	if (error_of(pcm) == -ENODEV)
		return -ENODEV;
	for (unsigned c = 0; c < ch && c < 2; c++) {
		ring[c].addr = a2dp_capture_ring(pcm->cap);
		ring[c].first = c * bits;
		ring[c].step = ch * bits;
	}
	if (first > n)
		first = n;
	snd_pcm_areas_copy(areas, offset + skip, ring, pos, ch, first, io->format);
	if (n > first)
		snd_pcm_areas_copy(areas, offset + skip + first, ring, 0, ch, n - first, io->format);
	/* (Ours behind: frames alsa-lib skipped, snd_pcm_forward.) */
	if (start + size > appl)
		a2dp_capture_consume(pcm->cap, start + size - appl);
	return size;
}

/* Captured but not yet read, plus what waits in the jitter buffer. */
static int cap_delay(snd_pcm_ioplug_t *io, snd_pcm_sframes_t *delayp)
{
	struct bt_capture *pcm = io->private_data;

	if (error_of(pcm) == -ENODEV)
		return -ENODEV;
	*delayp = (snd_pcm_sframes_t)(a2dp_capture_hw(pcm->cap) - a2dp_capture_appl(pcm->cap)) +
		  a2dp_capture_buffered(pcm->cap);
	return 0;
}

static int cap_prepare(snd_pcm_ioplug_t *io)
{
	struct bt_capture *pcm = io->private_data;

	if (error_of(pcm) == -ENODEV)
		return -ENODEV;
	a2dp_capture_prepare(pcm->cap);
	return 0;
}

static int cap_pause(snd_pcm_ioplug_t *io, int enable)
{
	struct bt_capture *pcm = io->private_data;

	a2dp_capture_pause(pcm->cap, enable);
	return 0;
}

static int cap_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned nfds,
			    unsigned short *revents)
{
	struct bt_capture *pcm = io->private_data;
	int err;

	(void)pfd;
	(void)nfds;
	a2dp_capture_ack_event(pcm->cap);
	if ((err = error_of(pcm))) {
		a2dp_capture_notify(pcm->cap);   /* an error is a level */
		snd_pcm_ioplug_set_state(io, err == -ENODEV ? SND_PCM_STATE_DISCONNECTED
							    : SND_PCM_STATE_XRUN);
		*revents = POLLERR;
		return 0;
	}
	*revents = 0;
	if (a2dp_capture_hw(pcm->cap) - a2dp_capture_appl(pcm->cap) >= pcm->avail_min) {
		a2dp_capture_notify(pcm->cap);   /* level-triggered, like a real card */
		*revents = POLLIN;
	}
	return 0;
}

static int cap_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params)
{
	struct bt_capture *pcm = io->private_data;

	(void)params;
	pcm->avail_min = io->period_size;
	a2dp_capture_set_avail_min(pcm->cap, pcm->avail_min);
	return a2dp_capture_set_buffer(pcm->cap, io->buffer_size);
}

static int cap_sw_params(snd_pcm_ioplug_t *io, snd_pcm_sw_params_t *params)
{
	struct bt_capture *pcm = io->private_data;
	snd_pcm_uframes_t avail_min, boundary;

	(void)io;
	if (snd_pcm_sw_params_get_avail_min(params, &avail_min) == 0) {
		pcm->avail_min = avail_min ? avail_min : 1;
		a2dp_capture_set_avail_min(pcm->cap, pcm->avail_min);
	}
	if (snd_pcm_sw_params_get_boundary(params, &boundary) == 0)
		pcm->boundary = boundary;
	return 0;
}

static void cap_free(struct bt_capture *pcm)
{
	a2dp_capture_free(pcm->cap);
	a2dp_endpoint_close(pcm->ep);
	bluez_close(pcm->bz);
	if (pcm->have_volume_store)
		volume_store_close(&pcm->volume);
	free(pcm);
}

static int cap_close(snd_pcm_ioplug_t *io)
{
	cap_free(io->private_data);
	return 0;
}

static void cap_dump(snd_pcm_ioplug_t *io, snd_output_t *out)
{
	struct bt_capture *pcm = io->private_data;

	snd_output_printf(out, "Bluetooth A2DP from %s (%s) on %s, %s %u Hz %u ch, jitter buffer %u ms\n",
			  pcm->ep->dev.address, pcm->ep->dev.name, pcm->ep->dev.adapter,
			  pcm->codec->title, a2dp_capture_rate(pcm->cap),
			  a2dp_capture_channels(pcm->cap), pcm->opt.jitter_ms);
	if (io->state != SND_PCM_STATE_OPEN) {
		snd_output_printf(out, "Its setup is:\n");
		snd_pcm_dump_setup(io->pcm, out);
	}
}

static const snd_pcm_ioplug_callback_t cap_callbacks = {
	.start = cap_start,
	.stop = cap_stop,
	.pointer = cap_pointer,
	.transfer = cap_transfer,
	.delay = cap_delay,
	.prepare = cap_prepare,
	.pause = cap_pause,
	.poll_revents = cap_poll_revents,
	.hw_params = cap_hw_params,
	.sw_params = cap_sw_params,
	.close = cap_close,
	.dump = cap_dump,
};

/* The phone chose the configuration: its rate and channels are all there is. */
static int set_constraints(struct bt_capture *pcm)
{
	unsigned rate = a2dp_capture_rate(pcm->cap);
	struct hw_limits l = {
		.channels = a2dp_capture_channels(pcm->cap),
		.sample_bits = a2dp_capture_sample_bits(pcm->cap),
		.rates = &rate, .n_rates = 1,
		.min_period_frames = MIN_PERIOD_FRAMES, .min_buffer_frames = MIN_BUFFER_FRAMES,
		.max_buffer_bytes = MAX_BUFFER_BYTES,
	};

	return hw_limits_set(&pcm->io, &l);
}

/* CODEC= (or every codec we have); the endpoint keeps those that decode. */
static int connect_phone(struct bt_capture *pcm)
{
	struct a2dp_codec_prefs prefs = { .rate = 44100 };
	struct a2dp_capture_opts copts = { .jitter_ms = pcm->opt.jitter_ms,
					   .wait_on_pause = pcm->opt.wait_on_pause };
	int64_t deadline = dbusx_now_ms() + pcm->opt.connect_timeout_ms;
	const struct a2dp_codec *codecs[A2DP_MAX_CODECS];
	struct bluez_device dev;
	int err, n;

	if ((err = bluez_open(&pcm->bz)) < 0 ||
	    (err = bluez_find_device_role(pcm->bz, pcm->opt.adapter,
					  pcm->opt.device[0] ? pcm->opt.device : NULL, 1,
					  deadline, &dev)) < 0)
		return err;
	if ((n = a2dp_codec_parse_list(pcm->opt.codec, codecs, A2DP_MAX_CODECS, NULL)) < 0)
		return n;
	if ((err = a2dp_endpoint_open_sink(pcm->bz, &dev, codecs, n, &prefs, deadline, &pcm->ep)) < 0)
		return err;
	pcm->codec = pcm->ep->codec;
	/* Without a place for the state (no HOME): no gain, the phone's volume unused. */
	pcm->have_volume_store = volume_store_open(&pcm->volume, dev.address, 1) == 0;
	if (pcm->have_volume_store)
		volume_store_note_codec(&pcm->volume, pcm->codec->name, "");
	return a2dp_capture_new(&pcm->cap, pcm->ep, pcm->codec, &copts,
				pcm->have_volume_store ? &pcm->volume : NULL);
}

int bt_capture_open(snd_pcm_t **pcmp, const char *name, const struct bt_options *opt, int mode)
{
	struct bt_capture *pcm = calloc(1, sizeof(*pcm));
	int err;

	if (!pcm)
		return -ENOMEM;
	pcm->opt = *opt;
	if ((err = connect_phone(pcm)) < 0) {
		cap_free(pcm);
		return err;
	}
	pcm->io.version = SND_PCM_IOPLUG_VERSION;
	pcm->io.name = "Bluetooth A2DP capture";
	pcm->io.callback = &cap_callbacks;
	pcm->io.private_data = pcm;
	pcm->io.poll_fd = a2dp_capture_event_fd(pcm->cap);
	pcm->io.poll_events = POLLIN;
	pcm->io.mmap_rw = 0;
	pcm->avail_min = 1;
	if ((err = snd_pcm_ioplug_create(&pcm->io, name, SND_PCM_STREAM_CAPTURE, mode)) < 0) {
		cap_free(pcm);
		return err;
	}
	pcm->io.nonblock = !!(mode & SND_PCM_NONBLOCK);
	if ((err = set_constraints(pcm)) < 0) {
		snd_pcm_ioplug_delete(&pcm->io);   /* calls cap_close */
		return err;
	}
	*pcmp = pcm->io.pcm;
	return 0;
}
