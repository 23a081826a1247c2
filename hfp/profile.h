/* Our HFP Audio Gateway on one headset, as BlueZ sees it: the profile
 * registered with ProfileManager1, the headset's Hands-Free connected with
 * Device1.ConnectProfile, the RFCOMM channel BlueZ hands us in
 * Profile1.NewConnection, and the Service Level Connection (hfp/slc.c) run
 * on it until a codec is agreed: all that an open must do before it knows
 * the rate (8 kHz CVSD, 16 kHz mSBC). */
#ifndef ALSABT_HFP_PROFILE_H
#define ALSABT_HFP_PROFILE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "bluez.h"
#include "slc.h"

struct hfp_profile {
	struct bluez *bz;
	struct bluez_device dev;
	char path[64];                 /* our Profile1 object */
	int exported, registered;
	int fd;                        /* the RFCOMM channel, -1 before NewConnection */
	volatile int channel_up;       /* NewConnection taken (set while dispatching) */
	uint16_t hf_version, hf_features;   /* from NewConnection: the headset's SDP record */
	atomic_int gone;               /* RequestDisconnection, Release, or bluetoothd gone */
	struct slc slc;
	FILE *trace;                   /* NULL, or where every byte read and written is shown */
};

/* Registers the profile, connects the headset's Hands-Free and brings the
 * Service Level Connection up to an agreed codec (slc.codec), all by
 * deadline_ms. msbc_possible: our side can carry mSBC. Errors, logged once:
 * -EBUSY another program or audio service owns HFP; -ETIMEDOUT naming the
 * step the headset stopped at; -ECONNRESET the headset closed the channel;
 * -EPROTO no codec both sides carry; what ConnectProfile's failure means
 * otherwise. */
int hfp_profile_open(struct bluez *bz, const struct bluez_device *dev, int msbc_possible,
		     FILE *trace, int64_t deadline_ms, struct hfp_profile **out);
/* Shuts the channel down (bluetoothd holds a copy of it, so a close alone
 * would keep the link up), unregisters and frees. Bounded like a2dp's close. */
void hfp_profile_close(struct hfp_profile *p);

/* The codec agreed cannot be carried (the adapter lacks transparent SCO for
 * mSBC): agrees another, as hfp_profile_open did. 0 or -errno, logged. */
int hfp_profile_choose_again(struct hfp_profile *p, int msbc_possible, int64_t deadline_ms);

/* Reads what the headset sent and writes our answers, without blocking:
 * 0, or -ECONNRESET once the channel closed. For the owner's poll loop. */
int hfp_profile_service(struct hfp_profile *p);

#endif
