/*
 * AAC (MPEG-2/4 AAC LC) as an entry of the codec table, encoded by
 * libavcodec's native encoder (decoded by its aac_latm decoder) and framed as LATM in RTP (RFC 3016: marker
 * bit set, one AAC frame of 1024 samples a packet). libavcodec is opened
 * with dlopen() the first time AAC is considered, so the plugin does not
 * depend on it. Its structures differ between major versions, so only the
 * major this file was built against is opened.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>

#include "avcodec_lib.h"
#include "codec.h"
#include "latm.h"
#include "rtp.h"

#define AAC_CAPS_LEN 6
#define AAC_FRAME_SAMPLES 1024
#define MAX_BITRATE 320000        /* what PipeWire and Android ask for at most */
#define MIN_BITRATE 64000         /* congestion steps stop here */
#define OBJ_MPEG2_LC 0x80
#define OBJ_MPEG4_LC 0x40
#define CHANNELS_2 0x04
#define VBR_BIT 0x80

static const struct { uint8_t byte, bit; unsigned rate; } freq_table[] = {
	{ 1, 0x01, 44100 }, { 2, 0x80, 48000 },       /* the two every sink must have */
};

/* --- the library, loaded once per process ---------------------------------- */

static const struct avcodec_lib *av;
static int av_err;
static pthread_once_t av_once = PTHREAD_ONCE_INIT;

static void load_library(void)
{
	const char *why = "no AAC encoder or aac_latm decoder";

	av = avcodec_lib(&why);
	/* The encoder's statistics at close would land on the program's stderr;
	 * a level the program chose itself is left alone. */
	if (av && av->log_get_level() == AV_LOG_INFO)
		av->log_set_level(AV_LOG_ERROR);
	if (!av || !av->find_encoder(AV_CODEC_ID_AAC) || !av->find_decoder_by_name("aac_latm")) {
		SNDERR("AAC is not offered: cannot load %s's AAC encoder and aac_latm decoder (%s); "
		       "install libavcodec%d", AVCODEC_LIB, why, LIBAVCODEC_VERSION_MAJOR);
		av_err = -ENOENT;
	}
}

static int aac_available(void)
{
	pthread_once(&av_once, load_library);
	return av_err;
}

/* --- capabilities and configuration -------------------------------------- */

static unsigned caps_bitrate(const uint8_t *b)
{
	return (unsigned)(b[3] & 0x7f) << 16 | (unsigned)b[4] << 8 | b[5];
}

static void put_bitrate(uint8_t *b, unsigned bitrate)
{
	b[3] = (b[3] & VBR_BIT) | ((bitrate >> 16) & 0x7f);
	b[4] = bitrate >> 8;
	b[5] = bitrate;
}

static int aac_fill_caps(uint8_t *caps, size_t size)
{
	if (size < AAC_CAPS_LEN)
		return -ENOSPC;
	memset(caps, 0, AAC_CAPS_LEN);
	caps[0] = OBJ_MPEG2_LC | OBJ_MPEG4_LC;
	caps[1] = 0x01;                          /* 44.1 kHz */
	caps[2] = 0x80 | CHANNELS_2;             /* 48 kHz, stereo */
	put_bitrate(caps, MAX_BITRATE);
	return AAC_CAPS_LEN;
}

static int caps_valid(const uint8_t *caps, size_t len)
{
	return len == AAC_CAPS_LEN && caps[0] && (caps[1] || (caps[2] & 0xf0)) && (caps[2] & 0x0f);
}

static unsigned rate_in(const uint8_t *caps, unsigned want)
{
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++)
		if (freq_table[i].rate == want && (caps[freq_table[i].byte] & freq_table[i].bit))
			return want;
	return 0;
}

static int aac_select_config(const uint8_t *caps, size_t len, const struct a2dp_codec_prefs *prefs,
			     uint8_t *config, size_t size)
{
	unsigned rate, bitrate;

	if (!caps_valid(caps, len))
		return -EINVAL;
	if (size < AAC_CAPS_LEN)
		return -ENOSPC;
	if (!(rate = rate_in(caps, prefs->rate)) && !(rate = rate_in(caps, 44100)))
		rate = rate_in(caps, 48000);
	/* libavcodec encodes LC only; stereo only here. */
	if (!rate || !(caps[0] & (OBJ_MPEG2_LC | OBJ_MPEG4_LC)) || !(caps[2] & CHANNELS_2))
		return -ENOTSUP;
	memset(config, 0, AAC_CAPS_LEN);
	config[0] = caps[0] & OBJ_MPEG2_LC ? OBJ_MPEG2_LC : OBJ_MPEG4_LC;
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++)
		if (freq_table[i].rate == rate)
			config[freq_table[i].byte] |= freq_table[i].bit;
	config[2] |= CHANNELS_2;
	/* The sink's peak, if it says one we can use (0 is "unspecified"). */
	bitrate = caps_bitrate(caps);
	put_bitrate(config, bitrate >= MIN_BITRATE && bitrate < MAX_BITRATE ? bitrate : MAX_BITRATE);
	return AAC_CAPS_LEN;
}

static int one_bit(unsigned v)
{
	return v && !(v & (v - 1));
}

static int aac_parse_config(const uint8_t *config, size_t len, struct a2dp_format *fmt)
{
	unsigned freq;

	if (len != AAC_CAPS_LEN)
		return -EINVAL;
	freq = (unsigned)config[1] << 4 | config[2] >> 4;   /* the 12 rate bits */
	if (!one_bit(config[0]) ||
	    !(config[0] & (OBJ_MPEG2_LC | OBJ_MPEG4_LC)) || !one_bit(freq) ||
	    (config[2] & 0x0f) != CHANNELS_2 || caps_bitrate(config) < 8000)
		return -EINVAL;
	if (!(fmt->rate = rate_in(config, 44100)) && !(fmt->rate = rate_in(config, 48000)))
		return -EINVAL;
	fmt->channels = 2;
	return 0;
}

static int aac_caps_rates(const uint8_t *caps, size_t len, unsigned *rates, int max)
{
	int n = 0;

	if (!caps_valid(caps, len))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]) && n < max; i++)
		if (caps[freq_table[i].byte] & freq_table[i].bit)
			rates[n++] = freq_table[i].rate;
	return n;
}

/* --- the encoder ------------------------------------------------------------ */

struct a2dp_encoder {
	AVCodecContext *ctx;
	AVFrame *frame;
	AVPacket *pkt;
	unsigned rate, bitrate, max_bitrate, min_bitrate;
	int64_t pts;
};

/* The bitrate whose frames fit the MTU with their RTP and LATM headers.
 * libavcodec 5.1's rate control lets a frame take up to 1.5 times the
 * nominal size (its "too many bits"), so the nominal is two thirds of it;
 * the rare frame that still overshoots is sent in two packets. */
static unsigned mtu_bitrate(const struct a2dp_encoder *enc, size_t mtu)
{
	size_t room = mtu > RTP_HEADER_LEN + latm_overhead(mtu) ? mtu - RTP_HEADER_LEN - latm_overhead(mtu) : 0;

	return (unsigned)((uint64_t)room * 8 * enc->rate / AAC_FRAME_SAMPLES * 2 / 3);
}

static int send_frame(struct a2dp_encoder *enc, const int16_t *pcm)
{
	float *l, *r;
	int err;

	if ((err = av->frame_make_writable(enc->frame)) < 0)
		return err;
	l = (float *)enc->frame->data[0];
	r = (float *)enc->frame->data[1];
	for (unsigned i = 0; i < AAC_FRAME_SAMPLES; i++) {
		l[i] = pcm ? pcm[2 * i] / 32768.0f : 0;
		r[i] = pcm ? pcm[2 * i + 1] / 32768.0f : 0;
	}
	enc->frame->pts = enc->pts;
	enc->pts += AAC_FRAME_SAMPLES;
	enc->ctx->bit_rate = enc->bitrate;   /* aacenc reads it for every frame */
	return av->send_frame(enc->ctx, enc->frame);
}

/* Opens the encoder and primes it with one frame of silence: libavcodec's
 * AAC encoder answers its first frame with nothing, and the stream needs a
 * packet for every frame. */
static int open_encoder(struct a2dp_encoder *enc)
{
	const AVCodec *codec = av->find_encoder(AV_CODEC_ID_AAC);

	if (!(enc->ctx = av->alloc_context3(codec)) || !(enc->frame = av->frame_alloc()) ||
	    !(enc->pkt = av->packet_alloc()))
		return -ENOMEM;
	enc->ctx->sample_fmt = AV_SAMPLE_FMT_FLTP;
	enc->ctx->sample_rate = enc->rate;
	av->channel_layout_default(&enc->ctx->ch_layout, 2);
	enc->ctx->bit_rate = enc->bitrate;
	/* Strict where the encoder knows it (newer libavcodec retries a frame
	 * until it fits bit_rate); 5.1 ignores it, hence mtu_bitrate's headroom. */
	enc->ctx->bit_rate_tolerance = 0;
	enc->ctx->profile = FF_PROFILE_AAC_LOW;
	if (av->open2(enc->ctx, codec, NULL) < 0 || enc->ctx->frame_size != AAC_FRAME_SAMPLES)
		return -EIO;
	enc->frame->nb_samples = AAC_FRAME_SAMPLES;
	enc->frame->format = AV_SAMPLE_FMT_FLTP;
	av->channel_layout_default(&enc->frame->ch_layout, 2);
	if (av->frame_get_buffer(enc->frame, 0) < 0)
		return -ENOMEM;
	return send_frame(enc, NULL) < 0 ? -EIO : 0;
}

static void aac_encoder_free(struct a2dp_encoder *enc)
{
	if (!enc)
		return;
	av->free_context(&enc->ctx);
	av->frame_free(&enc->frame);
	av->packet_free(&enc->pkt);
	free(enc);
}

static int aac_encoder_new(struct a2dp_encoder **out, const uint8_t *config, size_t len,
			   size_t mtu, const struct a2dp_codec_prefs *prefs)
{
	struct a2dp_format fmt;
	struct a2dp_encoder *enc;
	int err;

	(void)prefs;
	if ((err = aac_available()) < 0 || (err = aac_parse_config(config, len, &fmt)) < 0)
		return err;
	if (!(enc = calloc(1, sizeof(*enc))))
		return -ENOMEM;
	enc->rate = fmt.rate;
	enc->max_bitrate = enc->bitrate = caps_bitrate(config);
	enc->min_bitrate = enc->max_bitrate < MIN_BITRATE ? enc->max_bitrate : MIN_BITRATE;
	if (mtu_bitrate(enc, mtu) < enc->max_bitrate)
		enc->max_bitrate = enc->bitrate = mtu_bitrate(enc, mtu);
	/* Opened here, in the application's thread: it takes milliseconds that
	 * the I/O thread's clock cannot spare. */
	if ((err = open_encoder(enc)) < 0) {
		aac_encoder_free(enc);
		return err;
	}
	*out = enc;
	return 0;
}

static unsigned aac_frame_samples(const struct a2dp_encoder *enc)
{
	(void)enc;
	return AAC_FRAME_SAMPLES;
}

/* One frame a packet, where the MTU leaves room for a usable bitrate. */
static unsigned aac_frames_per_packet(const struct a2dp_encoder *enc, size_t mtu)
{
	return mtu_bitrate(enc, mtu) >= enc->min_bitrate ? 1 : 0;
}

/* Congestion: two thirds of the bitrate a step (as PipeWire), and back up by
 * the inverse, so that one raise undoes one lower. */
static int aac_lower_bitrate(struct a2dp_encoder *enc)
{
	unsigned next = enc->bitrate * 2 / 3;

	if (enc->bitrate <= enc->min_bitrate)
		return 0;
	enc->bitrate = next > enc->min_bitrate ? next : enc->min_bitrate;
	return 1;
}

static int aac_raise_bitrate(struct a2dp_encoder *enc)
{
	unsigned next = enc->bitrate * 3 / 2 + 1;    /* + 1: the division in lower rounded down */

	if (enc->bitrate >= enc->max_bitrate)
		return 0;
	enc->bitrate = next < enc->max_bitrate ? next : enc->max_bitrate;
	return 1;
}

static ssize_t aac_encode(struct a2dp_encoder *enc, const void *pcm, unsigned nframes,
			  uint8_t *dst, size_t size)
{
	int n;

	if (nframes != 1)
		return -EINVAL;
	if (send_frame(enc, pcm) < 0 || av->receive_packet(enc->ctx, enc->pkt) < 0)
		return -EIO;
	n = latm_write(dst, size, enc->rate, 2, enc->pkt->data, enc->pkt->size);
	av->packet_unref(enc->pkt);
	return n;
}

static size_t aac_frame_bytes(const struct a2dp_encoder *enc)
{
	return (size_t)enc->bitrate * AAC_FRAME_SAMPLES / 8 / enc->rate;
}

/* The primed frame (1024) and libavcodec's encoder padding (1024), measured
 * end to end through the aac_latm decoder. */
static unsigned aac_delay(const struct a2dp_encoder *enc)
{
	(void)enc;
	return 2 * AAC_FRAME_SAMPLES;
}

/* --- the decoder (the capture PCM) ------------------------------------------ */

/* libavcodec's aac_latm decoder, not our latm_read + the "aac" decoder:
 * latm_read takes exactly what latm_write writes, while phones send LATM
 * as their encoder makes it (audioMuxVersion 0 or 1, the StreamMuxConfig in
 * every element or only when it changes, other buffer fullness values);
 * aac_latm reads all of it. It wants the LOAS sync layer in front of each
 * AudioMuxElement (11 bits of sync, 13 of length), which we add. An
 * element may span several RTP packets (RFC 3016: the same timestamp, the
 * marker bit on the last): they are gathered here until the marker. */
#define LOAS_HEADER 3
#define LOAS_MAX 0x1fff               /* the most a LOAS length says */

struct a2dp_decoder {
	AVCodecContext *ctx;
	AVPacket *pkt;
	AVFrame *frame;
	unsigned rate;
	size_t len;                       /* of the element gathered so far */
	int broken;                       /* a fragment of it was lost: drop it at its end */
	uint8_t loas[LOAS_HEADER + LOAS_MAX + AV_INPUT_BUFFER_PADDING_SIZE];
};

static void aac_decoder_free(struct a2dp_decoder *dec)
{
	if (!dec)
		return;
	av->free_context(&dec->ctx);     /* and the extradata */
	av->packet_free(&dec->pkt);
	av->frame_free(&dec->frame);
	free(dec);
}

/* Opened here, in the application's thread, for AAC LC stereo at the
 * configured rate (an AudioSpecificConfig as extradata): otherwise the
 * decoder builds its tables on the first packet, in the I/O thread. */
static int open_decoder(struct a2dp_decoder *dec)
{
	const AVCodec *codec = av->find_decoder_by_name("aac_latm");
	unsigned sfi = dec->rate == 48000 ? 3 : 4;

	if (!codec)
		return -ENOENT;
	if (!(dec->ctx = av->alloc_context3(codec)) || !(dec->pkt = av->packet_alloc()) ||
	    !(dec->frame = av->frame_alloc()) ||
	    !(dec->ctx->extradata = av->mallocz(2 + AV_INPUT_BUFFER_PADDING_SIZE)))
		return -ENOMEM;
	dec->ctx->extradata[0] = 2 << 3 | sfi >> 1;       /* AOT 2 (LC), the rate's index */
	dec->ctx->extradata[1] = (sfi & 1) << 7 | 2 << 3; /* 2 channels */
	dec->ctx->extradata_size = 2;
	return av->open2(dec->ctx, codec, NULL) < 0 ? -EIO : 0;
}

static int aac_decoder_new(struct a2dp_decoder **out, const uint8_t *config, size_t len)
{
	struct a2dp_format fmt;
	struct a2dp_decoder *dec;
	int err;

	if ((err = aac_available()) < 0 || (err = aac_parse_config(config, len, &fmt)) < 0)
		return err;
	if (!(dec = calloc(1, sizeof(*dec))))
		return -ENOMEM;
	dec->rate = fmt.rate;
	if ((err = open_decoder(dec)) < 0) {
		SNDERR("AAC: libavcodec's aac_latm decoder does not open at %u Hz (%s); "
		       "check the libavcodec%d installation", dec->rate, strerror(-err),
		       LIBAVCODEC_VERSION_MAJOR);
		aac_decoder_free(dec);
		return err;
	}
	*out = dec;
	return 0;
}

/* One AAC LC frame; two in case a decoder ever hands out an SBR-doubled one
 * (refused below, but not written past). */
static unsigned aac_decoder_max_frames(const struct a2dp_decoder *dec)
{
	(void)dec;
	return 2 * AAC_FRAME_SAMPLES;
}

static int16_t to_s16(float v)
{
	v *= 32768.0f;
	return v >= 32767.0f ? 32767 : v <= -32768.0f ? -32768 : (int16_t)lrintf(v);
}

static ssize_t aac_decode_packet(struct a2dp_decoder *dec, const uint8_t *payload, size_t len,
				 unsigned flags, void *pcm, unsigned max_frames)
{
	size_t total;
	ssize_t out = 0;

	if (flags & A2DP_DECODE_AFTER_GAP) {
		/* Lost packets: an element being gathered lacks a part, and this
		 * packet may be the middle or end of an element whose start was
		 * lost. Only a packet that is a whole element (the marker), after
		 * an element that ended (a marker), is trusted; the others are
		 * dropped to the next marker, as lost. */
		dec->broken = dec->len > 0 || (flags & A2DP_DECODE_MORE);
		dec->len = 0;
	}
	if (dec->len + len > LOAS_MAX) {
		dec->len = 0;
		dec->broken = !!(flags & A2DP_DECODE_MORE);
		return -EINVAL;
	}
	memcpy(dec->loas + LOAS_HEADER + dec->len, payload, len);
	dec->len += len;
	if (flags & A2DP_DECODE_MORE)
		return 0;                 /* more of this element follows */
	total = dec->len;
	dec->len = 0;
	if (dec->broken || !total) {
		dec->broken = 0;
		return -EINVAL;
	}
	dec->loas[0] = 0x56;              /* LOAS AudioSyncStream: sync 0x2b7, then the length */
	dec->loas[1] = 0xe0 | total >> 8;
	dec->loas[2] = total;
	memset(dec->loas + LOAS_HEADER + total, 0, AV_INPUT_BUFFER_PADDING_SIZE);
	dec->pkt->data = dec->loas;
	dec->pkt->size = LOAS_HEADER + total;
	if (av->send_packet(dec->ctx, dec->pkt) < 0)
		return -EINVAL;
	while (av->receive_frame(dec->ctx, dec->frame) == 0) {
		AVFrame *f = dec->frame;
		unsigned n = f->nb_samples;

		if (f->format == AV_SAMPLE_FMT_FLTP && f->ch_layout.nb_channels == 2 &&
		    f->sample_rate == (int)dec->rate && n <= max_frames - (size_t)out) {
			const float *l = (const float *)f->data[0], *r = (const float *)f->data[1];
			int16_t *o = (int16_t *)pcm + 2 * out;

			for (unsigned i = 0; i < n; i++) {
				o[2 * i] = to_s16(l[i]);
				o[2 * i + 1] = to_s16(r[i]);
			}
			out += n;
		}
		av->frame_unref(f);
	}
	return out ? out : -EINVAL;
}

const struct a2dp_codec a2dp_codec_aac = {
	.name = "aac",
	.title = "AAC",
	.key = { .id = A2DP_CODEC_AAC },
	.framing = A2DP_FRAMING_RTP,
	.rtp_marker = 1,                /* RFC 3016: the packet ends an AudioMuxElement */
	.fragments = 1,                 /* a frame that overshoots goes in two packets */
	.sample_format = A2DP_S16,
	.available = aac_available,
	.fill_caps = aac_fill_caps,
	.select_config = aac_select_config,
	.parse_config = aac_parse_config,
	.caps_rates = aac_caps_rates,
	.encoder_new = aac_encoder_new,
	.encoder_free = aac_encoder_free,
	.frame_samples = aac_frame_samples,
	.frames_per_packet = aac_frames_per_packet,
	.encode = aac_encode,
	.lower_bitrate = aac_lower_bitrate,
	.raise_bitrate = aac_raise_bitrate,
	.frame_bytes = aac_frame_bytes,
	.delay = aac_delay,
	.decoder_new = aac_decoder_new,
	.decoder_free = aac_decoder_free,
	.decoder_max_frames = aac_decoder_max_frames,
	.decode = aac_decode_packet,
};
