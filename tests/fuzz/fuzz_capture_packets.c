/*
 * fuzz_capture_packets: what a phone sends the capture PCM, through the
 * receive path of a2dp/capture.c: rtp_parse, the SBC decoder, the jitter
 * buffer (a2dp/jitter.c), and deliveries in between.
 * Input: the first byte picks the configuration, then records of
 * [length (1 byte)][op (1 byte)][packet bytes]: op's low bits ask for a
 * delivery of some frames, with or without silence, or a trim.
 * Invariants: decode returns a frame count within the buffer it was given
 * or -EINVAL; the jitter buffer's level stays within its capacity; a
 * delivery with silence returns what was asked.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "jitter.h"
#include "rtp.h"

#include "fuzz_common.h"

static const uint8_t configs[][4] = {
	{ 0x21, 0x15, 0x02, 0x35 },   /* 44.1k joint stereo 16 blocks 8 subbands */
	{ 0x18, 0x15, 0x02, 0x20 },   /* 48k mono */
	{ 0x24, 0x15, 0x02, 0x2b },   /* 44.1k dual channel (SBC-XQ) */
	{ 0x11, 0x8a, 0x02, 0x40 },   /* 48k joint, 4 blocks, 4 subbands, SNR */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct a2dp_codec *c = &a2dp_codec_sbc;
	static int16_t pcm[15 * 128 * 2], out[4096 * 2];
	struct a2dp_decoder *dec;
	struct jitter j;
	size_t pos = 1;

	if (size < 1)
		return 0;
	const uint8_t *config = configs[data[0] % 4];
	INVARIANT(c->decoder_new(&dec, config, 4) == 0, "decoder for a valid configuration");
	unsigned max = c->decoder_max_frames(dec);
	INVARIANT(max <= 15 * 128, "max_frames %u", max);
	INVARIANT(jitter_init(&j, 4, 4096, 512, 256) == 0, "jitter_init");
	while (pos + 2 <= size) {
		size_t len = data[pos];
		uint8_t op = data[pos + 1];
		struct rtp_packet p;
		ssize_t n;

		pos += 2;
		if (len > size - pos)
			len = size - pos;
		if (rtp_parse(data + pos, len, &p) == 0) {
			n = c->decode(dec, p.payload, p.payload_len, pcm, op & 0x80 ? max / 2 : max);
			INVARIANT(n == -EINVAL || (n > 0 && n <= (ssize_t)max), "decode returned %zd", n);
			if (n > 0)
				jitter_put(&j, p.seq, p.timestamp, pcm, n);
		}
		pos += len;
		INVARIANT(j.level <= j.capacity && j.head < j.capacity, "level %u head %u", j.level, j.head);
		switch (op & 3) {
		case 1: {
			unsigned want = 1 + (op >> 2) * 64 % 4096;

			INVARIANT(jitter_get(&j, out, want, 1) == want, "a delivery with silence is whole");
			break;
		}
		case 2:
			INVARIANT(jitter_get(&j, out, 1 + (op >> 2) * 64 % 4096, 0) <= 4096, "delivery");
			break;
		case 3:
			jitter_trim(&j, op & 4);
			break;
		}
		INVARIANT(j.level <= j.capacity, "level %u", j.level);
	}
	jitter_free(&j);
	c->decoder_free(dec);
	return 0;
}
