/*
 * LDAC (Sony's vendor codec) as an entry of the codec table, encoded by
 * libldacBT_enc (AOSP), opened with dlopen() the first time LDAC is
 * considered. The library packs its frames into packets itself: a packet
 * carries 2 (HQ), 3 (SQ) or 6 (MQ) frames of 128 samples, 660 bytes in all,
 * so a packet's worth of PCM in gives exactly one packet out. It refuses
 * links whose MTU is below 679 bytes. Quality auto is steered by
 * libldacBT_abr (Sony's adaptive bitrate, also dlopen()ed) from the link's
 * transmit queue after each packet; without it, by the stream's congestion
 * steps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>

#include "codec.h"
#include "rtp.h"

#define LDAC_LIB "libldacBT_enc.so.2"
#define ABR_LIB "libldacBT_abr.so.2"
#define VENDOR_HEADER_LEN 6
#define LDAC_CAPS_LEN 8             /* vendor header, rate byte, channel mode byte */
#define MODE_STEREO 0x01
#define LDAC_LSU 128                /* samples a library call takes (44.1/48 kHz) */
#define LDAC_MIN_MTU 679            /* below it ldacBT_init_handle_encode refuses */
#define PAYLOAD_HEADER_LEN 1        /* the frame count */
#define FMT_S16 0x2                 /* LDACBT_SMPL_FMT_S16 */

/* LDAC frames in one 660-byte packet by EQMID (measured): 0 HQ, 1 SQ, 2 MQ,
 * and 3, 4 the steps between SQ and MQ that only ABR chooses. */
static const unsigned frames_per_eqmid[] = { 2, 3, 6, 4, 5 };
#define EQMIDS (int)(sizeof(frames_per_eqmid) / sizeof(frames_per_eqmid[0]))

/* ABR's thresholds in queued packets (critical, dangerous trend, safety for
 * HQ/SQ): PipeWire's, below the stream's 8-packet socket queue so ABR sees
 * them before packets are dropped. */
#define ABR_CRITICAL 6
#define ABR_DANGEROUS_TREND 4
#define ABR_SAFETY_HQ_SQ 3

static const struct { uint8_t bit; unsigned rate; } freq_table[] = {
	{ 0x20, 44100 }, { 0x10, 48000 },      /* the library's 88.2/96 kHz are not offered */
};

static const struct a2dp_codec_key ldac_key = { A2DP_CODEC_VENDOR, 0x0000012d, 0x00aa };

/* --- the library, loaded once per process ---------------------------------- */

typedef void *ldac_handle;
static struct {
	ldac_handle (*get_handle)(void);
	void (*free_handle)(ldac_handle h);
	void (*close_handle)(ldac_handle h);
	int (*init_handle_encode)(ldac_handle h, int mtu, int eqmid, int cm, int fmt, int sf);
	int (*set_eqmid)(ldac_handle h, int eqmid);
	int (*encode)(ldac_handle h, void *pcm, int *pcm_used, unsigned char *out, int *out_size,
		      int *frames);
	int (*get_error_code)(ldac_handle h);
	int err;
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

typedef void *abr_handle;
static struct {
	abr_handle (*get_handle)(void);
	void (*free_handle)(abr_handle a);
	int (*init)(abr_handle a, unsigned interval_ms);
	int (*set_thresholds)(abr_handle a, unsigned critical, unsigned trend, unsigned safety);
	int (*proc)(ldac_handle h, abr_handle a, unsigned queue_depth, unsigned enable);
	int err;
} abr;
static pthread_once_t abr_once = PTHREAD_ONCE_INIT;

static void load_library(void)
{
	const struct a2dp_symbol syms[] = {
		{ (void **)&lib.get_handle, "ldacBT_get_handle" },
		{ (void **)&lib.free_handle, "ldacBT_free_handle" },
		{ (void **)&lib.close_handle, "ldacBT_close_handle" },
		{ (void **)&lib.init_handle_encode, "ldacBT_init_handle_encode" },
		{ (void **)&lib.set_eqmid, "ldacBT_set_eqmid" },
		{ (void **)&lib.encode, "ldacBT_encode" },
		{ (void **)&lib.get_error_code, "ldacBT_get_error_code" },
	};

	const char *why = "";

	if ((lib.err = a2dp_load_library(LDAC_LIB, syms, sizeof(syms) / sizeof(syms[0]), &why)) < 0)
		SNDERR("LDAC is not offered: cannot load %s (%s); install libldacbt-enc2", LDAC_LIB, why);
}

static int ldac_available(void)
{
	pthread_once(&lib_once, load_library);
	return lib.err;
}

/* Loaded after libldacBT_enc, whose symbols it calls on our handle (its own
 * dependency on the same soname resolves to the copy already loaded). */
static void load_abr(void)
{
	const struct a2dp_symbol syms[] = {
		{ (void **)&abr.get_handle, "ldac_ABR_get_handle" },
		{ (void **)&abr.free_handle, "ldac_ABR_free_handle" },
		{ (void **)&abr.init, "ldac_ABR_Init" },
		{ (void **)&abr.set_thresholds, "ldac_ABR_set_thresholds" },
		{ (void **)&abr.proc, "ldac_ABR_Proc" },
	};
	const char *why = "";

	if ((abr.err = a2dp_load_library(ABR_LIB, syms, sizeof(syms) / sizeof(syms[0]), &why)) < 0)
		SNDERR("LDAC quality auto steps with the link's congestion instead: cannot load %s (%s); "
		       "install libldacbt-abr2", ABR_LIB, why);
}

/* --- capabilities and configuration -------------------------------------- */

static int ldac_fill_caps(uint8_t *caps, size_t size)
{
	if (size < LDAC_CAPS_LEN)
		return -ENOSPC;
	a2dp_vendor_header(caps, &ldac_key);
	caps[6] = 0x20 | 0x10;
	caps[7] = MODE_STEREO;
	return LDAC_CAPS_LEN;
}

static int blob_valid(const uint8_t *b, size_t len)
{
	struct a2dp_codec_key key;

	return len == LDAC_CAPS_LEN && a2dp_codec_key_of(A2DP_CODEC_VENDOR, b, len, &key) == 0 &&
	       a2dp_codec_key_equal(&key, &ldac_key) && (b[6] & 0x3f) && (b[7] & 0x07);
}

static uint8_t freq_bit(unsigned rate)
{
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++)
		if (freq_table[i].rate == rate)
			return freq_table[i].bit;
	return 0;
}

static unsigned rate_of(uint8_t bit)
{
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]); i++)
		if (freq_table[i].bit == bit)
			return freq_table[i].rate;
	return 0;
}

static int ldac_select_config(const uint8_t *caps, size_t len, const struct a2dp_codec_prefs *prefs,
			      uint8_t *config, size_t size)
{
	uint8_t freq;

	if (!blob_valid(caps, len))
		return -EINVAL;
	if (size < LDAC_CAPS_LEN)
		return -ENOSPC;
	if (!((freq = freq_bit(prefs->rate)) & caps[6]))
		freq = caps[6] & 0x20 ? 0x20 : caps[6] & 0x10;
	if (!freq || !(caps[7] & MODE_STEREO))
		return -ENOTSUP;   /* 44.1/48 kHz stereo is what we encode */
	a2dp_vendor_header(config, &ldac_key);
	config[6] = freq;
	config[7] = MODE_STEREO;
	return LDAC_CAPS_LEN;
}

static int ldac_parse_config(const uint8_t *config, size_t len, struct a2dp_format *fmt)
{
	if (!blob_valid(config, len) || !rate_of(config[6]) || config[7] != MODE_STEREO)
		return -EINVAL;
	fmt->rate = rate_of(config[6]);
	fmt->channels = 2;
	return 0;
}

static int ldac_caps_rates(const uint8_t *caps, size_t len, unsigned *rates, int max)
{
	int n = 0;

	if (!blob_valid(caps, len))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(freq_table) / sizeof(freq_table[0]) && n < max; i++)
		if (caps[6] & freq_table[i].bit)
			rates[n++] = freq_table[i].rate;
	return n;
}

/* --- the encoder ------------------------------------------------------------ */

struct a2dp_encoder {
	ldac_handle h;
	/* 0 HQ, 1 SQ, 2 MQ; 3, 4 (ABR only) between SQ and MQ. Written by the
	 * I/O thread (ABR, congestion steps), read by the application's too
	 * (frames_per_packet for the delay and drain): through eqmid_of and
	 * store_eqmid only. */
	int eqmid;
	int adaptive;               /* quality auto: ABR, or congestion steps between HQ and MQ */
	abr_handle abr;             /* auto with libldacBT_abr: it alone changes eqmid */
	int logged_abr;
	int16_t silence[LDAC_LSU * 2];
};

/* ABR's handle for quality auto, or NULL (no library, or it refused: the
 * congestion steps then). Called once per packet, it is told the packet
 * interval at HQ, the shortest, as PipeWire does: at lower qualities packets
 * come less often, so its waits before raising are longer, not shorter. */
static abr_handle abr_new(unsigned rate)
{
	abr_handle a;

	pthread_once(&abr_once, load_abr);
	if (abr.err < 0 || !(a = abr.get_handle()))
		return NULL;
	if (abr.init(a, frames_per_eqmid[0] * LDAC_LSU * 1000 / rate) < 0 ||
	    abr.set_thresholds(a, ABR_CRITICAL, ABR_DANGEROUS_TREND, ABR_SAFETY_HQ_SQ) < 0) {
		SNDERR("LDAC: libldacBT_abr refused its setup; quality auto steps with congestion");
		abr.free_handle(a);
		return NULL;
	}
	return a;
}

static int ldac_encoder_new(struct a2dp_encoder **out, const uint8_t *config, size_t len,
			    size_t mtu, const struct a2dp_codec_prefs *prefs)
{
	enum a2dp_ldac_quality q = prefs ? prefs->ldac_quality : LDAC_AUTO;
	struct a2dp_format fmt;
	struct a2dp_encoder *enc;
	int err;

	if ((err = ldac_available()) < 0 || (err = ldac_parse_config(config, len, &fmt)) < 0)
		return err;
	if (mtu < LDAC_MIN_MTU)
		return -EMSGSIZE;   /* the caller says so, and tries the next codec */
	if (!(enc = calloc(1, sizeof(*enc))))
		return -ENOMEM;
	/* auto starts at SQ, as PipeWire's: HQ's 990 kb/s rarely holds. */
	enc->eqmid = q == LDAC_HQ ? 0 : q == LDAC_MQ ? 2 : 1;
	enc->adaptive = q == LDAC_AUTO;
	if (!(enc->h = lib.get_handle()) ||
	    lib.init_handle_encode(enc->h, mtu, enc->eqmid, MODE_STEREO, FMT_S16, fmt.rate) < 0) {
		if (enc->h)
			lib.free_handle(enc->h);
		free(enc);
		return -EIO;
	}
	if (enc->adaptive)
		enc->abr = abr_new(fmt.rate);
	*out = enc;
	return 0;
}

static void ldac_encoder_free(struct a2dp_encoder *enc)
{
	if (!enc)
		return;
	if (enc->abr)
		abr.free_handle(enc->abr);
	lib.close_handle(enc->h);
	lib.free_handle(enc->h);
	free(enc);
}

static int eqmid_of(const struct a2dp_encoder *enc)
{
	return __atomic_load_n(&enc->eqmid, __ATOMIC_RELAXED);
}

static void store_eqmid(struct a2dp_encoder *enc, int eqmid)
{
	__atomic_store_n(&enc->eqmid, eqmid, __ATOMIC_RELAXED);
}

static unsigned ldac_frame_samples(const struct a2dp_encoder *enc)
{
	(void)enc;
	return LDAC_LSU;
}

static unsigned ldac_frames_per_packet(const struct a2dp_encoder *enc, size_t mtu)
{
	return mtu >= LDAC_MIN_MTU ? frames_per_eqmid[eqmid_of(enc)] : 0;
}

static size_t ldac_frame_bytes(const struct a2dp_encoder *enc)
{
	return 660 / frames_per_eqmid[eqmid_of(enc)];
}

/* One library call: 128 samples in, a packet out once it has enough. */
static int feed(struct a2dp_encoder *enc, const int16_t *pcm, uint8_t *dst, size_t size,
		int *frames)
{
	uint8_t out[1024];     /* LDACBT_MAX_NBYTES */
	int used = 0, n = 0;

	if (lib.encode(enc->h, (void *)pcm, &used, out, &n, frames) < 0 || n < 0 ||
	    (size_t)n > size)
		return -EIO;
	memcpy(dst, out, n);
	return n;
}

/* nframes of 128 samples: a packet's worth (the stream pads short ones, see
 * whole_packets); anything shorter is completed with silence here, since the
 * library only ever emits whole packets. */
static ssize_t ldac_encode(struct a2dp_encoder *enc, const void *pcm, unsigned nframes,
			   uint8_t *dst, size_t size)
{
	const int16_t *in = pcm;
	unsigned want = frames_per_eqmid[eqmid_of(enc)];
	int n = 0, frames = 0;

	if (size < PAYLOAD_HEADER_LEN || nframes > want)
		return -EINVAL;
	for (unsigned i = 0; i < want && n == 0; i++)
		n = feed(enc, i < nframes ? in + (size_t)i * LDAC_LSU * 2 : enc->silence,
			 dst + PAYLOAD_HEADER_LEN, size - PAYLOAD_HEADER_LEN, &frames);
	if (n < 0)
		return n;
	dst[0] = frames & 0x0f;
	return n ? n + PAYLOAD_HEADER_LEN : 0;
}

/* The transmit queue after each packet: ABR may change the EQMID, which
 * the next packet's size follows. */
static void ldac_on_packet(struct a2dp_encoder *enc, unsigned queued_packets)
{
	int eqmid;

	if (!enc->abr)
		return;
	eqmid = abr.proc(enc->h, enc->abr, queued_packets, 1);
	if (eqmid >= 0 && eqmid < EQMIDS) {
		store_eqmid(enc, eqmid);
	} else if (!enc->logged_abr) {
		SNDERR("LDAC: libldacBT_abr failed (%d); quality stays where it is", eqmid);
		enc->logged_abr = 1;
	}
}

/* Congestion (quality auto without ABR only: one controller): HQ -> SQ -> MQ and back. */
static int ldac_lower_bitrate(struct a2dp_encoder *enc)
{
	if (!enc->adaptive || enc->abr || eqmid_of(enc) >= 2 ||
	    lib.set_eqmid(enc->h, eqmid_of(enc) + 1) < 0)
		return 0;
	store_eqmid(enc, eqmid_of(enc) + 1);
	return 1;
}

static int ldac_raise_bitrate(struct a2dp_encoder *enc)
{
	if (!enc->adaptive || enc->abr || eqmid_of(enc) <= 0 ||
	    lib.set_eqmid(enc->h, eqmid_of(enc) - 1) < 0)
		return 0;
	store_eqmid(enc, eqmid_of(enc) - 1);
	return 1;
}

/* One frame of look-ahead, as PipeWire reports; no decoder exists to measure it. */
static unsigned ldac_delay(const struct a2dp_encoder *enc)
{
	(void)enc;
	return LDAC_LSU;
}

const struct a2dp_codec a2dp_codec_ldac = {
	.name = "ldac",
	.title = "LDAC",
	.key = { A2DP_CODEC_VENDOR, 0x0000012d, 0x00aa },
	.framing = A2DP_FRAMING_RTP,
	.whole_packets = 1,             /* the library emits whole packets only */
	.sample_format = A2DP_S16,
	.available = ldac_available,
	.fill_caps = ldac_fill_caps,
	.select_config = ldac_select_config,
	.parse_config = ldac_parse_config,
	.caps_rates = ldac_caps_rates,
	.encoder_new = ldac_encoder_new,
	.encoder_free = ldac_encoder_free,
	.frame_samples = ldac_frame_samples,
	.frames_per_packet = ldac_frames_per_packet,
	.encode = ldac_encode,
	.lower_bitrate = ldac_lower_bitrate,
	.raise_bitrate = ldac_raise_bitrate,
	.on_packet = ldac_on_packet,
	.frame_bytes = ldac_frame_bytes,
	.delay = ldac_delay,
};
