/* pcm.bluetooth opened for capture: a phone plays to us (A2DP Sink). */
#ifndef PCM_BT_PCM_CAPTURE_H
#define PCM_BT_PCM_CAPTURE_H

#include <alsa/asoundlib.h>

#include "../common/options.h"

int bt_capture_open(snd_pcm_t **pcmp, const char *name, const struct bt_options *opt, int mode);

#endif
