/*
 * fuzz_capture_packets: what a phone sends the capture PCM, through the
 * receive path of a2dp/capture.c: rtp_parse (or, for aptX's RAW framing,
 * the packet itself), the decoder of the codec chosen (SBC, aptX, aptX HD
 * with libfreeaptx, AAC with libavcodec's aac_latm: fragments gathered until
 * the RTP marker, dropped after a sequence gap), the jitter buffer
 * (a2dp/jitter.c), and deliveries in between.
 * Input: the first byte picks the codec and configuration, then records of
 * [length (1 byte)][op (1 byte)][packet bytes]: op's low bits ask for a
 * delivery of some frames, with or without silence, or a trim; its top bit
 * halves the room given to the decoder.
 * Invariants: decode returns a frame count within the buffer it was given,
 * 0 only for a fragment that announces more (no marker), or -EINVAL; the
 * jitter buffer's level stays within its capacity; a delivery with silence
 * returns what was asked.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "jitter.h"
#include "rtp.h"

#include "fuzz_common.h"

static const struct {
	const struct a2dp_codec *codec;
	uint8_t config[11];
	size_t len;
} configs[] = {
	{ &a2dp_codec_sbc, { 0x21, 0x15, 0x02, 0x35 }, 4 },   /* 44.1k joint stereo 16 blocks 8 subbands */
	{ &a2dp_codec_sbc, { 0x18, 0x15, 0x02, 0x20 }, 4 },   /* 48k mono */
	{ &a2dp_codec_sbc, { 0x24, 0x15, 0x02, 0x2b }, 4 },   /* 44.1k dual channel (SBC-XQ) */
	{ &a2dp_codec_sbc, { 0x11, 0x8a, 0x02, 0x40 }, 4 },   /* 48k joint, 4 blocks, 4 subbands, SNR */
	{ &a2dp_codec_aptx, { 0x4f, 0, 0, 0, 0x01, 0, 0x22 }, 7 },            /* 44.1k */
	{ &a2dp_codec_aptx, { 0x4f, 0, 0, 0, 0x01, 0, 0x12 }, 7 },            /* 48k */
	{ &a2dp_codec_aptx_hd, { 0xd7, 0, 0, 0, 0x24, 0, 0x22, 0, 0, 0, 0 }, 11 },
	{ &a2dp_codec_aac, { 0x80, 0x01, 0x04, 0x04, 0xe2, 0x00 }, 6 },       /* MPEG-2 LC 44.1k */
	{ &a2dp_codec_aac, { 0x40, 0x00, 0x84, 0x84, 0xe2, 0x00 }, 6 },       /* MPEG-4 LC 48k VBR */
};
#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))
#define MAX_FRAMES 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int32_t pcm[MAX_FRAMES * 2], out[4096 * 2];
	struct a2dp_decoder *dec;
	struct jitter j;
	size_t pos = 1;
	uint16_t raw_seq = 0, last_seq = 0;
	uint32_t raw_ts = 0;
	int seen = 0, seen_marker = 0;

	if (size < 1)
		return 0;
	const struct a2dp_codec *c = configs[data[0] % NCONFIGS].codec;
	const uint8_t *config = configs[data[0] % NCONFIGS].config;
	size_t frame_bytes = c->sample_format == A2DP_S32 ? 8 : 4;

	INVARIANT(c->decoder_new(&dec, config, configs[data[0] % NCONFIGS].len) == 0,
		  "%s decoder for a valid configuration", c->name);
	unsigned max = c->decoder_max_frames(dec);
	INVARIANT(max <= MAX_FRAMES, "max_frames %u", max);
	INVARIANT(jitter_init(&j, frame_bytes, 4096, 512, 256) == 0, "jitter_init");
	while (pos + 2 <= size) {
		size_t len = data[pos];
		uint8_t op = data[pos + 1];
		struct rtp_packet p;
		unsigned flags = 0;
		int ok;
		ssize_t n;

		pos += 2;
		if (len > size - pos)
			len = size - pos;
		/* As capture.c's parse_packet. */
		if (c->framing == A2DP_FRAMING_RAW) {
			p = (struct rtp_packet){ .seq = raw_seq, .timestamp = raw_ts,
						 .payload = data + pos, .payload_len = len };
			ok = 1;
		} else if ((ok = rtp_parse(data + pos, len, &p) == 0)) {
			seen_marker |= p.marker;
			if (c->rtp_marker && seen_marker && !p.marker)
				flags |= A2DP_DECODE_MORE;
			if (seen && p.seq != (uint16_t)(last_seq + 1))
				flags |= A2DP_DECODE_AFTER_GAP;
			seen = 1;
			last_seq = p.seq;
		}
		if (ok) {
			unsigned room = op & 0x80 ? max / 2 : max;

			n = c->decode(dec, p.payload, p.payload_len, flags, pcm, room);
			INVARIANT(n == -EINVAL || (n == 0 && (flags & A2DP_DECODE_MORE)) ||
				  (n > 0 && n <= (ssize_t)room), "%s decode returned %zd (room %u)",
				  c->name, n, room);
			if (n > 0) {
				raw_seq++;
				raw_ts += n;
				jitter_put(&j, p.seq, p.timestamp, pcm, n);
			}
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
