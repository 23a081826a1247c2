/* SBC, the codec every A2DP sink must have, as an entry of the codec table. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sbc/sbc.h>

#include "codec.h"
#include "rtp.h"

/* Capability bits, A2DP 1.3 section 4.3.2. */
#define SBC_FREQ_BITS(b)     ((b)[0] & 0xf0)
#define SBC_MODE_BITS(b)     ((b)[0] & 0x0f)
#define SBC_BLOCK_BITS(b)    ((b)[1] & 0xf0)
#define SBC_SUBBAND_BITS(b)  ((b)[1] & 0x0c)
#define SBC_ALLOC_BITS(b)    ((b)[1] & 0x03)
#define SBC_CAPS_LEN 4

#define MODE_MONO     0x08
#define MODE_DUAL     0x04
#define MODE_STEREO   0x02
#define MODE_JOINT    0x01
#define SUBBANDS_8    0x04
#define ALLOC_LOUDNESS 0x01

#define BITPOOL_MIN 2
#define BITPOOL_MAX 250

/* The A2DP "high quality" bitpools (A2DP 1.3 table 4.7). */
#define HQ_BITPOOL_STEREO_44K 53
#define HQ_BITPOOL_STEREO_48K 51
#define HQ_BITPOOL_MONO_44K   31
#define HQ_BITPOOL_MONO_48K   29
/* SBC-XQ, per channel in dual channel mode. */
#define XQ_BITPOOL_44K 43
#define XQ_BITPOOL_48K 39

/* Media payload header: one byte, the frame count in the low 4 bits. */
#define SBC_PAYLOAD_HEADER_LEN 1
#define SBC_MAX_FRAMES_PER_PACKET 15

static const struct { uint8_t bit; unsigned rate; } freq_table[] = {
	{ 0x80, 16000 }, { 0x40, 32000 }, { 0x20, 44100 }, { 0x10, 48000 },
};

struct a2dp_encoder {
	sbc_t sbc;
	uint8_t min_bitpool;
	uint8_t max_bitpool;
	size_t codesize;            /* PCM bytes per SBC frame */
	unsigned frame_samples;
	unsigned delay;
};

static int one_bit(unsigned v)
{
	return v && !(v & (v - 1));
}

/* The preferred bit among those set in `have`, in the order of `order`. */
static uint8_t pick(uint8_t have, const uint8_t *order, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (have & order[i])
			return order[i];
	return 0;
}

static unsigned rate_of(uint8_t freq_bit)
{
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++)
		if (freq_table[i].bit == freq_bit)
			return freq_table[i].rate;
	return 0;
}

static uint8_t freq_bit_of(unsigned rate)
{
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++)
		if (freq_table[i].rate == rate)
			return freq_table[i].bit;
	return 0;
}

/* The largest bitpool the frame format allows (A2DP 1.3 section 4.3.2.6). */
static unsigned mode_bitpool_limit(uint8_t mode, uint8_t subbands)
{
	unsigned nsb = subbands == SUBBANDS_8 ? 8 : 4;
	unsigned limit = (mode == MODE_MONO || mode == MODE_DUAL) ? 16 * nsb : 32 * nsb;

	return limit < BITPOOL_MAX ? limit : BITPOOL_MAX;
}

static unsigned hq_bitpool(uint8_t mode, unsigned rate)
{
	int mono = mode == MODE_MONO || mode == MODE_DUAL;

	if (rate >= 48000)
		return mono ? HQ_BITPOOL_MONO_48K : HQ_BITPOOL_STEREO_48K;
	return mono ? HQ_BITPOOL_MONO_44K : HQ_BITPOOL_STEREO_44K;
}

static int sbc_fill_caps(uint8_t *caps, size_t size)
{
	if (size < SBC_CAPS_LEN)
		return -ENOSPC;
	caps[0] = 0xf0 | MODE_MONO | MODE_DUAL | MODE_STEREO | MODE_JOINT;
	caps[1] = 0xf0 | 0x0c | 0x03;
	caps[2] = BITPOOL_MIN;
	caps[3] = BITPOOL_MAX;
	return SBC_CAPS_LEN;
}

static int caps_valid(const uint8_t *caps, size_t len)
{
	return len == SBC_CAPS_LEN && SBC_FREQ_BITS(caps) && SBC_MODE_BITS(caps) &&
	       SBC_BLOCK_BITS(caps) && SBC_SUBBAND_BITS(caps) && SBC_ALLOC_BITS(caps) &&
	       caps[2] >= BITPOOL_MIN && caps[2] <= caps[3];
}

static uint8_t select_freq(uint8_t have, unsigned preferred)
{
	static const uint8_t order[] = { 0x20, 0x10, 0x40, 0x80 };  /* 44.1, 48, 32, 16 kHz */
	uint8_t bit = freq_bit_of(preferred);

	if (bit & have)
		return bit;
	return pick(have, order, sizeof(order));
}

/* Fills config for one channel mode: the sink's best block/subband/allocation
 * choices and the bitpool (the user's, else `wanted`), capped by the sink and
 * the frame format. */
static int fill_config(const uint8_t *caps, uint8_t freq, uint8_t mode, unsigned wanted,
		       const struct a2dp_codec_prefs *prefs, uint8_t *config)
{
	static const uint8_t blocks[] = { 0x10, 0x20, 0x40, 0x80 };   /* 16, 12, 8, 4 */
	static const uint8_t subbands[] = { 0x04, 0x08 };             /* 8, 4 */
	static const uint8_t allocs[] = { ALLOC_LOUDNESS, 0x02 };
	uint8_t sb = pick(SBC_SUBBAND_BITS(caps), subbands, sizeof(subbands));
	unsigned bitpool = prefs->bitpool ? prefs->bitpool : wanted;
	unsigned limit = mode_bitpool_limit(mode, sb);

	if (bitpool > caps[3])
		bitpool = caps[3];
	if (bitpool > limit)
		bitpool = limit;
	if (bitpool < caps[2])
		return -ENOTSUP;   /* the sink demands more than the frame format can carry */
	config[0] = freq | mode;
	config[1] = pick(SBC_BLOCK_BITS(caps), blocks, sizeof(blocks)) | sb |
		    pick(SBC_ALLOC_BITS(caps), allocs, sizeof(allocs));
	config[2] = caps[2];
	config[3] = bitpool;
	return SBC_CAPS_LEN;
}

static int sbc_select_config(const uint8_t *caps, size_t len,
			     const struct a2dp_codec_prefs *prefs,
			     uint8_t *config, size_t size)
{
	static const uint8_t modes[] = { MODE_JOINT, MODE_STEREO, MODE_DUAL, MODE_MONO };
	uint8_t freq, mode;

	if (!caps_valid(caps, len))
		return -EINVAL;
	if (size < SBC_CAPS_LEN)
		return -ENOSPC;
	freq = select_freq(SBC_FREQ_BITS(caps), prefs->rate);
	mode = pick(SBC_MODE_BITS(caps), modes, sizeof(modes));
	return fill_config(caps, freq, mode, hq_bitpool(mode, rate_of(freq)), prefs, config);
}

/* SBC-XQ: dual channel, each channel with nearly the bitpool joint stereo
 * gives both (PipeWire's 43 at 44.1 kHz, 39 at 48 kHz: about 500 kb/s), so
 * that neither channel starves the other. Only where the sink offers dual
 * channel and 44.1 or 48 kHz. */
static int sbc_xq_select_config(const uint8_t *caps, size_t len,
				const struct a2dp_codec_prefs *prefs,
				uint8_t *config, size_t size)
{
	uint8_t freq;

	if (!caps_valid(caps, len))
		return -EINVAL;
	if (size < SBC_CAPS_LEN)
		return -ENOSPC;
	freq = select_freq(SBC_FREQ_BITS(caps) & (0x20 | 0x10), prefs->rate);
	if (!freq || !(SBC_MODE_BITS(caps) & MODE_DUAL))
		return -ENOTSUP;
	return fill_config(caps, freq, MODE_DUAL, freq == 0x10 ? XQ_BITPOOL_48K : XQ_BITPOOL_44K,
			   prefs, config);
}

static int sbc_parse_config(const uint8_t *config, size_t len, struct a2dp_format *fmt)
{
	uint8_t mode;

	if (len != SBC_CAPS_LEN)
		return -EINVAL;
	mode = SBC_MODE_BITS(config);
	if (!one_bit(SBC_FREQ_BITS(config)) || !one_bit(mode) ||
	    !one_bit(SBC_BLOCK_BITS(config)) || !one_bit(SBC_SUBBAND_BITS(config)) ||
	    !one_bit(SBC_ALLOC_BITS(config)))
		return -EINVAL;
	if (config[2] < BITPOOL_MIN || config[2] > config[3] ||
	    config[3] > mode_bitpool_limit(mode, SBC_SUBBAND_BITS(config)))
		return -EINVAL;
	fmt->rate = rate_of(SBC_FREQ_BITS(config));
	fmt->channels = mode == MODE_MONO ? 1 : 2;
	return 0;
}

static int sbc_caps_rates(const uint8_t *caps, size_t len, unsigned *rates, int max)
{
	static const unsigned order[] = { 44100, 48000, 32000, 16000 };
	int n = 0;

	if (!caps_valid(caps, len))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && n < max; i++)
		if (SBC_FREQ_BITS(caps) & freq_bit_of(order[i]))
			rates[n++] = order[i];
	return n;
}

static int sbc_encoder_new(struct a2dp_encoder **out, const uint8_t *config, size_t len, size_t mtu,
			   const struct a2dp_codec_prefs *prefs)
{
	struct a2dp_format fmt;
	struct a2dp_encoder *enc;
	int err;

	(void)mtu;
	(void)prefs;
	if ((err = sbc_parse_config(config, len, &fmt)) < 0)
		return err;
	if (!(enc = calloc(1, sizeof(*enc))))
		return -ENOMEM;
	if ((err = sbc_init_a2dp(&enc->sbc, 0, config, len)) < 0) {
		free(enc);
		return err;
	}
	enc->sbc.endian = __BYTE_ORDER == __LITTLE_ENDIAN ? SBC_LE : SBC_BE;
	/* sbc_init_a2dp() leaves the bitpool at 32 whatever the configuration says. */
	enc->sbc.bitpool = config[3];
	enc->min_bitpool = config[2];
	enc->max_bitpool = config[3];
	enc->codesize = sbc_get_codesize(&enc->sbc);
	enc->frame_samples = enc->codesize / (2 * fmt.channels);
	/* Analysis + synthesis filter delay of libsbc, measured: 73 samples with
	 * 8 subbands, 37 with 4. */
	enc->delay = SBC_SUBBAND_BITS(config) == SUBBANDS_8 ? 73 : 37;
	*out = enc;
	return 0;
}

static void sbc_encoder_free(struct a2dp_encoder *enc)
{
	if (!enc)
		return;
	sbc_finish(&enc->sbc);
	free(enc);
}

static unsigned sbc_frame_samples(const struct a2dp_encoder *enc)
{
	return enc->frame_samples;
}

static size_t sbc_frame_bytes(const struct a2dp_encoder *enc)
{
	return sbc_get_frame_length((sbc_t *)&enc->sbc);
}

static unsigned sbc_frames_per_packet(const struct a2dp_encoder *enc, size_t mtu)
{
	size_t head = RTP_HEADER_LEN + SBC_PAYLOAD_HEADER_LEN;
	size_t n;

	if (mtu <= head)
		return 0;
	n = (mtu - head) / sbc_frame_bytes(enc);
	return n > SBC_MAX_FRAMES_PER_PACKET ? SBC_MAX_FRAMES_PER_PACKET : n;
}

static ssize_t sbc_encode_frames(struct a2dp_encoder *enc, const void *pcm,
				 unsigned nframes, uint8_t *dst, size_t size)
{
	const uint8_t *in = (const uint8_t *)pcm;
	size_t pos = SBC_PAYLOAD_HEADER_LEN;

	if (nframes > SBC_MAX_FRAMES_PER_PACKET || size < pos)
		return -EINVAL;
	dst[0] = nframes;
	for (unsigned i = 0; i < nframes; i++) {
		ssize_t written = 0;
		ssize_t used = sbc_encode(&enc->sbc, in, enc->codesize, dst + pos,
					  size - pos, &written);

		if (used != (ssize_t)enc->codesize || written <= 0)
			return used < 0 ? used : -ENOSPC;
		in += enc->codesize;
		pos += written;
	}
	return pos;
}

/* Congestion steps as PipeWire's bluez5 takes them: down by 2, up by 1. */
static int sbc_lower_bitrate(struct a2dp_encoder *enc)
{
	unsigned bp = enc->sbc.bitpool;
	unsigned next = bp >= enc->min_bitpool + 2u ? bp - 2 : enc->min_bitpool;

	enc->sbc.bitpool = next;
	return bp - next;      /* raise_bitrate() climbs back one at a time */
}

static int sbc_raise_bitrate(struct a2dp_encoder *enc)
{
	if (enc->sbc.bitpool >= enc->max_bitpool)
		return 0;
	enc->sbc.bitpool++;
	return 1;
}

static unsigned sbc_delay(const struct a2dp_encoder *enc)
{
	return enc->delay;
}

/* --- decoding (the capture PCM) ----------------------------------------- */

struct a2dp_decoder {
	sbc_t sbc;
	unsigned channels;
	unsigned frame_samples;
};

/* The payload header's fragmentation bits: a fragmented SBC frame spans
 * packets, which no A2DP source sends at the MTUs BlueZ negotiates. */
#define SBC_PAYLOAD_FRAGMENTED 0x80
#define SBC_PAYLOAD_FRAMES(b) ((b) & 0x0f)

static int sbc_decoder_new(struct a2dp_decoder **out, const uint8_t *config, size_t len)
{
	struct a2dp_format fmt;
	struct a2dp_decoder *dec;
	int err;

	if ((err = sbc_parse_config(config, len, &fmt)) < 0)
		return err;
	if (!(dec = calloc(1, sizeof(*dec))))
		return -ENOMEM;
	if ((err = sbc_init_a2dp(&dec->sbc, 0, config, len)) < 0) {
		free(dec);
		return err;
	}
	dec->sbc.endian = __BYTE_ORDER == __LITTLE_ENDIAN ? SBC_LE : SBC_BE;
	dec->channels = fmt.channels;
	dec->frame_samples = sbc_get_codesize(&dec->sbc) / (2 * fmt.channels);
	*out = dec;
	return 0;
}

static void sbc_decoder_free(struct a2dp_decoder *dec)
{
	if (!dec)
		return;
	sbc_finish(&dec->sbc);
	free(dec);
}

static unsigned sbc_decoder_max_frames(const struct a2dp_decoder *dec)
{
	return SBC_MAX_FRAMES_PER_PACKET * dec->frame_samples;
}

/* libsbc reads the frame header itself: a stream configured otherwise than
 * announced still decodes, but only frames of the announced size fit. */
static ssize_t sbc_decode_packet(struct a2dp_decoder *dec, const uint8_t *payload, size_t len,
				 unsigned flags, void *pcm, unsigned max_frames)
{
	size_t pos = SBC_PAYLOAD_HEADER_LEN, out = 0, room = (size_t)max_frames * 2 * dec->channels;
	unsigned nframes;

	(void)flags;                  /* every packet is whole frames */
	if (len < SBC_PAYLOAD_HEADER_LEN || payload[0] & SBC_PAYLOAD_FRAGMENTED)
		return -EINVAL;
	nframes = SBC_PAYLOAD_FRAMES(payload[0]);
	for (unsigned i = 0; i < nframes && pos < len; i++) {
		size_t written = 0;
		ssize_t used = sbc_decode(&dec->sbc, payload + pos, len - pos,
					  (uint8_t *)pcm + out, room - out, &written);

		if (used <= 0 || written != (size_t)dec->frame_samples * 2 * dec->channels)
			return out ? (ssize_t)(out / (2 * dec->channels)) : -EINVAL;
		pos += used;
		out += written;
	}
	/* No frame at all (a count of 0, or nothing after the header): malformed. */
	return out ? (ssize_t)(out / (2 * dec->channels)) : -EINVAL;
}

#define SBC_ENTRY \
	.key = { .id = A2DP_CODEC_SBC }, \
	.framing = A2DP_FRAMING_RTP, \
	.sample_format = A2DP_S16, \
	.fill_caps = sbc_fill_caps, \
	.parse_config = sbc_parse_config, \
	.caps_rates = sbc_caps_rates, \
	.encoder_new = sbc_encoder_new, \
	.encoder_free = sbc_encoder_free, \
	.frame_samples = sbc_frame_samples, \
	.frames_per_packet = sbc_frames_per_packet, \
	.encode = sbc_encode_frames, \
	.lower_bitrate = sbc_lower_bitrate, \
	.raise_bitrate = sbc_raise_bitrate, \
	.frame_bytes = sbc_frame_bytes, \
	.delay = sbc_delay, \
	.decoder_new = sbc_decoder_new, \
	.decoder_free = sbc_decoder_free, \
	.decoder_max_frames = sbc_decoder_max_frames, \
	.decode = sbc_decode_packet

const struct a2dp_codec a2dp_codec_sbc = {
	.name = "sbc",
	.title = "SBC",
	.select_config = sbc_select_config,
	SBC_ENTRY,
};

/* SBC-XQ is SBC, configured otherwise: the same endpoint, encoder and decoder. */
const struct a2dp_codec a2dp_codec_sbc_xq = {
	.name = "sbc_xq",
	.title = "SBC-XQ",
	.select_config = sbc_xq_select_config,
	SBC_ENTRY,
};

