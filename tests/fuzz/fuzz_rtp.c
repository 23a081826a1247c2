/*
 * fuzz_rtp: packets into a2dp/rtp.c's rtp_parse (the test sink's parser).
 * Invariants: an accepted packet's payload lies within the buffer, after the
 * 12-byte header and its CSRCs / extension, and payload_len is what is left
 * after the header and the padding; the fields are the header's bytes; a
 * header rtp_write_header wrote parses back to what was written.
 */
#include "../../a2dp/rtp.c"

#include <stdlib.h>

#include "fuzz_common.h"

/* RFC 3550 section 5.1, written independently of rtp_parse. */
static int reference_head(const uint8_t *b, size_t len, size_t *head, size_t *pad)
{
	size_t h = 12 + 4 * (size_t)(b[0] & 0x0f);

	if (b[0] & 0x10) {
		if (len < h + 4)
			return -1;
		h += 4 + 4 * (size_t)(b[h + 2] * 256 + b[h + 3]);
	}
	*pad = b[0] & 0x20 ? b[len - 1] : 0;
	if (h + *pad > len)
		return -1;
	*head = h;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtp_packet p;
	size_t head, pad;
	int r;

	memset(&p, 0xa5, sizeof(p));
	r = rtp_parse(data, size, &p);
	INVARIANT(r == 0 || r == -EINVAL, "rtp_parse returned %d", r);
	if (size < RTP_HEADER_LEN || data[0] >> 6 != 2) {
		INVARIANT(r == -EINVAL, "accepted %zu bytes of version %d", size, size ? data[0] >> 6 : -1);
	} else {
		int ok = reference_head(data, size, &head, &pad) == 0;

		INVARIANT(ok == (r == 0), "rtp_parse %d, reference %s", r, ok ? "accepts" : "refuses");
	}
	if (r == 0) {
		INVARIANT(p.payload >= data + RTP_HEADER_LEN && p.payload <= data + size,
			  "payload at %td of %zu", p.payload - data, size);
		INVARIANT(p.payload_len <= size && p.payload + p.payload_len <= data + size,
			  "payload %td+%zu beyond %zu", p.payload - data, p.payload_len, size);
		INVARIANT((size_t)(p.payload - data) == head, "payload at %td, header is %zu",
			  p.payload - data, head);
		INVARIANT(p.payload_len == size - head - pad, "payload_len %zu, expected %zu",
			  p.payload_len, size - head - pad);
		INVARIANT(p.payload_type == (data[1] & 0x7f), "payload type");
		INVARIANT(p.seq == (data[2] << 8 | data[3]), "seq");
		INVARIANT(p.timestamp == ((uint32_t)data[4] << 24 | (uint32_t)data[5] << 16 |
					  (uint32_t)data[6] << 8 | data[7]), "timestamp");
		INVARIANT(p.ssrc == ((uint32_t)data[8] << 24 | (uint32_t)data[9] << 16 |
				     (uint32_t)data[10] << 8 | data[11]), "ssrc");
		if (p.payload_len)
			(void)*(volatile const uint8_t *)(p.payload + p.payload_len - 1);
	}

	/* Round trip of our own header, fields taken from the input. */
	if (size >= 10) {
		uint8_t *buf = malloc(RTP_HEADER_LEN + 1);
		uint16_t seq = data[0] << 8 | data[1];
		uint32_t ts = (uint32_t)data[2] << 24 | data[3] << 16 | data[4] << 8 | data[5];
		uint32_t ssrc = (uint32_t)data[6] << 24 | data[7] << 16 | data[8] << 8 | data[9];

		rtp_write_header(buf, seq, ts, ssrc);
		buf[RTP_HEADER_LEN] = 0x42;
		INVARIANT(rtp_parse(buf, RTP_HEADER_LEN + 1, &p) == 0, "own header refused");
		INVARIANT(p.seq == seq && p.timestamp == ts && p.ssrc == ssrc &&
			  p.payload_type == RTP_PAYLOAD_TYPE && p.payload == buf + RTP_HEADER_LEN &&
			  p.payload_len == 1, "own header parsed back differently");
		free(buf);
	}
	return 0;
}
