/* One speaker's mixer: see mixer.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#include "io_thread.h"
#include "mix_msg.h"
#include "mix_spawn.h"
#include "mixer.h"

#define STREAM_BUFFER_PACKETS 8   /* room for packets that grow as the bitrate steps down */

/* --- errors: alsa-lib's handler keeps the last line for the programs ------ */

/* What the speaker's code logs (a codec it fell back from, a radio not
 * keeping up) is the programs' to say: each line is queued here, from
 * whichever thread, and sent to them as a notice (flush_notices). */
#define MAX_NOTICES 8

static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[MIX_TEXT];
static char notices[MAX_NOTICES][MIX_TEXT];
static unsigned n_notices;
static int notice_fd = -1;     /* poked when a line is queued */

static void on_alsa_error(const char *file, int line, const char *function, int err,
			  const char *fmt, ...)
{
	va_list ap;

	(void)file; (void)line; (void)function; (void)err;
	pthread_mutex_lock(&error_lock);
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	fprintf(stderr, "alsa-bt-mixer: %s\n", last_error);
	if (n_notices < MAX_NOTICES)
		memcpy(notices[n_notices++], last_error, MIX_TEXT);
	if (notice_fd >= 0)
		io_poke(notice_fd);
	pthread_mutex_unlock(&error_lock);
}

void mixer_catch_errors(void)
{
	snd_lib_error_set_handler(on_alsa_error);
}

static void clear_last_error(void)
{
	pthread_mutex_lock(&error_lock);
	last_error[0] = 0;
	pthread_mutex_unlock(&error_lock);
}

static void copy_last_error(char *to, const char *otherwise)
{
	pthread_mutex_lock(&error_lock);
	snprintf(to, MIX_TEXT, "%s", last_error[0] ? last_error : otherwise);
	pthread_mutex_unlock(&error_lock);
}

/* --- the sum --------------------------------------------------------------- */

/* The loops run over contiguous samples, one loop a sample format: the
 * mixing process runs them for every sample played, and a test of the
 * format or of the ring's end at each sample cost more than the encoder. */
static void add_samples(int64_t *sum, const uint8_t *ring, unsigned bits, size_t at, size_t n)
{
	if (bits == 32) {
		const int32_t *p = (const int32_t *)ring + at;

		for (size_t i = 0; i < n; i++)
			sum[i] += p[i];
	} else {
		const int16_t *p = (const int16_t *)ring + at;

		for (size_t i = 0; i < n; i++)
			sum[i] += p[i];
	}
}

/* The ring may be smaller than n (a program's ring is its own to size):
 * as many runs as it takes. */
void mix_add(int64_t *sum, const uint8_t *ring, unsigned bits, unsigned buffer, uint64_t from,
	     unsigned n, unsigned nch)
{
	while (n) {
		unsigned pos = from % buffer, k = buffer - pos < n ? buffer - pos : n;

		add_samples(sum, ring, bits, (size_t)pos * nch, (size_t)k * nch);
		sum += (size_t)k * nch;
		from += k;
		n -= k;
	}
}

void mix_clamp(uint8_t *out, const int64_t *sum, unsigned bits, unsigned n)
{
	if (bits == 32) {
		int32_t *o = (int32_t *)out;

		for (unsigned i = 0; i < n; i++)
			o[i] = (int32_t)(sum[i] > INT32_MAX ? INT32_MAX : sum[i] < INT32_MIN ? INT32_MIN : sum[i]);
	} else {
		int16_t *o = (int16_t *)out;

		for (unsigned i = 0; i < n; i++)
			o[i] = (int16_t)(sum[i] > INT16_MAX ? INT16_MAX : sum[i] < INT16_MIN ? INT16_MIN : sum[i]);
	}
}

/* n frames of fb bytes from a ring of sbuf frames at `from` (or silence,
 * src NULL) into a ring of dbuf frames at `to`, each wrapping at its end. */
static void copy_frames(uint8_t *dst, unsigned dbuf, uint64_t to, const uint8_t *src, unsigned sbuf,
			uint64_t from, unsigned n, unsigned fb)
{
	while (n) {
		unsigned dp = to % dbuf, k = n < dbuf - dp ? n : dbuf - dp;
		unsigned sp = src ? from % sbuf : 0;

		if (src && k > sbuf - sp)
			k = sbuf - sp;
		if (src)
			memcpy(dst + (size_t)dp * fb, src + (size_t)sp * fb, (size_t)k * fb);
		else
			memset(dst + (size_t)dp * fb, 0, (size_t)k * fb);
		n -= k;
		to += k;
		from += k;
	}
}

/* --- the programs ---------------------------------------------------------- */

static int n_clients(const struct mixer *m)
{
	int n = 0;

	for (int i = 0; i < MIX_MAX_CLIENTS; i++)
		n += m->clients[i].state != MC_FREE;
	return n;
}

static uint64_t ring_avail(const struct mix_client *c)
{
	return atomic_load(&c->ring->appl) - atomic_load(&c->ring->hw);
}

/* A program the speaker plays for: running, or draining what it has left. */
static int is_playing(const struct mix_client *c)
{
	return c->state == MC_RUNNING || (c->state == MC_DRAINING && ring_avail(c));
}

static int any_playing(const struct mixer *m)
{
	for (int i = 0; i < m->top; i++)
		if (is_playing(&m->clients[i]))
			return 1;
	return 0;
}

static int any_in(const struct mixer *m, enum mix_client_state st)
{
	for (int i = 0; i < m->top; i++)
		if (m->clients[i].state == st)
			return 1;
	return 0;
}

static void poke(struct mix_client *c)
{
	if (c->event_fd >= 0)
		io_poke(c->event_fd);
}

/* The queued lines to every program that has said HELLO, and to `to` (one
 * saying it now); not a line equal to `skip` (an error's reason, which the
 * program hears with the error). */
static void flush_notices(struct mixer *m, struct mix_client *to, const char *skip)
{
	char lines[MAX_NOTICES][MIX_TEXT];
	unsigned n;

	if (notice_fd >= 0)
		io_drain(notice_fd);
	pthread_mutex_lock(&error_lock);
	n = n_notices;
	memcpy(lines, notices, sizeof(lines[0]) * n);
	n_notices = 0;
	pthread_mutex_unlock(&error_lock);
	for (unsigned k = 0; k < n; k++) {
		struct mix_msg msg = { .type = MIX_NOTICE, .version = MIX_VERSION };

		if (skip && !strcmp(lines[k], skip))
			continue;
		memcpy(msg.text, lines[k], MIX_TEXT);
		for (int i = 0; i < MIX_MAX_CLIENTS; i++) {
			struct mix_client *c = &m->clients[i];

			if (c == to || (c->state != MC_FREE && c->state != MC_NEW))
				send(c->fd, &msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
		}
	}
}

static void unmap_ring(struct mix_client *c)
{
	if (c->ring)
		munmap(c->ring, c->map_size);
	if (c->event_fd >= 0)
		close(c->event_fd);
	c->ring = NULL;
	c->data = NULL;
	c->event_fd = -1;
}

static void arm_timer(struct mixer *m, int64_t at_ns)
{
	struct itimerspec its = { .it_value = { at_ns / IO_NS, at_ns % IO_NS } };

	if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1;
	timerfd_settime(m->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void drop_client(struct mixer *m, struct mix_client *c)
{
	unmap_ring(c);
	close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = c->event_fd = -1;
	if (!n_clients(m)) {
		m->idle_since_ns = io_now_ns();
		arm_timer(m, m->idle_since_ns + (int64_t)m->linger_ms * 1000000);
	}
}

static void add_client(struct mixer *m, int fd)
{
	for (int i = 0; i < MIX_MAX_CLIENTS; i++) {
		struct mix_client *c = &m->clients[i];

		if (c->state != MC_FREE)
			continue;
		c->state = MC_NEW;
		c->fd = fd;
		c->event_fd = -1;
		m->idle_since_ns = 0;
		if (i >= m->top)
			m->top = i + 1;
		return;
	}
	close(fd);      /* full: the program's HELLO sees the end, and says so */
}

/* --- the stream ------------------------------------------------------------ */

static struct a2dp_stream *stream_of(struct mixer *m)
{
	return m->opened > 0 ? m->sp.stream : NULL;
}

static unsigned frame_bytes(struct mixer *m)
{
	struct a2dp_stream *s = m->sp.stream;

	return a2dp_stream_channels(s) * a2dp_stream_sample_bits(s) / 8;
}

static unsigned packet_frames(struct mixer *m)
{
	return a2dp_stream_min_buffer(m->sp.stream) / 2;
}

static int pull_mix(void *arg, unsigned frames, int must);
static void mix_sent(void *arg);
static const struct a2dp_stream_source mix_source = { pull_mix, mix_sent };

/* After the stream was made (open, a new rate): its ring, and its source. */
static int setup_stream(struct mixer *m)
{
	struct a2dp_stream *s = m->sp.stream;
	unsigned buffer = STREAM_BUFFER_PACKETS * packet_frames(m);
	int err;

	if ((err = a2dp_stream_set_buffer(s, buffer)) < 0)
		return err;
	/* The I/O thread mixes each packet as it goes (pull_mix): the ring never
	 * fills, and its room is no reason to wake us. */
	a2dp_stream_set_avail_min(s, buffer + 1);
	a2dp_stream_set_source(s, &mix_source, m);
	free(m->sum);
	m->sum_frames = buffer;
	m->sum = calloc((size_t)buffer * a2dp_stream_channels(s), sizeof(*m->sum));
	m->stream_on = SO_OFF;
	return m->sum ? 0 : -ENOMEM;
}

/* Each program's view of the speaker: its side of the delay, and how much
 * of the program's pointer it may show. Opened (seq odd) before a mix moves
 * the programs' hw, closed after, so a program never reads one without the
 * other. */
static void publish_open(struct mixer *m)
{
	for (int i = 0; i < m->top; i++)
		if (m->clients[i].ring)
			atomic_fetch_add(&m->clients[i].ring->seq, 1);
}

static void publish_close(struct mixer *m)
{
	struct a2dp_stream *s = stream_of(m);
	int on = m->stream_on == SO_PLAYING || m->stream_on == SO_DRAINING;
	int64_t now = io_now_ns();
	uint64_t unshown = 0;
	/* Stopped, it is still the codec's and the speaker's delay. */
	int64_t d = s ? a2dp_stream_delay_at(s, now, &unshown) : 0;

	for (int i = 0; i < m->top; i++) {
		struct mix_ring *r = m->clients[i].ring;

		if (!r)
			continue;
		atomic_store(&r->delay_frames, d);
		atomic_store(&r->unshown_frames, (int64_t)unshown);
		atomic_store(&r->delay_at_ns, now);
		atomic_store(&r->clock_running, (uint32_t)on);
		atomic_fetch_add(&r->seq, 1);
	}
}

static void publish_delay(struct mixer *m)
{
	publish_open(m);
	publish_close(m);
}

/* n frames of every playing program into the stream's ring; with `short`
 * (a packet cut short: no program had written it all), every running one
 * underran. A program that ran out (its underrun, or the end of its drain)
 * needs the loop. */
static void mix_packet(struct mixer *m, unsigned n, int short_packet)
{
	struct a2dp_stream *s = m->sp.stream;
	unsigned nch = a2dp_stream_channels(s), bits = a2dp_stream_sample_bits(s);
	unsigned fb = frame_bytes(m), buffer = m->sum_frames;
	uint64_t appl = a2dp_stream_appl(s);
	unsigned pos = appl % buffer, first = buffer - pos < n ? buffer - pos : n;
	uint8_t *ring = a2dp_stream_ring(s);
	struct mix_client *play[MIX_MAX_CLIENTS];
	int playing = 0;

	for (int i = 0; i < m->top; i++)
		if (is_playing(&m->clients[i]))
			play[playing++] = &m->clients[i];
	/* One program (the usual case): its frames as they are, no sum. */
	if (playing != 1)
		memset(m->sum, 0, (size_t)n * nch * sizeof(*m->sum));
	for (int i = 0; i < playing; i++) {
		struct mix_client *c = play[i];
		uint64_t hw, avail;
		unsigned take;

		hw = atomic_load(&c->ring->hw);
		avail = atomic_load(&c->ring->appl) - hw;
		take = avail < n ? (unsigned)avail : n;
		if (playing == 1) {
			copy_frames(ring, buffer, appl, c->data, c->buffer, hw, take, fb);
			copy_frames(ring, buffer, appl + take, NULL, 0, 0, n - take, fb);
		} else {
			mix_add(m->sum, c->data, bits, c->buffer, hw, take, nch);
		}
		atomic_store(&c->ring->hw, hw + take);
		if ((take < n || short_packet) && c->state == MC_RUNNING) {
			/* Its clock passed what it wrote: its underrun, no one else's. */
			atomic_store(&c->ring->error, -EPIPE);
			c->state = MC_STOPPED;
			m->ran_out = 1;
		} else if (take == avail && c->state == MC_DRAINING) {
			m->ran_out = 1;
		}
	}
	if (playing != 1) {
		mix_clamp(ring + (size_t)pos * fb, m->sum, bits, first * nch);
		mix_clamp(ring, m->sum + (size_t)first * nch, bits, (n - first) * nch);
	}
	a2dp_stream_commit(s, n);
}

static void wake_writers(struct mixer *m);

/* Every running program has n frames written. */
static int all_ready(struct mixer *m, unsigned n)
{
	for (int i = 0; i < m->top; i++)
		if (m->clients[i].state == MC_RUNNING && ring_avail(&m->clients[i]) < n)
			return 0;
	return 1;
}

/* What the fullest playing program has written, up to n. */
static unsigned most_written(struct mixer *m, unsigned n)
{
	uint64_t most = 0;

	for (int i = 0; i < m->top; i++)
		if (is_playing(&m->clients[i]) && ring_avail(&m->clients[i]) > most)
			most = ring_avail(&m->clients[i]);
	return most < n ? (unsigned)most : n;
}

/* The stream's source, in its I/O thread: the packet about to go is mixed
 * now, so a program's frames are taken when they are played, as a card's
 * DMA takes them, and the mix adds no latency of its own. A packet that
 * could go early waits unless every program has written it. The loop's
 * lock is only tried: the loop may hold it while it waits on the stream. */
static int pull_mix(void *arg, unsigned frames, int must)
{
	struct mixer *m = arg;
	struct a2dp_stream *s;
	int n = 0;

	if (pthread_mutex_trylock(&m->lock))
		return -EAGAIN;
	s = stream_of(m);
	/* When no program has written the whole packet, it carries what the
	 * fullest has, and the stream pads it to a codec frame as it would for
	 * one program alone (its underrun, or its drain's end). */
	if (s && m->stream_on == SO_PLAYING && (n = (int)most_written(m, frames)) > 0 &&
	    (must || ((unsigned)n == frames && all_ready(m, frames)))) {
		m->ran_out = 0;
		publish_open(m);
		mix_packet(m, (unsigned)n, (unsigned)n < frames);
		publish_close(m);
		if (m->ran_out)
			a2dp_stream_notify(s);  /* drains to end, underruns to see */
	} else {
		n = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return n;
}

/* A mixed packet has gone: programs are woken now, as a card's would be
 * (before, a program could look at the speaker between the mix and the
 * send, and see its frames neither in the ring nor sent). */
static void mix_sent(void *arg)
{
	struct mixer *m = arg;

	if (pthread_mutex_trylock(&m->lock))
		return;         /* the loop wakes them once it is done */
	wake_writers(m);
	pthread_mutex_unlock(&m->lock);
}

/* A stream draining is stopped and started again: it would end the new
 * program's audio with the old. Its first packet is mixed at once. */
static void start_stream(struct mixer *m)
{
	struct a2dp_stream *s = stream_of(m);

	if (!s || m->stream_on == SO_PLAYING)
		return;
	if (m->stream_on == SO_PAUSED)
		a2dp_stream_pause(s, 0);
	else {
		a2dp_stream_prepare(s);
		a2dp_stream_start(s);
	}
	m->stream_on = SO_PLAYING;
}

/* No one plays. If one paused (and no drain waits for the clock), the
 * speaker's clock pauses, as for a program alone, and resumes seamlessly.
 * If one drained, what was mixed is played out (the codec's tail too).
 * Else (underrun, drop, close) the stream runs out by itself, as a lone
 * program's would: what it holds is sent, padded to a codec frame, and it
 * stops; a program that starts before then plays on without a gap. */
static void idle_stream(struct mixer *m)
{
	struct a2dp_stream *s = stream_of(m);

	if (!s || m->stream_on == SO_OFF || any_playing(m))
		return;
	if (any_in(m, MC_PAUSED) && !any_in(m, MC_DRAINING)) {
		if (m->stream_on == SO_PLAYING) {
			a2dp_stream_pause(s, 1);
			m->stream_on = SO_PAUSED;
		}
		return;
	}
	if (!any_in(m, MC_DRAINING) && m->stream_on == SO_PLAYING)
		return;
	if (m->stream_on == SO_PAUSED)
		a2dp_stream_pause(s, 0);
	m->stream_on = SO_DRAINING;
	if (a2dp_stream_drain(s, 0) != -EAGAIN)
		m->stream_on = SO_OFF;
}

/* Drains that are done by now; arms the timer for the next. */
static void finish_drains(struct mixer *m)
{
	struct a2dp_stream *s = stream_of(m);
	int64_t now = io_now_ns(), next = 0;

	for (int i = 0; i < MIX_MAX_CLIENTS; i++) {
		struct mix_client *c = &m->clients[i];

		if (c->state != MC_DRAINING || ring_avail(c))
			continue;
		if (!c->drain_end_ns) {
			int64_t d = s ? a2dp_stream_delay(s) : 0;

			c->drain_end_ns = now + d * IO_NS / a2dp_stream_rate(m->sp.stream);
		}
		if (c->drain_end_ns <= now) {
			atomic_store(&c->ring->drained, 1);
			c->state = MC_STOPPED;
			c->drain_end_ns = 0;
			poke(c);
		} else if (!next || c->drain_end_ns < next) {
			next = c->drain_end_ns;
		}
	}
	if (next)
		arm_timer(m, next);
}

/* Programs whose avail, as their pointer shows it, reached their avail_min. */
static void wake_writers(struct mixer *m)
{
	for (int i = 0; i < m->top; i++) {
		struct mix_client *c = &m->clients[i];
		struct mix_ring *r = c->ring;
		uint64_t hw, unshown;

		if (!r)
			continue;
		hw = atomic_load(&r->hw);
		unshown = (uint64_t)atomic_load(&r->unshown_frames);
		hw -= unshown < hw ? unshown : hw;
		if (atomic_load(&r->error) ||
		    c->buffer - (atomic_load(&r->appl) - hw) >= atomic_load(&r->avail_min))
			poke(c);
	}
}

/* The speaker is gone: every program hears it, and the next open starts
 * a new mixer. */
static void lose_speaker(struct mixer *m)
{
	copy_last_error(m->open_text, "the speaker went away");
	flush_notices(m, NULL, m->open_text);
	m->opened = -ENODEV;
	m->stream_on = SO_OFF;
	if (m->listen_fd >= 0) {
		close(m->listen_fd);
		m->listen_fd = -1;
	}
	for (int i = 0; i < MIX_MAX_CLIENTS; i++) {
		struct mix_client *c = &m->clients[i];

		if (!c->ring)
			continue;
		snprintf(c->ring->error_text, sizeof(c->ring->error_text), "%s", m->open_text);
		atomic_store(&c->ring->error, -ENODEV);
		poke(c);
	}
	if (!n_clients(m))
		m->quit = 1;
}

static void on_stream_event(struct mixer *m)
{
	struct a2dp_stream *s = m->sp.stream;
	int err;

	a2dp_stream_ack_event(s);
	if ((err = a2dp_stream_error(s)) == -ENODEV) {
		lose_speaker(m);
		return;
	}
	/* It ran out: no one played (idle_stream), or we were late (stopped,
	 * starved of CPU). */
	if (err == -EPIPE) {
		m->stream_on = SO_OFF;
		if (any_playing(m))
			start_stream(m);
	}
	if (m->stream_on == SO_DRAINING && a2dp_stream_drained(s))
		m->stream_on = SO_OFF;
	publish_delay(m);
	finish_drains(m);
	idle_stream(m);
	wake_writers(m);
}

/* --- requests -------------------------------------------------------------- */

/* m->opened: 1, or -errno with why in open_text. */
static int open_speaker(struct mixer *m, const struct bt_options *opt)
{
	clear_last_error();
	m->opened = a2dp_speaker_open(&m->sp, opt);
	if (m->opened == 0 && (m->opened = setup_stream(m)) == 0) {
		m->opened = 1;
		m->choice = a2dp_speaker_first_choice(&m->sp, opt);
	} else {
		copy_last_error(m->open_text, "the speaker could not be opened");
	}
	return m->opened;
}

/* Closed, not failed: the next HELLO or SETUP opens it again. */
static void close_speaker(struct mixer *m)
{
	a2dp_speaker_close(&m->sp);
	m->opened = 0;
	m->stream_on = SO_OFF;
}

/* A program that comes while the speaker lingers with no other program
 * (it is the one client), and would choose another codec (the mixer
 * element's choice changed, or its CODEC=), has the speaker opened again
 * for it, as playing alone. */
static void reopen_for(struct mixer *m, const struct bt_options *opt)
{
	if (n_clients(m) == 1 && m->opened > 0 &&
	    a2dp_speaker_first_choice(&m->sp, opt) != m->choice)
		close_speaker(m);
}

static int on_hello(struct mixer *m, struct mix_client *c, struct mix_hello *h,
		    struct mix_msg *r)
{
	struct a2dp_stream *s;
	int others = 0;

	if (h->msg.version != MIX_VERSION || h->opt_size != sizeof(struct bt_options)) {
		snprintf(r->text, sizeof(r->text), "the mixer playing to this speaker is of another "
			 "alsa-bt version; it ends when its programs close");
		return -EPROTO;
	}
	if (bt_options_check(&h->opt) < 0) {
		snprintf(r->text, sizeof(r->text), "the mixer was sent options out of range");
		return -EINVAL;
	}
	c->opt = h->opt;
	reopen_for(m, &h->opt);
	if (!m->opened)
		open_speaker(m, &h->opt);
	if (m->opened < 0) {
		snprintf(r->text, sizeof(r->text), "%s", m->open_text);
		return m->opened;
	}
	s = m->sp.stream;
	for (int i = 0; i < MIX_MAX_CLIENTS; i++)
		others += &m->clients[i] != c && m->clients[i].state >= MC_STOPPED;
	r->rate = a2dp_stream_rate(s);
	r->channels = a2dp_stream_channels(s);
	r->sample_bits = a2dp_stream_sample_bits(s);
	r->min_buffer = a2dp_stream_min_buffer(s);
	if (others) {           /* the rate they play at, only */
		r->rates[0] = r->rate;
		r->n_rates = 1;
	} else {
		r->n_rates = (uint32_t)a2dp_speaker_rates(&m->sp, r->rates, MIX_MAX_RATES);
	}
	snprintf(r->text, sizeof(r->text), "%s (%s) on %s, %s", m->sp.ep->dev.address,
		 m->sp.ep->dev.name, m->sp.ep->dev.adapter, m->sp.codec->title);
	c->state = MC_STOPPED;
	return 0;
}

static int set_rate(struct mixer *m, struct mix_client *c, unsigned rate, struct mix_msg *r)
{
	int err;

	for (int i = 0; i < MIX_MAX_CLIENTS; i++)
		if (&m->clients[i] != c && m->clients[i].ring) {
			snprintf(r->text, sizeof(r->text), "%s plays at %u Hz for another program",
				 m->sp.ep->dev.address, a2dp_stream_rate(m->sp.stream));
			return -EBUSY;
		}
	clear_last_error();
	err = a2dp_speaker_set_rate(&m->sp, rate);
	if (err == 0)
		err = setup_stream(m);
	if (err < 0) {
		copy_last_error(r->text, "the speaker refused the rate");
		/* No stream is left: closed, the next SETUP opens it again (as
		 * hw_params again does for a program alone). */
		if (!m->sp.stream)
			close_speaker(m);
	}
	return err;
}

/* The program's ring: a sealed memfd of the size its header says. */
static int map_ring(struct mixer *m, struct mix_client *c, const struct mix_msg *q, int memfd)
{
	unsigned fb = frame_bytes(m);
	size_t size = MIX_RING_DATA + (size_t)q->buffer * fb;
	struct stat st;
	int seals = fcntl(memfd, F_GET_SEALS);
	struct mix_ring *ring;

	/* Unsealed, the program could shrink it under us: SIGBUS here. */
	if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(memfd, &st) < 0 ||
	    (size_t)st.st_size < size || q->buffer < a2dp_stream_min_buffer(m->sp.stream) ||
	    q->buffer > (64u << 20) / fb)
		return -EINVAL;
	ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (ring == MAP_FAILED)
		return -errno;
	if (ring->magic != MIX_RING_MAGIC || ring->version != MIX_VERSION ||
	    ring->buffer != q->buffer || ring->frame_bytes != fb) {
		munmap(ring, size);
		return -EINVAL;
	}
	unmap_ring(c);
	c->ring = ring;
	c->data = (uint8_t *)ring + MIX_RING_DATA;
	c->map_size = size;
	c->buffer = q->buffer;
	return 0;
}

static int on_setup(struct mixer *m, struct mix_client *c, const struct mix_msg *q,
		    const int *fds, int nfds, struct mix_msg *r)
{
	int err;

	/* Closed by a failed change of rate: opened again with this program's options. */
	if (m->opened == 0 && c->state != MC_NEW && nfds == 2 && open_speaker(m, &c->opt) < 0)
		snprintf(r->text, sizeof(r->text), "%s", m->open_text);
	if (m->opened <= 0 || c->state == MC_NEW || nfds != 2)
		return m->opened < 0 ? m->opened : -EBADFD;
	if (c->state == MC_RUNNING || c->state == MC_DRAINING || c->state == MC_PAUSED)
		return -EBUSY;
	if (q->rate != a2dp_stream_rate(m->sp.stream) && (err = set_rate(m, c, q->rate, r)) < 0)
		return err;
	if ((err = map_ring(m, c, q, fds[0])) < 0)
		return err;
	c->event_fd = fcntl(fds[1], F_DUPFD_CLOEXEC, 0);
	c->state = MC_STOPPED;
	publish_delay(m);
	return c->event_fd < 0 ? -errno : 0;
}

static void stop_client(struct mix_client *c)
{
	c->state = MC_STOPPED;
	c->drain_end_ns = 0;
	poke(c);
}

static int on_state(struct mixer *m, struct mix_client *c, const struct mix_msg *q)
{
	struct mix_ring *r = c->ring;

	if (!r)
		return -EBADFD;
	if (atomic_load(&r->error) == -ENODEV || m->opened < 0)
		return -ENODEV;
	if (!m->opened)                 /* closed by a failed change of rate: SETUP first */
		return -EBADFD;
	switch (q->type) {
	case MIX_PREPARE:
		stop_client(c);
		atomic_store(&r->hw, 0);        /* the program has set appl to 0 */
		atomic_store(&r->drained, 0);
		atomic_store(&r->error, 0);
		break;
	case MIX_STOP:
		stop_client(c);
		break;
	case MIX_START:
		c->state = MC_RUNNING;
		break;
	case MIX_PAUSE:
		if (q->value && c->state == MC_RUNNING)
			c->state = MC_PAUSED;
		else if (!q->value && c->state == MC_PAUSED)
			c->state = MC_RUNNING;
		break;
	case MIX_DRAIN:
		atomic_store(&r->drained, 0);
		c->state = MC_DRAINING;
		break;
	}
	if (any_playing(m))
		start_stream(m);
	publish_delay(m);
	finish_drains(m);
	idle_stream(m);
	return 0;
}

static void on_request(struct mixer *m, struct mix_client *c)
{
	union { struct mix_msg msg; struct mix_hello hello; } u;
	struct mix_msg r = { .type = MIX_REPLY, .version = MIX_VERSION };
	int fds[MIX_MAX_FDS], nfds;
	ssize_t n = mix_recv(c->fd, &u, sizeof(u), fds, &nfds, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < (ssize_t)sizeof(u.msg) || (u.msg.type == MIX_HELLO && n != sizeof(u.hello)) ||
	    (u.msg.type != MIX_HELLO && c->state == MC_NEW)) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		drop_client(m, c);      /* gone, or not speaking our protocol */
		return;
	}
	r.type |= u.msg.type;
	if (u.msg.type == MIX_HELLO) {
		r.value = on_hello(m, c, &u.hello, &r);
		flush_notices(m, c, r.value < 0 ? r.text : NULL);
	}
	else if (u.msg.type == MIX_SETUP)
		r.value = on_setup(m, c, &u.msg, fds, nfds, &r);
	else if (u.msg.type >= MIX_PREPARE && u.msg.type <= MIX_DRAIN)
		r.value = on_state(m, c, &u.msg);
	else
		r.value = -EINVAL;
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	if (send(c->fd, &r, sizeof(r), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		drop_client(m, c);
	wake_writers(m);
}

/* --- the loop -------------------------------------------------------------- */

static void on_connection(struct mixer *m)
{
	int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (mix_check_peer(fd) < 0 || m->opened < 0) {
		close(fd);      /* another user; or a mixer that is ending */
		return;
	}
	add_client(m, fd);
}

static void on_timer(struct mixer *m)
{
	io_drain(m->timer_fd);
	finish_drains(m);
	idle_stream(m);
	if (!n_clients(m) && (m->opened < 0 ||
			      io_now_ns() - m->idle_since_ns >= (int64_t)m->linger_ms * 1000000))
		m->quit = 1;
}

int mixer_init(struct mixer *m, int listen_fd, int first_fd, unsigned linger_ms)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < MIX_MAX_CLIENTS; i++)
		m->clients[i].fd = m->clients[i].event_fd = -1;
	m->listen_fd = listen_fd;
	m->linger_ms = linger_ms;
	pthread_mutex_init(&m->lock, NULL);
	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (m->timer_fd < 0)
		return -errno;
	notice_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->idle_since_ns = io_now_ns();
	arm_timer(m, m->idle_since_ns + (int64_t)linger_ms * 1000000);
	if (first_fd >= 0)
		add_client(m, first_fd);
	return 0;
}

void mixer_free(struct mixer *m)
{
	pthread_mutex_lock(&m->lock);
	for (int i = 0; i < MIX_MAX_CLIENTS; i++)
		if (m->clients[i].state != MC_FREE)
			drop_client(m, &m->clients[i]);
	if (m->opened > 0 && m->stream_on == SO_PAUSED)
		a2dp_stream_pause(m->sp.stream, 0);
	if (m->opened > 0 && m->stream_on != SO_OFF)
		a2dp_stream_drain(m->sp.stream, 1);
	a2dp_speaker_close(&m->sp);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	close(m->timer_fd);
	if (notice_fd >= 0)
		close(notice_fd);
	notice_fd = -1;
	free(m->sum);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_destroy(&m->lock);
}

/* The loop holds the lock but while it waits: pull_mix changes clients'
 * states too. */
void mixer_run(struct mixer *m)
{
	pthread_mutex_lock(&m->lock);
	while (!m->quit) {
		struct pollfd p[4 + MIX_MAX_CLIENTS];
		struct mix_client *who[4 + MIX_MAX_CLIENTS] = { NULL };
		struct a2dp_stream *s = stream_of(m);
		int n = 4;

		p[0] = (struct pollfd){ .fd = m->listen_fd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = m->timer_fd, .events = POLLIN };
		p[2] = (struct pollfd){ .fd = s ? a2dp_stream_event_fd(s) : -1, .events = POLLIN };
		p[3] = (struct pollfd){ .fd = notice_fd, .events = POLLIN };
		for (int i = 0; i < MIX_MAX_CLIENTS; i++)
			if (m->clients[i].state != MC_FREE) {
				who[n] = &m->clients[i];
				p[n++] = (struct pollfd){ .fd = m->clients[i].fd, .events = POLLIN };
			}
		pthread_mutex_unlock(&m->lock);
		n = poll(p, n, -1) < 0 ? 0 : n;
		pthread_mutex_lock(&m->lock);
		if (!n)
			continue;
		if (p[2].revents)
			on_stream_event(m);
		for (int i = 4; i < n; i++)
			if (p[i].revents && who[i]->state != MC_FREE && who[i]->fd == p[i].fd)
				on_request(m, who[i]);
		if (p[3].revents)
			flush_notices(m, NULL, NULL);
		if (p[0].revents)
			on_connection(m);
		if (p[1].revents)
			on_timer(m);
		wake_writers(m);        /* what mix_sent could not, the lock being ours */
	}
	pthread_mutex_unlock(&m->lock);
}
