/* SBC decoding through the codec table: what the capture does with a packet's payload. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "codec.h"

static const uint8_t config[4] = { 0x21, 0x15, 0x02, 0x35 };   /* 44.1k joint 16/8 loudness 53 */

/* A payload of n SBC frames of a 1 kHz tone, as the encoder makes it. */
static ssize_t payload_of(unsigned n, uint8_t *dst, size_t size)
{
	const struct a2dp_codec *c = &a2dp_codec_sbc;
	struct a2dp_encoder *enc;
	int16_t pcm[15 * 128 * 2];
	ssize_t len;

	for (unsigned i = 0; i < 15 * 128; i++)
		pcm[2 * i] = pcm[2 * i + 1] = (int16_t)(8000 * sin(2 * M_PI * 1000 * i / 44100.0));
	if (c->encoder_new(&enc, config, sizeof(config), 672, NULL) < 0)
		return -1;
	len = c->encode(enc, pcm, n, dst, size);
	c->encoder_free(enc);
	return len;
}

int main(void)
{
	const struct a2dp_codec *c = &a2dp_codec_sbc;
	struct a2dp_decoder *dec;
	uint8_t payload[1024], bad[4] = { 0x81, 0x9c, 0, 0 };
	int16_t out[15 * 128 * 2];
	ssize_t len = payload_of(5, payload, sizeof(payload)), n;
	int loud = 0;

	CHECK(len > 5 * 100, "encoded 5 frames: %zd bytes", len);
	CHECK(c->decoder_new && c->decode && c->decoder_free, "SBC decodes");
	CHECK(a2dp_codec_sbc_xq.decoder_new, "SBC-XQ (the same codec) decodes");
	CHECK(a2dp_codec_aptx.decoder_new && a2dp_codec_aptx_hd.decoder_new &&
	      a2dp_codec_aac.decoder_new, "aptX, aptX HD and AAC decode too");
	CHECK(!a2dp_codec_ldac.decoder_new, "LDAC does not (no decoder): the capture does not offer it");
	CHECK(c->decoder_new(&dec, config, 3) == -EINVAL, "a short configuration is refused");
	CHECK(c->decoder_new(&dec, config, sizeof(config)) == 0, "decoder");
	CHECK(c->decoder_max_frames(dec) == 15 * 128, "at most 15 frames of 128: %u",
	      c->decoder_max_frames(dec));
	n = c->decode(dec, payload, len, 0, out, 15 * 128);
	CHECK(n == 5 * 128, "5 frames decode to 640 PCM frames: %zd", n);
	for (int i = 256; i < 640 * 2; i++)
		loud |= out[i] > 4000 || out[i] < -4000;
	CHECK(loud, "and carry the tone");
	CHECK(c->decode(dec, payload, len - 50, 0, out, 15 * 128) == 4 * 128,
	      "a truncated last frame: the whole ones decode");
	CHECK(c->decode(dec, payload, len, 0, out, 2 * 128) == 2 * 128, "no more than max_frames");
	CHECK(c->decode(dec, payload, 0, 0, out, 15 * 128) == -EINVAL, "an empty payload");
	CHECK(c->decode(dec, bad, sizeof(bad), 0, out, 15 * 128) == -EINVAL, "a fragmented frame");
	CHECK(c->decode(dec, payload, 1, 0, out, 15 * 128) == -EINVAL, "the header alone");
	payload[0] = 0;
	CHECK(c->decode(dec, payload, len, 0, out, 15 * 128) == -EINVAL, "a frame count of 0");
	memset(payload + 1, 0, len - 1);
	CHECK(c->decode(dec, payload, len, 0, out, 15 * 128) == -EINVAL, "no SBC sync: nothing decodes");
	c->decoder_free(dec);
	return check_finish();
}
