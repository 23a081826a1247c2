/* LATM framing of AAC for A2DP (RFC 3016, MPEG-4 Audio LATM with the
 * configuration in every packet), written and read by the same code. */
#ifndef ALSABT_LATM_H
#define ALSABT_LATM_H

#include <stddef.h>
#include <stdint.h>

/* The most bytes latm_write puts before and after a frame of len bytes. */
size_t latm_overhead(size_t len);

/* Writes one AudioMuxElement (muxConfigPresent = 1: StreamMuxConfig with
 * audioMuxVersion 1 and the AudioSpecificConfig of AAC LC at this rate and
 * channel count, then the frame's length and the frame). Returns the bytes
 * written, -EINVAL for a rate AAC has no index for, -ENOSPC if out is short. */
int latm_write(uint8_t *out, size_t size, unsigned rate, unsigned channels,
	       const uint8_t *frame, size_t len);

/* Reads an AudioMuxElement exactly as latm_write writes it (any other
 * choice of the optional fields is refused): the rate, channels and
 * where the frame is (copied into frame, at most size bytes). Returns the
 * frame's length or -EINVAL. For the test sink and the fuzzer. */
int latm_read(const uint8_t *in, size_t len, unsigned *rate, unsigned *channels,
	      uint8_t *frame, size_t size);

#endif
