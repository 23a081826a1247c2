/* pcm.bluetooth with PROFILE=hfp: a headset's earpiece or microphone. */
#ifndef ALSABT_PCM_VOICE_H
#define ALSABT_PCM_VOICE_H

#include <alsa/asoundlib.h>

#include "../common/options.h"

int bt_voice_open(snd_pcm_t **pcmp, const char *name, const struct bt_options *opt,
		  snd_pcm_stream_t stream, int mode);

#endif
