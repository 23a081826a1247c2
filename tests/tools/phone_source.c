/*
 * The test phone: streams a WAV file as A2DP into a socket, at real-time
 * pace, as a phone's A2DP Source would. The mock bluetoothd spawns it with
 * the other end of the transport socket it hands the capture PCM.
 *
 *   phone_source --fd 3 --wav in.wav --config HEX [--codec sbc|aptx|aptx_hd|aac]
 *                [--mtu 672] [--bitrate N] [--marker 0] [--drop 20,21] [--late 30:1]
 *                [--pause-at S --pause-for S] [--hold-at S --hold-for S] [--log out.csv]
 *
 * It encodes with the libraries themselves, not with the plugin's encoders,
 * as a phone would: SBC (libsbc) in RTP with its payload header; aptX
 * (libfreeaptx) as bare codewords, mtu / 4 of them a packet (as PipeWire);
 * aptX HD (libfreeaptx) in RTP, (mtu - 12) / 6 codewords; AAC (libavcodec's
 * encoder) as LATM in RTP (RFC 3016), written here with audioMuxVersion 0
 * (not the plugin's latm.c, which writes version 1), one frame of 1024
 * samples per RTP timestamp, in as many packets as the MTU needs, the marker
 * bit on the last. AAC's bitrate is the configuration's, capped (as Android
 * and PipeWire do) so that a frame usually fits the MTU; --bitrate sets it.
 *
 * --drop: packet indices (every packet sent counts, fragments too) not sent (their sequence numbers and timestamps are
 * skipped, as a radio loses them). --pause-at/--pause-for: nothing is sent
 * for that long (the audio itself is not skipped: it continues after, with
 * timestamps that continue too; with --clock-runs 1 they jump by the pause,
 * as a phone whose RTP clock keeps running). --late K:N: packet K is sent
 * right after packet K + N instead (reordered; N 1 swaps two). --hold-at/
 * --hold-for: the packets due in that window are held and sent at its end,
 * at once (a radio retransmitting, then catching up: a burst).
 * --log: "index,seq,timestamp,frames,sent_ns,dropped" in the order sent.
 * After the file it keeps the socket open, silent, until killed.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <freeaptx.h>
#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/log.h>
#include <sbc/sbc.h>

#include "../../a2dp/rtp.h"

#define MAX_DROPS 64
#define MAX_LATE 8
#define NS 1000000000LL

struct opts {
	int fd;
	const char *wav, *log;
	uint8_t config[16];
	size_t config_len;
	const char *codec;
	unsigned mtu, bitrate;
	int no_marker;
	long drops[MAX_DROPS];
	int ndrops;
	double pause_at, pause_for, hold_at, hold_for;
	int clock_runs;
	long late[MAX_LATE], late_by[MAX_LATE];     /* --late K:N,... */
	int nlate;
};

static int parse_config(const char *hex, struct opts *o)
{
	size_t n = strlen(hex) / 2;
	unsigned v;

	if (strlen(hex) % 2 || !n || n > sizeof(o->config))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		o->config[i] = v;
	}
	o->config_len = n;
	return 0;
}

/* "K:N,K:N": packet K sent after packet K + N; the windows must not overlap. */
static int parse_late(const char *v, struct opts *o)
{
	char *end = (char *)v;

	while (*end && o->nlate < MAX_LATE) {
		o->late[o->nlate] = strtol(end, &end, 10);
		if (*end++ != ':')
			return -1;
		o->late_by[o->nlate] = strtol(end, &end, 10);
		if (o->late[o->nlate] < 0 || o->late_by[o->nlate] <= 0)
			return -1;
		o->nlate++;
		if (*end == ',')
			end++;
	}
	return o->nlate ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->mtu = 672;
	o->codec = "sbc";
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (!strcmp(k, "--fd"))
			o->fd = atoi(v);
		else if (!strcmp(k, "--wav"))
			o->wav = v;
		else if (!strcmp(k, "--log"))
			o->log = v;
		else if (!strcmp(k, "--mtu"))
			o->mtu = atoi(v);
		else if (!strcmp(k, "--config") && parse_config(v, o) == 0)
			continue;
		else if (!strcmp(k, "--codec") && (!strcmp(v, "sbc") || !strcmp(v, "aptx") ||
						  !strcmp(v, "aptx_hd") || !strcmp(v, "aac")))
			o->codec = v;
		else if (!strcmp(k, "--bitrate"))
			o->bitrate = atoi(v);
		else if (!strcmp(k, "--marker"))
			o->no_marker = !atoi(v);
		else if (!strcmp(k, "--pause-at"))
			o->pause_at = atof(v);
		else if (!strcmp(k, "--pause-for"))
			o->pause_for = atof(v);
		else if (!strcmp(k, "--clock-runs"))
			o->clock_runs = atoi(v);
		else if (!strcmp(k, "--hold-at"))
			o->hold_at = atof(v);
		else if (!strcmp(k, "--hold-for"))
			o->hold_for = atof(v);
		else if (!strcmp(k, "--late") && parse_late(v, o) == 0)
			continue;
		else if (!strcmp(k, "--drop")) {
			char *end = (char *)v;

			while (*end && o->ndrops < MAX_DROPS) {
				o->drops[o->ndrops++] = strtol(end, &end, 10);
				if (*end == ',')
					end++;
			}
		} else {
			fprintf(stderr, "phone_source: bad argument %s %s\n", k, v);
			return -1;
		}
	}
	return o->fd >= 0 && o->wav && o->config_len && o->mtu > RTP_HEADER_LEN + 16 ? 0 : -1;
}

/* The PCM of a 16-bit WAV (the tests write plain 44-byte headers). */
static uint8_t *read_wav(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	long size;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 44 && fseek(f, 44, SEEK_SET) == 0 &&
	    (data = malloc(size - 44)) && fread(data, 1, size - 44, f) == (size_t)(size - 44))
		*len = size - 44;
	else {
		free(data);
		data = NULL;
	}
	fclose(f);
	return data;
}

static int dropped(const struct opts *o, long k)
{
	for (int i = 0; i < o->ndrops; i++)
		if (o->drops[i] == k)
			return 1;
	return 0;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

/* A packet on its way: sent (unless --drop names it) and logged. */
struct packet {
	uint8_t data[8192];
	size_t len;
	long index;
	unsigned seq, frames;
	uint32_t ts;
};

/* The --late entry that holds packet k back, or that releases it after k; -1. */
static int late_entry(const struct opts *o, long k, int after)
{
	for (int i = 0; i < o->nlate; i++)
		if (k == o->late[i] + (after ? o->late_by[i] : 0))
			return i;
	return -1;
}

static int emit(const struct opts *o, FILE *log, const struct packet *p)
{
	int drop = dropped(o, p->index);

	if (!drop && send(o->fd, p->data, p->len, MSG_NOSIGNAL) < 0 && errno == EPIPE)
		return -1;
	if (log)
		fprintf(log, "%ld,%u,%u,%u,%lld,%d\n", p->index, p->seq & 0xffff, p->ts, p->frames,
			(long long)now_ns(), drop);
	return 0;
}

static void sleep_until(int64_t t)
{
	struct timespec ts = { t / NS, t % NS };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* --- the codecs: each makes one unit (a packet's payload; AAC: a frame)
 * of `step` PCM frames ------------------------------------------------------ */

struct phone {
	const struct opts *o;
	unsigned rate, step;             /* PCM frames a unit */
	int rtp;                         /* RAW framing (aptX) has no RTP header */
	sbc_t sbc;
	size_t codesize, fpp;
	struct aptx_context *aptx;
	size_t codeword;
	AVCodecContext *aac;
	AVFrame *frame;
	AVPacket *pkt;
	int64_t pts;
};

/* SBC's and aptX's rate bits (the high nibble) are the same. */
static unsigned rate_of(uint8_t b)
{
	switch (b & 0xf0) {
	case 0x80: return 16000;
	case 0x40: return 32000;
	case 0x20: return 44100;
	default: return 48000;
	}
}

static int setup(struct phone *ph)
{
	const struct opts *o = ph->o;

	ph->rtp = 1;
	if (!strcmp(o->codec, "sbc")) {
		size_t frame_len;

		if (o->config_len != 4)
			return -1;
		sbc_init_a2dp(&ph->sbc, 0, o->config, 4);
		ph->sbc.endian = SBC_LE;
		ph->sbc.bitpool = o->config[3];        /* sbc_init_a2dp leaves 32 */
		ph->rate = rate_of(o->config[0]);
		ph->codesize = sbc_get_codesize(&ph->sbc);
		frame_len = sbc_get_frame_length(&ph->sbc);
		ph->fpp = (o->mtu - RTP_HEADER_LEN - 1) / frame_len;
		if (ph->fpp > 15)
			ph->fpp = 15;
		ph->step = ph->fpp * ph->codesize / 4;
		return 0;
	}
	if (!strncmp(o->codec, "aptx", 4)) {
		int hd = !strcmp(o->codec, "aptx_hd");

		if (o->config_len != (hd ? 11u : 7u) || !(ph->aptx = aptx_init(hd)))
			return -1;
		ph->rate = rate_of(o->config[6]);
		ph->rtp = hd;
		ph->codeword = hd ? 6 : 4;
		ph->step = (o->mtu - (hd ? RTP_HEADER_LEN : 0)) / ph->codeword * 4;
		return 0;
	}
	/* AAC */
	const AVCodec *c = avcodec_find_encoder(AV_CODEC_ID_AAC);
	unsigned cfg_bitrate, fit;

	if (o->config_len != 6 || !c)
		return -1;
	ph->rate = o->config[1] & 0x01 ? 44100 : 48000;
	cfg_bitrate = (unsigned)(o->config[3] & 0x7f) << 16 | o->config[4] << 8 | o->config[5];
	/* What fits the MTU with RTP and LATM around it; libavcodec 5.1 lets
	 * a frame overshoot by half, hence two thirds. */
	fit = (uint64_t)(o->mtu - RTP_HEADER_LEN - 16) * 8 * ph->rate / 1024 * 2 / 3;
	av_log_set_level(AV_LOG_ERROR);
	if (!(ph->aac = avcodec_alloc_context3(c)) || !(ph->frame = av_frame_alloc()) ||
	    !(ph->pkt = av_packet_alloc()))
		return -1;
	ph->aac->sample_fmt = AV_SAMPLE_FMT_FLTP;
	ph->aac->sample_rate = ph->rate;
	av_channel_layout_default(&ph->aac->ch_layout, 2);
	ph->aac->bit_rate = o->bitrate ? o->bitrate : cfg_bitrate < fit ? cfg_bitrate : fit;
	ph->aac->bit_rate_tolerance = 0;
	ph->aac->profile = FF_PROFILE_AAC_LOW;
	if (avcodec_open2(ph->aac, c, NULL) < 0 || ph->aac->frame_size != 1024)
		return -1;
	ph->frame->nb_samples = 1024;
	ph->frame->format = AV_SAMPLE_FMT_FLTP;
	av_channel_layout_default(&ph->frame->ch_layout, 2);
	if (av_frame_get_buffer(ph->frame, 0) < 0)
		return -1;
	ph->step = 1024;
	/* Primed with a frame of silence, as the plugin primes its encoder:
	 * libavcodec 5.1's encoder started on the sweep itself gives 33 dB
	 * throughout (measured through rtp_sink's decoder too), 55.8 so. */
	memset(ph->frame->data[0], 0, 1024 * sizeof(float));
	memset(ph->frame->data[1], 0, 1024 * sizeof(float));
	ph->frame->pts = 0;
	ph->pts = 1024;
	if (avcodec_send_frame(ph->aac, ph->frame) < 0)
		return -1;
	fprintf(stderr, "phone_source: AAC at %lld b/s\n", (long long)ph->aac->bit_rate);
	return 0;
}

struct bitw {
	uint8_t *buf;
	size_t pos;                      /* in bits */
};

static void put(struct bitw *b, unsigned n, unsigned v)
{
	while (n--) {
		if (b->pos % 8 == 0)
			b->buf[b->pos / 8] = 0;
		if (v >> n & 1)
			b->buf[b->pos / 8] |= 0x80 >> b->pos % 8;
		b->pos++;
	}
}

/* One AudioMuxElement with its StreamMuxConfig (audioMuxVersion 0, the
 * AudioSpecificConfig of AAC LC stereo inline). Returns its length. */
static size_t latm_v0(uint8_t *out, unsigned rate, const uint8_t *frame, size_t len)
{
	struct bitw b = { out, 0 };

	put(&b, 1, 0);                   /* useSameStreamMux */
	put(&b, 1, 0);                   /* audioMuxVersion 0 */
	put(&b, 1, 1);                   /* allStreamsSameTimeFraming */
	put(&b, 6, 0);                   /* numSubFrames - 1 */
	put(&b, 4, 0);                   /* numProgram - 1 */
	put(&b, 3, 0);                   /* numLayer - 1 */
	put(&b, 5, 2);                   /* ASC: AOT LC */
	put(&b, 4, rate == 48000 ? 3 : 4);
	put(&b, 4, 2);                   /* stereo */
	put(&b, 3, 0);                   /* GASpecificConfig */
	put(&b, 3, 0);                   /* frameLengthType 0 */
	put(&b, 8, 0xff);                /* latmBufferFullness */
	put(&b, 1, 0);                   /* otherDataPresent */
	put(&b, 1, 0);                   /* crcCheckPresent */
	for (size_t left = len;; left -= 255) {
		put(&b, 8, left >= 255 ? 255 : left);
		if (left < 255)
			break;
	}
	for (size_t i = 0; i < len; i++)
		put(&b, 8, frame[i]);
	put(&b, (8 - b.pos % 8) % 8, 0);
	return b.pos / 8;
}

/* One unit of `step` PCM frames (S16 stereo, or mono SBC) into out: the
 * payload after any RTP header. Returns its length, 0 for none (AAC's
 * encoder priming), -1 on an error. */
static ssize_t encode_unit(struct phone *ph, const uint8_t *pcm, uint8_t *out, size_t size)
{
	if (ph->sbc.priv) {
		size_t n = 1;

		out[0] = ph->fpp;
		for (unsigned i = 0; i < ph->fpp; i++) {
			ssize_t written = 0;

			sbc_encode(&ph->sbc, pcm + i * ph->codesize, ph->codesize, out + n, size - n, &written);
			n += written;
		}
		return n;
	}
	if (ph->aptx) {
		static uint8_t s24[4096 * 2 * 3];
		const int16_t *s = (const int16_t *)pcm;
		size_t written = 0, samples = (size_t)ph->step * 2;

		for (size_t i = 0; i < samples; i++) {
			int32_t v = (int32_t)s[i] * 256;

			s24[3 * i] = v;
			s24[3 * i + 1] = v >> 8;
			s24[3 * i + 2] = v >> 16;
		}
		if (aptx_encode(ph->aptx, s24, samples * 3, out, size, &written) != samples * 3)
			return -1;
		return written;
	}
	float *l, *r;
	const int16_t *s = (const int16_t *)pcm;
	ssize_t n = 0;
	int err;

	if (av_frame_make_writable(ph->frame) < 0)
		return -1;
	l = (float *)ph->frame->data[0];
	r = (float *)ph->frame->data[1];
	for (unsigned i = 0; i < 1024; i++) {
		l[i] = s[2 * i] / 32768.0f;
		r[i] = s[2 * i + 1] / 32768.0f;
	}
	ph->frame->pts = ph->pts;
	ph->pts += 1024;
	if (avcodec_send_frame(ph->aac, ph->frame) < 0)
		return -1;
	if ((err = avcodec_receive_packet(ph->aac, ph->pkt)) == AVERROR(EAGAIN))
		return 0;
	if (err < 0 || (size_t)ph->pkt->size + 16 + ph->pkt->size / 255 > size)
		return -1;
	n = latm_v0(out, ph->rate, ph->pkt->data, ph->pkt->size);
	av_packet_unref(ph->pkt);
	return n;
}

static void finish(struct phone *ph)
{
	if (ph->sbc.priv)
		sbc_finish(&ph->sbc);
	if (ph->aptx)
		aptx_finish(ph->aptx);
	avcodec_free_context(&ph->aac);
	av_frame_free(&ph->frame);
	av_packet_free(&ph->pkt);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct phone ph = { .o = &o };
	static uint8_t unit[8192];
	static struct packet pk, held[MAX_LATE];     /* --late's packets, until their turn */
	size_t len, pos = 0, frame_bytes = 4;   /* the tests' WAVs: S16 stereo */
	uint8_t *pcm;
	unsigned seq = 1000;
	uint32_t ts = 50000;
	long sent = 0;
	int i;
	int64_t t0;
	FILE *log = NULL;

	if (parse_args(argc, argv, &o) < 0 || !(pcm = read_wav(o.wav, &len))) {
		fprintf(stderr, "usage: phone_source --fd N --wav F --config HEX [--codec sbc|aptx|aptx_hd|aac] [--mtu N] [--bitrate N] [--drop i,j] [--late K:N] [--pause-at S --pause-for S] [--hold-at S --hold-for S] [--log F]\n");
		return 2;
	}
	if (setup(&ph) < 0) {
		fprintf(stderr, "phone_source: cannot set up %s with this --config\n", o.codec);
		return 1;
	}
	/* Line-buffered: a test reads the log while we still run. */
	if (o.log && (log = fopen(o.log, "w")))
		setvbuf(log, NULL, _IOLBF, 0);
	/* The last unit is padded with silence, and a quarter second more pushes
	 * the codecs' delays out: the whole file arrives. */
	{
		size_t step = (size_t)ph.step * frame_bytes, more_frames = ph.rate / 4;
		size_t padded = (len + more_frames * frame_bytes + step - 1) / step * step;
		uint8_t *more = realloc(pcm, padded);

		if (!more)
			return 1;
		memset(more + len, 0, padded - len);
		pcm = more;
		len = padded;
	}
	t0 = now_ns();
	for (long k = 0; pos + (size_t)ph.step * frame_bytes <= len; k++) {
		int64_t due = t0 + (int64_t)k * ph.step * NS / ph.rate;
		size_t head = ph.rtp ? RTP_HEADER_LEN : 0, room = o.mtu - head;
		ssize_t n;

		if (o.pause_for > 0 && due >= t0 + (int64_t)(o.pause_at * NS)) {
			due += (int64_t)(o.pause_for * NS);
			if (o.clock_runs) {           /* once, at the first packet after it */
				ts += (uint32_t)(o.pause_for * ph.rate);
				o.clock_runs = 0;
			}
		}
		if (o.hold_for > 0 && due >= t0 + (int64_t)(o.hold_at * NS) &&
		    due < t0 + (int64_t)((o.hold_at + o.hold_for) * NS))
			due = t0 + (int64_t)((o.hold_at + o.hold_for) * NS);
		sleep_until(due);
		if ((n = encode_unit(&ph, pcm + pos, unit, sizeof(unit))) < 0) {
			fprintf(stderr, "phone_source: %s: encoding failed\n", o.codec);
			return 1;
		}
		pos += (size_t)ph.step * frame_bytes;
		/* Fragments of room bytes (AAC's frame may need several). */
		for (size_t off = 0; off < (size_t)n; off += room, sent++) {
			size_t part = (size_t)n - off < room ? (size_t)n - off : room;
			int last = off + part == (size_t)n;

			if (ph.rtp) {
				rtp_write_header(pk.data, seq, ts, 1);
				if (last && ph.aac && !o.no_marker)
					rtp_set_marker(pk.data);
			}
			memcpy(pk.data + head, unit + off, part);
			pk.len = head + part;
			pk.index = sent;
			pk.seq = seq;
			pk.ts = ts;
			pk.frames = last ? ph.step : 0;
			if ((i = late_entry(&o, sent, 0)) >= 0)
				held[i] = pk;
			else if (emit(&o, log, &pk) < 0)
				goto out;
			if ((i = late_entry(&o, sent, 1)) >= 0 && emit(&o, log, &held[i]) < 0)
				goto out;
			seq++;
		}
		if (n)
			ts += ph.step;
	}
out:
	if (log)
		fclose(log);
	/* A phone keeps the stream open after the song, until the other end
	 * closes it or the mock ends us. */
	struct pollfd p = { .fd = o.fd, .events = 0 };

	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	finish(&ph);
	free(pcm);
	return 0;
}
