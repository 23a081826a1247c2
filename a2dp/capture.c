/* The receive path: transport socket -> RTP -> decoder -> jitter buffer -> ring, by our clock. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#include "capture.h"
#include "device_volume.h"
#include "io_thread.h"
#include "jitter.h"
#include "rtp.h"

#define NS IO_NS
/* Delivery into the ring is clocked by a tick: a quarter of the reader's
 * avail_min, so that its wakeup comes at most a quarter period late, within
 * 5..20 ms (arecord's default 125 ms period: 50 wakeups a second, not 200). */
#define TICK_NS (5 * NS / 1000)
#define MAX_TICK_NS (20 * NS / 1000)
#define JITTER_CAPACITY_S 2           /* the most the buffer can hold */
#define MAX_PACKET 4096               /* beyond any A2DP MTU BlueZ negotiates */

enum run_state { ST_STOPPED, ST_RUNNING, ST_PAUSED, ST_QUIT };

struct a2dp_capture {
	/* Fixed once created. */
	struct a2dp_endpoint *ep;
	const struct a2dp_codec *codec;
	struct a2dp_decoder *dec;
	struct a2dp_capture_opts opts;
	unsigned rate, channels, sample_bytes, frame_bytes, max_frames;
	struct device_volume volume;   /* the phone's slider, as gain */
	struct io_thread io;           /* its descriptors, thread, lock and state requests */

	/* Set by the application thread while the capture is stopped. */
	uint8_t *ring;
	unsigned buffer;

	/* Written by the application thread. */
	_Atomic uint64_t appl;
	_Atomic unsigned avail_min;

	/* Written by the I/O thread. */
	_Atomic uint64_t hw;
	_Atomic int error;
	_Atomic unsigned buffered;     /* the jitter buffer's level, for the delay */
	enum run_state state;
	int64_t t0_ns;                 /* the clock: frame n is due at t0 + n / rate */
	uint64_t clock_frames;         /* frames the clock has delivered since t0 */
	int64_t paused_ns;
	int64_t tick_ns;               /* the tick armed, 0 when disarmed */
	int lost;                      /* the phone or bluetoothd went away: logged once */
	struct jitter jb;
	uint8_t packet[MAX_PACKET];
	uint8_t *pcm;                  /* one decoded packet */
	uint16_t raw_seq;              /* RAW framing: packets decoded, */
	uint32_t raw_ts;               /* and their frames */
	int seen_packet;               /* RTP: last_seq is set */
	int seen_marker;               /* RTP: a packet had the marker bit */
	uint16_t last_seq;
};

void a2dp_capture_notify(struct a2dp_capture *c)
{
	io_poke(c->io.event_fd);
}

/* --- receiving ------------------------------------------------------------ */

/* why NULL: the error was logged where it was met. */
static void lose(struct a2dp_capture *c, const char *why)
{
	if (c->lost)
		return;
	c->lost = 1;
	if (why)
		SNDERR("%s: %s; capture stopped", c->ep->dev.address, why);
	atomic_store(&c->error, -ENODEV);
	a2dp_capture_notify(c);
}

/* The packet as RTP: parsed, or (a codec with RAW framing: aptX) given a
 * sequence number and a timestamp of our own, one a packet and the frames
 * decoded so far. Such a stream carries nothing to tell a lost packet by:
 * the audio after it simply comes earlier (libfreeaptx resynchronises). */
static int parse_packet(struct a2dp_capture *c, size_t len, struct rtp_packet *p, unsigned *flags)
{
	*flags = 0;
	if (c->codec->framing == A2DP_FRAMING_RAW) {
		*p = (struct rtp_packet){ .seq = c->raw_seq, .timestamp = c->raw_ts,
					  .payload = c->packet, .payload_len = len };
		return 0;
	}
	if (rtp_parse(c->packet, len, p) < 0)
		return -EINVAL;
	if (jitter_late(&c->jb, p->seq, p->timestamp))
		return -EALREADY;          /* reordered or repeated: dropped undecoded */
	/* RFC 3016's marker ends a frame; a phone that never sets it sends
	 * whole frames as far as we can tell, so packets are taken as fragments
	 * only once the stream has shown a marker. */
	c->seen_marker |= p->marker;
	if (c->codec->rtp_marker && c->seen_marker && !p->marker)
		*flags |= A2DP_DECODE_MORE;
	if (c->seen_packet && p->seq != (uint16_t)(c->last_seq + 1))
		*flags |= A2DP_DECODE_AFTER_GAP;
	c->seen_packet = 1;
	c->last_seq = p->seq;
	return 0;
}

/* One packet: parsed, decoded, into the jitter buffer. A packet that does not
 * parse or decode is treated as lost: the next one's timestamp fills its time.
 * A fragment of a codec frame that spans packets decodes to nothing until
 * the frame's last packet. */
static void on_packet(struct a2dp_capture *c, size_t len)
{
	struct rtp_packet p;
	unsigned flags;
	ssize_t frames;

	/* Late (reordered, repeated): dropped by parse_packet, undecoded. */
	if (parse_packet(c, len, &p, &flags) < 0 ||
	    (frames = c->codec->decode(c->dec, p.payload, p.payload_len, flags, c->pcm,
				       c->max_frames)) <= 0)
		return;
	c->raw_seq++;
	c->raw_ts += frames;
	jitter_put(&c->jb, p.seq, p.timestamp, c->pcm, frames);
	if (c->state != ST_RUNNING)
		jitter_trim(&c->jb, 0);
	atomic_store(&c->buffered, c->jb.level);
}

static void read_packets(struct a2dp_capture *c)
{
	for (;;) {
		ssize_t n = recv(c->ep->fd, c->packet, sizeof(c->packet), MSG_DONTWAIT);

		if (n > 0) {
			on_packet(c, n);
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			/* The phone ended the stream; its transport may come back. */
			a2dp_endpoint_drop_fd(c->ep);
		return;
	}
}

/* What we add between a packet's arrival and its delivery, for the phone to
 * keep its video in step: the jitter buffer's depth and one delivery tick.
 * What the reader adds after (its own buffer, a sound card's) is not ours
 * to know. */
static unsigned delay_tenths_ms(const struct a2dp_capture *c)
{
	return c->opts.jitter_ms * 10 + TICK_NS / 100000;
}

/* The phone started streaming: the transport is "pending" until someone
 * takes it. */
static void follow_transport(struct a2dp_capture *c)
{
	int r;

	if (atomic_load(&c->ep->gone)) {
		lose(c, "the phone or bluetoothd ended the audio stream (disconnected?)");
		return;
	}
	/* A pause the phone announced is no loss and no stall: what comes after
	 * starts a new origin, so that a phone whose timestamps ran on is not
	 * answered with the pause as silence (ON_PAUSE=wait), and one that
	 * resumes with a burst loses none of it. */
	if (atomic_load(&c->ep->state) == A2DP_IDLE)
		jitter_new_origin(&c->jb);
	if (c->ep->fd < 0 && atomic_load(&c->ep->state) == A2DP_PENDING &&
	    a2dp_endpoint_try_acquire(c->ep) < 0)
		lose(c, "cannot ask bluetoothd for the audio transport");
	if ((r = a2dp_endpoint_acquired(c->ep)) < 0)
		lose(c, NULL);      /* "cannot acquire the audio transport of ...: why" */
	else if (r > 0)
		a2dp_endpoint_report_delay(c->ep, delay_tenths_ms(c));
}

/* --- delivering ------------------------------------------------------------ */

static int64_t tick_for(const struct a2dp_capture *c)
{
	int64_t t = (int64_t)atomic_load(&c->avail_min) * NS / c->rate / 4;

	return t < TICK_NS ? TICK_NS : t > MAX_TICK_NS ? MAX_TICK_NS : t;
}

static void arm_tick(struct a2dp_capture *c, int on)
{
	struct itimerspec its = { 0 };

	c->tick_ns = on ? tick_for(c) : 0;
	its.it_value.tv_nsec = c->tick_ns;
	its.it_interval.tv_nsec = c->tick_ns;
	timerfd_settime(c->io.timer_fd, 0, &its, NULL);
}

static void overrun(struct a2dp_capture *c)
{
	atomic_store(&c->error, -EPIPE);
	c->state = ST_STOPPED;
	arm_tick(c, 0);
	a2dp_capture_notify(c);
}

/* n frames from the jitter buffer (or silence) into the ring at hw. */
static unsigned fill_ring(struct a2dp_capture *c, uint64_t hw, unsigned n)
{
	unsigned done = 0;

	while (done < n) {
		unsigned pos = (hw + done) % c->buffer;
		unsigned run = c->buffer - pos < n - done ? c->buffer - pos : n - done;
		uint8_t *at = c->ring + (size_t)pos * c->frame_bytes;
		unsigned got = jitter_get(&c->jb, at, run, !c->opts.wait_on_pause);

		device_volume_apply(&c->volume, at, got * c->channels, c->sample_bytes);
		done += got;
		if (got < run)
			break;
	}
	return done;
}

static void deliver(struct a2dp_capture *c, int64_t now)
{
	uint64_t due = io_frames_in(now - c->t0_ns, c->rate);
	uint64_t hw = atomic_load(&c->hw), appl = atomic_load(&c->appl);
	unsigned n, got;

	if (due <= c->clock_frames)
		return;
	n = due - c->clock_frames > c->buffer ? c->buffer : due - c->clock_frames;
	c->clock_frames = due;
	if (hw - appl + n > c->buffer) {       /* the application did not read in time */
		overrun(c);
		return;
	}
	got = fill_ring(c, hw, n);
	jitter_trim(&c->jb, 1);
	atomic_store(&c->buffered, c->jb.level);
	atomic_store(&c->hw, hw + got);
	if (hw + got - appl >= atomic_load(&c->avail_min) && got)
		a2dp_capture_notify(c);
}

/* --- state requests -------------------------------------------------------- */

static void transition(void *arg, int want)
{
	struct a2dp_capture *c = arg;
	int64_t now = io_now_ns();

	if (want == ST_RUNNING && c->state == ST_PAUSED)
		c->t0_ns += now - c->paused_ns;
	else if (want == ST_RUNNING) {
		c->t0_ns = now;
		c->clock_frames = 0;
	}
	if (want == ST_PAUSED)
		c->paused_ns = now;
	c->state = want;
	arm_tick(c, want == ST_RUNNING);
}

static int apply_requests(struct a2dp_capture *c)
{
	io_apply_request(&c->io, transition, c);
	return c->state == ST_QUIT;
}

/* --- the I/O thread ---------------------------------------------------------- */

static void wait_events(struct a2dp_capture *c)
{
	struct pollfd p[5] = {
		{ .fd = c->io.wake_fd, .events = POLLIN },
		{ .fd = c->io.timer_fd, .events = POLLIN },
		{ .fd = c->lost ? -1 : c->ep->fd, .events = POLLIN },
		{ .fd = c->lost ? -1 : a2dp_endpoint_bus_fd(c->ep), .events = POLLIN },
		{ .fd = device_volume_fd(&c->volume), .events = POLLIN },
	};

	if (poll(p, 5, -1) < 0)
		return;
	if (p[0].revents)
		io_drain(c->io.wake_fd);
	/* Packets before the clock: after a stall of this thread (the process
	 * stopped, a loaded machine) what waits in the socket is due now, and
	 * delivering first would play the buffer dry and shift the rest. */
	if (p[2].revents)
		read_packets(c);
	if (p[1].revents) {
		io_drain(c->io.timer_fd);
		if (c->state == ST_RUNNING && !atomic_load(&c->error))
			deliver(c, io_now_ns());
		if (c->tick_ns && c->tick_ns != tick_for(c))   /* the reader's avail_min changed */
			arm_tick(c, 1);
	}
	if (p[3].revents)
		a2dp_endpoint_dispatch(c->ep);
	if (!c->lost && (p[3].revents || p[2].revents))
		follow_transport(c);
	if (p[3].revents || p[4].revents)
		device_volume_follow(&c->volume);
	/* A dead bus connection polls as nothing at all: notice it here. */
	if (!c->lost && a2dp_endpoint_bus_fd(c->ep) < 0)
		lose(c, "lost the D-Bus system bus");
}

static void *io_thread(void *arg)
{
	struct a2dp_capture *c = arg;

	/* Messages read during open but not yet dispatched; a phone already streaming. */
	a2dp_endpoint_dispatch(c->ep);
	follow_transport(c);
	device_volume_follow(&c->volume);
	while (!apply_requests(c))
		wait_events(c);
	return NULL;
}

/* --- the application's side ---------------------------------------------- */

static int setup_decoding(struct a2dp_capture *c)
{
	struct a2dp_format fmt;
	unsigned target;
	int err;

	if ((err = c->codec->parse_config(c->ep->config, c->ep->config_len, &fmt)) < 0 ||
	    (err = c->codec->decoder_new(&c->dec, c->ep->config, c->ep->config_len)) < 0)
		return err;
	c->rate = fmt.rate;
	c->channels = fmt.channels;
	c->sample_bytes = c->codec->sample_format == A2DP_S32 ? 4 : 2;
	c->frame_bytes = c->sample_bytes * c->channels;
	c->max_frames = c->codec->decoder_max_frames(c->dec);
	if (!(c->pcm = calloc(c->max_frames, c->frame_bytes)))
		return -ENOMEM;
	target = (uint64_t)c->opts.jitter_ms * c->rate / 1000;
	/* Slack for the drift policy: half the depth (two packets more, in jitter.c). */
	return jitter_init(&c->jb, c->frame_bytes, JITTER_CAPACITY_S * c->rate, target,
			   target / 2);
}

int a2dp_capture_new(struct a2dp_capture **out, struct a2dp_endpoint *ep,
		     const struct a2dp_codec *codec, const struct a2dp_capture_opts *opts,
		     struct volume_store *vs)
{
	struct a2dp_capture *c = calloc(1, sizeof(*c));
	int err;

	if (!c)
		return -ENOMEM;
	c->ep = ep;
	c->codec = codec;
	c->opts = *opts;
	atomic_init(&c->avail_min, 1);
	device_volume_init(&c->volume, ep, vs, 1);
	if ((err = io_thread_init_timer(&c->io)) < 0 || (err = setup_decoding(c)) < 0 ||
	    (err = io_thread_start(&c->io, io_thread, c)) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	a2dp_capture_free(c);
	return err;
}

void a2dp_capture_free(struct a2dp_capture *c)
{
	if (!c)
		return;
	io_thread_destroy(&c->io, ST_QUIT);
	if (c->dec)
		c->codec->decoder_free(c->dec);
	jitter_free(&c->jb);
	free(c->ring);
	free(c->pcm);
	free(c);
}

int a2dp_capture_set_buffer(struct a2dp_capture *c, unsigned frames)
{
	uint8_t *ring = calloc(frames, c->frame_bytes);

	if (!ring)
		return -ENOMEM;
	free(c->ring);
	c->ring = ring;
	c->buffer = frames;
	return 0;
}

unsigned a2dp_capture_rate(const struct a2dp_capture *c) { return c->rate; }
unsigned a2dp_capture_channels(const struct a2dp_capture *c) { return c->channels; }
unsigned a2dp_capture_sample_bits(const struct a2dp_capture *c) { return c->sample_bytes * 8; }
void *a2dp_capture_ring(struct a2dp_capture *c) { return c->ring; }
uint64_t a2dp_capture_hw(const struct a2dp_capture *c) { return atomic_load(&c->hw); }
uint64_t a2dp_capture_appl(const struct a2dp_capture *c) { return atomic_load(&c->appl); }
int a2dp_capture_error(const struct a2dp_capture *c) { return atomic_load(&c->error); }
unsigned a2dp_capture_buffered(const struct a2dp_capture *c) { return atomic_load(&c->buffered); }
int a2dp_capture_event_fd(const struct a2dp_capture *c) { return c->io.event_fd; }

void a2dp_capture_consume(struct a2dp_capture *c, unsigned frames)
{
	atomic_store(&c->appl, atomic_load(&c->appl) + frames);
}

void a2dp_capture_set_avail_min(struct a2dp_capture *c, unsigned frames)
{
	atomic_store(&c->avail_min, frames ? frames : 1);
}

void a2dp_capture_ack_event(struct a2dp_capture *c)
{
	io_drain(c->io.event_fd);
}

void a2dp_capture_prepare(struct a2dp_capture *c)
{
	io_request(&c->io, ST_STOPPED);
	atomic_store(&c->appl, 0);
	atomic_store(&c->hw, 0);
	io_clear_underrun(&c->error);
}

void a2dp_capture_start(struct a2dp_capture *c)
{
	io_request(&c->io, ST_RUNNING);
}

void a2dp_capture_stop(struct a2dp_capture *c)
{
	io_request(&c->io, ST_STOPPED);
}

void a2dp_capture_pause(struct a2dp_capture *c, int enable)
{
	io_request(&c->io, enable ? ST_PAUSED : ST_RUNNING);
}
