/* Plugin options from the ALSA configuration, shared by the PCM and the ctl. */
#ifndef ALSABT_OPTIONS_H
#define ALSABT_OPTIONS_H

#include <alsa/asoundlib.h>

#define BT_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define BT_DEFAULT_JITTER_MS 60
#define BT_DEFAULT_LINGER_MS 2000
/* Playback mixes: a second program plays too, as on a card with dmix. */
#define BT_DEFAULT_MIX 1

enum { BT_PROFILE_A2DP, BT_PROFILE_HFP };

struct bt_options {
	char device[18];          /* "" = the connected A2DP sink */
	char adapter[64];         /* "hciN" or an adapter address; "" = any */
	unsigned bitpool;         /* 0 = A2DP high quality */
	char codec[128];          /* CODEC=: names in order of preference; "" = ours */
	int ldac_quality;         /* enum a2dp_ldac_quality: 0 auto, hq, sq, mq */
	int connect_timeout_ms;
	/* Capture only. */
	unsigned jitter_ms;       /* the jitter buffer's depth */
	int wait_on_pause;        /* ON_PAUSE=wait: no silence while the phone pauses */
	int profile;              /* BT_PROFILE_A2DP (music) or BT_PROFILE_HFP (a headset's voice) */
	/* Playback to a speaker. */
	int mix;                  /* MIX=1: through the speaker's mixer, with other programs */
	unsigned linger_ms;       /* how long the mixer waits for the next program */
};

/* Parses the plugin's compound; logs and returns -EINVAL on a bad or unknown key. */
int bt_options_parse(snd_config_t *conf, const char *plugin, struct bt_options *o);
/* Options from another process: their strings ended, every value in its
 * range; -EINVAL if one is not. */
int bt_options_check(struct bt_options *o);

#endif
