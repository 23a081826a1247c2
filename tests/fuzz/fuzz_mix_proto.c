/*
 * fuzz_mix_proto: what a hostile program of the same user can do to the
 * mixer of a speaker (mix/mixer.c): requests of any type, size and content,
 * with or without descriptors (rings sealed or not, too small, with a wrong
 * header), and any values in a ring's shared header between them, while the
 * stream's clock runs, fails, or the speaker goes away.
 *
 * The speaker is a stand-in (there is no radio here): a2dp_speaker_* and
 * a2dp_stream_* below give a stream whose clock the input advances. The
 * mixer, its request handling and the options check are the project's.
 *
 * Input: byte 0 = the stand-in's behaviour (bit 0 the speaker cannot be
 * opened, bit 1 a change of rate fails, bit 2 32-bit samples); then records
 * of 4 bytes [op a b c], a RAW record followed by its b bytes.
 *
 * FUZZ_MIX_VERBOSE=1 prints each request's answer (to read a seed's path).
 *
 * Invariants: a request is answered with a reply of its type (value 0 or
 * -errno, its text ended) or its connection is closed, never left hanging;
 * a client is only played from with a ring; the stream's ring is never
 * filled past its size; after mixer_free every descriptor the mixer was
 * sent or made is closed again.
 */
#include "../../mix/mixer.c"

#include <dirent.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#define MAX_PROGRAMS 20

/* --- the stand-in speaker --------------------------------------------------- */

static unsigned fake_flags;

struct a2dp_stream {
	unsigned rate, bits, buffer, avail_min;
	uint8_t *ring;
	uint64_t appl, hw;
	int error, draining, running, event_fd;
	const struct a2dp_stream_source *source;
	void *source_arg;
};

static const struct a2dp_codec fake_codec = { .title = "SBC" };

static struct a2dp_stream *fake_stream(unsigned rate)
{
	struct a2dp_stream *s = calloc(1, sizeof(*s));

	s->rate = rate;
	s->bits = fake_flags & 4 ? 32 : 16;
	s->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return s;
}

static void fake_stream_free(struct a2dp_stream *s)
{
	if (!s)
		return;
	close(s->event_fd);
	free(s->ring);
	free(s);
}

int a2dp_speaker_open(struct a2dp_speaker *sp, const struct bt_options *opt)
{
	memset(sp, 0, sizeof(*sp));
	if (fake_flags & 1)
		return -EHOSTDOWN;
	sp->opt = *opt;
	sp->ep = calloc(1, sizeof(*sp->ep));
	snprintf(sp->ep->dev.address, sizeof(sp->ep->dev.address), "00:1B:66:AA:BB:CC");
	snprintf(sp->ep->dev.name, sizeof(sp->ep->dev.name), "speaker");
	snprintf(sp->ep->dev.adapter, sizeof(sp->ep->dev.adapter), "hci0");
	sp->codec = &fake_codec;
	sp->stream = fake_stream(44100);
	return 0;
}

/* Bit 3 of the behaviour: a program with an odd bitpool would choose
 * another codec (the mixer opens the speaker again for it when idle). */
static const struct a2dp_codec fake_other_codec = { .title = "aptX" };

const struct a2dp_codec *a2dp_speaker_first_choice(struct a2dp_speaker *sp,
						   const struct bt_options *opt)
{
	return (fake_flags & 8) && (opt->bitpool & 1) ? &fake_other_codec : sp->codec;
}

void a2dp_speaker_close(struct a2dp_speaker *sp)
{
	fake_stream_free(sp->stream);
	free(sp->ep);
	memset(sp, 0, sizeof(*sp));
}

int a2dp_speaker_set_rate(struct a2dp_speaker *sp, unsigned rate)
{
	fake_stream_free(sp->stream);
	sp->stream = NULL;
	if ((fake_flags & 2) || (rate != 44100 && rate != 48000))
		return -EINVAL;
	sp->stream = fake_stream(rate);
	return 0;
}

int a2dp_speaker_rates(const struct a2dp_speaker *sp, unsigned *rates, int max)
{
	(void)sp;
	if (max < 2)
		return 0;
	rates[0] = 44100;
	rates[1] = 48000;
	return 2;
}

int a2dp_stream_set_buffer(struct a2dp_stream *s, unsigned frames)
{
	free(s->ring);
	s->buffer = frames;
	s->ring = calloc(frames, 2 * s->bits / 8);
	return s->ring ? 0 : -ENOMEM;
}

unsigned a2dp_stream_min_buffer(const struct a2dp_stream *s) { (void)s; return 256; }
unsigned a2dp_stream_rate(const struct a2dp_stream *s) { return s->rate; }
unsigned a2dp_stream_channels(const struct a2dp_stream *s) { (void)s; return 2; }
void *a2dp_stream_ring(struct a2dp_stream *s) { return s->ring; }
unsigned a2dp_stream_sample_bits(const struct a2dp_stream *s) { return s->bits; }
uint64_t a2dp_stream_appl(const struct a2dp_stream *s) { return s->appl; }
uint64_t a2dp_stream_hw(struct a2dp_stream *s) { return s->hw; }
uint64_t a2dp_stream_unshown(struct a2dp_stream *s) { return s->appl - s->hw; }
void a2dp_stream_set_avail_min(struct a2dp_stream *s, unsigned frames) { s->avail_min = frames; }
void a2dp_stream_notify(struct a2dp_stream *s) { io_poke(s->event_fd); }

void a2dp_stream_set_source(struct a2dp_stream *s, const struct a2dp_stream_source *src,
			    void *arg)
{
	s->source = src;
	s->source_arg = arg;
}
int a2dp_stream_error(const struct a2dp_stream *s) { return s->error; }
int a2dp_stream_event_fd(const struct a2dp_stream *s) { return s->event_fd; }
void a2dp_stream_ack_event(struct a2dp_stream *s) { io_drain(s->event_fd); }
int a2dp_stream_drained(const struct a2dp_stream *s) { return s->draining && s->appl == s->hw; }
int64_t a2dp_stream_delay(struct a2dp_stream *s) { return (int64_t)(s->appl - s->hw) + 73; }
int64_t a2dp_stream_delay_at(struct a2dp_stream *s, int64_t now_ns, uint64_t *unshown)
{
	(void)now_ns;
	*unshown = a2dp_stream_unshown(s);
	return a2dp_stream_delay(s);
}

void a2dp_stream_commit(struct a2dp_stream *s, unsigned frames)
{
	s->appl += frames;
	INVARIANT(s->appl - s->hw <= s->buffer, "the stream's ring overfilled: %llu of %u",
		  (unsigned long long)(s->appl - s->hw), s->buffer);
}

void a2dp_stream_prepare(struct a2dp_stream *s)
{
	s->appl = s->hw = 0;
	s->error = s->draining = s->running = 0;
}

void a2dp_stream_start(struct a2dp_stream *s) { s->running = 1; }
void a2dp_stream_pause(struct a2dp_stream *s, int enable) { s->running = !enable; }

int a2dp_stream_drain(struct a2dp_stream *s, int wait)
{
	s->draining = 1;
	if (wait || s->appl == s->hw) {
		s->hw = s->appl;
		s->running = 0;
		return 0;
	}
	return -EAGAIN;
}

/* Peers are checked by the listening side, which this target has none of. */
int mix_check_peer(int fd) { (void)fd; return 0; }

/* --- the programs ------------------------------------------------------------ */

struct program {
	int fd;                 /* our end; -1 none */
	int mixer_fd;           /* the mixer's end, to find its slot */
	/* The two ends' sockets: a number closed and taken again names
	 * another file, and its client is not ours. */
	ino_t ino, mixer_ino;
	struct mix_ring *ring;  /* the last ring we sent, mapped on our side */
	size_t map_size;
};

static struct program progs[MAX_PROGRAMS];
static struct mixer mx;

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The mixer's slot of a program. Once the mixer has hung up, its end's
 * number may be another program's: our end reads the hang-up first. */
static ino_t ino_of(int fd)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static struct mix_client *slot_of(struct program *p)
{
	char b;

	if (p->mixer_fd >= 0 && p->fd >= 0 && recv(p->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
		p->mixer_fd = -1;
	if (p->mixer_fd >= 0 && ino_of(p->mixer_fd) != p->mixer_ino)
		p->mixer_fd = -1;       /* the mixer closed it; the number is another's now */
	if (p->mixer_fd < 0)
		return NULL;
	for (int i = 0; i < MIX_MAX_CLIENTS; i++)
		if (mx.clients[i].state != MC_FREE && mx.clients[i].fd == p->mixer_fd)
			return &mx.clients[i];
	return NULL;
}

static void check_mixer(void)
{
	for (int i = 0; i < MIX_MAX_CLIENTS; i++) {
		const struct mix_client *c = &mx.clients[i];

		INVARIANT(c->state >= MC_FREE && c->state <= MC_DRAINING, "state %d", c->state);
		INVARIANT(c->state < MC_RUNNING || c->ring, "client %d plays without a ring", i);
		INVARIANT(!c->ring || (c->buffer && c->data), "client %d: a ring of %u", i, c->buffer);
	}
	INVARIANT(mx.opened <= 0 || mx.sp.stream, "open without a stream");
}

static void connect_program(void)
{
	int sv[2];

	for (int i = 0; i < MAX_PROGRAMS; i++) {
		if (progs[i].fd >= 0)
			continue;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
			return;
		/* A program whose client the mixer dropped (closing its end) may
		 * not have read the end yet: its number is the new client's now. */
		for (int k = 0; k < MAX_PROGRAMS; k++)
			if (progs[k].mixer_fd == sv[1])
				progs[k].mixer_fd = -1;
		progs[i].fd = sv[0];
		progs[i].mixer_fd = sv[1];
		progs[i].ino = ino_of(sv[0]);
		progs[i].mixer_ino = ino_of(sv[1]);
		add_client(&mx, sv[1]);
		return;
	}
}

/* A ring as a program makes one, spoilt as flags say. */
static int make_ring(struct program *p, unsigned buffer, unsigned flags)
{
	unsigned fb = 2 * (fake_flags & 4 ? 4 : 2);
	size_t size = MIX_RING_DATA + (size_t)buffer * fb;
	int fd = memfd_create("fuzz-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct mix_ring *r;

	if (fd < 0)
		return -1;
	if (ftruncate(fd, flags & 0x10 ? (off_t)(size / 2) : (off_t)size) < 0 ||
	    (!(flags & 0x08) && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0)) {
		close(fd);
		return -1;
	}
	r = mmap(NULL, flags & 0x10 ? size / 2 : size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r == MAP_FAILED) {
		close(fd);
		return -1;
	}
	r->magic = flags & 0x20 ? 0 : MIX_RING_MAGIC;
	r->version = MIX_VERSION;
	r->buffer = buffer;
	r->frame_bytes = fb;
	if (p->ring)
		munmap(p->ring, p->map_size);
	p->ring = r;
	p->map_size = flags & 0x10 ? size / 2 : size;
	return fd;
}

/* The mixer takes the request; we check what came back. */
static void exchange(struct program *p, uint32_t type)
{
	struct mix_client *c = slot_of(p);
	struct mix_msg r;
	ssize_t n;

	if (!c)
		return;
	on_request(&mx, c);
	n = recv(p->fd, &r, sizeof(r), MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno == ECONNRESET))
		return;                 /* it hung up on us */
	INVARIANT(n == sizeof(r), "reply of %zd bytes (errno %d), connection kept: %s", n,
		  n < 0 ? errno : 0, slot_of(p) ? "yes" : "no");
	INVARIANT(r.type == (MIX_REPLY | type), "reply type %#x to %#x", r.type, type);
	INVARIANT(r.value <= 0 && r.value > -4096, "reply value %d", r.value);
	INVARIANT(memchr(r.text, 0, sizeof(r.text)), "reply text not ended");
	if (getenv("FUZZ_MIX_VERBOSE"))
		fprintf(stderr, "request %#x -> %d %s\n", type, r.value, r.text);
}

static const uint32_t types[8] = { MIX_HELLO, MIX_SETUP, MIX_PREPARE, MIX_START,
				   MIX_STOP, MIX_PAUSE, MIX_DRAIN, 0x7fff };

static void request(struct program *p, uint8_t a, uint8_t b, uint8_t c)
{
	struct mix_hello h = { 0 };
	int fds[2] = { -1, -1 }, nfds = 0;
	size_t len = sizeof(h.msg);
	struct a2dp_stream *s = mx.sp.stream;

	h.msg.type = types[b % 8];
	h.msg.version = c & 0x01 ? MIX_VERSION + 1 : MIX_VERSION;
	h.msg.value = a >> 4 & 1;
	h.msg.rate = c & 0x40 ? 48000 : s ? s->rate : 44100;
	h.msg.buffer = c & 0x80 ? (uint32_t)a << 24 : 256u * (1 + (b >> 3));
	if (h.msg.type == MIX_HELLO) {
		len = sizeof(h);
		h.opt_size = c & 0x02 ? 1 : sizeof(struct bt_options);
		h.opt.connect_timeout_ms = 1000;
		h.opt.linger_ms = 10;
		h.opt.mix = 1;
		if (c & 0x80)           /* every string unended, an odd value */
			memset(&h.opt, 'A' + (a & 7), sizeof(h.opt));
	}
	if (c & 0x04) {
		fds[0] = make_ring(p, h.msg.buffer > (1u << 20) ? 256 : h.msg.buffer, c);
		fds[1] = eventfd(0, EFD_CLOEXEC);
		nfds = fds[0] >= 0 && fds[1] >= 0 ? 2 : 0;
	}
	mix_send(p->fd, &h, len, fds, nfds, MSG_DONTWAIT);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	exchange(p, h.msg.type);
}

static void raw(struct program *p, const uint8_t *d, size_t len, uint8_t c)
{
	int fds[2] = { -1, -1 }, nfds = 0;
	uint32_t type = 0;

	if (c & 0x04) {
		fds[0] = make_ring(p, 256, c);
		fds[1] = eventfd(0, EFD_CLOEXEC);
		nfds = fds[0] >= 0 && fds[1] >= 0 ? 2 : 0;
	}
	mix_send(p->fd, d, len, fds, nfds, MSG_DONTWAIT);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (len >= sizeof(type))
		memcpy(&type, d, sizeof(type));
	exchange(p, type);
}

/* What a program (or a hostile one) writes in its ring's header. */
static void scribble(struct program *p, uint8_t what, uint8_t v)
{
	struct mix_ring *r = p->ring;

	if (!r || p->map_size < sizeof(*r))
		return;
	switch (what % 5) {
	case 0: atomic_fetch_add(&r->appl, (uint64_t)v * 37); break;     /* writes audio */
	case 1: atomic_store(&r->appl, atomic_load(&r->hw) - v); break;   /* appl behind hw */
	case 2: atomic_store(&r->hw, (uint64_t)v << 40); break;           /* the mixer's field */
	case 3: atomic_store(&r->avail_min, (uint32_t)v << 24); break;
	case 4: atomic_store(&r->appl, UINT64_MAX - v); break;
	}
	wake_writers(&mx);
}

static void tick(unsigned frames)
{
	struct a2dp_stream *s = mx.sp.stream;

	if (!s || mx.opened <= 0)
		return;
	if (s->running && s->source && s->appl - s->hw < frames) {
		unsigned want = frames - (unsigned)(s->appl - s->hw), room = s->buffer - (unsigned)(s->appl - s->hw);

		if (s->source->fill(s->source_arg, want < room ? want : room, (frames & 64) != 0) > 0)
			s->source->sent(s->source_arg);
	}
	if (s->running)
		s->hw += frames < s->appl - s->hw ? frames : s->appl - s->hw;
	on_stream_event(&mx);
}

static void close_program(struct program *p)
{
	struct mix_client *c;

	if (p->fd < 0)
		return;
	c = slot_of(p);
	INVARIANT(ino_of(p->fd) == p->ino, "our end (%d) is another file: closed under us", p->fd);
	close(p->fd);
	p->fd = -1;
	if (c) {
		on_request(&mx, c);     /* it reads the end */
		if (c->state != MC_FREE && c->fd == p->mixer_fd) {
			/* Seen a few times in some million runs, never replayed alone
			 * (December 2026). Once printed: the mixer's end read EAGAIN,
			 * its peer alive, so the end we closed was not its peer.
			 * The ends are now told apart by their sockets' inodes too;
			 * what the mixer's end reads says which case is left. */
			char b;
			ssize_t k = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

			fprintf(stderr, "fuzz_mix_proto: client state %d, fd %d, its end reads %zd "
				"(errno %d), opened %d\n", c->state, c->fd, k, k < 0 ? errno : 0, mx.opened);
		}
		INVARIANT(c->state == MC_FREE || c->fd != p->mixer_fd,
			  "a program that hung up is still a client");
	}
	p->mixer_fd = -1;
	if (p->ring)
		munmap(p->ring, p->map_size);
	p->ring = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	int fds_before = count_fds();
	size_t i = 1;

	if (n < 1)
		return 0;
	fake_flags = d[0];
	for (int k = 0; k < MAX_PROGRAMS; k++)
		progs[k] = (struct program){ .fd = -1, .mixer_fd = -1 };
	if (mixer_init(&mx, -1, -1, 10) < 0)
		return 0;
	while (i + 4 <= n && !mx.quit) {
		uint8_t op = d[i], a = d[i + 1], b = d[i + 2], c = d[i + 3];
		struct program *p = &progs[a % MAX_PROGRAMS];

		i += 4;
		switch (op % 8) {
		case 0: connect_program(); break;
		case 1: if (p->fd >= 0) request(p, a, b, c); break;
		case 2: {
			size_t len = b < n - i ? b : n - i;

			if (p->fd >= 0)
				raw(p, d + i, len, c);
			i += len;
			break;
		}
		case 3: scribble(p, b, c); break;
		case 4: tick(((unsigned)a + 1) * 64); break;
		case 5:
			if (mx.sp.stream && mx.opened > 0) {
				mx.sp.stream->error = a & 1 ? -ENODEV : -EPIPE;
				on_stream_event(&mx);
				mx.sp.stream->error = 0;
			}
			break;
		case 6: close_program(p); break;
		case 7: on_timer(&mx); break;
		}
		check_mixer();
	}
	for (int k = 0; k < MAX_PROGRAMS; k++)
		close_program(&progs[k]);
	mixer_free(&mx);
	INVARIANT(count_fds() == fds_before, "descriptors: %d before, %d after", fds_before,
		  count_fds());
	return 0;
}
