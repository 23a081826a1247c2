/* RTP header building and parsing. The test sink parses with the same code it checks. */
#include <errno.h>
#include <string.h>

#include "rtp.h"

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void rtp_write_header(uint8_t *buf, uint16_t seq, uint32_t timestamp, uint32_t ssrc)
{
	buf[0] = 2 << 6;            /* V=2, P=0, X=0, CC=0 */
	buf[1] = RTP_PAYLOAD_TYPE;  /* M=0 */
	put_be16(buf + 2, seq);
	put_be32(buf + 4, timestamp);
	put_be32(buf + 8, ssrc);
}

void rtp_set_marker(uint8_t *buf)
{
	buf[1] |= 0x80;
}

int rtp_parse(const uint8_t *buf, size_t len, struct rtp_packet *out)
{
	size_t head = RTP_HEADER_LEN;
	size_t pad = 0;

	if (len < RTP_HEADER_LEN || buf[0] >> 6 != 2)
		return -EINVAL;
	head += 4 * (buf[0] & 0x0f);                  /* CSRC list */
	if (buf[0] & 0x10) {                          /* header extension */
		if (len < head + 4)
			return -EINVAL;
		head += 4 + 4 * ((size_t)buf[head + 2] << 8 | buf[head + 3]);
	}
	if (buf[0] & 0x20)                            /* padding, count in last byte */
		pad = buf[len - 1];
	if (len < head + pad)
		return -EINVAL;
	out->payload_type = buf[1] & 0x7f;
	out->marker = buf[1] >> 7;
	out->seq = (uint16_t)(buf[2] << 8 | buf[3]);
	out->timestamp = get_be32(buf + 4);
	out->ssrc = get_be32(buf + 8);
	out->payload = buf + head;
	out->payload_len = len - head - pad;
	return 0;
}
