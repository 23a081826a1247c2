/* RTP framing, and packing of SBC frames into packets across MTUs and bitpools. */
#include <errno.h>
#include <string.h>

#include "../../codecs/codec.h"
#include "../../a2dp/rtp.h"
#include "check.h"

static void test_roundtrip(void)
{
	uint8_t buf[64] = { 0 };
	struct rtp_packet p;

	rtp_write_header(buf, 0xfffe, 0x89abcdef, 1);
	buf[12] = 0x05;
	CHECK(rtp_parse(buf, 20, &p) == 0, "parse");
	CHECK(p.seq == 0xfffe && p.timestamp == 0x89abcdef && p.ssrc == 1, "fields");
	CHECK(p.payload_type == RTP_PAYLOAD_TYPE, "pt %u", p.payload_type);
	CHECK(p.payload == buf + 12 && p.payload_len == 8, "payload");
	CHECK(buf[0] == 0x80 && buf[1] == 96, "header bytes %02x %02x", buf[0], buf[1]);
}

static void test_malformed(void)
{
	uint8_t buf[64] = { 0 };
	struct rtp_packet p;

	rtp_write_header(buf, 1, 2, 3);
	CHECK(rtp_parse(buf, 11, &p) == -EINVAL, "truncated header");
	buf[0] = 0x40;
	CHECK(rtp_parse(buf, 20, &p) == -EINVAL, "version 1");
	buf[0] = 0x80 | 0x0f;                       /* 15 CSRCs do not fit 20 bytes */
	CHECK(rtp_parse(buf, 20, &p) == -EINVAL, "CSRCs past the end");
	buf[0] = 0x81;                              /* one CSRC */
	CHECK(rtp_parse(buf, 20, &p) == 0 && p.payload_len == 4, "one CSRC");
	buf[0] = 0x90;                              /* extension of 1 word */
	buf[14] = 0; buf[15] = 1;
	CHECK(rtp_parse(buf, 24, &p) == 0 && p.payload_len == 4, "extension");
	CHECK(rtp_parse(buf, 14, &p) == -EINVAL, "extension header cut");
	buf[0] = 0xa0;                              /* padding: last byte counts */
	buf[19] = 4;
	CHECK(rtp_parse(buf, 20, &p) == 0 && p.payload_len == 4, "padding");
	buf[19] = 40;
	CHECK(rtp_parse(buf, 20, &p) == -EINVAL, "padding past the start");
}

/* Every packet the encoder fills is within the MTU, holds at most 15 frames,
 * and has no room left for one more frame. */
static void test_packing(void)
{
	const struct a2dp_codec *sbc = &a2dp_codec_sbc;
	static int16_t pcm[15 * 128 * 2];
	uint8_t out[4096];
	unsigned cases = 0, bad = 0;

	for (unsigned bp = 2; bp <= 53; bp += 3) {
		uint8_t cfg[4] = { 0x21, 0x15, 2, bp };
		struct a2dp_encoder *enc;

		if (sbc->encoder_new(&enc, cfg, 4, 672, NULL) < 0) {
			CHECK(0, "encoder at bitpool %u", bp);
			continue;
		}
		for (size_t mtu = 48; mtu <= 3000; mtu += 37) {
			unsigned n = sbc->frames_per_packet(enc, mtu);
			size_t fb = sbc->frame_bytes(enc);
			ssize_t len;

			cases++;
			if (!n) {
				bad += RTP_HEADER_LEN + 1 + fb <= mtu;   /* one frame would fit */
				continue;
			}
			len = sbc->encode(enc, pcm, n, out, mtu - RTP_HEADER_LEN);
			if (len < 0 || RTP_HEADER_LEN + (size_t)len > mtu || n > 15 ||
			    (n < 15 && RTP_HEADER_LEN + (size_t)len + fb <= mtu) || out[0] != n) {
				if (!bad++)
					CHECK(0, "bitpool %u mtu %zu: %u frames, %zd bytes", bp, mtu, n, len);
			}
		}
		sbc->encoder_free(enc);
	}
	CHECK(bad == 0, "%u of %u MTU/bitpool cases packed wrongly", bad, cases);
}

int main(void)
{
	test_roundtrip();
	test_malformed();
	test_packing();
	return check_finish();
}
