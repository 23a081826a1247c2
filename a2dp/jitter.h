/*
 * The capture's jitter buffer: decoded PCM in RTP time order, filled as
 * packets arrive and emptied by our own clock at the nominal rate.
 *
 * Time keeping: a packet's place is its RTP timestamp (in PCM frames, as
 * every A2DP source sends it). A gap (lost packets) is filled with silence of
 * its length, so what follows stays aligned; silence already delivered while
 * the buffer was dry counts against that gap. A packet older than what was
 * written (late, reordered, duplicated) is dropped. A source whose timestamps
 * do not count frames is followed by its sequence numbers instead.
 *
 * Depth: nothing is delivered until `target` frames are buffered (JITTER_MS);
 * when the buffer runs dry (the phone paused, or packets later than the
 * depth) it fills to `target` again first.
 *
 * Late audio: the silence delivered while the buffer was dry stood in for
 * the audio that was late (a radio that stalled, then sends what it held at
 * once). When that audio comes in a burst, raising the level above `target`
 * plus a packet, the oldest of it, up to the silence given, is dropped: what
 * follows keeps the lag it had before the stall (within a packet). Silence
 * is given a tick at a time (capture.c, 20 ms at most), so its length is the
 * late audio's to a tick either way: whether the burst came just before a
 * tick or just after. Audio that comes back at its normal pace (a phone
 * that stopped sending, then resumed where it was) is all kept. Nothing is
 * owed across a new origin (jitter_new_origin: a pause the transport
 * announced).
 *
 * Drift: our clock and the phone's differ by some ppm. A phone slower than
 * us runs the buffer dry now and then (one rebuffer of silence); a faster one
 * raises the level: measured after each delivery, above `target` + `slack`
 * + two packets the oldest frames beyond `target` are dropped at once
 * (counted). At 100 ppm and JITTER_MS=60 (slack 30 ms) either happens about
 * every 5 to 10 minutes. While the application has not started, the level is
 * kept at `target`, so that the capture starts with the depth asked for.
 *
 * Single-threaded: the capture's I/O thread owns it.
 */
#ifndef A2DP_JITTER_H
#define A2DP_JITTER_H

#include <stdint.h>

struct jitter {
	uint8_t *buf;
	unsigned frame_bytes, capacity;   /* in frames */
	unsigned head, level;             /* read index, frames held */
	unsigned target, slack;
	unsigned packet_frames;           /* the last packet's */
	int filled;                       /* reached target since it last ran dry */
	int started;                      /* a packet has set the time origin */
	uint32_t next_ts;                 /* RTP timestamp the next packet should carry */
	uint16_t next_seq;
	uint64_t dry_frames;              /* silence delivered since it ran dry */
	uint64_t owed_frames;             /* of it, what late audio may still repay */
	/* Counters, for the log and the tests. */
	uint64_t lost_frames, late_packets, dropped_frames, rebuffers;
	uint64_t late_frames;             /* dropped as late after a stall (in dropped_frames too) */
};

int jitter_init(struct jitter *j, unsigned frame_bytes, unsigned capacity, unsigned target,
		unsigned slack);
void jitter_free(struct jitter *j);
/* Forgets the audio and the time origin (a new stream). */
void jitter_reset(struct jitter *j);

/* The next packet sets a new time origin: no silence for the time before it
 * (ON_PAUSE=wait after the phone paused: the pause is not audio). */
void jitter_new_origin(struct jitter *j);

/* Is this packet older than what was written (late, reordered, repeated),
 * the packet jitter_put would drop? Then it is counted dropped. Asked before
 * decoding: a decoder with state (SBC's filter bank) must not see it. */
int jitter_late(struct jitter *j, uint16_t seq, uint32_t ts);

/* A decoded packet of `frames` frames. Returns the frames of silence put
 * before it (a gap), or -1 if it was dropped (late). */
int jitter_put(struct jitter *j, uint16_t seq, uint32_t ts, const void *pcm, unsigned frames);

/* The drift policy: drops the oldest frames beyond `target` when the level
 * is too high (running: above target + slack + two packets; stopped: above
 * target). Returns the frames dropped. */
int jitter_trim(struct jitter *j, int running);

/* Can delivery run (the buffer reached its depth and has not run dry)? */
int jitter_ready(const struct jitter *j);
/* Takes up to n frames into out. Returns the frames taken; with fill, the
 * rest of n is silence (counted against the next gap) and n is returned. */
unsigned jitter_get(struct jitter *j, void *out, unsigned n, int fill);

#endif
