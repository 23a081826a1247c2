/*
 * The speaker's volume and mute as both plugins see them. With AVRCP absolute
 * volume the speaker holds the volume (MediaTransport1.Volume); without it the
 * PCM applies it in software. Either way the last value, the mute switch and a
 * change made while no stream was open live in a small per-device file, so
 * that alsamixer (the ctl, one process) reaches a running aplay (the PCM,
 * another) and the value survives both. Writers replace the file atomically;
 * readers watch it with inotify.
 */
#ifndef ALSABT_VOLUME_H
#define ALSABT_VOLUME_H

#include <stdint.h>

#include "codec.h"

#define VOLUME_MAX 127          /* AVRCP absolute volume scale */
#define VOLUME_DEFAULT VOLUME_MAX  /* unity: a plain sound card until turned down */
#define VOLUME_MIN_DB (-50.0)   /* the curve of the mixer element's dB TLV */

#define CODEC_NAME_MAX 16

struct volume_state {
	int volume;                 /* 0..127 */
	int muted;
	int pending;                /* set while no stream was open: apply at the next open */
	/* The codec: what the last stream played with (the PCM writes it; the
	 * mixer shows it), and the one the mixer asked for (used first at the
	 * next open unless CODEC= says otherwise). Names, "" for none. */
	char codec[CODEC_NAME_MAX];
	char wanted[CODEC_NAME_MAX];
	/* The codecs of ours the speaker offered when BlueZ last listed its
	 * endpoints ("aptx:sbc:sbc_xq", "" unknown): BlueZ knows them only while
	 * it is connected, and an open that finds it disconnected then loads the
	 * libraries of these codecs alone, not of all. */
	char offers[A2DP_CODEC_LIST_MAX];
	/* A headset's HFP gains, 0..15 (AT+VGS, AT+VGM), -1 unknown: what the
	 * headset last reported or the mixer last set; a voice link sends
	 * them at its start and whenever the mixer changes them. */
	int voice_speaker, voice_mic;
	/* The battery it last reported over HFP (AT+BIEV, Apple's, XEVENT),
	 * percent, -1 none: BlueZ does not know it (the HFP is ours). */
	int voice_battery;
};

#define VOICE_GAIN_MAX 15

struct volume_store {
	char dir[256];
	char path[320];
	char name[32];
	int inotify_fd;             /* -1 when not watching */
};

/* Opens the store of one device (address "XX:XX:..."); watch: an inotify fd too. */
int volume_store_open(struct volume_store *vs, const char *address, int watch);
void volume_store_close(struct volume_store *vs);
/* Reads the state; defaults when there is none yet. */
void volume_store_load(struct volume_store *vs, struct volume_state *st);
int volume_store_save(struct volume_store *vs, const struct volume_state *st);
/* Around a load, change and save: the process's threads (a PCM's I/O
 * thread and its application's, a ctl in the same program) each write the
 * state, and an update made between another's load and save was lost. */
void volume_store_lock(void);
void volume_store_unlock(void);
/* What a stream was set up with: its codec (the mixer shows it) and, unless
 * "", the codecs the speaker offers (for the next open; see struct
 * volume_state). One save, and only if something changed. */
void volume_store_note_codec(struct volume_store *vs, const char *name, const char *offers);
/* Drains the inotify fd; 1 if our file changed. */
int volume_store_changed(struct volume_store *vs);

/* The software gain of a volume, Q16 (65536 = unity): the TLV's dB curve. */
uint32_t volume_gain_q16(int volume, int muted);
double volume_db(int volume);
/* Scales interleaved S16 samples in place. */
void volume_apply(int16_t *pcm, unsigned samples, uint32_t gain_q16);
void volume_apply_s32(int32_t *pcm, unsigned samples, uint32_t gain_q16);

#endif
