/* SBC configuration choice over every capability set, and the encoder's framing. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "../../codecs/codec.h"
#include "check.h"

static const struct a2dp_codec *sbc = &a2dp_codec_sbc;

static int bits(unsigned v) { return __builtin_popcount(v); }

/* Every valid capability set yields a valid configuration inside it. */
static void test_all_capability_sets(void)
{
	static const uint8_t pools[][2] = { {2, 53}, {2, 250}, {2, 35}, {10, 32}, {53, 53}, {2, 2} };
	unsigned tried = 0, bad = 0;

	for (unsigned f = 1; f < 16; f++)
	for (unsigned m = 1; m < 16; m++)
	for (unsigned b = 1; b < 16; b++)
	for (unsigned sb = 1; sb < 4; sb++)
	for (unsigned a = 1; a < 4; a++)
	for (unsigned p = 0; p < sizeof(pools) / sizeof(pools[0]); p++) {
		uint8_t caps[4] = { f << 4 | m, b << 4 | sb << 2 | a, pools[p][0], pools[p][1] };
		struct a2dp_codec_prefs prefs = { .rate = 44100 };
		struct a2dp_format fmt;
		uint8_t c[4];
		int n = sbc->select_config(caps, 4, &prefs, c, sizeof(c));

		tried++;
		if (n == -ENOTSUP)     /* only when the sink's minimum exceeds what the mode allows */
			continue;
		if (n != 4 || sbc->parse_config(c, 4, &fmt) < 0 ||
		    (c[0] & ~caps[0]) || (c[1] & ~caps[1]) ||
		    bits(c[0] >> 4) != 1 || bits(c[0] & 15) != 1 || bits(c[1] >> 4) != 1 ||
		    bits((c[1] >> 2) & 3) != 1 || bits(c[1] & 3) != 1 ||
		    c[3] < caps[2] || c[3] > caps[3] || c[2] != caps[2]) {
			if (!bad++)
				CHECK(0, "caps %02x%02x%02x%02x -> %d %02x%02x%02x%02x", caps[0], caps[1],
				      caps[2], caps[3], n, c[0], c[1], c[2], c[3]);
		}
	}
	CHECK(bad == 0, "%u of %u capability sets gave a bad configuration", bad, tried);
	CHECK(tried == 15 * 15 * 15 * 3 * 3 * 6, "tried %u", tried);
}

static void expect_config(const char *what, const uint8_t caps[4], unsigned rate,
			  unsigned bitpool, const uint8_t want[4])
{
	struct a2dp_codec_prefs prefs = { .rate = rate, .bitpool = bitpool };
	uint8_t c[4] = { 0 };
	int n = sbc->select_config(caps, 4, &prefs, c, sizeof(c));

	CHECK(n == 4 && !memcmp(c, want, 4), "%s: got %d %02x%02x%02x%02x, want %02x%02x%02x%02x",
	      what, n, c[0], c[1], c[2], c[3], want[0], want[1], want[2], want[3]);
}

static void test_best_quality(void)
{
	const uint8_t all[4] = { 0xff, 0xff, 2, 250 };
	const uint8_t typical[4] = { 0x3f, 0xff, 2, 53 };   /* 44.1 + 48 kHz, all modes */
	const uint8_t low_max[4] = { 0xff, 0xff, 2, 40 };
	const uint8_t mono_only[4] = { 0x3f, 0xff, 2, 53 };
	uint8_t mono[4] = { 0x28, 0x15, 2, 53 };

	/* 44.1 kHz joint stereo, 16 blocks, 8 subbands, loudness, bitpool 53 */
	expect_config("44.1k", all, 44100, 0, (const uint8_t[]){ 0x21, 0x15, 2, 53 });
	expect_config("48k", all, 48000, 0, (const uint8_t[]){ 0x11, 0x15, 2, 51 });
	expect_config("typical sink", typical, 44100, 0, (const uint8_t[]){ 0x21, 0x15, 2, 53 });
	expect_config("capped by sink", low_max, 44100, 0, (const uint8_t[]){ 0x21, 0x15, 2, 40 });
	expect_config("override", all, 44100, 35, (const uint8_t[]){ 0x21, 0x15, 2, 35 });
	expect_config("override capped", typical, 44100, 90, (const uint8_t[]){ 0x21, 0x15, 2, 53 });
	expect_config("rate the sink lacks", (const uint8_t[]){ 0x1f, 0xff, 2, 53 }, 44100, 0,
		      (const uint8_t[]){ 0x11, 0x15, 2, 51 });
	(void)mono_only;
	mono[0] = 0x28;                               /* 44.1 kHz, mono only */
	expect_config("mono", mono, 44100, 0, (const uint8_t[]){ 0x28, 0x15, 2, 31 });
}

static void test_invalid_caps(void)
{
	static const uint8_t bad[][4] = {
		{ 0x0f, 0xff, 2, 53 },   /* no rate */
		{ 0xf0, 0xff, 2, 53 },   /* no channel mode */
		{ 0xff, 0x0f, 2, 53 },   /* no block length */
		{ 0xff, 0xf3, 2, 53 },   /* no subbands */
		{ 0xff, 0xfc, 2, 53 },   /* no allocation */
		{ 0xff, 0xff, 60, 53 },  /* min above max */
		{ 0xff, 0xff, 0, 53 },   /* min below 2 */
	};
	struct a2dp_codec_prefs prefs = { 0 };
	uint8_t c[4];

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(sbc->select_config(bad[i], 4, &prefs, c, 4) == -EINVAL, "bad caps %u accepted", i);
	CHECK(sbc->select_config(bad[0], 3, &prefs, c, 4) == -EINVAL, "short caps accepted");
	CHECK(sbc->select_config((const uint8_t[]){ 0xff, 0xff, 2, 53, 0 }, 5, &prefs, c, 4) == -EINVAL,
	      "long caps accepted");
	/* A mono sink demanding bitpool >= 200 cannot be served (mono limit 128). */
	CHECK(sbc->select_config((const uint8_t[]){ 0x28, 0x15, 200, 250 }, 4, &prefs, c, 4) == -ENOTSUP,
	      "impossible minimum bitpool accepted");
}

static void test_parse_config(void)
{
	struct a2dp_format fmt;

	CHECK(sbc->parse_config((const uint8_t[]){ 0x21, 0x15, 2, 53 }, 4, &fmt) == 0 &&
	      fmt.rate == 44100 && fmt.channels == 2, "44.1k stereo");
	CHECK(sbc->parse_config((const uint8_t[]){ 0x18, 0x15, 2, 29 }, 4, &fmt) == 0 &&
	      fmt.rate == 48000 && fmt.channels == 1, "48k mono");
	CHECK(sbc->parse_config((const uint8_t[]){ 0x31, 0x15, 2, 53 }, 4, &fmt) < 0, "two rates");
	CHECK(sbc->parse_config((const uint8_t[]){ 0x23, 0x15, 2, 53 }, 4, &fmt) < 0, "two modes");
	CHECK(sbc->parse_config((const uint8_t[]){ 0x21, 0x1d, 2, 53 }, 4, &fmt) < 0, "two subbands");
	CHECK(sbc->parse_config((const uint8_t[]){ 0x21, 0x15, 2, 0 }, 4, &fmt) < 0, "max < min");
	CHECK(sbc->parse_config((const uint8_t[]){ 0x28, 0x15, 2, 200 }, 4, &fmt) < 0, "mono bitpool 200");
	CHECK(sbc->parse_config((const uint8_t[]){ 0x21, 0x15, 2 }, 3, &fmt) < 0, "short");
}

static void test_rates(void)
{
	unsigned r[4];
	int n = sbc->caps_rates((const uint8_t[]){ 0x3f, 0xff, 2, 53 }, 4, r, 4);

	CHECK(n == 2 && r[0] == 44100 && r[1] == 48000, "rates %d", n);
	n = sbc->caps_rates((const uint8_t[]){ 0xff, 0xff, 2, 53 }, 4, r, 4);
	CHECK(n == 4, "all rates %d", n);
}

static void test_encoder(void)
{
	const uint8_t cfg[4] = { 0x21, 0x15, 2, 53 };
	struct a2dp_encoder *enc;
	int16_t pcm[15 * 128 * 2];
	uint8_t out[4096];
	ssize_t n;

	CHECK(sbc->encoder_new(&enc, cfg, 4, 672, NULL) == 0, "encoder");
	CHECK(sbc->frame_samples(enc) == 128, "frame samples %u", sbc->frame_samples(enc));
	CHECK(sbc->frame_bytes(enc) == 119, "frame bytes %zu", sbc->frame_bytes(enc));
	CHECK(sbc->delay(enc) == 73, "delay");
	CHECK(sbc->frames_per_packet(enc, 672) == 5, "672 -> %u", sbc->frames_per_packet(enc, 672));
	CHECK(sbc->frames_per_packet(enc, 895) == 7, "895 -> %u", sbc->frames_per_packet(enc, 895));
	CHECK(sbc->frames_per_packet(enc, 4000) == 15, "never more than 15");
	CHECK(sbc->frames_per_packet(enc, 100) == 0, "nothing fits 100");
	for (unsigned i = 0; i < sizeof(pcm) / sizeof(pcm[0]); i++)
		pcm[i] = (int16_t)(8000 * sin(i * 0.01));
	n = sbc->encode(enc, pcm, 5, out, sizeof(out));
	CHECK(n == 1 + 5 * 119 && out[0] == 5, "payload %zd, header %u", n, out[0]);
	CHECK(out[1] == 0x9c, "SBC sync word %02x", out[1]);
	CHECK(sbc->encode(enc, pcm, 5, out, 100) < 0, "too small a buffer is an error");
	CHECK(sbc->encode(enc, pcm, 16, out, sizeof(out)) < 0, "16 frames is an error");

	/* Congestion steps: down by 2 to the minimum, up by 1 to the negotiated
	 * maximum; what lower_bitrate() says to undo is exactly what it takes. */
	unsigned calls = 0, to_undo = 0, steps = 0;
	int r;
	while ((r = sbc->lower_bitrate(enc)) > 0) {
		calls++;
		to_undo += r;
	}
	CHECK(calls == 26 && sbc->frame_bytes(enc) < 119, "lowered in %u calls", calls);
	CHECK(sbc->frames_per_packet(enc, 672) == 15, "more frames fit at low bitpool: %u",
	      sbc->frames_per_packet(enc, 672));
	while (sbc->raise_bitrate(enc))
		steps++;
	CHECK(steps == 51 && to_undo == steps && sbc->frame_bytes(enc) == 119,
	      "raised %u steps for %u to undo, back to %zu bytes", steps, to_undo, sbc->frame_bytes(enc));
	sbc->encoder_free(enc);
}

int main(void)
{
	test_all_capability_sets();
	test_best_quality();
	test_invalid_caps();
	test_parse_config();
	test_rates();
	test_encoder();
	return check_finish();
}
