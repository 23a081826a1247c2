/*
 * pcm.bluetooth: the ALSA ioplug callbacks of playback, and the plugin's
 * entry point. Playback happens in a2dp/stream.c; the speaker is found and
 * connected by a2dp/speaker.c. Playing through the speaker's mixer with
 * other programs (MIX=1) is pcm_mix.c. Capture (a phone plays to us) is
 * pcm_capture.c; a headset's voice (PROFILE=hfp), pcm_voice.c.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

#include "hw_limits.h"
#include "../a2dp/speaker.h"
#include "pcm_capture.h"
#include "pcm_mix.h"
#include "pcm_voice.h"

#define MIN_PERIOD_FRAMES 128
#define MAX_BUFFER_BYTES (4 * 1024 * 1024)

struct bt_pcm {
	snd_pcm_ioplug_t io;
	struct bt_options opt;
	struct a2dp_speaker sp;
	struct a2dp_stream *stream;    /* sp.stream */
	unsigned avail_min;
};

static int bt_start(snd_pcm_ioplug_t *io)
{
	struct bt_pcm *pcm = io->private_data;

	if (a2dp_stream_error(pcm->stream) == -ENODEV)
		return -ENODEV;
	a2dp_stream_start(pcm->stream);
	return 0;
}

static int bt_stop(snd_pcm_ioplug_t *io)
{
	struct bt_pcm *pcm = io->private_data;

	a2dp_stream_stop(pcm->stream);
	return 0;
}

static snd_pcm_sframes_t bt_pointer(snd_pcm_ioplug_t *io)
{
	struct bt_pcm *pcm = io->private_data;
	uint64_t hw = a2dp_stream_hw(pcm->stream);
	int err = a2dp_stream_error(pcm->stream);

	if (err == -EPIPE)
		return -EPIPE;
	if (err == -ENODEV)
		snd_pcm_ioplug_set_state(io, SND_PCM_STATE_DISCONNECTED);
	/* ioplug stops a draining stream once the ring is empty; keep one frame
	 * pending until the audio has really been played. */
	if (hw && hw == a2dp_stream_appl(pcm->stream) && a2dp_stream_draining(pcm->stream))
		hw--;
	return hw % io->buffer_size;
}

static snd_pcm_sframes_t bt_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
				     snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	struct bt_pcm *pcm = io->private_data;
	unsigned ch = io->channels, pos = a2dp_stream_appl(pcm->stream) % io->buffer_size;
	snd_pcm_channel_area_t ring[2];
	snd_pcm_uframes_t first = io->buffer_size - pos;

	if (a2dp_stream_error(pcm->stream) == -ENODEV)
		return -ENODEV;
	unsigned bits = a2dp_stream_sample_bits(pcm->stream);

	for (unsigned c = 0; c < ch && c < 2; c++) {
		ring[c].addr = a2dp_stream_ring(pcm->stream);
		ring[c].first = c * bits;
		ring[c].step = ch * bits;
	}
	if (first > size)
		first = size;
	snd_pcm_areas_copy(ring, pos, areas, offset, ch, first, io->format);
	if (size > first)
		snd_pcm_areas_copy(ring, 0, areas, offset + first, ch, size - first, io->format);
	a2dp_stream_commit(pcm->stream, size);
	return size;
}

static int bt_delay(snd_pcm_ioplug_t *io, snd_pcm_sframes_t *delayp)
{
	struct bt_pcm *pcm = io->private_data;

	if (a2dp_stream_error(pcm->stream) == -ENODEV)
		return -ENODEV;
	*delayp = (snd_pcm_sframes_t)a2dp_stream_delay(pcm->stream);
	return 0;
}

static int bt_prepare(snd_pcm_ioplug_t *io)
{
	struct bt_pcm *pcm = io->private_data;

	if (a2dp_stream_error(pcm->stream) == -ENODEV)
		return -ENODEV;
	a2dp_stream_prepare(pcm->stream);
	return 0;
}

static int bt_drain(snd_pcm_ioplug_t *io)
{
	struct bt_pcm *pcm = io->private_data;

	return a2dp_stream_drain(pcm->stream, !io->nonblock);
}

static int bt_pause(snd_pcm_ioplug_t *io, int enable)
{
	struct bt_pcm *pcm = io->private_data;

	a2dp_stream_pause(pcm->stream, enable);
	return 0;
}

static int bt_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned nfds,
			   unsigned short *revents)
{
	struct bt_pcm *pcm = io->private_data;
	snd_pcm_uframes_t avail;
	int err;

	(void)pfd;
	(void)nfds;
	if (!pcm->stream) {         /* a reconfiguration failed: no stream to poll */
		*revents = POLLERR;
		return 0;
	}
	a2dp_stream_ack_event(pcm->stream);
	if ((err = a2dp_stream_error(pcm->stream))) {
		a2dp_stream_notify(pcm->stream);   /* stays readable: an error is a level */
		/* alsa-lib turns POLLERR in a RUNNING state into -EIO: say what it is. */
		snd_pcm_ioplug_set_state(io, err == -ENODEV ? SND_PCM_STATE_DISCONNECTED
							    : SND_PCM_STATE_XRUN);
		*revents = POLLERR;
		return 0;
	}
	avail = io->buffer_size - (a2dp_stream_appl(pcm->stream) - a2dp_stream_hw(pcm->stream));
	*revents = 0;
	if (io->state == SND_PCM_STATE_DRAINING ? a2dp_stream_drained(pcm->stream)
						: avail >= pcm->avail_min) {
		a2dp_stream_notify(pcm->stream);   /* level-triggered, like a real card */
		*revents = POLLOUT;
	}
	return 0;
}

static int bt_reconnect_at(struct bt_pcm *pcm, unsigned rate)
{
	int err, err2;

	pcm->io.poll_fd = -1;       /* not the freed stream's: poll() skips -1 */
	err = a2dp_speaker_set_rate(&pcm->sp, rate);
	pcm->stream = pcm->sp.stream;
	if (!pcm->stream)
		return err;         /* no stream: hw_params again tries again */
	/* The new stream has a new event descriptor. */
	pcm->io.poll_fd = a2dp_stream_event_fd(pcm->stream);
	err2 = snd_pcm_ioplug_reinit_status(&pcm->io);
	return err < 0 ? err : err2;
}

static int bt_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params)
{
	struct bt_pcm *pcm = io->private_data;
	int err;

	(void)params;
	/* The stream was negotiated at open; another rate the sink offers means
	 * negotiating again, so that no resampler sits in the path (and so does
	 * a stream lost when that failed before). */
	if ((!pcm->stream || io->rate != a2dp_stream_rate(pcm->stream)) &&
	    (err = bt_reconnect_at(pcm, io->rate)) < 0)
		return err;
	pcm->avail_min = io->period_size;
	return a2dp_stream_set_buffer(pcm->stream, io->buffer_size);
}

static int bt_sw_params(snd_pcm_ioplug_t *io, snd_pcm_sw_params_t *params)
{
	struct bt_pcm *pcm = io->private_data;
	snd_pcm_uframes_t avail_min;

	(void)io;
	if (snd_pcm_sw_params_get_avail_min(params, &avail_min) == 0) {
		pcm->avail_min = avail_min ? avail_min : 1;
		a2dp_stream_set_avail_min(pcm->stream, pcm->avail_min);
	}
	return 0;
}

static void bt_free(struct bt_pcm *pcm)
{
	a2dp_speaker_close(&pcm->sp);
	free(pcm);
}

static int bt_close(snd_pcm_ioplug_t *io)
{
	bt_free(io->private_data);
	return 0;
}

static void bt_dump(snd_pcm_ioplug_t *io, snd_output_t *out)
{
	struct bt_pcm *pcm = io->private_data;

	snd_output_printf(out, "Bluetooth A2DP to %s (%s) on %s, %s",
			  pcm->sp.ep->dev.address, pcm->sp.ep->dev.name, pcm->sp.ep->dev.adapter,
			  pcm->sp.codec->title);
	if (pcm->stream)            /* none after a failed reconfiguration */
		snd_output_printf(out, " %u Hz %u ch", a2dp_stream_rate(pcm->stream),
				  a2dp_stream_channels(pcm->stream));
	snd_output_printf(out, "\n");
	if (io->state != SND_PCM_STATE_OPEN) {        /* aplay -v: the buffer and period */
		snd_output_printf(out, "Its setup is:\n");
		snd_pcm_dump_setup(io->pcm, out);
	}
}

static const snd_pcm_ioplug_callback_t bt_callbacks = {
	.start = bt_start,
	.stop = bt_stop,
	.pointer = bt_pointer,
	.transfer = bt_transfer,
	.delay = bt_delay,
	.prepare = bt_prepare,
	.drain = bt_drain,
	.pause = bt_pause,
	.poll_revents = bt_poll_revents,
	.hw_params = bt_hw_params,
	.sw_params = bt_sw_params,
	.close = bt_close,
	.dump = bt_dump,
};

static int bt_set_constraints(struct bt_pcm *pcm)
{
	unsigned rates[8];
	int n = a2dp_speaker_rates(&pcm->sp, rates, 8);
	struct hw_limits l = {
		.channels = a2dp_stream_channels(pcm->stream),
		.sample_bits = a2dp_stream_sample_bits(pcm->stream),
		.rates = rates, .n_rates = n > 0 ? (unsigned)n : 0,
		.min_period_frames = MIN_PERIOD_FRAMES,
		.min_buffer_frames = a2dp_stream_min_buffer(pcm->stream),
		.max_buffer_bytes = MAX_BUFFER_BYTES,
	};

	return hw_limits_set(&pcm->io, &l);
}

SND_PCM_PLUGIN_DEFINE_FUNC(bluetooth)
{
	struct bt_pcm *pcm;
	int err;

	(void)root;
	if (!(pcm = calloc(1, sizeof(*pcm))))
		return -ENOMEM;
	if ((err = bt_options_parse(conf, "bluetooth", &pcm->opt)) < 0)
		goto fail;
	if (pcm->opt.profile == BT_PROFILE_HFP || stream == SND_PCM_STREAM_CAPTURE) {
		err = pcm->opt.profile == BT_PROFILE_HFP
			? bt_voice_open(pcmp, name, &pcm->opt, stream, mode)
			: bt_capture_open(pcmp, name, &pcm->opt, mode);
		free(pcm);
		return err;
	}
	/* Where no mixer can run, play alone (bt_mix_open said why). */
	if (pcm->opt.mix && (err = bt_mix_open(pcmp, name, &pcm->opt, mode)) != -ENOEXEC) {
		free(pcm);
		return err;
	}
	err = a2dp_speaker_open(&pcm->sp, &pcm->opt);
	pcm->stream = pcm->sp.stream;
	if (err < 0)
		goto fail;
	pcm->io.version = SND_PCM_IOPLUG_VERSION;
	pcm->io.name = "Bluetooth A2DP";
	pcm->io.callback = &bt_callbacks;
	pcm->io.private_data = pcm;
	pcm->io.poll_fd = a2dp_stream_event_fd(pcm->stream);
	pcm->io.poll_events = POLLIN;
	pcm->io.mmap_rw = 0;
	pcm->avail_min = 1;
	if ((err = snd_pcm_ioplug_create(&pcm->io, name, stream, mode)) < 0)
		goto fail;
	/* ioplug learns of non-blocking mode only from snd_pcm_nonblock(), not
	 * from the open mode: without this, drain would block. */
	pcm->io.nonblock = !!(mode & SND_PCM_NONBLOCK);
	if ((err = bt_set_constraints(pcm)) < 0) {
		snd_pcm_ioplug_delete(&pcm->io);   /* calls bt_close */
		return err;
	}
	*pcmp = pcm->io.pcm;
	return 0;
fail:
	bt_free(pcm);
	return err;
}

SND_PCM_PLUGIN_SYMBOL(bluetooth);
