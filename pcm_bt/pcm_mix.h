/* Playback through the speaker's mixer (MIX=1): the ioplug of one program
 * among several; mix/mixer.h plays their sum. */
#ifndef PCM_MIX_H
#define PCM_MIX_H

#include <alsa/asoundlib.h>

#include "../common/options.h"

/* -ENOEXEC (after one line saying why): no mixer can run here; the caller
 * plays alone instead. */
int bt_mix_open(snd_pcm_t **pcmp, const char *name, const struct bt_options *opt, int mode);

#endif
