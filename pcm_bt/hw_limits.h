/*
 * What each PCM of ours offers hw_params: interleaved RW and mmap access, one
 * format (S16; S32 for a codec that takes 32-bit samples), the channels and
 * rates the link carries, and the period and buffer sizes that keep it fed.
 */
#ifndef PCM_BT_HW_LIMITS_H
#define PCM_BT_HW_LIMITS_H

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

struct hw_limits {
	unsigned channels, sample_bits;
	const unsigned *rates;
	unsigned n_rates;
	unsigned min_period_frames;
	unsigned min_buffer_frames;
	unsigned max_buffer_bytes;    /* the largest period is half of it */
};

int hw_limits_set(snd_pcm_ioplug_t *io, const struct hw_limits *l);

#endif
