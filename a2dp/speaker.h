/*
 * A speaker played to: the bus connection, the device, our endpoint and the
 * stream on its transport, and the device's volume store. What the PCM that
 * plays alone (pcm_bt/pcm_bluetooth.c) and the mixer of several programs
 * (mix/mixer.c) both hold.
 */
#ifndef A2DP_SPEAKER_H
#define A2DP_SPEAKER_H

#include "bluez.h"
#include "codec.h"
#include "endpoint.h"
#include "options.h"
#include "stream.h"
#include "volume.h"

struct a2dp_speaker {
	struct bt_options opt;
	struct bluez *bz;
	struct a2dp_endpoint *ep;
	struct a2dp_stream *stream;    /* NULL after a failed change of rate */
	const struct a2dp_codec *codec;
	struct volume_store volume;
	int have_volume_store;
};

/* Finds the device, connects our endpoint with the first codec it takes
 * (CODEC=, else the mixer's choice, then ours best first) at 44.1 kHz, and
 * makes the stream. -errno, logged. */
int a2dp_speaker_open(struct a2dp_speaker *sp, const struct bt_options *opt);
void a2dp_speaker_close(struct a2dp_speaker *sp);
/* Negotiates the link again for another rate and makes a new stream (the old
 * one is freed first: its event descriptor changes). */
int a2dp_speaker_set_rate(struct a2dp_speaker *sp, unsigned rate);
/* The codec an open with opt would try first among those the speaker
 * offers (CODEC=, else the mixer's choice, else ours best first), or the
 * one it plays with when none is offered: a mixer that holds the speaker
 * opens it again for a program that would choose another. */
const struct a2dp_codec *a2dp_speaker_first_choice(struct a2dp_speaker *sp,
						   const struct bt_options *opt);
/* The rates a program may ask for: the speaker's, or only the one it chose
 * when it configured us itself. */
int a2dp_speaker_rates(const struct a2dp_speaker *sp, unsigned *rates, int max);

#endif
