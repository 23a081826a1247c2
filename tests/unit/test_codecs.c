/* The codec table beyond SBC: keys, CODEC= lists, aptX / aptX HD
 * configuration choice over every capability byte (and malformed blobs),
 * SBC-XQ, and packets within the MTU for every codec. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../codecs/codec.h"
#include "../../codecs/latm.h"
#include "../../a2dp/rtp.h"
#include "check.h"

static const uint8_t aptx_id[6] = { 0x4f, 0, 0, 0, 0x01, 0 };
static const uint8_t aptx_hd_id[6] = { 0xd7, 0, 0, 0, 0x24, 0 };

static void test_keys(void)
{
	struct a2dp_codec_key k;
	uint8_t caps[A2DP_MAX_CAPS];
	int n;

	CHECK(a2dp_codec_key_of(0xff, aptx_id, 6, &k) == 0 && a2dp_codec_find(&k) == &a2dp_codec_aptx,
	      "aptX key");
	CHECK(a2dp_codec_key_of(0xff, aptx_hd_id, 6, &k) == 0 &&
	      a2dp_codec_find(&k) == &a2dp_codec_aptx_hd, "aptX HD key");
	CHECK(a2dp_codec_key_of(0xff, aptx_id, 5, &k) == -EINVAL, "5-byte vendor blob");
	CHECK(a2dp_codec_key_of(0x00, NULL, 0, &k) == 0 && a2dp_codec_find(&k) == &a2dp_codec_sbc,
	      "SBC (not SBC-XQ: the same key, SBC first)");
	k.vendor_codec = 0xaa;
	k.vendor = 0x12d;
	k.id = 0xff;
	CHECK(a2dp_codec_find(&k) == &a2dp_codec_ldac, "LDAC's key");
	k.vendor_codec = 0xab;
	CHECK(a2dp_codec_find(&k) == NULL, "another Sony codec is not ours");
	for (int i = 0; a2dp_codecs[i]; i++) {
		const struct a2dp_codec *c = a2dp_codecs[i];

		n = c->fill_caps(caps, sizeof(caps));
		CHECK(n > 0 && a2dp_codec_key_of(c->key.id, caps, n, &k) == 0 &&
		      a2dp_codec_key_equal(&k, &c->key), "%s: our caps carry our key", c->name);
		CHECK(c->fill_caps(caps, 3) == -ENOSPC, "%s: 3-byte buffer", c->name);
	}
}

static void expect_list(const char *s, const char *want, int err)
{
	const struct a2dp_codec *list[A2DP_MAX_CODECS];
	const char *bad = NULL;
	char got[128] = "";
	int n = a2dp_codec_parse_list(s, list, A2DP_MAX_CODECS, &bad);

	for (int i = 0; i < n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? ":" : "", list[i]->name);
	if (err)
		CHECK(n == err && bad, "'%s': got %d", s, n);
	else
		CHECK(n > 0 && !strcmp(got, want), "'%s': got %d '%s', want '%s'", s, n, got, want);
}

static void test_codec_lists(void)
{
	const char *bad = NULL;
	const struct a2dp_codec *list[2];

	expect_list("", "ldac:aptx_hd:aptx:aac:sbc", 0);
	expect_list("aac", "aac", 0);
	expect_list("aptx_hd:aptx:sbc", "aptx_hd:aptx:sbc", 0);
	expect_list("sbc", "sbc", 0);
	expect_list("sbc_xq:sbc", "sbc_xq:sbc", 0);
	expect_list(" aptx  sbc ", "aptx:sbc", 0);
	expect_list("aptx::aptx:sbc", "aptx:sbc", 0);     /* repeats and empty items dropped */
	expect_list("ldac:sbc", "ldac:sbc", 0);
	expect_list("lhdc", NULL, -EINVAL);
	expect_list("sbc,aptx", NULL, -EINVAL);          /* ',' splits ALSA arguments */
	expect_list("SBC", NULL, -EINVAL);
	expect_list("sbc:aptx_hdx", NULL, -EINVAL);
	expect_list("averyveryverylongname", NULL, -EINVAL);
	CHECK(a2dp_codec_parse_list("sbc:foo:aptx", list, 2, &bad) == -EINVAL && !strcmp(bad, "foo:aptx"),
	      "bad points at the unknown name");
	CHECK(a2dp_codec_parse_list("aptx_hd:aptx:sbc", list, 2, NULL) == 2, "bounded by max");
	CHECK(!strcmp(a2dp_codec_known_names(), "sbc, sbc_xq, aptx, aptx_hd, aac, ldac"), "known names");
}

static unsigned popcount(unsigned v) { return __builtin_popcount(v); }

/* Every value of the rate/channel byte, for aptX and aptX HD. */
static void test_aptx_every_byte(const struct a2dp_codec *c, const uint8_t *id, size_t len)
{
	unsigned ok = 0, notsup = 0, inval = 0, bad = 0;

	for (unsigned v = 0; v < 256; v++) {
		uint8_t caps[16] = { 0 }, conf[16];
		struct a2dp_codec_prefs prefs = { .rate = 48000 };
		struct a2dp_format fmt;
		int n;

		memcpy(caps, id, 6);
		caps[6] = v;
		n = c->select_config(caps, len, &prefs, conf, sizeof(conf));
		if (n == -EINVAL) {
			inval++;
			bad += (v & 0xf0) && (v & 0x0f);       /* only an empty field is malformed */
		} else if (n == -ENOTSUP) {
			notsup++;
			bad += (v & 0x02) != 0;                /* only without stereo */
		} else {
			ok++;
			bad += n != (int)len || memcmp(conf, id, 6) || (conf[6] & ~v) ||
			       popcount(conf[6] >> 4) != 1 || (conf[6] & 0x0f) != 0x02 ||
			       c->parse_config(conf, n, &fmt) < 0 || fmt.channels != 2 ||
			       ((v & 0x10) && fmt.rate != 48000);
		}
	}
	CHECK(bad == 0, "%s: %u bad choices", c->name, bad);
	CHECK(ok == 15 * 8 && inval == 16 + 15 && notsup == 256 - ok - inval,
	      "%s: %u ok, %u malformed, %u unsupported", c->name, ok, inval, notsup);
}

static void test_aptx_malformed(void)
{
	struct a2dp_codec_prefs prefs = { 0 };
	struct a2dp_format fmt;
	uint8_t caps[16], conf[16];
	unsigned rates[4];

	memcpy(caps, aptx_id, 6);
	caps[6] = 0x32;
	CHECK(a2dp_codec_aptx.select_config(caps, 7, &prefs, conf, sizeof(conf)) == 7 &&
	      conf[6] == 0x22, "44.1 kHz first without a preference: %02x", conf[6]);
	CHECK(a2dp_codec_aptx.select_config(caps, 6, &prefs, conf, sizeof(conf)) == -EINVAL, "too short");
	CHECK(a2dp_codec_aptx.select_config(caps, 8, &prefs, conf, sizeof(conf)) == -EINVAL, "too long");
	CHECK(a2dp_codec_aptx.select_config(caps, 7, &prefs, conf, 6) == -ENOSPC, "no room");
	CHECK(a2dp_codec_aptx_hd.select_config(caps, 11, &prefs, conf, sizeof(conf)) == -EINVAL,
	      "aptX caps offered to aptX HD");
	caps[6] = 0x31;
	CHECK(a2dp_codec_aptx.select_config(caps, 7, &prefs, conf, sizeof(conf)) == -ENOTSUP, "mono only");
	caps[6] = 0x0a;
	CHECK(a2dp_codec_aptx.select_config(caps, 7, &prefs, conf, sizeof(conf)) == -EINVAL, "no rate");
	caps[6] = 0x32;
	CHECK(a2dp_codec_aptx.caps_rates(caps, 7, rates, 4) == 2 && rates[0] == 44100 &&
	      rates[1] == 48000, "rates");
	/* Configurations: exactly one rate, stereo. */
	caps[6] = 0x22;
	CHECK(a2dp_codec_aptx.parse_config(caps, 7, &fmt) == 0 && fmt.rate == 44100, "44.1 stereo");
	caps[6] = 0x32;
	CHECK(a2dp_codec_aptx.parse_config(caps, 7, &fmt) == -EINVAL, "two rates");
	caps[6] = 0x23;
	CHECK(a2dp_codec_aptx.parse_config(caps, 7, &fmt) == -EINVAL, "two modes");
	caps[6] = 0x21;
	CHECK(a2dp_codec_aptx.parse_config(caps, 7, &fmt) == -EINVAL, "mono");
	caps[0] = 0x4e;
	caps[6] = 0x22;
	CHECK(a2dp_codec_aptx.parse_config(caps, 7, &fmt) == -EINVAL, "another vendor");
}

static void test_sbc_xq(void)
{
	const struct a2dp_codec *xq = &a2dp_codec_sbc_xq;
	struct a2dp_codec_prefs prefs = { .rate = 44100 };
	struct a2dp_format fmt;
	uint8_t all[4] = { 0xff, 0xff, 2, 53 }, no_dual[4] = { 0xfb, 0xff, 2, 53 };
	uint8_t low[4] = { 0xff, 0xff, 2, 35 }, c[4];

	CHECK(xq->select_config(all, 4, &prefs, c, 4) == 4 && c[0] == 0x24 && c[1] == 0x15 &&
	      c[3] == 43, "44.1 kHz dual channel, 16 blocks, 8 subbands, loudness, bitpool 43: %02x%02x%02x%02x",
	      c[0], c[1], c[2], c[3]);
	prefs.rate = 48000;
	CHECK(xq->select_config(all, 4, &prefs, c, 4) == 4 && c[0] == 0x14 && c[3] == 39,
	      "48 kHz: bitpool 39 (%u)", c[3]);
	CHECK(xq->select_config(no_dual, 4, &prefs, c, 4) == -ENOTSUP, "no dual channel");
	CHECK(xq->select_config(low, 4, &prefs, c, 4) == 4 && c[3] == 35, "capped by the sink: %u", c[3]);
	prefs.bitpool = 30;
	CHECK(xq->select_config(all, 4, &prefs, c, 4) == 4 && c[3] == 30, "BITPOOL= applies");
	all[0] = 0xcf;     /* 16 and 32 kHz only */
	CHECK(xq->select_config(all, 4, &prefs, c, 4) == -ENOTSUP, "no 44.1/48 kHz");
	all[0] = 0x24;
	all[1] = 0x15;
	all[2] = 2;
	all[3] = 43;
	CHECK(xq->parse_config(all, 4, &fmt) == 0 && fmt.channels == 2, "dual channel is stereo PCM");
}

/* A full-scale square wave of n frames in the codec's sample format. */
static void *loud_pcm(const struct a2dp_codec *c, size_t frames)
{
	size_t samples = frames * 2;
	int32_t *p32 = c->sample_format == A2DP_S32 ? malloc(samples * 4) : NULL;
	int16_t *p16 = p32 ? NULL : malloc(samples * 2);

	for (size_t i = 0; i < samples; i++) {
		if (p32)
			p32[i] = (i / 2) & 1 ? INT32_MAX : INT32_MIN;
		else
			p16[i] = (i / 2) & 1 ? 32767 : -32768;
	}
	return p32 ? (void *)p32 : (void *)p16;
}

/* What the stream does: frames_per_packet frames into mtu, for MTUs up to 1100. */
static void test_packets_within_mtu(const struct a2dp_codec *c, const uint8_t *conf, size_t len)
{
	struct a2dp_encoder *enc;
	size_t head = c->framing == A2DP_FRAMING_RTP ? RTP_HEADER_LEN : 0;
	unsigned worst = 0, bad = 0, tried = 0;
	void *pcm;

	if (c->encoder_new(&enc, conf, len, 672, NULL) < 0) {
		CHECK(0, "%s: encoder_new", c->name);
		return;
	}
	pcm = loud_pcm(c, 1100 * c->frame_samples(enc));
	for (size_t mtu = 20; mtu <= 1100; mtu += 7) {
		unsigned fpp = c->frames_per_packet(enc, mtu);
		uint8_t *dst;
		ssize_t n;

		if (!fpp)
			continue;
		tried++;
		dst = malloc(mtu - head);      /* exact: ASan catches an overrun */
		n = c->encode(enc, pcm, fpp, dst, mtu - head);
		if (n <= 0 || (size_t)n + head > mtu)
			bad++;
		/* the MTU is used: one more frame would not fit */
		if (n > 0 && (size_t)n + head + c->frame_bytes(enc) <= mtu && fpp < 15)
			worst++;
		free(dst);
	}
	CHECK(tried > 100 && bad == 0, "%s: %u of %u packets over the MTU", c->name, bad, tried);
	CHECK(worst == 0, "%s: %u packets left a frame's room unused", c->name, worst);
	CHECK(c->frames_per_packet(enc, head + c->frame_bytes(enc) - 1) == 0, "%s: nothing fits", c->name);
	free(pcm);
	c->encoder_free(enc);
}

static void test_aptx_framing(void)
{
	uint8_t conf[11] = { 0 };
	struct a2dp_encoder *enc;

	memcpy(conf, aptx_id, 6);
	conf[6] = 0x22;
	if (a2dp_codec_aptx.encoder_new(&enc, conf, 7, 672, NULL) == 0) {
		/* PipeWire's packet: the MTU in 4-byte codewords, no header at all. */
		CHECK(a2dp_codec_aptx.frames_per_packet(enc, 672) == 168, "aptX at 672: %u",
		      a2dp_codec_aptx.frames_per_packet(enc, 672));
		CHECK(a2dp_codec_aptx.frame_samples(enc) == 4 && a2dp_codec_aptx.delay(enc) == 90, "4 samples, delay 90");
		CHECK(a2dp_codec_aptx.lower_bitrate(enc) == 0 && a2dp_codec_aptx.raise_bitrate(enc) == 0,
		      "no bitrate steps");
		a2dp_codec_aptx.encoder_free(enc);
	} else {
		CHECK(0, "aptX encoder (libfreeaptx.so.0 installed?)");
	}
	memcpy(conf, aptx_hd_id, 6);
	if (a2dp_codec_aptx_hd.encoder_new(&enc, conf, 11, 672, NULL) == 0) {
		CHECK(a2dp_codec_aptx_hd.frames_per_packet(enc, 672) == 110, "aptX HD at 672: %u",
		      a2dp_codec_aptx_hd.frames_per_packet(enc, 672));
		a2dp_codec_aptx_hd.encoder_free(enc);
	} else {
		CHECK(0, "aptX HD encoder");
	}
	CHECK(a2dp_codec_aptx.framing == A2DP_FRAMING_RAW && a2dp_codec_aptx_hd.framing == A2DP_FRAMING_RTP &&
	      a2dp_codec_aptx_hd.sample_format == A2DP_S32, "framing and formats");
}

/* AAC: every object type byte and the rate/channel bytes that matter. */
static void test_aac_config(void)
{
	const struct a2dp_codec *c = &a2dp_codec_aac;
	struct a2dp_codec_prefs prefs = { .rate = 48000 };
	struct a2dp_format fmt;
	uint8_t caps[6] = { 0x80, 0x01, 0x8c, 0x83, 0xe8, 0x00 }, conf[6];
	unsigned bad = 0, ok = 0, rates[4];

	CHECK(c->select_config(caps, 6, &prefs, conf, 6) == 6 && conf[0] == 0x80 && conf[1] == 0 &&
	      conf[2] == 0x84 && conf[3] == 0x03 && conf[4] == 0xe8 && conf[5] == 0,
	      "48 kHz asked: MPEG-2 LC, 48 kHz, stereo, 256 kb/s CBR: %02x%02x%02x%02x%02x%02x",
	      conf[0], conf[1], conf[2], conf[3], conf[4], conf[5]);
	CHECK(c->parse_config(conf, 6, &fmt) == 0 && fmt.rate == 48000 && fmt.channels == 2, "parse");
	prefs.rate = 0;
	CHECK(c->select_config(caps, 6, &prefs, conf, 6) == 6 && conf[1] == 0x01 && conf[2] == 0x04,
	      "no preference: 44.1 kHz");
	for (unsigned obj = 0; obj < 256; obj++) {
		int n;

		caps[0] = obj;
		n = c->select_config(caps, 6, &prefs, conf, 6);
		if (!obj)
			bad += n != -EINVAL;
		else if (!(obj & 0xc0))
			bad += n != -ENOTSUP;            /* LTP, scalable, HE only: not ours */
		else if (n != 6 || conf[0] != (obj & 0x80 ? 0x80 : 0x40) || c->parse_config(conf, 6, &fmt))
			bad++;
		else
			ok++;
	}
	CHECK(bad == 0 && ok == 192, "object types: %u bad, %u ok", bad, ok);
	caps[0] = 0x40;
	caps[2] = 0x88;                              /* mono only */
	CHECK(c->select_config(caps, 6, &prefs, conf, 6) == -ENOTSUP, "mono only");
	caps[1] = 0x02;
	caps[2] = 0x04;                              /* 32 kHz only */
	CHECK(c->select_config(caps, 6, &prefs, conf, 6) == -ENOTSUP, "no 44.1/48 kHz");
	caps[1] = 0;
	caps[2] = 0x04;
	CHECK(c->select_config(caps, 6, &prefs, conf, 6) == -EINVAL, "no rate at all");
	CHECK(c->select_config(caps, 5, &prefs, conf, 6) == -EINVAL, "too short");
	CHECK(c->select_config(caps, 7, &prefs, conf, 6) == -EINVAL, "too long");
	caps[1] = 0x01;
	caps[3] = caps[4] = caps[5] = 0;             /* bitrate unspecified */
	CHECK(c->select_config(caps, 6, &prefs, conf, 6) == 6 && conf[3] == 0x04 && conf[4] == 0xe2 &&
	      conf[5] == 0, "unspecified bitrate: 320 kb/s");
	CHECK(c->select_config(caps, 6, &prefs, conf, 5) == -ENOSPC, "no room");
	CHECK(c->caps_rates((uint8_t[]){ 0x80, 0x01, 0x84, 0, 0, 0 }, 6, rates, 4) == 2, "two rates");
	memcpy(conf, (uint8_t[]){ 0x80, 0x01, 0x84, 0x03, 0xe8, 0 }, 6);
	CHECK(c->parse_config(conf, 6, &fmt) == -EINVAL, "two rates configured");
	memcpy(conf, (uint8_t[]){ 0xc0, 0x01, 0x04, 0x03, 0xe8, 0 }, 6);
	CHECK(c->parse_config(conf, 6, &fmt) == -EINVAL, "two object types configured");
	memcpy(conf, (uint8_t[]){ 0x80, 0x01, 0x0c, 0x03, 0xe8, 0 }, 6);
	CHECK(c->parse_config(conf, 6, &fmt) == -EINVAL, "two channel modes configured");
	CHECK(a2dp_codec_aac.framing == A2DP_FRAMING_RTP && a2dp_codec_aac.rtp_marker &&
	      a2dp_codec_aac.fragments, "AAC framing: RTP, marker bit, fragments");
}

static void test_latm(void)
{
	uint8_t frame[700], back[700], out[800];
	unsigned rate = 0, ch = 0;
	int n;

	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = i * 7;
	for (size_t len = 0; len <= sizeof(frame); len += 37) {
		n = latm_write(out, sizeof(out), 44100, 2, frame, len);
		CHECK(n > 0 && (size_t)n <= len + latm_overhead(len) &&
		      latm_read(out, n, &rate, &ch, back, sizeof(back)) == (int)len &&
		      !memcmp(back, frame, len) && rate == 44100 && ch == 2,
		      "%zu bytes: written %d, read back", len, n);
	}
	/* The configuration bits, as a decoder sees them: useSameStreamMux 0,
	 * audioMuxVersion 1, versionA 0, taraFullness (00 ff), ... */
	n = latm_write(out, sizeof(out), 48000, 2, frame, 3);
	CHECK(n == 13 && out[0] == 0x47 && out[1] == 0xfc && out[2] == 0x00, "%d: %02x %02x %02x",
	      n, out[0], out[1], out[2]);
	CHECK(latm_write(out, 10, 44100, 2, frame, 100) == -ENOSPC, "no room");
	CHECK(latm_write(out, sizeof(out), 44000, 2, frame, 100) == -EINVAL, "no such rate");
	CHECK(latm_read(out, n - 1, &rate, &ch, back, sizeof(back)) == -EINVAL, "cut short");
}

/* AAC through the encoder: one frame a packet; what overshoots the MTU stays
 * within what the stream can fragment. */
static void test_aac_packets(void)
{
	static const uint8_t conf[6] = { 0x80, 0x01, 0x04, 0x03, 0xe8, 0x00 };
	struct a2dp_encoder *enc;
	static int16_t pcm[2048];
	static uint8_t out[672 + A2DP_MAX_FRAGMENTED];
	unsigned over = 0, frames = 0;

	if (a2dp_codec_aac.encoder_new(&enc, conf, 6, 672, NULL) < 0) {
		CHECK(0, "AAC encoder (libavcodec59 installed?)");
		return;
	}
	CHECK(a2dp_codec_aac.frames_per_packet(enc, 672) == 1 && a2dp_codec_aac.frame_samples(enc) == 1024,
	      "one 1024-sample frame a packet");
	CHECK(a2dp_codec_aac.frames_per_packet(enc, 200) == 0, "MTU 200: too small for 64 kb/s");
	srand(7);
	for (int k = 0; k < 100; k++) {
		ssize_t n;

		for (int i = 0; i < 2048; i++)
			pcm[i] = rand() % 40000 - 20000;
		n = a2dp_codec_aac.encode(enc, pcm, 1, out, sizeof(out) - 12);
		if (n <= 0 || (size_t)n > sizeof(out) - 12)
			CHECK(0, "frame %d: %zd", k, n);
		frames++;
		over += n > 672 - 12;
	}
	CHECK(over * 10 <= frames, "%u of %u frames needed a second packet", over, frames);
	{
		size_t top = a2dp_codec_aac.frame_bytes(enc);
		int down = a2dp_codec_aac.lower_bitrate(enc), up = 0;

		CHECK(down == 1 && a2dp_codec_aac.frame_bytes(enc) < top, "a step down");
		while (a2dp_codec_aac.raise_bitrate(enc) && up < 10)
			up++;
		CHECK(up == 1 && a2dp_codec_aac.frame_bytes(enc) == top,
		      "back up in %d steps to the MTU's cap (%zu bytes a frame)", up, top);
		while (a2dp_codec_aac.lower_bitrate(enc) && down < 20)
			down++;
		CHECK(a2dp_codec_aac.frame_bytes(enc) == 64000 * 1024 / 8 / 44100, "floor 64 kb/s");
	}
	a2dp_codec_aac.encoder_free(enc);
}

static const uint8_t ldac_id[6] = { 0x2d, 0x01, 0, 0, 0xaa, 0 };

/* LDAC: every rate byte x every channel byte. */
static void test_ldac_config(void)
{
	const struct a2dp_codec *c = &a2dp_codec_ldac;
	struct a2dp_codec_prefs prefs = { .rate = 48000 };
	struct a2dp_format fmt;
	uint8_t caps[8], conf[8];
	unsigned bad = 0, ok = 0;

	memcpy(caps, ldac_id, 6);
	for (unsigned f = 0; f < 64; f++)
		for (unsigned m = 0; m < 8; m++) {
			int n;

			caps[6] = f;
			caps[7] = m;
			n = c->select_config(caps, 8, &prefs, conf, 8);
			if (!f || !m)
				bad += n != -EINVAL;
			else if (!(f & 0x30) || !(m & 1))
				bad += n != -ENOTSUP;     /* 88.2/96k only, or mono/dual only */
			else if (n != 8 || c->parse_config(conf, 8, &fmt) || conf[7] != 1 ||
				 fmt.rate != ((f & 0x10) ? 48000u : 44100u))
				bad++;
			else
				ok++;
		}
	CHECK(bad == 0 && ok == 48 * 4, "%u bad, %u ok", bad, ok);
	caps[6] = 0x30;
	caps[7] = 0x07;
	CHECK(c->select_config(caps, 7, &prefs, conf, 8) == -EINVAL, "too short");
	conf[6] = 0x30;
	CHECK(c->parse_config(conf, 8, &fmt) == -EINVAL, "two rates configured");
}

/* Whether libldacBT_abr steers this auto encoder: a deep queue moves it
 * (the congestion steps' fallback would not). */
static int ldac_abr_active(struct a2dp_encoder *enc)
{
	unsigned before = a2dp_codec_ldac.frames_per_packet(enc, 895);

	for (int k = 0; k < 10; k++)
		a2dp_codec_ldac.on_packet(enc, 8);
	return a2dp_codec_ldac.frames_per_packet(enc, 895) != before;
}

/* One packet at the encoder's quality: fpp frames in at most 661 bytes (the
 * 4-frame step between SQ and MQ fills 656 of the 660). */
static int ldac_packet_ok(struct a2dp_encoder *enc, unsigned fpp)
{
	static int16_t pcm[6 * 128 * 2];
	uint8_t out[895];
	ssize_t n = a2dp_codec_ldac.encode(enc, pcm, fpp, out, 895 - 12);

	return n > 1 + 600 && n <= 661 && out[0] == fpp;
}

/* LDAC auto with libldacBT_abr: a queue growing one packet at a time lowers
 * the quality (more, smaller frames a packet) down to MQ, every packet still
 * one 660-byte packet; an empty queue for long enough raises it to HQ. */
static void test_ldac_abr(void)
{
	static const uint8_t conf[8] = { 0x2d, 0x01, 0, 0, 0xaa, 0, 0x10, 0x01 };
	struct a2dp_codec_prefs prefs = { .ldac_quality = LDAC_AUTO };
	struct a2dp_encoder *enc;
	unsigned fpp = 3, lowest = 3, steps = 0, bad = 0, calls = 0;

	if (a2dp_codec_ldac.encoder_new(&enc, conf, 8, 895, &prefs) < 0) {
		CHECK(0, "LDAC encoder (libldacbt-enc2 installed?)");
		return;
	}
	for (unsigned depth = 0; depth <= 8; depth++)
		for (int k = 0; k < 4; k++) {
			unsigned now;

			a2dp_codec_ldac.on_packet(enc, depth);
			if ((now = a2dp_codec_ldac.frames_per_packet(enc, 895)) == fpp)
				continue;
			bad += now < fpp || !ldac_packet_ok(enc, now);   /* only down, and it packs */
			steps++;
			fpp = lowest = now;
		}
	CHECK(lowest == 6 && steps >= 2 && !bad, "ABR down: %u steps to %u frames (MQ 6), %u bad",
	      steps, lowest, bad);
	while (fpp > 2 && calls < 20000) {
		a2dp_codec_ldac.on_packet(enc, 0);
		calls++;
		fpp = a2dp_codec_ldac.frames_per_packet(enc, 895);
	}
	CHECK(fpp == 2 && ldac_packet_ok(enc, 2), "ABR up: %u frames after %u empty-queue packets",
	      fpp, calls);
	CHECK(calls > 100, "ABR up waits (%u packets)", calls);
	a2dp_codec_ldac.encoder_free(enc);
}

/* LDAC: the MTU rule, 660 bytes of frames a packet, 2/3/6 frames by quality. */
static void test_ldac_packets(void)
{
	static const uint8_t conf[8] = { 0x2d, 0x01, 0, 0, 0xaa, 0, 0x10, 0x01 };
	static const struct { enum a2dp_ldac_quality q; unsigned frames; } qs[] = {
		{ LDAC_HQ, 2 }, { LDAC_SQ, 3 }, { LDAC_MQ, 6 }, { LDAC_AUTO, 3 },
	};
	static int16_t pcm[6 * 128 * 2];
	uint8_t out[895];
	struct a2dp_encoder *enc;

	CHECK(a2dp_codec_ldac.encoder_new(&enc, conf, 8, 678, NULL) == -EMSGSIZE, "MTU 678 refused");
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		struct a2dp_codec_prefs prefs = { .ldac_quality = qs[i].q };
		unsigned fpp, bad = 0;

		if (a2dp_codec_ldac.encoder_new(&enc, conf, 8, 895, &prefs) < 0) {
			CHECK(0, "LDAC encoder (libldacbt-enc2 installed?)");
			return;
		}
		fpp = a2dp_codec_ldac.frames_per_packet(enc, 895);
		CHECK(fpp == qs[i].frames && a2dp_codec_ldac.frames_per_packet(enc, 672) == 0,
		      "quality %d: %u frames a packet", qs[i].q, fpp);
		for (int k = 0; k < 20; k++) {
			ssize_t n;

			for (size_t j = 0; j < sizeof(pcm) / 2; j++)
				pcm[j] = rand() % 30000 - 15000;
			n = a2dp_codec_ldac.encode(enc, pcm, fpp, out, 895 - 12);
			/* Every call a packet: header + fpp frames of 0xAA-synced, equal length */
			bad += n != 661 || out[0] != fpp || out[1] != 0xaa ||
			       out[1 + 660 / fpp] != 0xaa;
		}
		CHECK(bad == 0, "quality %d: %u packets not 661 bytes of %u frames", qs[i].q, bad, fpp);
		/* A short packet (drain) is completed with silence, not lost. */
		CHECK(a2dp_codec_ldac.encode(enc, pcm, 1, out, 895 - 12) == 661, "short packet");
		if (qs[i].q == LDAC_AUTO && ldac_abr_active(enc)) {
			CHECK(a2dp_codec_ldac.lower_bitrate(enc) == 0 &&
			      a2dp_codec_ldac.raise_bitrate(enc) == 0, "auto with ABR: no congestion steps");
		} else if (qs[i].q == LDAC_AUTO) {
			CHECK(a2dp_codec_ldac.lower_bitrate(enc) == 1 &&
			      a2dp_codec_ldac.frames_per_packet(enc, 895) == 6 &&
			      a2dp_codec_ldac.lower_bitrate(enc) == 0, "auto: SQ -> MQ, no lower");
			CHECK(a2dp_codec_ldac.encode(enc, pcm, 6, out, 895 - 12) == 661 && out[0] == 6,
			      "MQ packet right after the step");
			CHECK(a2dp_codec_ldac.raise_bitrate(enc) == 1 && a2dp_codec_ldac.raise_bitrate(enc) == 1 &&
			      a2dp_codec_ldac.raise_bitrate(enc) == 0 &&
			      a2dp_codec_ldac.frames_per_packet(enc, 895) == 2, "auto: up to HQ");
		} else {
			CHECK(a2dp_codec_ldac.lower_bitrate(enc) == 0, "fixed quality: no steps");
		}
		a2dp_codec_ldac.encoder_free(enc);
	}
}

int main(void)
{
	uint8_t aptx_conf[7], hd_conf[11] = { 0 };
	static const uint8_t sbc_conf[4] = { 0x21, 0x15, 2, 53 }, xq_conf[4] = { 0x24, 0x15, 2, 43 };

	memcpy(aptx_conf, aptx_id, 6);
	aptx_conf[6] = 0x22;
	memcpy(hd_conf, aptx_hd_id, 6);
	hd_conf[6] = 0x12;
	test_keys();
	test_codec_lists();
	test_aptx_every_byte(&a2dp_codec_aptx, aptx_id, 7);
	test_aptx_every_byte(&a2dp_codec_aptx_hd, aptx_hd_id, 11);
	test_aptx_malformed();
	test_sbc_xq();
	test_aptx_framing();
	test_aac_config();
	test_latm();
	test_aac_packets();
	test_ldac_config();
	test_ldac_packets();
	test_ldac_abr();
	test_packets_within_mtu(&a2dp_codec_sbc, sbc_conf, 4);
	test_packets_within_mtu(&a2dp_codec_sbc_xq, xq_conf, 4);
	test_packets_within_mtu(&a2dp_codec_aptx, aptx_conf, 7);
	test_packets_within_mtu(&a2dp_codec_aptx_hd, hd_conf, 11);
	return check_finish();
}
