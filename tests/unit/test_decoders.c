/* The capture's aptX, aptX HD and AAC decoders through the codec table, fed
 * by the plugin's own encoders: time kept per packet (aptX's start-up and
 * resynchronisation padded), the tone carried, AAC fragments gathered to the
 * marker and dropped after a gap, malformed payloads refused. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "codec.h"

#define RATE 44100

static int config_of(const struct a2dp_codec *c, uint8_t *config, size_t size)
{
	uint8_t caps[A2DP_MAX_CAPS];
	struct a2dp_codec_prefs prefs = { .rate = RATE };
	int n = c->fill_caps(caps, sizeof(caps));

	return n < 0 ? n : c->select_config(caps, n, &prefs, config, size);
}

/* A 1 kHz tone at about -12 dBFS, frames [t, t + n) interleaved stereo. */
static void tone(int16_t *s16, int32_t *s32, long t, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		int16_t v = (int16_t)(8000 * sin(2 * M_PI * 1000 * (t + i) / (double)RATE));

		if (s16)
			s16[2 * i] = s16[2 * i + 1] = v;
		if (s32)
			s32[2 * i] = s32[2 * i + 1] = (int32_t)v * 65536;
	}
}

static void test_aptx(const struct a2dp_codec *c, int hd)
{
	struct a2dp_encoder *enc;
	struct a2dp_decoder *dec;
	uint8_t config[16], pkt[1024];
	static int16_t in16[672 * 2];
	static int32_t in32[672 * 2], out[8192 * 2];
	unsigned cw = hd ? 110 : 168, frames = cw * 4;   /* what MTU 672 carries */
	int len = config_of(c, config, sizeof(config)), loud = 0, exact = 1;
	ssize_t n, first = 0;

	CHECK(len > 0 && c->encoder_new(&enc, config, len, 672, NULL) == 0 &&
	      c->decoder_new(&dec, config, len) == 0, "%s: encoder and decoder", c->name);
	for (long k = 0; k < 20; k++) {
		ssize_t bytes;

		tone(in16, in32, k * frames, frames);
		bytes = c->encode(enc, hd ? (void *)in32 : (void *)in16, cw, pkt, sizeof(pkt));
		n = c->decode(dec, pkt, bytes, 0, out, c->decoder_max_frames(dec));
		if (k == 0)
			first = n;
		exact &= n == (ssize_t)frames;
		for (ssize_t i = 0; k > 2 && i < 2 * n; i++) {
			int32_t v = hd ? out[i] / 65536 : ((int16_t *)out)[i];

			loud |= v > 7000 || v < -7000;
		}
	}
	CHECK(exact, "%s: every packet decodes to its 4 frames a codeword (the first: %zd of %u)",
	      c->name, first, frames);
	CHECK(loud, "%s: the tone comes out", c->name);
	CHECK(c->decode(dec, pkt, hd ? 5 : 3, 0, out, c->decoder_max_frames(dec)) == -EINVAL,
	      "%s: less than a codeword is refused", c->name);
	CHECK(c->decode(dec, pkt, 0, 0, out, c->decoder_max_frames(dec)) == -EINVAL,
	      "%s: an empty payload is refused", c->name);
	c->encoder_free(enc);
	c->decoder_free(dec);
}

static void test_aac(void)
{
	const struct a2dp_codec *c = &a2dp_codec_aac;
	struct a2dp_encoder *enc;
	struct a2dp_decoder *dec;
	uint8_t config[8], frame[3][2048];
	static int16_t in[1024 * 2], out[4096 * 2];
	ssize_t len[3], n;
	int clen = config_of(c, config, sizeof(config)), loud = 0;
	unsigned max;

	CHECK(clen == 6 && c->encoder_new(&enc, config, clen, 672, NULL) == 0 &&
	      c->decoder_new(&dec, config, clen) == 0, "aac: encoder and decoder");
	max = c->decoder_max_frames(dec);
	CHECK(max >= 1024, "aac: a frame fits max_frames (%u)", max);
	/* Whole frames, one a packet. */
	for (long k = 0; k < 10; k++) {
		tone(in, NULL, k * 1024, 1024);
		len[0] = c->encode(enc, in, 1, frame[0], sizeof(frame[0]));
		n = c->decode(dec, frame[0], len[0], 0, out, max);
		CHECK(n == 1024, "aac: packet %ld decodes to 1024 frames: %zd", k, n);
		for (int i = 0; k > 3 && i < 2048; i++)
			loud |= out[i] > 6000 || out[i] < -6000;
	}
	CHECK(loud, "aac: the tone comes out");
	/* One frame in three fragments: nothing until the last. */
	for (int f = 0; f < 3; f++) {
		tone(in, NULL, (10 + f) * 1024, 1024);
		len[f] = c->encode(enc, in, 1, frame[f], sizeof(frame[f]));
	}
	{
		size_t a = len[0] / 3, b = 2 * len[0] / 3;

		CHECK(c->decode(dec, frame[0], a, A2DP_DECODE_MORE, out, max) == 0 &&
		      c->decode(dec, frame[0] + a, b - a, A2DP_DECODE_MORE, out, max) == 0,
		      "aac: fragments with more to come decode to nothing yet");
		n = c->decode(dec, frame[0] + b, len[0] - b, 0, out, max);
		CHECK(n == 1024, "aac: the last fragment (marker) gives the frame: %zd", n);
		/* A fragment, then a gap: the partial frame is dropped, and a
		 * packet after the gap that is not whole is not trusted. */
		CHECK(c->decode(dec, frame[1], a, A2DP_DECODE_MORE, out, max) == 0, "aac: a first fragment");
		CHECK(c->decode(dec, frame[1] + b, len[1] - b, A2DP_DECODE_AFTER_GAP, out, max) == -EINVAL,
		      "aac: its last fragment after lost packets: the frame is dropped");
		CHECK(c->decode(dec, frame[2], len[2], 0, out, max) == 1024,
		      "aac: the next whole frame decodes");
	}
	CHECK(c->decode(dec, frame[0], 3, 0, out, max) == -EINVAL, "aac: 3 bytes do not decode");
	c->encoder_free(enc);
	c->decoder_free(dec);
}

int main(void)
{
	if (a2dp_codec_aptx.available() == 0) {
		test_aptx(&a2dp_codec_aptx, 0);
		test_aptx(&a2dp_codec_aptx_hd, 1);
	} else {
		CHECK(0, "libfreeaptx loads (install libfreeaptx0)");
	}
	if (a2dp_codec_aac.available() == 0)
		test_aac();
	else
		CHECK(0, "libavcodec's AAC loads");
	return check_finish();
}
