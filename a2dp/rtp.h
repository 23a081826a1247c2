/* RTP framing of A2DP media packets (RFC 3550 header; A2DP 1.3 section 5.6 media payload). */
#ifndef A2DP_RTP_H
#define A2DP_RTP_H

#include <stddef.h>
#include <stdint.h>

#define RTP_HEADER_LEN 12
/* A2DP uses a dynamic payload type; BlueZ, PipeWire and bluez-alsa all send 96. */
#define RTP_PAYLOAD_TYPE 96

struct rtp_packet {
	uint16_t seq;
	uint32_t timestamp;
	uint32_t ssrc;
	uint8_t payload_type;
	int marker;
	const uint8_t *payload;  /* points into the parsed buffer */
	size_t payload_len;
};

/* Writes a 12-byte header (version 2, no padding, extension or CSRCs). */
void rtp_write_header(uint8_t *buf, uint16_t seq, uint32_t timestamp, uint32_t ssrc);

/* Sets the marker bit of a written header. */
void rtp_set_marker(uint8_t *buf);

/* Parses and validates one packet; -EINVAL when it is not RTP version 2 or is truncated. */
int rtp_parse(const uint8_t *buf, size_t len, struct rtp_packet *out);

#endif
