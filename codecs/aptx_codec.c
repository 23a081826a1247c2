/*
 * aptX and aptX HD (Qualcomm vendor codecs) as entries of the codec table,
 * encoded and decoded by libfreeaptx. The library is opened with dlopen() the first time
 * one of the two is considered, so the plugin does not depend on it: without
 * it the codecs are simply not offered.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>

#include "codec.h"
#include "rtp.h"

#define APTX_LIB "libfreeaptx.so.0"

struct aptx_context;   /* libfreeaptx's; its header is not needed to build */
#define VENDOR_HEADER_LEN 6
#define APTX_CAPS_LEN 7          /* vendor header + rate/channel-mode byte */
#define APTX_HD_CAPS_LEN 11      /* the same + 4 reserved bytes */
#define CHANNEL_MODE_STEREO 0x02
#define SAMPLES_PER_CODEWORD 4   /* stereo samples one codeword carries */
#define CHUNK_CODEWORDS 64       /* input converted per library call */
/* Encoder + decoder delay of libfreeaptx (its QMF trees), in samples. */
#define APTX_DELAY 90

static const struct { uint8_t bit; unsigned rate; } freq_table[] = {
	{ 0x20, 44100 }, { 0x10, 48000 }, { 0x40, 32000 }, { 0x80, 16000 },  /* best first */
};

/* --- the library, loaded once per process ---------------------------------- */

static struct {
	struct aptx_context *(*init)(int hd);
	void (*finish)(struct aptx_context *ctx);
	size_t (*encode)(struct aptx_context *ctx, const unsigned char *in, size_t in_size,
			 unsigned char *out, size_t out_size, size_t *written);
	size_t (*decode_sync)(struct aptx_context *ctx, const unsigned char *in, size_t in_size,
			      unsigned char *out, size_t out_size, size_t *written, int *synced,
			      size_t *dropped);
	int err;
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void load_library(void)
{
	const struct a2dp_symbol syms[] = {
		{ (void **)&lib.init, "aptx_init" },
		{ (void **)&lib.finish, "aptx_finish" },
		{ (void **)&lib.encode, "aptx_encode" },
		{ (void **)&lib.decode_sync, "aptx_decode_sync" },
	};
	const char *why = "";

	if ((lib.err = a2dp_load_library(APTX_LIB, syms, sizeof(syms) / sizeof(syms[0]), &why)) < 0)
		SNDERR("aptX and aptX HD are not offered: cannot load %s (%s); install libfreeaptx0",
		       APTX_LIB, why);
}

static int aptx_available(void)
{
	pthread_once(&lib_once, load_library);
	return lib.err;
}

/* --- capabilities and configuration -------------------------------------- */

static const struct a2dp_codec_key aptx_key = { A2DP_CODEC_VENDOR, 0x0000004f, 0x0001 };
static const struct a2dp_codec_key aptx_hd_key = { A2DP_CODEC_VENDOR, 0x000000d7, 0x0024 };

static size_t blob_len(int hd)
{
	return hd ? APTX_HD_CAPS_LEN : APTX_CAPS_LEN;
}

static int fill_caps(int hd, uint8_t *caps, size_t size)
{
	size_t len = blob_len(hd);

	if (size < len)
		return -ENOSPC;
	memset(caps, 0, len);
	a2dp_vendor_header(caps, hd ? &aptx_hd_key : &aptx_key);
	caps[VENDOR_HEADER_LEN] = 0x80 | 0x40 | 0x20 | 0x10 | CHANNEL_MODE_STEREO;
	return len;
}

/* The blob is ours (right length, vendor and codec) with something in each field. */
static int blob_valid(int hd, const uint8_t *b, size_t len)
{
	struct a2dp_codec_key key;

	return len == blob_len(hd) && a2dp_codec_key_of(A2DP_CODEC_VENDOR, b, len, &key) == 0 &&
	       a2dp_codec_key_equal(&key, hd ? &aptx_hd_key : &aptx_key) &&
	       (b[VENDOR_HEADER_LEN] & 0xf0) && (b[VENDOR_HEADER_LEN] & 0x0f);
}

static uint8_t select_freq(uint8_t have, unsigned preferred)
{
	uint8_t first = 0;

	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++) {
		if (!(have & freq_table[i].bit))
			continue;
		if (freq_table[i].rate == preferred)
			return freq_table[i].bit;
		if (!first)
			first = freq_table[i].bit;
	}
	return first;
}

static int select_config(int hd, const uint8_t *caps, size_t len,
			 const struct a2dp_codec_prefs *prefs, uint8_t *config, size_t size)
{
	uint8_t freq;

	if (!blob_valid(hd, caps, len))
		return -EINVAL;
	if (size < len)
		return -ENOSPC;
	freq = select_freq(caps[VENDOR_HEADER_LEN], prefs->rate);
	/* libfreeaptx encodes stereo only. */
	if (!freq || !(caps[VENDOR_HEADER_LEN] & CHANNEL_MODE_STEREO))
		return -ENOTSUP;
	memset(config, 0, len);
	a2dp_vendor_header(config, hd ? &aptx_hd_key : &aptx_key);
	config[VENDOR_HEADER_LEN] = freq | CHANNEL_MODE_STEREO;
	return len;
}

static unsigned rate_of(uint8_t bit)
{
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++)
		if (freq_table[i].bit == bit)
			return freq_table[i].rate;
	return 0;
}

static int parse_config(int hd, const uint8_t *config, size_t len, struct a2dp_format *fmt)
{
	if (!blob_valid(hd, config, len) ||
	    (config[VENDOR_HEADER_LEN] & 0x0f) != CHANNEL_MODE_STEREO ||
	    !rate_of(config[VENDOR_HEADER_LEN] & 0xf0))
		return -EINVAL;
	fmt->rate = rate_of(config[VENDOR_HEADER_LEN] & 0xf0);
	fmt->channels = 2;
	return 0;
}

static int caps_rates(int hd, const uint8_t *caps, size_t len, unsigned *rates, int max)
{
	int n = 0;

	if (!blob_valid(hd, caps, len))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]) && n < max; i++)
		if (caps[VENDOR_HEADER_LEN] & freq_table[i].bit)
			rates[n++] = freq_table[i].rate;
	return n;
}

/* --- the encoder ------------------------------------------------------------ */

struct a2dp_encoder {
	struct aptx_context *ctx;
	int hd;
	size_t codeword;             /* bytes of one codeword: 4, HD 6 */
};

/* libfreeaptx's state for one configuration: the same for either direction. */
static int open_context(int hd, const uint8_t *config, size_t len, struct aptx_context **ctx)
{
	struct a2dp_format fmt;
	int err;

	if ((err = aptx_available()) < 0 || (err = parse_config(hd, config, len, &fmt)) < 0)
		return err;
	return (*ctx = lib.init(hd)) ? 0 : -ENOMEM;
}

static int encoder_new(int hd, struct a2dp_encoder **out, const uint8_t *config, size_t len)
{
	struct a2dp_encoder *enc;
	int err;

	if (!(enc = calloc(1, sizeof(*enc))))
		return -ENOMEM;
	if ((err = open_context(hd, config, len, &enc->ctx)) < 0) {
		free(enc);
		return err;
	}
	enc->hd = hd;
	enc->codeword = hd ? 6 : 4;
	*out = enc;
	return 0;
}

static void aptx_encoder_free(struct a2dp_encoder *enc)
{
	if (!enc)
		return;
	lib.finish(enc->ctx);
	free(enc);
}

static unsigned aptx_frame_samples(const struct a2dp_encoder *enc)
{
	(void)enc;
	return SAMPLES_PER_CODEWORD;
}

static size_t aptx_frame_bytes(const struct a2dp_encoder *enc)
{
	return enc->codeword;
}

/* aptX goes without any header; aptX HD has an RTP header but no payload header. */
static unsigned aptx_frames_per_packet(const struct a2dp_encoder *enc, size_t mtu)
{
	size_t head = enc->hd ? RTP_HEADER_LEN : 0;

	return mtu > head ? (mtu - head) / enc->codeword : 0;
}

/* libfreeaptx takes 24-bit little-endian samples: S16 goes in as the top 16
 * bits, S32 (aptX HD) gives its top 24. Each format has its own loop, with
 * restrict pointers: the stores are bytes, which may alias anything, and
 * would otherwise make the compiler read enc and pcm again at every sample. */
static void s16_to_s24(const int16_t *restrict in, size_t n, uint8_t *restrict out)
{
	for (size_t i = 0; i < n; i++, out += 3) {
		uint16_t v = (uint16_t)in[i];

		out[0] = 0;
		out[1] = (uint8_t)v;
		out[2] = (uint8_t)(v >> 8);
	}
}

static void s32_to_s24(const int32_t *restrict in, size_t n, uint8_t *restrict out)
{
	for (size_t i = 0; i < n; i++, out += 3) {
		uint32_t v = (uint32_t)in[i] >> 8;

		out[0] = (uint8_t)v;
		out[1] = (uint8_t)(v >> 8);
		out[2] = (uint8_t)(v >> 16);
	}
}

static void to_s24(const struct a2dp_encoder *enc, const void *pcm, size_t first, size_t n,
		   uint8_t *out)
{
	if (enc->hd)
		s32_to_s24((const int32_t *)pcm + first, n, out);
	else
		s16_to_s24((const int16_t *)pcm + first, n, out);
}

static ssize_t aptx_encode(struct a2dp_encoder *enc, const void *pcm, unsigned nframes,
			   uint8_t *dst, size_t size)
{
	uint8_t in[CHUNK_CODEWORDS * SAMPLES_PER_CODEWORD * 2 * 3];
	size_t pos = 0;

	if ((size_t)nframes * enc->codeword > size)
		return -ENOSPC;
	for (unsigned done = 0; done < nframes;) {
		unsigned n = nframes - done < CHUNK_CODEWORDS ? nframes - done : CHUNK_CODEWORDS;
		size_t samples = (size_t)n * SAMPLES_PER_CODEWORD * 2, written = 0;

		to_s24(enc, pcm, (size_t)done * SAMPLES_PER_CODEWORD * 2, samples, in);
		if (lib.encode(enc->ctx, in, samples * 3, dst + pos, size - pos, &written) !=
		    samples * 3 || written != n * enc->codeword)
			return -EIO;
		pos += written;
		done += n;
	}
	return pos;
}

/* A fixed bitrate: under congestion, packets can only be dropped. */
static int aptx_no_steps(struct a2dp_encoder *enc)
{
	(void)enc;
	return 0;
}

static unsigned aptx_delay(const struct a2dp_encoder *enc)
{
	(void)enc;
	return APTX_DELAY;
}

/* --- the decoder (the capture PCM) ------------------------------------------ */

/* The most codewords one packet brings (beyond any A2DP MTU BlueZ negotiates). */
#define MAX_PACKET_CODEWORDS (4096 / 4)

struct a2dp_decoder {
	struct aptx_context *ctx;
	int hd;
	size_t codeword;
	/* One packet's 24-bit samples; the sync decoder may add one codeword's
	 * worth of cached bytes. */
	uint8_t s24[(MAX_PACKET_CODEWORDS + 1) * SAMPLES_PER_CODEWORD * 2 * 3];
};

static int decoder_new(int hd, struct a2dp_decoder **out, const uint8_t *config, size_t len)
{
	struct a2dp_decoder *dec;
	int err;

	if (!(dec = calloc(1, sizeof(*dec))))
		return -ENOMEM;
	if ((err = open_context(hd, config, len, &dec->ctx)) < 0) {
		free(dec);
		return err;
	}
	dec->hd = hd;
	dec->codeword = hd ? 6 : 4;
	*out = dec;
	return 0;
}

static void aptx_decoder_free(struct a2dp_decoder *dec)
{
	if (!dec)
		return;
	lib.finish(dec->ctx);
	free(dec);
}

static unsigned aptx_decoder_max_frames(const struct a2dp_decoder *dec)
{
	(void)dec;
	return (MAX_PACKET_CODEWORDS + 1) * SAMPLES_PER_CODEWORD;
}

/* aptx_decode_sync, not aptx_decode: a packet lost on the radio (aptX
 * has no sequence numbers to tell) or a damaged codeword makes the parity
 * fail, and it finds the codeword boundary again instead of stopping. Its
 * output is short at the start (the first 90 samples of the stream are the
 * codec's delay, dropped) and while it resynchronises: the packet's time is
 * kept whole by silence in front, so that the RTP timestamps of aptX HD
 * (which count 4 samples a codeword) and the ones the capture counts for
 * aptX stay in step with the audio. After a loss the ADPCM state of the
 * two ends differs: the packet after it resynchronises (mostly silence) and
 * the level comes back over about 150 ms (measured). */
static ssize_t aptx_decode_packet(struct a2dp_decoder *dec, const uint8_t *payload, size_t len,
				  unsigned flags, void *pcm, unsigned max_frames)
{
	size_t written = 0, dropped = 0, frames, want = len / dec->codeword * SAMPLES_PER_CODEWORD, pad;
	int synced = 0;

	(void)flags;  /* a reset after lost packets (tried) recovers no faster */
	if (!len || len > MAX_PACKET_CODEWORDS * dec->codeword)
		return -EINVAL;
	lib.decode_sync(dec->ctx, payload, len, dec->s24, sizeof(dec->s24), &written, &synced, &dropped);
	frames = written / (3 * 2);
	/* Nothing decoded, and nothing to keep time for (less than a codeword,
	 * or a stream it cannot sync on): not a packet we can use. */
	if (!frames && (!synced || !want))
		return -EINVAL;
	if (frames > max_frames)
		frames = max_frames;
	pad = want > frames && want <= max_frames ? want - frames : 0;
	for (size_t i = 0; i < (frames + pad) * 2; i++) {
		int32_t v = 0;

		if (i >= pad * 2) {
			const uint8_t *p = dec->s24 + 3 * (i - pad * 2);

			v = (int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 24) >> 8;
		}
		if (dec->hd)
			((int32_t *)pcm)[i] = (int32_t)((uint32_t)v << 8);
		else {
			int32_t q = (v + 128) >> 8;   /* rounded to 16 bits */

			((int16_t *)pcm)[i] = q > 32767 ? 32767 : q;
		}
	}
	return frames + pad;
}

/* --- the two table entries -------------------------------------------------- */

#define APTX_WRAPPERS(pfx, hd) \
	static int pfx##_fill_caps(uint8_t *c, size_t s) { return fill_caps(hd, c, s); } \
	static int pfx##_select_config(const uint8_t *c, size_t l, const struct a2dp_codec_prefs *p, \
				       uint8_t *o, size_t s) { return select_config(hd, c, l, p, o, s); } \
	static int pfx##_parse_config(const uint8_t *c, size_t l, struct a2dp_format *f) \
	{ return parse_config(hd, c, l, f); } \
	static int pfx##_caps_rates(const uint8_t *c, size_t l, unsigned *r, int m) \
	{ return caps_rates(hd, c, l, r, m); } \
	static int pfx##_encoder_new(struct a2dp_encoder **e, const uint8_t *c, size_t l, size_t m, \
				     const struct a2dp_codec_prefs *p) \
	{ (void)m; (void)p; return encoder_new(hd, e, c, l); } \
	static int pfx##_decoder_new(struct a2dp_decoder **d, const uint8_t *c, size_t l) \
	{ return decoder_new(hd, d, c, l); }

APTX_WRAPPERS(aptx, 0)
APTX_WRAPPERS(aptx_hd, 1)

#define APTX_ENTRY(pfx) \
	.available = aptx_available, \
	.fill_caps = pfx##_fill_caps, \
	.select_config = pfx##_select_config, \
	.parse_config = pfx##_parse_config, \
	.caps_rates = pfx##_caps_rates, \
	.encoder_new = pfx##_encoder_new, \
	.encoder_free = aptx_encoder_free, \
	.frame_samples = aptx_frame_samples, \
	.frames_per_packet = aptx_frames_per_packet, \
	.encode = aptx_encode, \
	.lower_bitrate = aptx_no_steps, \
	.raise_bitrate = aptx_no_steps, \
	.frame_bytes = aptx_frame_bytes, \
	.delay = aptx_delay, \
	.decoder_new = pfx##_decoder_new, \
	.decoder_free = aptx_decoder_free, \
	.decoder_max_frames = aptx_decoder_max_frames, \
	.decode = aptx_decode_packet

const struct a2dp_codec a2dp_codec_aptx = {
	.name = "aptx",
	.title = "aptX",
	.key = { A2DP_CODEC_VENDOR, 0x0000004f, 0x0001 },
	.framing = A2DP_FRAMING_RAW,
	.sample_format = A2DP_S16,      /* aptX carries 16 bits */
	APTX_ENTRY(aptx),
};

const struct a2dp_codec a2dp_codec_aptx_hd = {
	.name = "aptx_hd",
	.title = "aptX HD",
	.key = { A2DP_CODEC_VENDOR, 0x000000d7, 0x0024 },
	.framing = A2DP_FRAMING_RTP,
	.sample_format = A2DP_S32,      /* 24 bits reach the encoder */
	APTX_ENTRY(aptx_hd),
};
