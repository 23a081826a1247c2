/*
 * The headset's end of the voice link in the HFP tests (tests/tools/
 * headset.py starts it on the SCO stand-in connection, fd 3): like a
 * headset's controller, it sends a packet every period on its own clock
 * (its microphone: --play, else silence) and records what the Audio
 * Gateway sends back (its earpiece: --record).
 *
 *   sco_headset --log FILE [--play in.wav] [--record out.wav] [--packet 48]
 *               [--seconds S] [--drop-every K] [--quiet-for S]
 *
 * The codec comes from the voice setting the AG's socket was given (the
 * stand-in's first datagram): 0x0060 CVSD (the samples as they are, 8 kHz),
 * 0x0003 transparent: mSBC (16 kHz), encoded and decoded here with libsbc
 * itself and the H2 header written and searched for independently of the
 * plugin's hfp/msbc.c. --drop-every K: every Kth packet is not sent (the
 * air lost it). --quiet-for S: nothing is sent for the first S seconds (a
 * negative S: never), as over BlueZ's emulator, which forwards only what a
 * host writes, with a headset program that writes only while it has audio
 * (bluez-alsa). The log ends with a line of counts.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <sbc/sbc.h>

#define MSBC_SAMPLES 120
#define MSBC_FRAME 60
#define MAX_SAMPLES (16000 * 600)

static volatile sig_atomic_t stop;
static const uint8_t h2_seq[4] = { 0x08, 0x38, 0xc8, 0xf8 };

struct pcm { int16_t *s; size_t n, cap; };

static void push(struct pcm *p, const int16_t *s, size_t n)
{
	if (p->n + n > p->cap) {
		p->cap = p->cap ? p->cap * 2 + n : 16000 + n;
		p->s = realloc(p->s, p->cap * sizeof(*p->s));
		if (!p->s)
			abort();
	}
	memcpy(p->s + p->n, s, n * sizeof(*s));
	p->n += n;
}

static int read_wav(const char *path, struct pcm *p)
{
	FILE *f = fopen(path, "rb");
	uint8_t hdr[12], ch[8];
	int16_t buf[4096];
	size_t n;

	if (!f || fread(hdr, 1, 12, f) != 12 || memcmp(hdr, "RIFF", 4) || memcmp(hdr + 8, "WAVE", 4))
		return -1;
	while (fread(ch, 1, 8, f) == 8) {
		uint32_t len = ch[4] | ch[5] << 8 | ch[6] << 16 | (uint32_t)ch[7] << 24;

		if (!memcmp(ch, "data", 4))
			break;
		fseek(f, len + (len & 1), SEEK_CUR);
	}
	while ((n = fread(buf, 2, 4096, f)) > 0)
		push(p, buf, n);
	fclose(f);
	return 0;
}

static void put32(uint8_t *b, uint32_t v)
{
	b[0] = v; b[1] = v >> 8; b[2] = v >> 16; b[3] = v >> 24;
}

/* Whole or not at all: written aside, then renamed (a test may be waiting). */
static int write_wav(const char *path, const struct pcm *p, unsigned rate)
{
	uint8_t h[44] = "RIFF....WAVEfmt \x10\0\0\0\x01\0\x01\0........\x02\0\x10\0data....";
	char part[4096];
	FILE *f;

	snprintf(part, sizeof(part), "%s.part", path);
	if (!(f = fopen(part, "wb")))
		return -1;
	put32(h + 4, 36 + p->n * 2);
	put32(h + 24, rate);
	put32(h + 28, rate * 2);
	put32(h + 40, p->n * 2);
	fwrite(h, 1, 44, f);
	fwrite(p->s, 2, p->n, f);
	if (fclose(f) != 0)
		return -1;
	return rename(part, path);
}

struct headset {
	int fd, msbc, packet;
	unsigned rate;
	sbc_t enc, dec;
	struct pcm play, rec;
	size_t played;
	unsigned seq;
	uint8_t out[4 * MSBC_FRAME + 2048], in[4 * MSBC_FRAME + 2048];
	size_t out_len, in_len;
	unsigned long sent, dropped, received, bytes_in, bad_len, frames_in, sync_lost;
};

static void mic_samples(struct headset *h, int16_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s[i] = h->played < h->play.n ? h->play.s[h->played++] : 0;
}

static void fill_packet(struct headset *h)
{
	while (h->out_len < (size_t)h->packet) {
		if (!h->msbc) {
			mic_samples(h, (int16_t *)(h->out + h->out_len), (h->packet - h->out_len) / 2);
			h->out_len = h->packet;
			break;
		}
		int16_t pcm[MSBC_SAMPLES];
		uint8_t *f = h->out + h->out_len;
		ssize_t written = 0;

		mic_samples(h, pcm, MSBC_SAMPLES);
		f[0] = 0x01;
		f[1] = h2_seq[h->seq++ % 4];
		sbc_encode(&h->enc, pcm, sizeof(pcm), f + 2, 57, &written);
		f[59] = 0;
		h->out_len += MSBC_FRAME;
	}
}

static void send_packet(struct headset *h, unsigned long k, int drop_every)
{
	fill_packet(h);
	if (drop_every && k % (unsigned long)drop_every == (unsigned long)drop_every - 1)
		h->dropped++;
	else if (send(h->fd, h->out, h->packet, MSG_NOSIGNAL) == h->packet)
		h->sent++;
	memmove(h->out, h->out + h->packet, h->out_len - h->packet);
	h->out_len -= h->packet;
}

/* mSBC received: H2 header, SBC frame, pad, found by their sync bytes. */
static void decode_msbc(struct headset *h)
{
	size_t i = 0;

	while (h->in_len - i >= MSBC_FRAME) {
		const uint8_t *f = h->in + i;
		int16_t pcm[MSBC_SAMPLES];
		size_t got = 0;

		if (f[0] != 0x01 || (f[1] & 0x0f) != 0x08 || f[2] != 0xad) {
			i++;
			h->sync_lost++;
			continue;
		}
		if (sbc_decode(&h->dec, f + 2, 57, pcm, sizeof(pcm), &got) > 0 && got == sizeof(pcm)) {
			push(&h->rec, pcm, MSBC_SAMPLES);
			h->frames_in++;
		}
		i += MSBC_FRAME;
	}
	memmove(h->in, h->in + i, h->in_len - i);
	h->in_len -= i;
}

static int receive(struct headset *h)
{
	uint8_t buf[2048];
	ssize_t n;

	while ((n = recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		h->received++;
		h->bytes_in += n;
		if (n != h->packet)
			h->bad_len++;
		if (!h->msbc) {
			push(&h->rec, (const int16_t *)buf, n / 2);
			continue;
		}
		if (h->in_len + n > sizeof(h->in))
			h->in_len = 0;
		memcpy(h->in + h->in_len, buf, n);
		h->in_len += n;
		decode_msbc(h);
	}
	return n == 0 ? -1 : 0;
}

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	const char *log_path = NULL, *play = NULL, *record = NULL;
	struct headset h = { .fd = 3, .packet = 48 };
	double seconds = 0, quiet = 0;
	int drop_every = 0, tfd;
	char hello[128] = "";
	unsigned voice = 0;
	FILE *log;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--log")) log_path = argv[i + 1];
		else if (!strcmp(argv[i], "--play")) play = argv[i + 1];
		else if (!strcmp(argv[i], "--record")) record = argv[i + 1];
		else if (!strcmp(argv[i], "--packet")) h.packet = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--drop-every")) drop_every = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--quiet-for")) quiet = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--fd")) h.fd = atoi(argv[i + 1]);
	}
	if (!log_path || !(log = fopen(log_path, "a")) || h.packet < 2 || h.packet > 1024)
		return 2;
	signal(SIGTERM, on_term);
	signal(SIGPIPE, SIG_IGN);
	/* The stand-in's first datagram: what the AG's socket was set to. */
	if (recv(h.fd, hello, sizeof(hello) - 1, 0) <= 0 || sscanf(hello, "voice=%x", &voice) != 1) {
		fprintf(log, "sco: no hello\n");
		return 1;
	}
	fprintf(log, "sco: %s\n", hello);
	fflush(log);
	h.msbc = voice == 0x0003;
	h.rate = h.msbc ? 16000 : 8000;
	if (h.msbc && (sbc_init_msbc(&h.enc, 0) < 0 || sbc_init_msbc(&h.dec, 0) < 0))
		return 1;
	if (play && read_wav(play, &h.play) < 0) {
		fprintf(log, "sco: cannot read %s\n", play);
		return 1;
	}
	/* The period of one packet: 48 bytes are 3 ms of CVSD, 6 ms of mSBC. */
	long period_ns = h.msbc ? (long)h.packet * 7500000L / MSBC_FRAME
				: (long)h.packet / 2 * 1000000000L / 8000;
	struct itimerspec its = { .it_interval = { 0, period_ns }, .it_value = { 0, period_ns } };
	struct timespec t0, now;

	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	timerfd_settime(tfd, 0, &its, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long k = 0; !stop;) {
		struct pollfd p[2] = { { .fd = tfd, .events = POLLIN }, { .fd = h.fd, .events = POLLIN } };
		uint64_t ticks = 0;
		double elapsed;

		if (poll(p, 2, 100) < 0 && errno != EINTR)
			break;
		if (p[1].revents && receive(&h) < 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		elapsed = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
		if (p[0].revents && read(tfd, &ticks, sizeof(ticks)) == sizeof(ticks))
			while (ticks-- && (quiet >= 0 && elapsed >= quiet))
				send_packet(&h, k++, drop_every);
		if (seconds > 0 && elapsed > seconds)
			break;
	}
	if (record)
		write_wav(record, &h.rec, h.rate);
	fprintf(log, "sco: end codec=%s sent=%lu dropped=%lu received=%lu bytes_in=%lu bad_len=%lu frames_in=%lu sync_lost=%lu played=%zu recorded=%zu\n",
		h.msbc ? "msbc" : "cvsd", h.sent, h.dropped, h.received, h.bytes_in, h.bad_len,
		h.frames_in, h.sync_lost, h.played, h.rec.n);
	fclose(log);
	close(h.fd);
	return 0;
}
