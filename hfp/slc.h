/* The Audio Gateway's side of an HFP Service Level Connection: the AT
 * commands a headset sends, our answers, and codec negotiation.
 *
 * Pure: no socket, no clock.  The owner feeds what it reads from the RFCOMM
 * socket to slc_input(), writes out what slc_output() holds, and calls
 * slc_codec_timeout() when a codec choice went unanswered for
 * SLC_BCS_TIMEOUT_MS.  What changed is in `events` (SLC_EV_*), cleared by
 * the owner once handled. */
#ifndef ALSABT_HFP_SLC_H
#define ALSABT_HFP_SLC_H

#include <stddef.h>
#include <stdint.h>

/* Codec ids of AT+BAC / +BCS. */
#define HFP_CODEC_CVSD 1
#define HFP_CODEC_MSBC 2

/* AG features (AT+BRSF answer). */
#define HFP_AG_CODEC_NEGOTIATION (1u << 9)
#define HFP_AG_HF_INDICATORS     (1u << 10)
#define HFP_AG_ESCO_S4           (1u << 11)

/* HF features (AT+BRSF=). */
#define HFP_HF_3WAY            (1u << 1)
#define HFP_HF_REMOTE_VOLUME   (1u << 4)
#define HFP_HF_CODEC_NEGOTIATION (1u << 7)
#define HFP_HF_INDICATORS      (1u << 8)

#define SLC_BCS_TIMEOUT_MS 5000
#define SLC_LINE_MAX 256        /* longer lines are answered ERROR and skipped */
#define SLC_OUT_MAX 1024

enum slc_state {
	SLC_STARTING,           /* before AT+CMER (and the BIND exchange) */
	SLC_CONNECTED,          /* the SLC is up: a codec may be chosen */
	SLC_FAILED,             /* the headset answered no codec we can carry */
};

/* What happened since the owner last cleared `events`. */
#define SLC_EV_CONNECTED  (1u << 0)
#define SLC_EV_CODEC      (1u << 1)   /* `codec` was agreed */
#define SLC_EV_SPEAKER    (1u << 2)   /* `speaker_gain` set by the headset */
#define SLC_EV_MIC        (1u << 3)   /* `mic_gain` set by the headset */
#define SLC_EV_BATTERY    (1u << 4)   /* `battery` reported */
#define SLC_EV_CODEC_WANTED (1u << 5) /* the headset asked for audio (AT+BCC) */
#define SLC_EV_FAILED     (1u << 6)

struct slc {
	enum slc_state state;
	unsigned events;
	uint32_t ag_features, hf_features;
	int msbc_possible;          /* our side can carry mSBC (transparent eSCO) */
	unsigned hf_codecs;         /* bit per codec id of the last AT+BAC */
	int cmer_seen;
	int indicators_on;          /* AT+CMER ind = 1 */
	int cmee;                   /* AT+CMEE=1: +CME ERROR codes */
	int codec;                  /* agreed codec id, 0 none yet */
	int codec_pending;          /* +BCS sent, AT+BCS awaited */
	int bcs_tries;              /* +BCS sent for codec_pending */
	int speaker_gain, mic_gain; /* 0..15, -1 not reported */
	int battery;                /* percent, -1 not reported */
	char line[SLC_LINE_MAX];
	size_t line_len;
	int overlong;               /* skipping the rest of a line too long */
	char out[SLC_OUT_MAX];
	size_t out_len;
};

void slc_init(struct slc *s, int msbc_possible);
/* Takes bytes read from the RFCOMM socket; complete lines are answered.
 * Returns how many it took: fewer than len once the answers queued fill
 * `out`; the owner writes them (slc_output) and passes the rest again. */
size_t slc_input(struct slc *s, const char *buf, size_t len);
/* Bytes to write to the socket; slc_consumed() once written. */
static inline const char *slc_output(const struct slc *s, size_t *len)
{
	*len = s->out_len;
	return s->out;
}
void slc_consumed(struct slc *s, size_t n);
/* Starts codec negotiation on a connected SLC: +BCS for the best codec both
 * sides have (mSBC, else CVSD), or CVSD at once for a headset without codec
 * negotiation.  0, or -ENOTCONN before the SLC is up. */
int slc_choose_codec(struct slc *s);
/* The +BCS sent went unanswered: sent once more, then CVSD, then failed. */
void slc_codec_timeout(struct slc *s);
/* Unsolicited gain to the headset (+VGS / +VGM), if it has remote volume. */
int slc_set_speaker_gain(struct slc *s, int gain);
int slc_set_mic_gain(struct slc *s, int gain);
/* The call indicator (+CIEV): some car kits play nothing outside a call. */
int slc_set_call(struct slc *s, int active);

#endif
