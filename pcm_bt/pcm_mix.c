/*
 * pcm.bluetooth with MIX=1: one program's ioplug, playing through the
 * speaker's mixer (mix/mixer.h) with the others. The program writes into its
 * own ring, shared with the mixer; start, stop, pause, drain and prepare are
 * requests the mixer answers; the pointer, the delay and poll come from the
 * ring's header, with no round trip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

#include "hw_limits.h"
#include "../bluez/bluez.h"
#include "../bluez/dbus.h"
#include "../common/io_thread.h"
#include "../mix/mix_msg.h"
#include "../mix/mix_proto.h"
#include "../mix/mix_spawn.h"
#include "pcm_mix.h"

#define MIN_PERIOD_FRAMES 128
#define MAX_BUFFER_BYTES (4 * 1024 * 1024)
#define REPLY_TIMEOUT_MS 5000

struct mix_pcm {
	snd_pcm_ioplug_t io;
	struct bt_options opt;
	int fd;                     /* the connection to the mixer */
	int event_fd;               /* the mixer wakes our poll */
	struct mix_ring *ring;      /* NULL before hw_params */
	uint8_t *data;
	size_t map_size;
	struct mix_msg hello;       /* the mixer's answer: rates, format, the speaker */
	unsigned avail_min;
	uint64_t shown;             /* the pointer last shown: it never goes back */
	int draining;
	int told_error;             /* the reason of -ENODEV, logged once */
	char said[MIX_TEXT];        /* the last line said: the same reason may come
				     * as a notice and with the error */
};

/* --- requests -------------------------------------------------------------- */

/* Said once, not again right after: the mixer sends the reason of a lost
 * speaker as a notice and in the ring, and either may reach us first. */
static void say_once(struct mix_pcm *pcm, const char *text)
{
	if (!strcmp(pcm->said, text))
		return;
	snprintf(pcm->said, sizeof(pcm->said), "%s", text);
	SNDERR("%s", text);
}

/* A line the mixer logged for us: the speaker's code, in its process. */
static void say_notice(struct mix_pcm *pcm, struct mix_msg *m)
{
	if (m->type != MIX_NOTICE)
		return;
	m->text[MIX_TEXT - 1] = 0;
	say_once(pcm, m->text);
}

/* Notices that came between requests (the connection polled readable). */
static void read_notices(struct mix_pcm *pcm)
{
	struct mix_msg m;

	while (recv(pcm->fd, &m, sizeof(m), MSG_DONTWAIT) == sizeof(m))
		say_notice(pcm, &m);
}

/* The mixer's answer (its notices said on the way), or -ECONNRESET if it is gone. */
static int wait_reply(struct mix_pcm *pcm, uint32_t type, int timeout_ms, struct mix_msg *r)
{
	int fd = pcm->fd;
	int64_t deadline = dbusx_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - dbusx_now_ms();
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
		n = recv(fd, r, sizeof(*r), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return -ECONNRESET;
		if (n == sizeof(*r) && r->type == (MIX_REPLY | type))
			return 0;
		if (n == sizeof(*r))
			say_notice(pcm, r);
	}
}

static int request(struct mix_pcm *pcm, struct mix_msg *q, const int *fds, int nfds)
{
	struct mix_msg r;
	int err;

	q->version = MIX_VERSION;
	if ((err = mix_send(pcm->fd, q, sizeof(*q), fds, nfds, 0)) < 0 ||
	    (err = wait_reply(pcm, q->type, REPLY_TIMEOUT_MS, &r)) < 0) {
		SNDERR("%s: the mixer playing to it has gone (%s)", pcm->opt.device, strerror(-err));
		return -ENODEV;
	}
	if (r.value < 0 && r.text[0])
		SNDERR("%s", r.text);
	return r.value;
}

static int simple_request(struct mix_pcm *pcm, uint32_t type, int value)
{
	struct mix_msg q = { .type = type, .value = value };

	return request(pcm, &q, NULL, 0);
}

/* --- the ring -------------------------------------------------------------- */

static unsigned frame_bytes(const struct mix_pcm *pcm)
{
	return pcm->hello.channels * pcm->hello.sample_bits / 8;
}

static void unmap_ring(struct mix_pcm *pcm)
{
	if (pcm->ring)
		munmap(pcm->ring, pcm->map_size);
	pcm->ring = NULL;
	pcm->data = NULL;
}

/* A sealed memfd: the mixer maps it knowing it cannot shrink under it. */
static int make_ring(struct mix_pcm *pcm, unsigned buffer, int *memfd)
{
	size_t size = MIX_RING_DATA + (size_t)buffer * frame_bytes(pcm);
	struct mix_ring *r;
	int fd = memfd_create("alsa-bt ring", MFD_CLOEXEC | MFD_ALLOW_SEALING), err;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
	    (r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
		err = -errno;
		close(fd);
		return err;
	}
	r->magic = MIX_RING_MAGIC;
	r->version = MIX_VERSION;
	r->buffer = buffer;
	r->frame_bytes = frame_bytes(pcm);
	atomic_store(&r->avail_min, pcm->avail_min);
	unmap_ring(pcm);
	pcm->ring = r;
	pcm->data = (uint8_t *)r + MIX_RING_DATA;
	pcm->map_size = size;
	*memfd = fd;
	return 0;
}

static int ring_error(struct mix_pcm *pcm)
{
	int err = pcm->ring ? atomic_load(&pcm->ring->error) : 0;

	if (err == -ENODEV && !pcm->told_error) {
		char text[MIX_TEXT];

		pcm->told_error = 1;
		memcpy(text, pcm->ring->error_text, sizeof(text));
		text[sizeof(text) - 1] = 0;
		say_once(pcm, text);
	}
	return err;
}

/* --- ioplug callbacks ------------------------------------------------------ */

static int mix_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params)
{
	struct mix_pcm *pcm = io->private_data;
	struct mix_msg q = { .type = MIX_SETUP, .rate = io->rate,
			     .buffer = (uint32_t)io->buffer_size };
	int fds[2] = { -1, pcm->event_fd }, err;

	(void)params;
	pcm->avail_min = io->period_size;
	if ((err = make_ring(pcm, (unsigned)io->buffer_size, &fds[0])) < 0)
		return err;
	err = request(pcm, &q, fds, 2);
	close(fds[0]);
	if (err < 0)
		unmap_ring(pcm);
	return err;
}

static int mix_sw_params(snd_pcm_ioplug_t *io, snd_pcm_sw_params_t *params)
{
	struct mix_pcm *pcm = io->private_data;
	snd_pcm_uframes_t avail_min;

	if (snd_pcm_sw_params_get_avail_min(params, &avail_min) == 0) {
		pcm->avail_min = avail_min ? avail_min : 1;
		if (pcm->ring)
			atomic_store(&pcm->ring->avail_min, pcm->avail_min);
	}
	return 0;
}

static int mix_prepare(snd_pcm_ioplug_t *io)
{
	struct mix_pcm *pcm = io->private_data;

	if (!pcm->ring)
		return -EBADFD;
	if (ring_error(pcm) == -ENODEV)
		return -ENODEV;
	pcm->draining = 0;
	pcm->shown = 0;
	atomic_store(&pcm->ring->appl, 0);
	return simple_request(pcm, MIX_PREPARE, 0);
}

static int mix_start(snd_pcm_ioplug_t *io)
{
	return simple_request(io->private_data, MIX_START, 0);
}

static int mix_stop(snd_pcm_ioplug_t *io)
{
	struct mix_pcm *pcm = io->private_data;

	pcm->draining = 0;
	return simple_request(pcm, MIX_STOP, 0);
}

static int mix_pause(snd_pcm_ioplug_t *io, int enable)
{
	return simple_request(io->private_data, MIX_PAUSE, enable);
}

/* The mixer's last measure of the speaker, gone down with the clock since. */
struct speaker_view {
	uint64_t hw;                /* frames mixed */
	int64_t unshown;            /* of them, not yet to be shown */
	int64_t delay;              /* the speaker's side of the delay */
};

static struct speaker_view view_speaker(struct mix_pcm *pcm)
{
	struct mix_ring *r = pcm->ring;
	struct speaker_view v;
	int64_t at, gone = 0;
	uint32_t seq, running;

	do {
		while ((seq = atomic_load(&r->seq)) & 1)
			;
		v.hw = atomic_load(&r->hw);
		v.unshown = atomic_load(&r->unshown_frames);
		v.delay = atomic_load(&r->delay_frames);
		at = atomic_load(&r->delay_at_ns);
		running = atomic_load(&r->clock_running);
	} while (atomic_load(&r->seq) != seq);
	if (running)
		gone = (int64_t)io_frames_in(io_now_ns() - at, pcm->io.rate);
	v.unshown = v.unshown > gone ? v.unshown - gone : 0;
	v.delay = v.delay > gone ? v.delay - gone : 0;
	return v;
}

/* The ring pointer: what the mixer took, less what the speaker's clock has
 * not reached (as a card's pointer runs at most a packet ahead of its
 * clock, so the program refills no sooner and its latency is a card's);
 * never backwards. */
static uint64_t shown_hw(struct mix_pcm *pcm)
{
	struct speaker_view v = view_speaker(pcm);
	uint64_t hw = v.hw - ((uint64_t)v.unshown < v.hw ? (uint64_t)v.unshown : v.hw);

	if (hw > pcm->shown)
		pcm->shown = hw;
	return pcm->shown;
}

static snd_pcm_sframes_t mix_pointer(snd_pcm_ioplug_t *io)
{
	struct mix_pcm *pcm = io->private_data;
	uint64_t hw;
	int err;

	if (!pcm->ring)
		return 0;
	hw = shown_hw(pcm);
	if ((err = ring_error(pcm)) == -EPIPE)
		return -EPIPE;
	if (err == -ENODEV)
		snd_pcm_ioplug_set_state(io, SND_PCM_STATE_DISCONNECTED);
	/* ioplug stops a draining stream once the ring is empty; keep one frame
	 * pending until the audio has really been played. */
	if (hw && pcm->draining && hw == atomic_load(&pcm->ring->appl) &&
	    !atomic_load(&pcm->ring->drained))
		hw--;
	return hw % io->buffer_size;
}

static snd_pcm_sframes_t mix_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
				      snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	struct mix_pcm *pcm = io->private_data;
	uint64_t appl = atomic_load(&pcm->ring->appl);
	unsigned ch = io->channels, bits = pcm->hello.sample_bits;
	unsigned pos = appl % io->buffer_size;
	snd_pcm_uframes_t first = io->buffer_size - pos;
	snd_pcm_channel_area_t ring[2];

	if (ring_error(pcm) == -ENODEV)
		return -ENODEV;
	for (unsigned c = 0; c < ch && c < 2; c++) {
		ring[c].addr = pcm->data;
		ring[c].first = c * bits;
		ring[c].step = ch * bits;
	}
	if (first > size)
		first = size;
	snd_pcm_areas_copy(ring, pos, areas, offset, ch, first, io->format);
	if (size > first)
		snd_pcm_areas_copy(ring, 0, areas, offset + first, ch, size - first, io->format);
	atomic_store(&pcm->ring->appl, appl + size);
	return size;
}


static int mix_delay(snd_pcm_ioplug_t *io, snd_pcm_sframes_t *delayp)
{
	struct mix_pcm *pcm = io->private_data;
	struct speaker_view v;

	if (!pcm->ring || ring_error(pcm) == -ENODEV)
		return pcm->ring ? -ENODEV : -EBADFD;
	v = view_speaker(pcm);
	*delayp = (snd_pcm_sframes_t)(atomic_load(&pcm->ring->appl) - v.hw + v.delay);
	return 0;
}

/* What is left to hear, plus the mixer's slack. */
static int drain_wait_ms(struct mix_pcm *pcm)
{
	snd_pcm_sframes_t d = 0;

	mix_delay(&pcm->io, &d);
	return (int)(d * 1000 / pcm->io.rate) + 2000;
}

static int mix_drain(snd_pcm_ioplug_t *io)
{
	struct mix_pcm *pcm = io->private_data;
	struct pollfd p[2] = { { .fd = pcm->event_fd, .events = POLLIN },
			       { .fd = pcm->fd, .events = POLLIN } };
	int64_t deadline;
	int err;

	if (!pcm->draining) {
		if ((err = simple_request(pcm, MIX_DRAIN, 0)) < 0)
			return err;
		pcm->draining = 1;
	}
	deadline = dbusx_now_ms() + drain_wait_ms(pcm);
	while (!atomic_load(&pcm->ring->drained) && !atomic_load(&pcm->ring->error)) {
		int64_t left = deadline - dbusx_now_ms();

		if (io->nonblock)
			return -EAGAIN;
		if (left <= 0)
			return -ETIMEDOUT;
		poll(p, 2, (int)left);
		io_drain(pcm->event_fd);
		if (p[1].revents & (POLLHUP | POLLERR))
			return -ENODEV;
	}
	pcm->draining = 0;
	io_poke(pcm->event_fd);      /* keep the descriptor readable for the state change */
	return ring_error(pcm) == -ENODEV ? -ENODEV : 0;
}

static int mix_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned nfds,
			    unsigned short *revents)
{
	struct mix_pcm *pcm = io->private_data;
	uint64_t used;
	int err;

	io_drain(pcm->event_fd);
	if (nfds > 1 && (pfd[1].revents & POLLIN))
		read_notices(pcm);
	if (nfds > 1 && (pfd[1].revents & (POLLHUP | POLLERR))) {
		if (!pcm->told_error++)
			SNDERR("%s: the mixer playing to it has gone", pcm->opt.device);
		snd_pcm_ioplug_set_state(io, SND_PCM_STATE_DISCONNECTED);
		*revents = POLLERR;
		return 0;
	}
	if (!pcm->ring) {
		*revents = 0;
		return 0;
	}
	if ((err = ring_error(pcm))) {
		io_poke(pcm->event_fd);     /* stays readable: an error is a level */
		snd_pcm_ioplug_set_state(io, err == -ENODEV ? SND_PCM_STATE_DISCONNECTED
							    : SND_PCM_STATE_XRUN);
		*revents = POLLERR;
		return 0;
	}
	used = atomic_load(&pcm->ring->appl) - shown_hw(pcm);
	*revents = 0;
	if (io->state == SND_PCM_STATE_DRAINING ? atomic_load(&pcm->ring->drained)
						: io->buffer_size - used >= pcm->avail_min) {
		io_poke(pcm->event_fd);     /* level-triggered, like a real card */
		*revents = POLLOUT;
	}
	return 0;
}

/* Two descriptors: the mixer's wake-ups, and the connection, whose end
 * (the mixer killed) must wake a program waiting in poll too. */
static int mix_poll_count(snd_pcm_ioplug_t *io)
{
	(void)io;
	return 2;
}

static int mix_poll_descriptors(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned space)
{
	struct mix_pcm *pcm = io->private_data;

	if (space < 2)
		return -EINVAL;
	pfd[0] = (struct pollfd){ .fd = pcm->event_fd, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = pcm->fd, .events = POLLIN };
	return 2;
}

static void mix_free(struct mix_pcm *pcm)
{
	unmap_ring(pcm);
	if (pcm->fd >= 0)
		close(pcm->fd);
	if (pcm->event_fd >= 0)
		close(pcm->event_fd);
	free(pcm);
}

static int mix_close(snd_pcm_ioplug_t *io)
{
	mix_free(io->private_data);
	return 0;
}

static void mix_dump(snd_pcm_ioplug_t *io, snd_output_t *out)
{
	struct mix_pcm *pcm = io->private_data;

	snd_output_printf(out, "Bluetooth A2DP to %s, mixed, %u Hz %u ch\n", pcm->hello.text,
			  pcm->hello.rate, pcm->hello.channels);
	if (io->state != SND_PCM_STATE_OPEN) {
		snd_output_printf(out, "Its setup is:\n");
		snd_pcm_dump_setup(io->pcm, out);
	}
}

static const snd_pcm_ioplug_callback_t mix_callbacks = {
	.start = mix_start,
	.stop = mix_stop,
	.pointer = mix_pointer,
	.transfer = mix_transfer,
	.delay = mix_delay,
	.prepare = mix_prepare,
	.drain = mix_drain,
	.pause = mix_pause,
	.poll_descriptors_count = mix_poll_count,
	.poll_descriptors = mix_poll_descriptors,
	.poll_revents = mix_poll_revents,
	.hw_params = mix_hw_params,
	.sw_params = mix_sw_params,
	.close = mix_close,
	.dump = mix_dump,
};

/* --- open ------------------------------------------------------------------ */

static int set_constraints(struct mix_pcm *pcm)
{
	const struct mix_msg *h = &pcm->hello;
	struct hw_limits l = {
		.channels = h->channels, .sample_bits = h->sample_bits, .rates = h->rates,
		.n_rates = h->n_rates < MIX_MAX_RATES ? h->n_rates : MIX_MAX_RATES,
		.min_period_frames = MIN_PERIOD_FRAMES, .min_buffer_frames = h->min_buffer,
		.max_buffer_bytes = MAX_BUFFER_BYTES,
	};

	return hw_limits_set(&pcm->io, &l);
}

/* The mixer's answer: 0, or its -errno (said here, once); *answered is 0
 * when there was none (the mixer gone: -ECONNRESET, or silent). */
static int hello(struct mix_pcm *pcm, int *answered)
{
	struct mix_hello q = { .msg = { .type = MIX_HELLO, .version = MIX_VERSION },
			       .opt_size = sizeof(struct bt_options), .opt = pcm->opt };
	int err;

	*answered = 0;
	/* The first program's HELLO waits for the mixer to connect the speaker. */
	if ((err = mix_send(pcm->fd, &q, sizeof(q), NULL, 0, 0)) < 0 ||
	    (err = wait_reply(pcm, MIX_HELLO, pcm->opt.connect_timeout_ms + REPLY_TIMEOUT_MS,
			      &pcm->hello)) < 0)
		return err == -EPIPE ? -ECONNRESET : err;
	*answered = 1;
	if (pcm->hello.value < 0)
		SNDERR("%s", pcm->hello.text[0] ? pcm->hello.text : strerror(-pcm->hello.value));
	return pcm->hello.value;
}

/* The speaker's address and adapter, so that every program names the same
 * mixer whatever DEV= and ADAPTER= said. */
static int find_speaker(struct bt_options *o)
{
	struct bluez *bz;
	struct bluez_device dev;
	int err;

	if ((err = bluez_open(&bz)) < 0)
		return err;
	err = bluez_find_device(bz, o->adapter, o->device[0] ? o->device : NULL,
				dbusx_now_ms() + o->connect_timeout_ms, &dev);
	bluez_close(bz);
	if (err < 0)
		return err;
	snprintf(o->device, sizeof(o->device), "%s", dev.address);
	snprintf(o->adapter, sizeof(o->adapter), "%s", dev.adapter);
	return 0;
}

/* Connected and greeted; -ENOEXEC when no mixer can run here. */
static int connect_mixer(struct mix_pcm *pcm)
{
	char linger[16], why[160];
	char *argv[] = { MIX_MIXER_NAME, pcm->opt.adapter, pcm->opt.device, linger, NULL };
	int err = -ECONNRESET, answered = 0;

	snprintf(linger, sizeof(linger), "%u", pcm->opt.linger_ms);
	/* A mixer that lost the race to start, or was just ending, closes the
	 * connection: the next try finds the one that runs, or starts one. */
	for (int tries = 0; tries < 3 && !answered && err == -ECONNRESET; tries++) {
		if (pcm->fd >= 0)
			close(pcm->fd);
		why[0] = 0;
		pcm->fd = mix_connect(pcm->opt.adapter, pcm->opt.device, argv, why, sizeof(why));
		if (pcm->fd == -ENOEXEC || pcm->fd == -EACCES) {
			SNDERR("%s: cannot mix here (%s): playing alone", pcm->opt.device,
			       why[0] ? why : "another user holds its mixer's name");
			return -ENOEXEC;
		}
		if (pcm->fd < 0)
			return pcm->fd;
		err = hello(pcm, &answered);
	}
	if (!answered && (err == -ECONNRESET || err == -ETIMEDOUT)) {
		SNDERR("%s: its mixer did not answer (%s)", pcm->opt.device, strerror(-err));
		return -EIO;
	}
	return err;
}

int bt_mix_open(snd_pcm_t **pcmp, const char *name, const struct bt_options *opt, int mode)
{
	struct mix_pcm *pcm = calloc(1, sizeof(*pcm));
	int err;

	if (!pcm)
		return -ENOMEM;
	pcm->opt = *opt;
	pcm->fd = -1;
	pcm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pcm->event_fd < 0 || (err = find_speaker(&pcm->opt)) < 0 ||
	    (err = connect_mixer(pcm)) < 0) {
		err = pcm->event_fd < 0 ? -errno : err;
		mix_free(pcm);
		return err;
	}
	pcm->io.version = SND_PCM_IOPLUG_VERSION;
	pcm->io.name = "Bluetooth A2DP (mixed)";
	pcm->io.callback = &mix_callbacks;
	pcm->io.private_data = pcm;
	pcm->io.poll_fd = pcm->event_fd;
	pcm->io.poll_events = POLLIN;
	pcm->io.mmap_rw = 0;
	pcm->avail_min = 1;
	if ((err = snd_pcm_ioplug_create(&pcm->io, name, SND_PCM_STREAM_PLAYBACK, mode)) < 0) {
		mix_free(pcm);
		return err;
	}
	pcm->io.nonblock = !!(mode & SND_PCM_NONBLOCK);
	if ((err = set_constraints(pcm)) < 0) {
		snd_pcm_ioplug_delete(&pcm->io);   /* calls mix_close */
		return err;
	}
	*pcmp = pcm->io.pcm;
	return 0;
}
