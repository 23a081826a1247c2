/* mSBC for HFP wide-band speech: 16 kHz mono, 120 samples a frame, each
 * frame on air as the H2 header, 57 bytes of SBC and a pad byte (60 bytes),
 * whatever size the SCO packets that carry them. */
#ifndef ALSABT_HFP_MSBC_H
#define ALSABT_HFP_MSBC_H

#include <stddef.h>
#include <stdint.h>
#include <sbc/sbc.h>

#define MSBC_SAMPLES 120        /* 7.5 ms at 16 kHz */
#define MSBC_RATE 16000
#define MSBC_SBC_LEN 57
#define MSBC_FRAME_LEN 60       /* H2 (2) + SBC (57) + pad (1) */

struct msbc_encoder {
	sbc_t sbc;
	unsigned seq;
};

struct msbc_decoder {
	sbc_t sbc;
	uint8_t buf[4 * MSBC_FRAME_LEN];
	size_t len;
	int next_seq;               /* -1 until the first frame */
	int16_t last[MSBC_SAMPLES]; /* the last good frame, for concealment */
	int concealing;             /* frames concealed since the last good one */
	int after_frame;            /* buf starts where a frame ended (its pad) */
	unsigned owed;              /* lost frames still to conceal before buf's */
	int owed_known;             /* owed counted for the frame at buf's start */
	/* counters since init */
	uint64_t frames, lost, bad, skipped_bytes;
};

int msbc_encoder_init(struct msbc_encoder *e);
void msbc_encoder_free(struct msbc_encoder *e);
/* 120 samples (S16, native endian) into one 60-byte frame. 0 or -EIO. */
int msbc_encode(struct msbc_encoder *e, const int16_t *pcm, uint8_t *frame);

int msbc_decoder_init(struct msbc_decoder *d);
void msbc_decoder_free(struct msbc_decoder *d);
/* Takes received bytes (any packet size: 24, 48, 60, 72...) and writes
 * whole frames of 120 samples into pcm (room for max_frames): a frame
 * lost (a gap in the H2 sequence, at most 3 seen) or undecodable is
 * concealed, so the frames out keep time.  Returns the frames written;
 * *used says how many bytes were taken (all, unless pcm filled up: the
 * owner passes the rest again). */
size_t msbc_decode(struct msbc_decoder *d, const uint8_t *in, size_t len, size_t *used,
		   int16_t *pcm, size_t max_frames);

#endif
