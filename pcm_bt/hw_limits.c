/* The hw_params constraints every PCM of ours sets (hw_limits.h). */
#include "hw_limits.h"

int hw_limits_set(snd_pcm_ioplug_t *io, const struct hw_limits *l)
{
	static const unsigned access[] = { SND_PCM_ACCESS_RW_INTERLEAVED,
					   SND_PCM_ACCESS_MMAP_INTERLEAVED };
	unsigned format[] = { l->sample_bits == 32 ? SND_PCM_FORMAT_S32 : SND_PCM_FORMAT_S16 };
	unsigned frame = l->channels * l->sample_bits / 8;
	int err;

	if ((err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_ACCESS, 2, access)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_FORMAT, 1, format)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_CHANNELS, l->channels,
						   l->channels)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_RATE, l->n_rates,
						 l->rates)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIOD_BYTES,
						   l->min_period_frames * frame,
						   l->max_buffer_bytes / 2)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_BUFFER_BYTES,
						   l->min_buffer_frames * frame,
						   l->max_buffer_bytes)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIODS, 2, 1024)) < 0)
		return err;
	return 0;
}
