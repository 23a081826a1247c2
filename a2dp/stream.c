/* The playback clock, the I/O thread, congestion handling and delay accounting. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <alsa/asoundlib.h>

#include "device_volume.h"
#include "fd_watch.h"
#include "io_thread.h"
#include "rtp.h"
#include "stream.h"

#define NS IO_NS
#define LOWER_INTERVAL_NS (NS / 2)    /* congestion: one step down per 0.5 s at most */
#define RAISE_AFTER_NS NS             /* raise one step after 1 s of empty queue */
#define DRAIN_FLUSH_NS NS             /* how long drain waits for the socket to empty */
#define DRAIN_POLL_NS (5 * NS / 1000)
#define SOURCE_RETRY_NS (NS / 1000)   /* a source whose lock was busy is asked again */
/* The socket holds QUEUE_PACKETS packets (about 116 ms at 44.1 kHz): enough
 * for a radio's jitter, never seconds of audio. The kernel charges each
 * packet its buffers' overhead, and L2CAP fragments a packet into ACL-sized
 * buffers, so the charge is learnt from the first packet; until then it is
 * guessed. SO_SNDBUF is doubled by the kernel. */
#define QUEUE_PACKETS 8
#define SKB_OVERHEAD_GUESS 700

enum run_state { ST_STOPPED, ST_RUNNING, ST_PAUSED, ST_DRAINING, ST_QUIT };

struct a2dp_stream {
	/* Fixed once created. */
	struct a2dp_endpoint *ep;
	const struct a2dp_codec *codec;
	struct a2dp_encoder *enc;
	int fd;
	size_t mtu;
	unsigned rate, channels, frame_samples, codec_delay;
	unsigned sample_bytes, frame_bytes;   /* PCM, in the codec's sample format */
	size_t header_len;             /* RTP header, or none */
	struct io_thread io;           /* its descriptors, thread, lock and state requests */
	struct fd_watch watch;         /* what the I/O thread waits on */
	struct device_volume volume;   /* the software gain */
	int bluetooth_socket;          /* AF_BLUETOOTH: TIOCOUTQ says free space */
	_Atomic int sndbuf;            /* SO_SNDBUF as the kernel holds it */

	/* Set by the application thread while the stream is stopped. */
	uint8_t *ring;
	unsigned buffer;
	const struct a2dp_stream_source *source;
	void *source_arg;

	/* Written by the application thread. */
	_Atomic uint64_t appl;
	_Atomic unsigned avail_min;

	/* The event descriptor was poked and not yet acknowledged: it is
	 * readable, and another poke would only cost a system call. */
	_Atomic int poked;

	/* Written by the I/O thread; clock fields under io.lock. */
	_Atomic uint64_t hw;           /* frames taken from the ring */
	_Atomic uint64_t sent;         /* frames sent, padding included: the clock's position */
	_Atomic int error;
	_Atomic int drained;
	_Atomic int starved;           /* waiting for the application's next write */
	_Atomic size_t packet_charge;  /* socket memory one packet takes, learned */
	int64_t t0_ns;                 /* when frame 0 of the clock is due */
	int64_t paused_ns;
	enum run_state state;

	/* The I/O thread's own. */
	uint8_t *scratch;
	unsigned scratch_frames;
	uint8_t *packet;
	size_t packet_size;            /* the MTU, or more for a codec that fragments */
	uint16_t seq;
	uint32_t timestamp;
	int transport_dead;
	int flushed;                   /* drain started pushing the encoder's tail */
	unsigned flush_left;           /* silence still to send for it */
	unsigned last_padding;         /* silence that ended the last packet */
	int64_t last_lower_ns, queue_empty_since_ns;
	struct a2dp_stream_stats stats;
	int logged_congestion;
	int early;                     /* packets this wakeup sent before their time */
	size_t queued_before;          /* the socket's queue before the last packet */
	long queue_seen;               /* the socket's queue this wakeup, -1: not read yet */
	size_t charge_len;             /* the payload packet_charge was learnt with */
	int64_t wake_ns;               /* the clock's next wakeup, 0: none */
	/* packet_frames() as the I/O thread last saw it: the application's
	 * thread reads this, never the encoder the I/O thread changes. */
	_Atomic unsigned pkt_frames;
};

/* In 128 bits: frames * 10^9 passes 2^64 after 4.4 days at 48 kHz, and a
 * kiosk's radio plays longer than that without a prepare. */
static int64_t frames_ns(const struct a2dp_stream *s, uint64_t frames)
{
	return (int64_t)((unsigned __int128)frames * NS / s->rate);
}

static int64_t due_ns(const struct a2dp_stream *s, uint64_t frames)
{
	return s->t0_ns + frames_ns(s, frames);
}

static uint64_t clock_frames(const struct a2dp_stream *s, int64_t t)
{
	return io_frames_in(t - s->t0_ns, s->rate);
}

/* The clock is a deadline for the I/O thread's wait, one-shot like a
 * timer: a wakeup costs one system call, where a timerfd cost three (poll,
 * read, re-arm). */
static void arm_timer(struct a2dp_stream *s, int64_t at_ns)
{
	s->wake_ns = at_ns > 0 ? at_ns : 1;    /* zero would disarm */
}

static void disarm_timer(struct a2dp_stream *s)
{
	s->wake_ns = 0;
}

void a2dp_stream_notify(struct a2dp_stream *s)
{
	if (!atomic_exchange(&s->poked, 1))
		io_poke(s->io.event_fd);
}

/* Memory the socket's queue holds now (0 when empty), in the kernel's units:
 * packets plus their buffer overhead. AF_UNIX (the tests) reports it as is;
 * AF_BLUETOOTH reports the free space instead. */
static size_t socket_queue_bytes(const struct a2dp_stream *s)
{
	int n = 0;

	if (ioctl(s->fd, SIOCOUTQ, &n) < 0 || n < 0)
		return 0;
	if (s->bluetooth_socket)
		return n < atomic_load(&s->sndbuf) ? (size_t)(atomic_load(&s->sndbuf) - n) : 0;
	return n;
}

/* The thread that runs the clock, so that a2dp_stream_delay() called from
 * it (a source's callback) reads the queue as that thread knows it. */
static __thread const struct a2dp_stream *io_thread_of;

/* The queue for the I/O thread: read once a wakeup, then counted on by what
 * it sends, not read again at each packet. */
static size_t io_queue_bytes(struct a2dp_stream *s)
{
	if (s->queue_seen < 0)
		s->queue_seen = (long)socket_queue_bytes(s);
	return (size_t)s->queue_seen;
}

/* A payload of n bytes went: the queue holds one more packet's charge. */
static void count_sent(struct a2dp_stream *s, size_t n)
{
	size_t charge = atomic_load(&s->packet_charge);

	if (s->queue_seen >= 0)
		s->queue_seen = charge && n == s->charge_len ? s->queue_seen + (long)charge : -1;
}

static void size_send_buffer(struct a2dp_stream *s, size_t packet_charge)
{
	int want = QUEUE_PACKETS * (int)packet_charge / 2, got;
	socklen_t len = sizeof(got);

	setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
	if (getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &got, &len) == 0)
		atomic_store(&s->sndbuf, got);
}

/* The I/O thread's own state changes; the application reads state under lock. */
static void set_state(struct a2dp_stream *s, enum run_state st)
{
	pthread_mutex_lock(&s->io.lock);
	s->state = st;
	pthread_mutex_unlock(&s->io.lock);
}

static void lose_transport(struct a2dp_stream *s, const char *why)
{
	if (atomic_load(&s->error) != -ENODEV)
		SNDERR("%s: %s; playback stopped", s->ep->dev.address, why);
	atomic_store(&s->error, -ENODEV);
	s->transport_dead = 1;
	set_state(s, ST_STOPPED);
	disarm_timer(s);
	a2dp_stream_notify(s);
}

/* --- congestion --------------------------------------------------------- */

static unsigned packet_frames(const struct a2dp_stream *s)
{
	return s->codec->frames_per_packet(s->enc, s->mtu) * s->frame_samples;
}

/* After anything that may change the encoder's packet (a bitrate step). */
static void publish_packet_frames(struct a2dp_stream *s)
{
	atomic_store(&s->pkt_frames, packet_frames(s));
}

static void on_congested(struct a2dp_stream *s, int64_t now)
{
	int steps;

	pthread_mutex_lock(&s->io.lock);
	s->stats.dropped++;
	pthread_mutex_unlock(&s->io.lock);
	s->queue_empty_since_ns = 0;
	if (!s->logged_congestion) {
		SNDERR("%s is not keeping up (weak signal?): dropping audio and lowering the bitrate",
		       s->ep->dev.address);
		s->logged_congestion = 1;
	}
	if (now - s->last_lower_ns >= LOWER_INTERVAL_NS && (steps = s->codec->lower_bitrate(s->enc))) {
		publish_packet_frames(s);
		pthread_mutex_lock(&s->io.lock);
		s->stats.bitrate_steps += steps;
		pthread_mutex_unlock(&s->io.lock);
		s->last_lower_ns = now;
	}
}

static void on_queue_level(struct a2dp_stream *s, size_t queued, int64_t now)
{
	if (queued) {
		s->queue_empty_since_ns = 0;
		return;
	}
	if (!s->queue_empty_since_ns) {
		s->queue_empty_since_ns = now;
	} else if (s->stats.bitrate_steps && now - s->queue_empty_since_ns >= RAISE_AFTER_NS &&
		   s->codec->raise_bitrate(s->enc)) {
		publish_packet_frames(s);
		pthread_mutex_lock(&s->io.lock);
		s->stats.bitrate_steps--;
		pthread_mutex_unlock(&s->io.lock);
		s->queue_empty_since_ns = now;
	}
}

/* --- one packet --------------------------------------------------------- */

static void copy_from_ring(struct a2dp_stream *s, uint64_t from, unsigned frames, unsigned padded)
{
	unsigned pos = from % s->buffer, first = s->buffer - pos;
	size_t fb = s->frame_bytes;

	if (first > frames)
		first = frames;
	memcpy(s->scratch, s->ring + pos * fb, first * fb);
	memcpy(s->scratch + first * fb, s->ring, (frames - first) * fb);
	memset(s->scratch + frames * fb, 0, (padded - frames) * fb);
}

/* The PCM of the packet about to be encoded: read in place from the ring
 * when the packet lies there whole (no wrap, no padding, no gain to apply),
 * so that the one copy is the application's into the ring; else copied into
 * scratch. The frames stay the I/O thread's until hw moves past them. */
static const uint8_t *packet_pcm(struct a2dp_stream *s, uint64_t from, unsigned frames,
				 unsigned padded)
{
	unsigned pos = from % s->buffer;

	if (frames == padded && pos + frames <= s->buffer &&
	    device_volume_unity(&s->volume))
		return s->ring + (size_t)pos * s->frame_bytes;
	copy_from_ring(s, from, frames, padded);
	device_volume_apply(&s->volume, s->scratch, frames * s->channels, s->sample_bytes);
	return s->scratch;
}

/* One packet on the socket: 0 sent, 1 dropped (congested), -1 the link is gone. */
static int send_one(struct a2dp_stream *s, const uint8_t *buf, size_t len, int64_t now)
{
	if (send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
		on_congested(s, now);   /* the clock goes on: latency stays bounded */
		return 1;
	}
	lose_transport(s, "the link to the speaker was lost");
	return -1;
}

/* The payload of n bytes at packet + header_len in as many packets as the MTU
 * needs: one, or for a codec that fragments (AAC, RFC 3016) several with the
 * same timestamp, the marker bit on the last. */
static int send_payload(struct a2dp_stream *s, size_t n, int64_t now)
{
	size_t room = s->mtu - s->header_len, off = 0;

	do {
		size_t chunk = n - off < room ? n - off : room;
		uint8_t *p = s->packet + off;      /* the header goes just before the chunk */
		uint8_t saved[RTP_HEADER_LEN];
		int r;

		if (s->header_len) {
			memcpy(saved, p, s->header_len);
			rtp_write_header(p, s->seq++, s->timestamp, 1);
			if (s->codec->rtp_marker && off + chunk == n)
				rtp_set_marker(p);
		}
		r = send_one(s, p, s->header_len + chunk, now);
		if (s->header_len)
			memcpy(p, saved, s->header_len);
		if (r)
			return r;
		off += chunk;
	} while (off < n);
	return 0;
}

/* Packets the socket holds now, by the learned charge of one (0 before it is
 * learned: the queue was empty for the first packet). */
static unsigned queued_packets(struct a2dp_stream *s)
{
	size_t charge = atomic_load(&s->packet_charge);

	return charge ? (unsigned)((io_queue_bytes(s) + charge / 2) / charge) : 0;
}

/* Encodes `frames` from the ring, padded with silence to `padded`, and sends them. */
static int send_packet(struct a2dp_stream *s, unsigned frames, unsigned padded, int64_t now)
{
	uint64_t hw = atomic_load(&s->hw);
	size_t queued = s->queued_before = io_queue_bytes(s), after;
	ssize_t n;
	int r = 0;

	n = s->codec->encode(s->enc, packet_pcm(s, hw, frames, padded), padded / s->frame_samples,
			     s->packet + s->header_len, s->packet_size - s->header_len);
	atomic_store(&s->hw, hw + frames);          /* encoded: the ring space is free again */
	if (n < 0) {
		lose_transport(s, "the encoder failed");
		return -1;
	}
	s->last_padding = padded - frames;
	if (!s->early)     /* the queue as the radio left it, not as we just filled it */
		on_queue_level(s, queued, now);
	if (n > 0 && (r = send_payload(s, n, now)) < 0)
		return -1;
	s->timestamp += padded;
	atomic_store(&s->sent, atomic_load(&s->sent) + padded);
	pthread_mutex_lock(&s->io.lock);
	if (n == 0)                 /* the codec had nothing to send for these frames */
		s->stats.dropped++;
	else if (r == 0 && !s->stats.packets++)
		s->stats.first_packet_ns = now;
	pthread_mutex_unlock(&s->io.lock);
	if (n > 0 && r == 0)
		count_sent(s, (size_t)n);
	/* Into an empty queue: what it holds now is one packet's charge, learnt
	 * again when the payload's size changes. */
	if (n > 0 && r == 0 && !queued && (size_t)n != s->charge_len &&
	    (after = socket_queue_bytes(s))) {
		s->charge_len = (size_t)n;
		s->queue_seen = (long)after;
		if (after != atomic_load(&s->packet_charge)) {
			atomic_store(&s->packet_charge, after);
			size_send_buffer(s, after);
		}
	}
	if (n > 0 && s->codec->on_packet) {
		unsigned q = queued_packets(s);

		s->codec->on_packet(s->enc, q > (unsigned)s->early ? q - s->early : 0);
		publish_packet_frames(s);
	}
	/* An early packet's frames are not the application's to refill yet. */
	if (s->buffer - (atomic_load(&s->appl) - (s->early ? hw : hw + frames)) >=
	    atomic_load(&s->avail_min))
		a2dp_stream_notify(s);
	if (s->source && frames)
		s->source->sent(s->source_arg);
	return 1;
}

static unsigned round_up(unsigned v, unsigned to)
{
	return (v + to - 1) / to * to;
}

/* What a short packet (underrun, drain) is padded to with silence: whole codec
 * frames, or a whole packet for a codec that packs its own (LDAC). */
static unsigned padded_to(const struct a2dp_stream *s, unsigned frames)
{
	return round_up(frames, s->codec->whole_packets ? packet_frames(s) : s->frame_samples);
}

/* How long the speaker holds audio before it is heard: its own Delay
 * (MediaTransport1.Delay, 1/10 ms), bounded so that a wild value cannot hold
 * a drain for long. */
#define SINK_DELAY_MAX_NS (2 * NS)

static int64_t sink_delay_ns(const struct a2dp_stream *s)
{
	int64_t d = (int64_t)atomic_load(&s->ep->delay) * (NS / 10000);

	return d < SINK_DELAY_MAX_NS ? d : SINK_DELAY_MAX_NS;
}

/* Everything is sent: push the encoder's tail out with one packet of silence,
 * then wait for the clock to play it, for the speaker to play what it holds
 * (a speaker that drops its buffer when the stream stops, as PipeWire does,
 * would otherwise lose the end of the song; and snd_pcm_delay, which counts
 * the sink's Delay, reaches 0 when drain returns), and for the socket to
 * empty. */
static int finish_drain(struct a2dp_stream *s, int64_t now)
{
	int64_t end;

	if (!s->flushed) {
		s->flushed = 1;
		/* The codec delays the signal by codec_delay samples: unless the last
		 * packet's padding already pushed them out, the listener would lose
		 * the last of them. */
		s->flush_left = s->last_padding < s->codec_delay ? s->codec_delay : 0;
	}
	if (s->flush_left) {
		unsigned n = padded_to(s, s->flush_left);

		if (n > packet_frames(s))
			n = packet_frames(s);
		s->flush_left -= n < s->flush_left ? n : s->flush_left;
		return send_packet(s, 0, n, now);
	}
	end = due_ns(s, atomic_load(&s->sent)) + sink_delay_ns(s);
	if (now < end) {
		arm_timer(s, end);
		return 0;
	}
	if (socket_queue_bytes(s) && now < end + DRAIN_FLUSH_NS) {
		arm_timer(s, now + DRAIN_POLL_NS);
		return 0;
	}
	set_state(s, ST_STOPPED);
	atomic_store(&s->drained, 1);
	a2dp_stream_notify(s);
	return -1;
}

static int underrun(struct a2dp_stream *s, unsigned avail, int64_t now)
{
	if (avail)     /* what the application did write is played, not lost */
		send_packet(s, avail, padded_to(s, avail), now);
	atomic_store(&s->error, -EPIPE);
	set_state(s, ST_STOPPED);
	a2dp_stream_notify(s);
	return -1;
}

/* A source's frames for the packet about to go: 0 (with what it gave
 * committed), or -EAGAIN with the timer armed to ask again. */
static int ask_source(struct a2dp_stream *s, unsigned want, int must, int64_t now)
{
	uint64_t fill = atomic_load(&s->appl) - atomic_load(&s->hw);

	if (!s->source || s->state != ST_RUNNING || fill >= want)
		return 0;
	if (s->source->fill(s->source_arg, want - (unsigned)fill, must) != -EAGAIN)
		return 0;
	arm_timer(s, now + SOURCE_RETRY_NS);
	return -EAGAIN;
}

/* The packet whose time has come: 1 sent (or look again), 0 waiting (timer
 * armed), -1 stopped. */
static int send_due_packet(struct a2dp_stream *s, int64_t now)
{
	uint64_t appl, hw;
	unsigned avail, n = packet_frames(s), fs = s->frame_samples;

	if (ask_source(s, n, 1, now) < 0)
		return 0;
	appl = atomic_load(&s->appl);
	hw = atomic_load(&s->hw);
	avail = appl - hw;
	if (avail >= n)
		return send_packet(s, n, n, now);
	if (s->state == ST_DRAINING)
		return avail ? send_packet(s, avail, padded_to(s, avail), now) : finish_drain(s, now);
	if (avail >= fs && avail + fs > s->buffer)     /* ring full but smaller than a packet */
		return send_packet(s, avail - avail % fs, avail - avail % fs, now);
	/* Like a real card: an underrun is when the clock passes what was written
	 * (with one packet of grace, as a DMA fetches ahead). Until then, wait. */
	if (clock_frames(s, now) < appl + n) {
		atomic_store(&s->starved, 1);
		/* The application may have written just before `starved` was
		 * set, and then seen no reason to wake us: look again. */
		if (atomic_load(&s->appl) != appl)
			return 1;
		arm_timer(s, due_ns(s, appl + n));
		return 0;
	}
	return underrun(s, avail, now);
}

/* How long before its time a packet may go with the one that is due. A
 * wakeup costs about what the kernel's send of a packet does, so a wakeup
 * sends every whole packet falling due within this: at MTU 672 (SBC, aptX:
 * 14.5-15 ms a packet) three, the thread waking a third as often. 30 ms
 * early is well inside what a sink buffers against the radio's own
 * retransmissions, which hand it bursts of that size and more. */
#define EARLY_NS (30 * NS / 1000)

/* A packet after the one just sent, before its due time. Only a whole packet
 * the application has written, while playing, and only when the socket was
 * empty at this wakeup: a radio that is behind gets one packet a wakeup, and
 * the congestion steps see what they saw before. */
static int send_early_packet(struct a2dp_stream *s, int64_t due, int64_t now)
{
	unsigned n = packet_frames(s);

	if (s->state != ST_RUNNING || due - now > EARLY_NS ||
	    ask_source(s, n, 0, now) < 0 || atomic_load(&s->appl) - atomic_load(&s->hw) < n)
		return 0;
	s->early++;
	return send_packet(s, n, n, now);
}

static void service_clock(struct a2dp_stream *s)
{
	int64_t now = io_now_ns();
	int may_send_early = 0;

	atomic_store(&s->starved, 0);
	s->queue_seen = -1;
	s->early = 0;           /* every send_packet() runs under this function */
	while (s->state == ST_RUNNING || s->state == ST_DRAINING) {
		int64_t due = due_ns(s, atomic_load(&s->sent));

		if (now < due) {
			int r = may_send_early ? send_early_packet(s, due, now) : 0;

			if (r > 0)
				continue;
			if (r == 0)
				arm_timer(s, due);
			return;
		}
		s->queued_before = SIZE_MAX;        /* unless a packet goes */
		if (send_due_packet(s, now) <= 0)
			return;
		may_send_early = s->queued_before == 0;
	}
}

/* --- state requests ------------------------------------------------------ */

static void transition(void *arg, int want)
{
	struct a2dp_stream *s = arg;
	int64_t now = io_now_ns();

	if (s->state == ST_STOPPED)
		s->flushed = 0;
	switch (want) {
	case ST_RUNNING:
		if (s->state == ST_PAUSED)
			s->t0_ns += now - s->paused_ns;
		else if (s->state == ST_STOPPED)
			s->t0_ns = now - frames_ns(s, atomic_load(&s->sent));
		break;
	case ST_DRAINING:
		if (s->state == ST_STOPPED)
			s->t0_ns = now - frames_ns(s, atomic_load(&s->sent));
		break;
	case ST_PAUSED:
		s->paused_ns = now;
		disarm_timer(s);
		break;
	default:
		disarm_timer(s);
		break;
	}
	if (!(s->transport_dead && (want == ST_RUNNING || want == ST_DRAINING)))
		s->state = want;
}

static int apply_requests(struct a2dp_stream *s)
{
	io_apply_request(&s->io, transition, s);
	return s->state == ST_QUIT;
}

/* --- the I/O thread ------------------------------------------------------ */

enum { SLOT_WAKE, SLOT_TRANSPORT, SLOT_BUS, SLOT_VOLUME };

/* Which descriptors to wait on now: a dead transport's or bus's would
 * report its hang-up at every wait. */
static void watch_descriptors(struct a2dp_stream *s)
{
	fd_watch_set(&s->watch, SLOT_WAKE, s->io.wake_fd, EPOLLIN);
	fd_watch_set(&s->watch, SLOT_TRANSPORT, s->transport_dead ? -1 : s->fd, 0);  /* HUP/ERR only */
	fd_watch_set(&s->watch, SLOT_BUS, a2dp_endpoint_bus_fd(s->ep), EPOLLIN);
	fd_watch_set(&s->watch, SLOT_VOLUME, device_volume_fd(&s->volume), EPOLLIN);
}

static void wait_events(struct a2dp_stream *s)
{
	const uint32_t *ready = s->watch.revents;
	int n;

	watch_descriptors(s);
	if ((n = fd_watch_wait(&s->watch, s->wake_ns)) == 0)
		s->wake_ns = 0;        /* it fired */
	if (n <= 0)
		return;
	if (ready[SLOT_WAKE])
		io_drain(s->io.wake_fd);
	if (ready[SLOT_TRANSPORT] & (EPOLLHUP | EPOLLERR))
		lose_transport(s, "the speaker closed the audio link");
	if (ready[SLOT_BUS]) {
		a2dp_endpoint_dispatch(s->ep);
		if (atomic_load(&s->ep->gone) && !s->transport_dead)
			lose_transport(s, "bluetoothd ended the audio stream (speaker disconnected?)");
	}
	if (ready[SLOT_BUS] || ready[SLOT_VOLUME])
		device_volume_follow(&s->volume);
}

static void *io_thread(void *arg)
{
	struct a2dp_stream *s = arg;

	io_thread_of = s;
	/* Messages read during open but not yet dispatched. */
	a2dp_endpoint_dispatch(s->ep);
	device_volume_follow(&s->volume);
	while (!apply_requests(s)) {
		if (s->state == ST_RUNNING || s->state == ST_DRAINING)
			service_clock(s);
		wait_events(s);
	}
	return NULL;
}

/* --- the application's side ---------------------------------------------- */

static int alloc_io_buffers(struct a2dp_stream *s)
{
	/* The most a packet holds: what the MTU carries, or for SBC's variable
	 * frames at most 15 (its 4-bit frame count) whatever the bitpool. */
	unsigned fpp = s->codec->frames_per_packet(s->enc, s->mtu);

	s->scratch_frames = (fpp > 16 ? fpp : 16) * s->frame_samples;
	s->scratch = calloc(s->scratch_frames, s->frame_bytes);
	s->packet_size = s->mtu + (s->codec->fragments ? A2DP_MAX_FRAGMENTED : 0);
	s->packet = calloc(1, s->packet_size);
	return s->scratch && s->packet ? 0 : -ENOMEM;
}

static void setup_socket(struct a2dp_stream *s)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof(addr);

	s->bluetooth_socket = getsockname(s->fd, (struct sockaddr *)&addr, &len) == 0 &&
			      addr.ss_family == AF_BLUETOOTH;
	size_send_buffer(s, s->mtu + SKB_OVERHEAD_GUESS);
}

static int check_packet_fits(struct a2dp_stream *s)
{
	if (s->codec->frames_per_packet(s->enc, s->mtu))
		return 0;
	SNDERR("%s: the link's MTU (%zu bytes) cannot carry one %s frame",
	       s->ep->dev.address, s->mtu, s->codec->title);
	return -EINVAL;
}

int a2dp_stream_new(struct a2dp_stream **out, struct a2dp_endpoint *ep,
		    const struct a2dp_codec *codec, struct volume_store *vs)
{
	struct a2dp_stream *s = calloc(1, sizeof(*s));
	struct a2dp_format fmt;
	int err;

	if (!s)
		return -ENOMEM;
	s->ep = ep;
	s->codec = codec;
	device_volume_init(&s->volume, ep, vs, 0);
	s->fd = ep->fd;
	s->mtu = ep->write_mtu;
	s->watch.epoll_fd = -1;        /* the fail path closes it */
	if ((err = io_thread_init(&s->io)) < 0 || (err = fd_watch_init(&s->watch)) < 0 ||
	    (err = codec->parse_config(ep->config, ep->config_len, &fmt)) < 0 ||
	    (err = codec->encoder_new(&s->enc, ep->config, ep->config_len, ep->write_mtu, &ep->prefs)) < 0)
		goto fail;
	s->rate = fmt.rate;
	s->channels = fmt.channels;
	s->frame_samples = codec->frame_samples(s->enc);
	publish_packet_frames(s);
	s->codec_delay = codec->delay(s->enc);
	s->sample_bytes = codec->sample_format == A2DP_S32 ? 4 : 2;
	s->frame_bytes = s->sample_bytes * s->channels;
	s->header_len = codec->framing == A2DP_FRAMING_RTP ? RTP_HEADER_LEN : 0;
	atomic_init(&s->avail_min, 1);
	setup_socket(s);
	if ((err = check_packet_fits(s)) < 0 || (err = alloc_io_buffers(s)) < 0 ||
	    (err = io_thread_start(&s->io, io_thread, s)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	a2dp_stream_free(s);
	return err;
}

void a2dp_stream_free(struct a2dp_stream *s)
{
	if (!s)
		return;
	io_thread_destroy(&s->io, ST_QUIT);
	fd_watch_close(&s->watch);
	if (s->enc)
		s->codec->encoder_free(s->enc);
	free(s->ring);
	free(s->scratch);
	free(s->packet);
	free(s);
}

int a2dp_stream_set_buffer(struct a2dp_stream *s, unsigned frames)
{
	uint8_t *ring = calloc(frames, s->frame_bytes);

	if (!ring)
		return -ENOMEM;
	free(s->ring);
	s->ring = ring;
	s->buffer = frames;
	return 0;
}

unsigned a2dp_stream_min_buffer(const struct a2dp_stream *s)
{
	return 2 * atomic_load(&s->pkt_frames);
}

unsigned a2dp_stream_rate(const struct a2dp_stream *s) { return s->rate; }
unsigned a2dp_stream_channels(const struct a2dp_stream *s) { return s->channels; }
void *a2dp_stream_ring(struct a2dp_stream *s) { return s->ring; }
unsigned a2dp_stream_sample_bits(const struct a2dp_stream *s) { return s->sample_bytes * 8; }
uint64_t a2dp_stream_appl(const struct a2dp_stream *s) { return atomic_load(&s->appl); }
/* Where the clock is at now_ns, in frames, for the application's thread;
 * UINT64_MAX when it is not running. */
static uint64_t clock_at(struct a2dp_stream *s, int64_t now_ns)
{
	uint64_t at = UINT64_MAX;

	pthread_mutex_lock(&s->io.lock);
	if (s->state == ST_RUNNING || s->state == ST_DRAINING)
		at = clock_frames(s, now_ns);
	else if (s->state == ST_PAUSED)
		at = clock_frames(s, s->paused_ns);
	pthread_mutex_unlock(&s->io.lock);
	return at;
}

static uint64_t clock_now(struct a2dp_stream *s)
{
	return clock_at(s, io_now_ns());
}

/* The ring pointer the application sees: the frames taken from the ring,
 * but never more than one packet beyond the clock. Packets sent early
 * (send_early_packet) stay counted in the ring until their time, so the
 * program refills no sooner than before and its latency at a full buffer
 * is what it was. */
static uint64_t visible_hw(const struct a2dp_stream *s, uint64_t taken, uint64_t clock)
{
	uint64_t limit = clock == UINT64_MAX ? UINT64_MAX : clock + atomic_load(&s->pkt_frames);

	return taken < limit ? taken : limit;
}

uint64_t a2dp_stream_hw(struct a2dp_stream *s)
{
	return visible_hw(s, atomic_load(&s->hw), clock_now(s));
}

static uint64_t unshown_at(struct a2dp_stream *s, uint64_t clock)
{
	uint64_t appl = atomic_load(&s->appl);

	return appl - visible_hw(s, appl, clock);
}

uint64_t a2dp_stream_unshown(struct a2dp_stream *s)
{
	return unshown_at(s, clock_now(s));
}
int a2dp_stream_error(const struct a2dp_stream *s) { return atomic_load(&s->error); }
int a2dp_stream_drained(const struct a2dp_stream *s) { return atomic_load(&s->drained); }
int a2dp_stream_event_fd(const struct a2dp_stream *s) { return s->io.event_fd; }
uint32_t a2dp_stream_gain(const struct a2dp_stream *s) { return device_volume_gain(&s->volume); }

void a2dp_stream_commit(struct a2dp_stream *s, unsigned frames)
{
	atomic_store(&s->appl, atomic_load(&s->appl) + frames);
	if (atomic_load(&s->starved))
		io_poke(s->io.wake_fd);
}

void a2dp_stream_set_source(struct a2dp_stream *s, const struct a2dp_stream_source *src,
			    void *arg)
{
	s->source = src;
	s->source_arg = arg;
}

void a2dp_stream_set_avail_min(struct a2dp_stream *s, unsigned frames)
{
	atomic_store(&s->avail_min, frames ? frames : 1);
}

/* Drained before `poked` is cleared: a notify in between finds it set and
 * skips its poke, but the caller reads the stream's state after this, and
 * so sees what that notify was about. */
void a2dp_stream_ack_event(struct a2dp_stream *s)
{
	io_drain(s->io.event_fd);
	atomic_store(&s->poked, 0);
}

void a2dp_stream_prepare(struct a2dp_stream *s)
{
	io_request(&s->io, ST_STOPPED);
	atomic_store(&s->appl, 0);
	atomic_store(&s->hw, 0);
	atomic_store(&s->sent, 0);
	atomic_store(&s->drained, 0);
	io_clear_underrun(&s->error);
	a2dp_stream_notify(s);      /* the whole buffer is writable */
}

void a2dp_stream_start(struct a2dp_stream *s)
{
	io_request(&s->io, ST_RUNNING);
}

void a2dp_stream_stop(struct a2dp_stream *s)
{
	io_request(&s->io, ST_STOPPED);
}

void a2dp_stream_pause(struct a2dp_stream *s, int enable)
{
	io_request(&s->io, enable ? ST_PAUSED : ST_RUNNING);
}

int a2dp_stream_draining(const struct a2dp_stream *s)
{
	return s->io.want == ST_DRAINING && !atomic_load(&s->drained);
}

static int drain_wait_ms(struct a2dp_stream *s)
{
	uint64_t left = atomic_load(&s->appl) - atomic_load(&s->hw);

	/* What is left to play, one packet ahead, what the speaker holds, plus
	 * the socket's flush time. */
	return (int)((left + atomic_load(&s->pkt_frames)) * 1000 / s->rate + sink_delay_ns(s) / 1000000) +
	       DRAIN_FLUSH_NS / 1000000 + 500;
}

int a2dp_stream_drain(struct a2dp_stream *s, int wait)
{
	struct pollfd p = { .fd = s->io.event_fd, .events = POLLIN };
	int64_t deadline;

	if (s->io.want != ST_DRAINING)
		io_request(&s->io, ST_DRAINING);
	deadline = io_now_ns() / 1000000 + drain_wait_ms(s);
	while (!atomic_load(&s->drained) && !atomic_load(&s->error)) {
		int64_t left = deadline - io_now_ns() / 1000000;

		if (!wait)
			return -EAGAIN;
		if (left <= 0)
			return -ETIMEDOUT;
		poll(&p, 1, (int)left);
		a2dp_stream_ack_event(s);
	}
	a2dp_stream_notify(s);   /* keep the descriptor readable for the state change */
	return atomic_load(&s->error) == -ENODEV ? -ENODEV : 0;
}

int64_t a2dp_delay_compose(const struct a2dp_delay_parts *p)
{
	uint64_t sent = p->sent - p->in_ring;
	int64_t ahead = p->played < sent ? (int64_t)(sent - p->played) : 0;
	/* Packets queued in the socket, beyond the ones already counted as ahead
	 * or in the ring. */
	int64_t queued = p->packet_charge ?
		(int64_t)((p->queued_bytes + p->packet_charge / 2) / p->packet_charge *
			  p->packet_frames) - (int64_t)p->in_ring - ahead : 0;
	int64_t sink = (int64_t)p->sink_delay * p->rate / 10000;

	return ahead + (queued > 0 ? queued : 0) + p->codec_delay + sink;
}

/* One reading of the clock for the ring's part and the rest. */
static int64_t delay_at(struct a2dp_stream *s, uint64_t clock)
{
	uint64_t taken = atomic_load(&s->hw);
	uint64_t hw = visible_hw(s, taken, clock);
	struct a2dp_delay_parts p = {
		.sent = atomic_load(&s->sent),
		.in_ring = taken - hw,
		.queued_bytes = io_thread_of == s ? io_queue_bytes(s) : socket_queue_bytes(s),
		.packet_charge = atomic_load(&s->packet_charge),
		.packet_frames = atomic_load(&s->pkt_frames),
		.codec_delay = s->codec_delay,
		.sink_delay = atomic_load(&s->ep->delay),
		.rate = s->rate,
	};

	p.played = clock == UINT64_MAX ? p.sent : clock;
	return (int64_t)(atomic_load(&s->appl) - hw) + a2dp_delay_compose(&p);
}

int64_t a2dp_stream_delay(struct a2dp_stream *s)
{
	return delay_at(s, clock_now(s));
}

int64_t a2dp_stream_delay_at(struct a2dp_stream *s, int64_t now_ns, uint64_t *unshown)
{
	uint64_t clock = clock_at(s, now_ns);

	*unshown = unshown_at(s, clock);
	return delay_at(s, clock);
}

void a2dp_stream_get_stats(struct a2dp_stream *s, struct a2dp_stream_stats *st)
{
	pthread_mutex_lock(&s->io.lock);
	*st = s->stats;
	pthread_mutex_unlock(&s->io.lock);
}
