/*
 * bench_encode: the C half of `make bench` (bench/bench.py drives it).
 *
 *   bench_encode encode WAV [--mode both|codec|libsbc] [--seconds S] [--min-cpu S]
 *                           [--rounds N]
 *       Encodes the WAV (16-bit stereo 44.1 kHz) as fast as it can, in two ways:
 *         codec   the project's codec table (a2dp_codec_sbc) as the plugin's I/O
 *                 thread uses it: encoder_new(21 15 02 35), packets of
 *                 frames_per_packet(672) SBC frames, encode() + rtp_write_header()
 *         libsbc  sbc_encode() alone, one SBC frame at a time, same configuration
 *       Each mode runs in N rounds (default 5, alternating the modes) of passes
 *       over the audio until --min-cpu / N seconds of CPU are used (default
 *       --min-cpu 1; 0 = exactly one pass, for callgrind); the fastest round
 *       counts. --seconds limits the audio to its first S seconds. Prints per
 *       mode one line (figures of that round):
 *         MODE audio_s=A passes=P cpu_s=C wall_s=W bytes=B packets=N rounds=N
 *       CPU time is CLOCK_PROCESS_CPUTIME_ID. The work of one pass is in
 *       bench_pass_codec() / bench_pass_libsbc(), for callgrind --toggle-collect.
 *
 *   bench_encode codecs WAV [--min-cpu S] [--codec NAME]
 *       For every codec of the table (sbc, sbc_xq, aptx, aptx_hd, aac, ldac): CPU per second
 *       of audio through the codec table as the I/O thread uses it (PCM in the
 *       codec's sample format, frames_per_packet(672) frames a packet, encode()
 *       + the RTP header where the codec has one), and for the bare library on
 *       the same audio (sbc_encode() a frame at a time; libfreeaptx's
 *       aptx_encode() on the whole buffer, already 24-bit packed; libavcodec's
 *       AAC encoder at the bitrate the table chose, opened with dlopen() as
 *       the plugin opens it; libldacBT_enc at SQ, 128 samples a call). LDAC
 *       goes through the table at MTU 679. The fastest of 3 rounds counts.
 *       --codec NAME: that codec only, and no other codec's library opened.
 *       A codec whose library is not here is skipped (a line on stderr),
 *       unless asked for by name; Y is "-" where the bare library cannot be
 *       loaded. One line a codec:
 *         CODEC name=N table_cpu_per_audio=X lib_cpu_per_audio=Y
 *
 *   bench_encode decode WAV [--codec NAME] [--min-cpu S]
 *       The receive direction: the WAV is first encoded into packets by the
 *       codec table's encoder (MTU 672, the configuration of `codecs`; SBC
 *       21150235), kept in memory; then those payloads are decoded as fast as
 *       possible, the way the capture's I/O thread does: the table's decode()
 *       one packet at a time (bench_pass_decode_table()), and for SBC also
 *       sbc_decode() alone, one SBC frame a call (bench_pass_decode_libsbc()).
 *       Every codec of the table that has a decoder, or only NAME. The fastest
 *       of 3 rounds counts (--min-cpu 0: exactly one pass, for callgrind). One
 *       line a codec (lib_cpu_per_audio=- where there is no bare loop):
 *         DECODE name=N packets=P audio_s=A table_cpu_per_audio=X lib_cpu_per_audio=Y
 *       A codec without a decoder: "DECODE name=N none".
 *
 *   bench_encode latency PCM [--seconds S] [--click-every S]
 *       Opens PCM (e.g. bluetooth:DEV=...) and sets it up the way aplay does at
 *       its defaults (aplay.c set_params: buffer_time = min(max, 500 ms),
 *       period_time = buffer_time / 4, set_period_time_near then
 *       set_buffer_time_near; avail_min = period, start_threshold =
 *       stop_threshold = buffer), then writes S seconds of silence with a
 *       one-frame click every --click-every seconds, one period per blocking
 *       snd_pcm_writei() (as aplay). Prints, all times CLOCK_MONOTONIC in ns:
 *         open_ns=T0 opened_ns=T1 params_ns=T2 buffer=B period=P rate=R
 *         write0_ns=T                              (just before the first write)
 *         click frame=K before_ns=T after_ns=T delay=D chunk_end=E
 *         done_ns=T drained_ns=T
 *       D is snd_pcm_delay() right after the write that held the click; frames
 *       0..E-1 had been written by then.
 *
 *   bench_encode spawn -- COMMAND [ARGS...]
 *       Runs COMMAND (stdout to /dev/null, stderr inherited), waits for it and
 *       prints its resource use from wait4():
 *         spawn_ns=T exit_ns=T status=S user_s=U sys_s=S maxrss_kb=M
 *         nvcsw=V nivcsw=I self_hwm_kb=H self_cpu_s=C
 *       (V, I: voluntary and involuntary context switches, all threads; C:
 *       our own CPU, mostly loading the codec libraries we link, for a
 *       figure taken from a group that holds us too)
 *       spawn_ns is CLOCK_MONOTONIC just before fork(). A plain fork() from
 *       here, because Python's subprocess starts children with vfork(), and at
 *       exec the kernel then records Python's peak RSS (tens of MB) in the
 *       child's ru_maxrss. H is our own peak RSS, printed for reference; a
 *       forked child does not inherit it (a 1.2 MB child reports 1.2 MB).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <alsa/asoundlib.h>
#include <sbc/sbc.h>

#include "avcodec_lib.h"
#include "codec.h"
#include "rtp.h"

#define MTU 672
#define RATE 44100
#define CHANNELS 2

static const uint8_t config[4] = { 0x21, 0x15, 0x02, 0x35 };  /* 44.1k joint, 16/8/loudness, bp 2..53 */

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_encode: %s: %s\n", what, err ? strerror(err < 0 ? -err : err) : "failed");
	exit(1);
}

/* --- WAV input ------------------------------------------------------------ */

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const uint8_t *p) { return p[0] | p[1] << 8; }

/* Reads a 16-bit stereo 44.1 kHz PCM WAV; returns the frame count. */
static size_t read_wav(const char *path, int16_t **pcm)
{
	FILE *f = fopen(path, "rb");
	uint8_t head[12], ch[8], fmt[16];
	int have_fmt = 0;

	if (!f)
		die(path, errno);
	if (fread(head, 1, 12, f) != 12 || memcmp(head, "RIFF", 4) || memcmp(head + 8, "WAVE", 4))
		die("not a RIFF/WAVE file", 0);
	while (fread(ch, 1, 8, f) == 8) {
		uint32_t len = le32(ch + 4);

		if (!memcmp(ch, "fmt ", 4) && len >= 16) {
			if (fread(fmt, 1, 16, f) != 16 || fseek(f, len - 16 + (len & 1), SEEK_CUR))
				die("short fmt chunk", 0);
			if (le16(fmt) != 1 || le16(fmt + 2) != CHANNELS || le32(fmt + 4) != RATE ||
			    le16(fmt + 14) != 16)
				die("the WAV must be PCM 16-bit stereo 44100 Hz", 0);
			have_fmt = 1;
		} else if (!memcmp(ch, "data", 4) && have_fmt) {
			size_t frames = len / (2 * CHANNELS);

			if (!(*pcm = malloc(frames * 2 * CHANNELS + 1)))
				die("malloc", ENOMEM);
			frames = fread(*pcm, 2 * CHANNELS, frames, f);
			fclose(f);
			/* The file is little-endian, as the encoders are told (SBC_LE). */
			return frames;
		} else if (fseek(f, len + (len & 1), SEEK_CUR)) {
			break;
		}
	}
	die("no fmt/data chunk", 0);
	return 0;
}

/* --- encoding ------------------------------------------------------------- */

struct result {
	uint64_t bytes, packets;
};

/* One pass of the plugin's encode path over pcm; noinline for --toggle-collect. */
__attribute__((noinline))
void bench_pass_codec(struct a2dp_encoder *enc, const int16_t *pcm, size_t frames,
		      struct result *r)
{
	const struct a2dp_codec *c = &a2dp_codec_sbc;
	unsigned fpp = c->frames_per_packet(enc, MTU);
	size_t step = (size_t)fpp * c->frame_samples(enc);
	static uint8_t packet[MTU];
	static uint16_t seq;
	static uint32_t ts;

	for (size_t pos = 0; pos + step <= frames; pos += step) {
		ssize_t n = c->encode(enc, pcm + pos * CHANNELS, fpp, packet + RTP_HEADER_LEN,
				      MTU - RTP_HEADER_LEN);

		if (n < 0)
			die("encode", (int)n);
		rtp_write_header(packet, seq++, ts, 1);
		ts += step;
		r->bytes += RTP_HEADER_LEN + n;
		r->packets++;
	}
}

/* One pass of plain sbc_encode(), one SBC frame per call. */
__attribute__((noinline))
void bench_pass_libsbc(sbc_t *sbc, const int16_t *pcm, size_t frames, struct result *r)
{
	size_t codesize = sbc_get_codesize(sbc), step = codesize / (2 * CHANNELS);
	static uint8_t out[512];

	for (size_t pos = 0; pos + step <= frames; pos += step) {
		ssize_t written = 0;
		ssize_t used = sbc_encode(sbc, pcm + pos * CHANNELS, codesize, out, sizeof(out),
					  &written);

		if (used != (ssize_t)codesize || written <= 0)
			die("sbc_encode", used < 0 ? (int)used : 0);
		r->bytes += written;
		r->packets++;
	}
}

/* One encoder of each kind, set up once. */
struct encoders {
	struct a2dp_encoder *enc;
	sbc_t sbc;
};

/* The best (least CPU per audio second) of the blocks run so far, per mode. */
struct best {
	double cpu_per_audio, cpu_s, wall_s, audio_s;
	unsigned passes;
	struct result r;
};

/* Passes over the audio until min_cpu seconds of CPU are used (at least one). */
static void run_block(struct encoders *e, int is_codec, const int16_t *pcm, size_t frames,
		      double min_cpu, struct best *best)
{
	struct result r = { 0, 0 };
	unsigned passes = 0;
	int64_t c0, w0, c1, w1;
	double audio_s, cpu_s;

	c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	w0 = clock_ns(CLOCK_MONOTONIC);
	do {
		if (is_codec)
			bench_pass_codec(e->enc, pcm, frames, &r);
		else
			bench_pass_libsbc(&e->sbc, pcm, frames, &r);
		passes++;
		c1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	} while ((c1 - c0) / 1e9 < min_cpu);
	w1 = clock_ns(CLOCK_MONOTONIC);
	audio_s = (double)frames * passes / RATE;
	cpu_s = (c1 - c0) / 1e9;
	if (!best->passes || cpu_s / audio_s < best->cpu_per_audio) {
		best->cpu_per_audio = cpu_s / audio_s;
		best->cpu_s = cpu_s;
		best->wall_s = (w1 - w0) / 1e9;
		best->audio_s = audio_s;
		best->passes = passes;
		best->r = r;
	}
}

static void print_best(const char *mode, const struct best *b, unsigned rounds)
{
	printf("%s audio_s=%.6f passes=%u cpu_s=%.6f wall_s=%.6f bytes=%" PRIu64
	       " packets=%" PRIu64 " rounds=%u\n", mode, b->audio_s, b->passes, b->cpu_s,
	       b->wall_s, b->r.bytes, b->r.packets, rounds);
}

static int cmd_encode(int argc, char **argv)
{
	const char *path = NULL, *mode = "both";
	double seconds = 0, min_cpu = 1.0;
	unsigned rounds = 5;
	struct encoders e;
	struct best best[2];
	int16_t *pcm;
	size_t frames;
	int err, want[2];

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--mode") && i + 1 < argc)
			mode = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--min-cpu") && i + 1 < argc)
			min_cpu = atof(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!path && argv[i][0] != '-')
			path = argv[i];
		else
			return 2;
	}
	want[0] = !strcmp(mode, "both") || !strcmp(mode, "libsbc");
	want[1] = !strcmp(mode, "both") || !strcmp(mode, "codec");
	if (!path || (!want[0] && !want[1]))
		return 2;
	if (min_cpu <= 0 || rounds < 1)
		rounds = 1;
	frames = read_wav(path, &pcm);
	if (seconds > 0 && frames > seconds * RATE)
		frames = seconds * RATE;

	if ((err = a2dp_codec_sbc.encoder_new(&e.enc, config, sizeof(config), MTU, NULL)) < 0)
		die("encoder_new", err);
	if ((err = sbc_init_a2dp(&e.sbc, 0, config, sizeof(config))) < 0)
		die("sbc_init_a2dp", err);
	e.sbc.endian = SBC_LE;
	e.sbc.bitpool = config[3];      /* as the codec table does */
	memset(best, 0, sizeof(best));
	/* Rounds alternate the two, so that a clock or load change hits both alike;
	 * the fastest round of each counts (the least disturbed one). */
	for (unsigned i = 0; i < rounds; i++)
		for (int m = 0; m < 2; m++)
			if (want[m])
				run_block(&e, m, pcm, frames, min_cpu / rounds, &best[m]);
	if (want[1])
		print_best("codec", &best[1], rounds);
	if (want[0])
		print_best("libsbc", &best[0], rounds);
	a2dp_codec_sbc.encoder_free(e.enc);
	sbc_finish(&e.sbc);
	free(pcm);
	return 0;
}

/* --- every codec ------------------------------------------------------------ */

typedef size_t (*aptx_encode_fn)(void *ctx, const unsigned char *in, size_t in_size,
				 unsigned char *out, size_t out_size, size_t *written);

struct codec_run {
	const struct a2dp_codec *codec;
	const uint8_t *config;
	size_t config_len;
	int aptx_hd;                 /* -1: SBC (libsbc); -2: AAC (libavcodec); -3: LDAC */
};

/* CPU seconds per audio second of fn(arg) over `frames`, the best of 3 rounds
 * of at least min_cpu / 3 s. */
static double cpu_per_audio(void (*fn)(void *arg), void *arg, size_t frames, double min_cpu)
{
	double best = 0;

	for (int round = 0; round < 3; round++) {
		int64_t c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID), c1;
		unsigned passes = 0;
		double v;

		do {
			fn(arg);
			passes++;
			c1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		} while ((c1 - c0) / 1e9 < min_cpu / 3);
		v = (c1 - c0) / 1e9 / ((double)frames * passes / RATE);
		if (!round || v < best)
			best = v;
	}
	return best;
}

struct table_pass {
	const struct a2dp_codec *c;
	struct a2dp_encoder *enc;
	const uint8_t *pcm;          /* in the codec's sample format */
	size_t frames, frame_bytes;
};

__attribute__((noinline))
static void table_pass(void *arg)
{
	struct table_pass *t = arg;
	const struct a2dp_codec *c = t->c;
	size_t head = c->framing == A2DP_FRAMING_RTP ? RTP_HEADER_LEN : 0;
	unsigned fpp = c->frames_per_packet(t->enc, c->whole_packets ? 679 : MTU);
	size_t step = (size_t)fpp * c->frame_samples(t->enc);
	static uint8_t packet[MTU + A2DP_MAX_FRAGMENTED];      /* AAC's rare overshoot, LDAC's 679 */
	size_t size = (c->fragments ? sizeof(packet) : c->whole_packets ? 679 : MTU) - head;
	static uint16_t seq;

	for (size_t pos = 0; pos + step <= t->frames; pos += step) {
		if (c->encode(t->enc, t->pcm + pos * t->frame_bytes, fpp, packet + head, size) < 0)
			die("encode", 0);
		if (head)
			rtp_write_header(packet, seq++, pos, 1);
	}
}

struct aptx_pass {
	void *ctx;
	aptx_encode_fn encode;
	const uint8_t *s24;
	size_t len;
	uint8_t *out;
	size_t out_len;
};

static void aptx_lib_pass(void *arg)
{
	struct aptx_pass *a = arg;
	size_t written;

	a->encode(a->ctx, a->s24, a->len, a->out, a->out_len, &written);
}

struct sbc_pass {
	sbc_t *sbc;
	const int16_t *pcm;
	size_t frames;
};

static void sbc_lib_pass(void *arg)
{
	struct sbc_pass *p = arg;
	struct result r = { 0, 0 };

	bench_pass_libsbc(p->sbc, p->pcm, p->frames, &r);
}

/* libavcodec for the AAC-alone figure, opened as the codec table opens it
 * (codecs/avcodec_lib.h), so that bench_encode starts without it: in a root
 * with another major (Debian unstable's) the figure is unavailable and the
 * rest runs. */
static const struct avcodec_lib *av;

static int load_avcodec(void)
{
	static int err;              /* 0: not tried yet; 1: loaded; < 0: cannot */
	const char *why = "no AAC encoder";

	if (err)
		return err;
	if (!(av = avcodec_lib(&why)) || !av->find_encoder(AV_CODEC_ID_AAC)) {
		fprintf(stderr, "bench_encode: AAC library-alone figure unavailable: cannot load %s's "
			"AAC encoder (%s)\n", AVCODEC_LIB, why);
		return err = -ENOENT;
	}
	return err = 1;
}

struct aac_pass {
	AVCodecContext *ctx;
	AVFrame *frame;
	AVPacket *pkt;
	const int16_t *pcm;
	size_t frames;
};

static void aac_lib_pass(void *arg)
{
	struct aac_pass *a = arg;

	for (size_t pos = 0; pos + 1024 <= a->frames; pos += 1024) {
		av->frame_make_writable(a->frame);
		for (int i = 0; i < 1024; i++)
			for (int c = 0; c < 2; c++)
				((float *)a->frame->data[c])[i] = a->pcm[(pos + i) * 2 + c] / 32768.0f;
		av->send_frame(a->ctx, a->frame);
		while (av->receive_packet(a->ctx, a->pkt) == 0)
			av->packet_unref(a->pkt);
	}
}

/* libavcodec's AAC encoder alone, at the bitrate the table chose for MTU 672;
 * -1 where libavcodec cannot be loaded. */
static double aac_library_figure(const int16_t *pcm, size_t frames, unsigned bitrate, double min_cpu)
{
	const AVCodec *codec;
	struct aac_pass a = { NULL, NULL, NULL, pcm, frames };
	double v;

	if (load_avcodec() < 0)
		return -1;
	codec = av->find_encoder(AV_CODEC_ID_AAC);
	a.ctx = av->alloc_context3(codec);
	a.frame = av->frame_alloc();
	a.pkt = av->packet_alloc();
	a.ctx->sample_fmt = AV_SAMPLE_FMT_FLTP;
	a.ctx->sample_rate = RATE;
	a.ctx->bit_rate = bitrate;
	av->channel_layout_default(&a.ctx->ch_layout, 2);
	if (av->open2(a.ctx, codec, NULL) < 0)
		die("avcodec_open2", 0);
	a.frame->nb_samples = 1024;
	a.frame->format = AV_SAMPLE_FMT_FLTP;
	av->channel_layout_default(&a.frame->ch_layout, 2);
	av->frame_get_buffer(a.frame, 0);
	v = cpu_per_audio(aac_lib_pass, &a, frames, min_cpu);
	av->free_context(&a.ctx);
	av->frame_free(&a.frame);
	av->packet_free(&a.pkt);
	return v;
}

struct ldac_pass {
	void *h;
	int (*encode)(void *h, void *pcm, int *used, unsigned char *out, int *out_size, int *frames);
	const int16_t *pcm;
	size_t frames;
};

static void ldac_lib_pass(void *arg)
{
	struct ldac_pass *l = arg;
	unsigned char out[1024];

	for (size_t pos = 0; pos + 128 <= l->frames; pos += 128) {
		int used, n, frames;

		l->encode(l->h, (void *)(l->pcm + pos * 2), &used, out, &n, &frames);
	}
}

/* libldacBT_enc alone, SQ at MTU 679, one 128-sample call at a time. */
static double ldac_library_figure(const int16_t *pcm, size_t frames, double min_cpu)
{
	void *lib = dlopen("libldacBT_enc.so.2", RTLD_NOW);
	void *(*get)(void);
	void (*close_h)(void *), (*free_h)(void *);
	int (*init)(void *, int, int, int, int, int);
	struct ldac_pass l = { NULL, NULL, pcm, frames };
	double v;

	if (!lib)
		die("dlopen libldacBT_enc.so.2", 0);
	*(void **)&get = dlsym(lib, "ldacBT_get_handle");
	*(void **)&init = dlsym(lib, "ldacBT_init_handle_encode");
	*(void **)&close_h = dlsym(lib, "ldacBT_close_handle");
	*(void **)&free_h = dlsym(lib, "ldacBT_free_handle");
	*(void **)&l.encode = dlsym(lib, "ldacBT_encode");
	l.h = get();
	if (init(l.h, 679, 1, 1, 2, RATE) < 0)
		die("ldacBT_init_handle_encode", 0);
	v = cpu_per_audio(ldac_lib_pass, &l, frames, min_cpu);
	close_h(l.h);
	free_h(l.h);
	dlclose(lib);
	return v;
}

/* The bare library's figure for one codec. */
static double library_figure(const struct codec_run *cr, const int16_t *pcm, size_t frames,
			     double min_cpu, unsigned bitrate)
{
	void *h;
	double v;

	if (cr->aptx_hd == -2)
		return aac_library_figure(pcm, frames, bitrate, min_cpu);
	if (cr->aptx_hd == -3)
		return ldac_library_figure(pcm, frames, min_cpu);
	if (cr->aptx_hd < 0) {
		sbc_t sbc;
		struct sbc_pass p = { &sbc, pcm, frames };

		sbc_init_a2dp(&sbc, 0, cr->config, cr->config_len);
		sbc.endian = SBC_LE;
		sbc.bitpool = cr->config[3];
		v = cpu_per_audio(sbc_lib_pass, &p, frames, min_cpu);
		sbc_finish(&sbc);
		return v;
	}
	if (!(h = dlopen("libfreeaptx.so.0", RTLD_NOW)))
		die("dlopen libfreeaptx.so.0", 0);
	{
		void *(*init)(int) = (void *(*)(int))dlsym(h, "aptx_init");
		void (*finish)(void *) = (void (*)(void *))dlsym(h, "aptx_finish");
		size_t n = frames / 4 * 4;
		struct aptx_pass a = { init(cr->aptx_hd), (aptx_encode_fn)dlsym(h, "aptx_encode"),
				       malloc(n * 6), n * 6, malloc(n * 3), n * 3 };
		uint8_t *s = (uint8_t *)a.s24;

		for (size_t i = 0; i < n * 2; i++) {      /* the same samples, as 24 bits */
			s[3 * i] = 0;
			s[3 * i + 1] = pcm[i];
			s[3 * i + 2] = pcm[i] >> 8;
		}
		v = cpu_per_audio(aptx_lib_pass, &a, n, min_cpu);
		finish(a.ctx);
		free((void *)a.s24);
		free(a.out);
	}
	dlclose(h);
	return v;
}

/* The configuration each codec is measured at (44.1 kHz stereo). */
static const uint8_t sbc_xq_conf[4] = { 0x24, 0x15, 0x02, 0x2b };
static const uint8_t aptx_conf[7] = { 0x4f, 0, 0, 0, 0x01, 0, 0x22 };
static const uint8_t ldac_conf[8] = { 0x2d, 0x01, 0, 0, 0xaa, 0, 0x20, 0x01 };
static const uint8_t aac_conf[6] = { 0x80, 0x01, 0x04, 0x03, 0xe8, 0x00 };
static const uint8_t aptx_hd_conf[11] = { 0xd7, 0, 0, 0, 0x24, 0, 0x22, 0, 0, 0, 0 };

/* "WAV [--min-cpu S] [--codec NAME]" (only: NULL where --codec is not taken). */
static int parse_wav_args(int argc, char **argv, const char **path, double *min_cpu,
			  const char **only)
{
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--min-cpu") && i + 1 < argc)
			*min_cpu = atof(argv[++i]);
		else if (only && !strcmp(argv[i], "--codec") && i + 1 < argc)
			*only = argv[++i];
		else if (!*path && argv[i][0] != '-')
			*path = argv[i];
		else
			return -1;
	}
	return *path ? 0 : -1;
}

static int cmd_codecs(int argc, char **argv)
{
	const struct codec_run runs[] = {
		{ &a2dp_codec_sbc, config, sizeof(config), -1 },
		{ &a2dp_codec_sbc_xq, sbc_xq_conf, sizeof(sbc_xq_conf), -1 },
		{ &a2dp_codec_aptx, aptx_conf, sizeof(aptx_conf), 0 },
		{ &a2dp_codec_aptx_hd, aptx_hd_conf, sizeof(aptx_hd_conf), 1 },
		{ &a2dp_codec_aac, aac_conf, sizeof(aac_conf), -2 },
		{ &a2dp_codec_ldac, ldac_conf, sizeof(ldac_conf), -3 },
	};
	const char *path = NULL, *only = NULL;
	double min_cpu = 1.0;
	int16_t *pcm;
	int32_t *pcm32;
	size_t frames;
	int found = 0;

	if (parse_wav_args(argc, argv, &path, &min_cpu, &only) < 0)
		return 2;
	frames = read_wav(path, &pcm);
	if (!(pcm32 = malloc(frames * CHANNELS * sizeof(int32_t))))
		die("malloc", ENOMEM);
	for (size_t i = 0; i < frames * CHANNELS; i++)
		pcm32[i] = (int32_t)pcm[i] * 65536;
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		const struct codec_run *cr = &runs[i];
		int s32 = cr->codec->sample_format == A2DP_S32;
		struct table_pass t = { cr->codec, NULL, s32 ? (uint8_t *)pcm32 : (uint8_t *)pcm, frames,
					CHANNELS * (s32 ? 4 : 2) };
		/* LDAC's library refuses MTUs below 679. */
		size_t mtu = cr->aptx_hd == -3 ? 679 : MTU;
		double table, lib;
		unsigned bitrate;
		int err;

		/* only the codec asked for is opened: --codec aptx needs no other library */
		if (only && strcmp(only, cr->codec->name))
			continue;
		found = 1;
		/* a codec whose library is not here (AAC, LDAC in another root): skipped,
		 * unless asked for by name */
		if (!only && cr->codec->available && cr->codec->available() < 0) {
			fprintf(stderr, "bench_encode: %s not available here, skipped\n", cr->codec->name);
			continue;
		}
		if ((err = cr->codec->encoder_new(&t.enc, cr->config, cr->config_len, mtu, NULL)) < 0)
			die(cr->codec->name, err);
		table = cpu_per_audio(table_pass, &t, frames, min_cpu);
		bitrate = cr->codec->frame_bytes(t.enc) * 8 * RATE / cr->codec->frame_samples(t.enc);
		cr->codec->encoder_free(t.enc);
		lib = library_figure(cr, pcm, frames, min_cpu, bitrate);
		printf("CODEC name=%s table_cpu_per_audio=%.9f lib_cpu_per_audio=", cr->codec->name, table);
		if (lib >= 0)
			printf("%.9f\n", lib);
		else
			printf("-\n");
	}
	free(pcm32);
	free(pcm);
	if (only && !found) {
		fprintf(stderr, "bench_encode: no codec %s\n", only);
		return 1;
	}
	return 0;
}

/* --- decoding (the receive direction) -------------------------------------- */

struct packets {
	uint8_t *data;               /* the payloads, back to back */
	size_t *off, *len;           /* per packet */
	size_t n;
	uint64_t frames;             /* PCM frames they decode to, per pass (set by a pass) */
};

struct decode_pass {
	const struct a2dp_codec *c;
	const uint8_t *config;
	size_t config_len;
	struct a2dp_decoder *dec;
	const struct packets *p;
	void *pcm;
	unsigned max_frames;
	uint64_t frames;
};

/* One pass of the table's decode() over every packet, a stream from its
 * start with a decoder of its own (aptX's loses its sync where the end of
 * the stream runs into its start); noinline for --toggle-collect. */
__attribute__((noinline))
void bench_pass_decode_table(struct decode_pass *d)
{
	int err;

	d->c->decoder_free(d->dec);
	if ((err = d->c->decoder_new(&d->dec, d->config, d->config_len)) < 0)
		die("decoder_new", err);
	d->frames = 0;
	for (size_t i = 0; i < d->p->n; i++) {
		ssize_t n = d->c->decode(d->dec, d->p->data + d->p->off[i], d->p->len[i], 0, d->pcm,
					 d->max_frames);

		if (n < 0)
			die("decode", (int)n);
		d->frames += n;
	}
}

struct libsbc_decode_pass {
	sbc_t sbc;
	const struct packets *p;
	int16_t pcm[4096];
	uint64_t frames;
};

/* One pass of plain sbc_decode(), one SBC frame a call, the 1-byte payload
 * header skipped. */
__attribute__((noinline))
void bench_pass_decode_libsbc(struct libsbc_decode_pass *d)
{
	d->frames = 0;
	for (size_t i = 0; i < d->p->n; i++) {
		const uint8_t *b = d->p->data + d->p->off[i];
		size_t len = d->p->len[i], pos = 1;

		while (pos < len) {
			size_t written = 0;
			ssize_t used = sbc_decode(&d->sbc, b + pos, len - pos, d->pcm, sizeof(d->pcm),
						  &written);

			if (used <= 0)
				die("sbc_decode", used < 0 ? (int)used : 0);
			pos += used;
			d->frames += written / (2 * CHANNELS);
		}
	}
}

static void decode_table_fn(void *arg) { bench_pass_decode_table(arg); }
static void decode_libsbc_fn(void *arg) { bench_pass_decode_libsbc(arg); }

/* The codec table's encoder turns the PCM into payloads, as a phone would send them. */
static void encode_packets(const struct a2dp_codec *c, const uint8_t *conf, size_t conf_len,
			   const int16_t *pcm, size_t frames, struct packets *p)
{
	int s32 = c->sample_format == A2DP_S32;
	size_t fb = CHANNELS * (s32 ? 4 : 2), cap = 0, used = 0, size;
	struct a2dp_encoder *enc;
	uint8_t *in = (uint8_t *)pcm;
	unsigned fpp, step;
	int err;

	if ((err = c->encoder_new(&enc, conf, conf_len, MTU, NULL)) < 0)
		die(c->name, err);
	if (s32) {
		int32_t *w;

		if (!(w = malloc(frames * CHANNELS * 4)))
			die("malloc", ENOMEM);
		for (size_t i = 0; i < frames * CHANNELS; i++)
			w[i] = (int32_t)pcm[i] * 65536;
		in = (uint8_t *)w;
	}
	fpp = c->frames_per_packet(enc, MTU);
	step = fpp * c->frame_samples(enc);
	size = (c->fragments ? MTU + A2DP_MAX_FRAGMENTED : MTU) -
	       (c->framing == A2DP_FRAMING_RTP ? RTP_HEADER_LEN : 0);
	memset(p, 0, sizeof(*p));
	for (size_t pos = 0; pos + step <= frames; pos += step) {
		ssize_t n;

		if (used + size > cap) {
			cap = (used + size) * 2;
			if (!(p->data = realloc(p->data, cap)))
				die("realloc", ENOMEM);
		}
		if ((n = c->encode(enc, in + pos * fb, fpp, p->data + used, size)) < 0)
			die("encode", (int)n);
		if (!n)
			continue;                  /* nothing to send yet (an encoder's priming) */
		if (!(p->off = realloc(p->off, (p->n + 1) * sizeof(size_t))) ||
		    !(p->len = realloc(p->len, (p->n + 1) * sizeof(size_t))))
			die("realloc", ENOMEM);
		p->off[p->n] = used;
		p->len[p->n++] = n;
		used += n;
	}
	c->encoder_free(enc);
	if (s32)
		free(in);
}

static int cmd_decode(int argc, char **argv)
{
	const struct {
		const struct a2dp_codec *codec;
		const uint8_t *config;
		size_t len;
	} confs[] = {
		{ &a2dp_codec_sbc, config, sizeof(config) },
		{ &a2dp_codec_sbc_xq, sbc_xq_conf, sizeof(sbc_xq_conf) },
		{ &a2dp_codec_aptx, aptx_conf, sizeof(aptx_conf) },
		{ &a2dp_codec_aptx_hd, aptx_hd_conf, sizeof(aptx_hd_conf) },
		{ &a2dp_codec_aac, aac_conf, sizeof(aac_conf) },
		{ &a2dp_codec_ldac, ldac_conf, sizeof(ldac_conf) },
	};
	const char *path = NULL, *only = NULL;
	double min_cpu = 1.0;
	int16_t *pcm;
	size_t frames;
	int found = 0;

	if (parse_wav_args(argc, argv, &path, &min_cpu, &only) < 0)
		return 2;
	frames = read_wav(path, &pcm);
	for (size_t i = 0; i < sizeof(confs) / sizeof(confs[0]); i++) {
		const struct a2dp_codec *c = confs[i].codec;
		struct packets p;
		struct decode_pass d = { c, confs[i].config, confs[i].len, NULL, &p, NULL, 0, 0 };
		double table, lib = -1;
		int err;

		if (only && strcmp(only, c->name))
			continue;
		found = 1;
		if (!c->decoder_new || !c->decode) {
			printf("DECODE name=%s none\n", c->name);
			continue;
		}
		if (c->available && c->available() < 0) {
			printf("DECODE name=%s none\n", c->name);
			continue;
		}
		encode_packets(c, confs[i].config, confs[i].len, pcm, frames, &p);
		if ((err = c->decoder_new(&d.dec, confs[i].config, confs[i].len)) < 0)
			die("decoder_new", err);
		d.max_frames = c->decoder_max_frames(d.dec);
		if (!(d.pcm = malloc((size_t)d.max_frames * CHANNELS * 4)))
			die("malloc", ENOMEM);
		bench_pass_decode_table(&d);   /* the frames one pass gives; callgrind's one pass */
		p.frames = d.frames;
		table = min_cpu > 0 ? cpu_per_audio(decode_table_fn, &d, p.frames, min_cpu) : 0;
		c->decoder_free(d.dec);
		free(d.pcm);
		if (c->key.id == A2DP_CODEC_SBC) {
			struct libsbc_decode_pass *l = calloc(1, sizeof(*l));

			if (!l)
				die("calloc", ENOMEM);
			l->p = &p;
			if ((err = sbc_init_a2dp(&l->sbc, 0, confs[i].config, confs[i].len)) < 0)
				die("sbc_init_a2dp", err);
			l->sbc.endian = SBC_LE;
			if (min_cpu > 0)
				lib = cpu_per_audio(decode_libsbc_fn, l, p.frames, min_cpu);
			else {
				decode_libsbc_fn(l);     /* one pass, for callgrind */
				lib = 0;
			}
			sbc_finish(&l->sbc);
			free(l);
		}
		printf("DECODE name=%s packets=%zu audio_s=%.6f table_cpu_per_audio=%.9f "
		       "lib_cpu_per_audio=", c->name, p.n, (double)p.frames / RATE, table);
		if (lib >= 0)
			printf("%.9f\n", lib);
		else
			printf("-\n");
		free(p.data);
		free(p.off);
		free(p.len);
	}
	free(pcm);
	if (only && !found) {
		fprintf(stderr, "bench_encode: no codec %s\n", only);
		return 1;
	}
	return 0;
}

/* --- latency ---------------------------------------------------------------- */

#define CHECK_ALSA(call) do { int e_ = (call); if (e_ < 0) { \
	fprintf(stderr, "bench_encode: %s: %s\n", #call, snd_strerror(e_)); exit(1); } } while (0)

static int cmd_latency(int argc, char **argv)
{
	const char *dev = NULL;
	double seconds = 3.0, every = 0.5;
	snd_pcm_t *pcm;
	snd_pcm_hw_params_t *hw;
	snd_pcm_sw_params_t *sw;
	snd_pcm_uframes_t buffer, period;
	unsigned rate = RATE, buffer_time = 0, period_time;
	uint64_t total, written = 0, click_step, next_click;
	int16_t *chunk;
	int64_t t_open, t_opened, t_params;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--click-every") && i + 1 < argc)
			every = atof(argv[++i]);
		else if (!dev && argv[i][0] != '-')
			dev = argv[i];
		else
			return 2;
	}
	if (!dev || every <= 0)
		return 2;

	t_open = clock_ns(CLOCK_MONOTONIC);
	CHECK_ALSA(snd_pcm_open(&pcm, dev, SND_PCM_STREAM_PLAYBACK, 0));
	t_opened = clock_ns(CLOCK_MONOTONIC);

	/* aplay.c set_params(), without options. */
	snd_pcm_hw_params_alloca(&hw);
	snd_pcm_sw_params_alloca(&sw);
	CHECK_ALSA(snd_pcm_hw_params_any(pcm, hw));
	CHECK_ALSA(snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED));
	CHECK_ALSA(snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16_LE));
	CHECK_ALSA(snd_pcm_hw_params_set_channels(pcm, hw, CHANNELS));
	CHECK_ALSA(snd_pcm_hw_params_set_rate_near(pcm, hw, &rate, 0));
	CHECK_ALSA(snd_pcm_hw_params_get_buffer_time_max(hw, &buffer_time, 0));
	if (buffer_time > 500000)
		buffer_time = 500000;
	period_time = buffer_time / 4;
	CHECK_ALSA(snd_pcm_hw_params_set_period_time_near(pcm, hw, &period_time, 0));
	CHECK_ALSA(snd_pcm_hw_params_set_buffer_time_near(pcm, hw, &buffer_time, 0));
	CHECK_ALSA(snd_pcm_hw_params(pcm, hw));
	snd_pcm_hw_params_get_period_size(hw, &period, 0);
	snd_pcm_hw_params_get_buffer_size(hw, &buffer);
	CHECK_ALSA(snd_pcm_sw_params_current(pcm, sw));
	CHECK_ALSA(snd_pcm_sw_params_set_avail_min(pcm, sw, period));
	CHECK_ALSA(snd_pcm_sw_params_set_start_threshold(pcm, sw, buffer));
	CHECK_ALSA(snd_pcm_sw_params_set_stop_threshold(pcm, sw, buffer));
	CHECK_ALSA(snd_pcm_sw_params(pcm, sw));
	t_params = clock_ns(CLOCK_MONOTONIC);
	printf("open_ns=%" PRId64 " opened_ns=%" PRId64 " params_ns=%" PRId64
	       " buffer=%lu period=%lu rate=%u\n", t_open, t_opened, t_params,
	       (unsigned long)buffer, (unsigned long)period, rate);

	total = (uint64_t)(seconds * rate);
	click_step = (uint64_t)(every * rate);
	next_click = click_step / 2;
	if (!(chunk = calloc(period, 2 * CHANNELS)))
		die("calloc", ENOMEM);
	printf("write0_ns=%" PRId64 "\n", clock_ns(CLOCK_MONOTONIC));
	fflush(stdout);
	while (written < total) {
		uint64_t n = total - written < period ? total - written : period;
		uint64_t click = UINT64_MAX;
		int64_t before, after;
		snd_pcm_sframes_t delay = 0, r;

		memset(chunk, 0, n * 2 * CHANNELS);
		if (next_click < written + n) {
			click = next_click;
			chunk[(click - written) * CHANNELS] = 24000;
			chunk[(click - written) * CHANNELS + 1] = 24000;
			next_click += click_step;
		}
		before = clock_ns(CLOCK_MONOTONIC);
		r = snd_pcm_writei(pcm, chunk, n);
		after = clock_ns(CLOCK_MONOTONIC);
		if (r == -EPIPE) {
			fprintf(stderr, "bench_encode: underrun at frame %" PRIu64 "\n", written);
			CHECK_ALSA(snd_pcm_prepare(pcm));
			continue;
		}
		if (r < 0)
			die("snd_pcm_writei", (int)r);
		if ((uint64_t)r != n) {
			fprintf(stderr, "bench_encode: short write %ld of %" PRIu64 "\n", (long)r, n);
			exit(1);
		}
		written += n;
		if (click != UINT64_MAX) {
			if (snd_pcm_delay(pcm, &delay) < 0)
				delay = -1;
			printf("click frame=%" PRIu64 " before_ns=%" PRId64 " after_ns=%" PRId64
			       " delay=%ld chunk_end=%" PRIu64 "\n", click, before, after,
			       (long)delay, written);
		}
	}
	printf("done_ns=%" PRId64 "\n", clock_ns(CLOCK_MONOTONIC));
	CHECK_ALSA(snd_pcm_drain(pcm));
	printf("drained_ns=%" PRId64 "\n", clock_ns(CLOCK_MONOTONIC));
	snd_pcm_close(pcm);
	free(chunk);
	return 0;
}

/* --- spawn ------------------------------------------------------------------ */

static long self_hwm_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = atol(line + 6);
	fclose(f);
	return kb;
}

static int cmd_spawn(int argc, char **argv)
{
	struct rusage ru, self;
	int64_t t_spawn, t_exit;
	long hwm = self_hwm_kb();
	int status;
	pid_t pid;

	if (argc >= 1 && !strcmp(argv[0], "--")) {
		argc--;
		argv++;
	}
	if (argc < 1)
		return 2;
	fflush(stdout);
	t_spawn = clock_ns(CLOCK_MONOTONIC);
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "bench_encode: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			die("wait4", errno);
	t_exit = clock_ns(CLOCK_MONOTONIC);
	getrusage(RUSAGE_SELF, &self);
	printf("spawn_ns=%" PRId64 " exit_ns=%" PRId64 " status=%d user_s=%ld.%06ld"
	       " sys_s=%ld.%06ld maxrss_kb=%ld nvcsw=%ld nivcsw=%ld self_hwm_kb=%ld"
	       " self_cpu_s=%.6f\n",
	       t_spawn, t_exit, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
	       (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
	       (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, ru.ru_maxrss,
	       ru.ru_nvcsw, ru.ru_nivcsw, hwm,
	       (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
		       (self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 2;

	if (argc >= 2 && !strcmp(argv[1], "encode"))
		rc = cmd_encode(argc - 2, argv + 2);
	else if (argc >= 2 && !strcmp(argv[1], "codecs"))
		rc = cmd_codecs(argc - 2, argv + 2);
	else if (argc >= 2 && !strcmp(argv[1], "decode"))
		rc = cmd_decode(argc - 2, argv + 2);
	else if (argc >= 2 && !strcmp(argv[1], "latency"))
		rc = cmd_latency(argc - 2, argv + 2);
	else if (argc >= 2 && !strcmp(argv[1], "spawn"))
		rc = cmd_spawn(argc - 2, argv + 2);
	if (rc == 2)
		fprintf(stderr, "usage: bench_encode encode WAV [--mode both|codec|libsbc] "
			"[--seconds S] [--min-cpu S] [--rounds N]\n"
			"       bench_encode codecs WAV [--min-cpu S] [--codec NAME]\n"
			"       bench_encode decode WAV [--codec NAME] [--min-cpu S]\n"
			"       bench_encode latency PCM [--seconds S] [--click-every S]\n"
			"       bench_encode spawn -- COMMAND [ARGS...]\n");
	return rc;
}
