/* The capture's jitter buffer: order, gaps, late packets, running dry, drift trimming, wrap. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "jitter.h"

#define FB 4        /* bytes per frame: S16 stereo */

/* n frames whose samples are value, value+1, ... (both channels the same) */
static void frames_of(int16_t *pcm, unsigned n, int16_t value)
{
	for (unsigned i = 0; i < n; i++)
		pcm[2 * i] = pcm[2 * i + 1] = value + i;
}

static int is_run(const int16_t *pcm, unsigned n, int16_t value, int step)
{
	for (unsigned i = 0; i < n; i++)
		if (pcm[2 * i] != value + step * (int)i || pcm[2 * i + 1] != pcm[2 * i])
			return 0;
	return 1;
}

static void test_in_order(void)
{
	struct jitter j;
	int16_t in[8], out[32];

	CHECK(jitter_init(&j, FB, 64, 8, 4) == 0, "init");
	frames_of(in, 4, 100);
	CHECK(jitter_put(&j, 1, 1000, in, 4) == 0, "first packet: no gap");
	CHECK(!jitter_ready(&j), "not ready below the depth");
	CHECK(jitter_get(&j, out, 4, 1) == 4 && is_run(out, 4, 0, 0), "silence while filling");
	frames_of(in, 4, 104);
	CHECK(jitter_put(&j, 2, 1004, in, 4) == 0, "second packet: no gap");
	CHECK(jitter_ready(&j), "ready at the depth");
	CHECK(jitter_get(&j, out, 8, 1) == 8 && is_run(out, 8, 100, 1), "the audio, in order");
	CHECK(j.lost_frames == 0, "nothing lost: %llu", (unsigned long long)j.lost_frames);
	jitter_free(&j);
}

static void test_gap_and_late(void)
{
	struct jitter j;
	int16_t in[8], out[32];

	jitter_init(&j, FB, 64, 4, 4);
	frames_of(in, 4, 100);
	jitter_put(&j, 1, 1000, in, 4);
	frames_of(in, 4, 108);
	CHECK(jitter_put(&j, 3, 1008, in, 4) == 4, "one lost packet: 4 frames of silence");
	CHECK(jitter_get(&j, out, 12, 1) == 12 && is_run(out, 4, 100, 1) && is_run(out + 8, 4, 0, 0) &&
	      is_run(out + 16, 4, 108, 1), "audio, silence where the packet was, audio");
	CHECK(!jitter_late(&j, 4, 1012) && !jitter_late(&j, 9, 1032) && j.late_packets == 0,
	      "the next sequence number and later ones are not late");
	CHECK(!jitter_late(&j, 1, 1012) && j.late_packets == 0,
	      "an older number at the time that follows (numbered afresh) is not late");
	CHECK(jitter_late(&j, 2, 1004) && j.late_packets == 1, "an older one is, and counted");
	CHECK(jitter_put(&j, 2, 1004, in, 4) == -1 && j.late_packets == 2, "put anyway, it is dropped");
	/* Timestamps that do not count frames: the sequence decides. */
	CHECK(jitter_put(&j, 4, 1008, in, 4) == 0, "contiguous sequence, stuck timestamp: no gap");
	CHECK(jitter_put(&j, 7, 5, in, 4) == 8, "two lost, nonsense timestamp: two packets of silence");
	CHECK(jitter_put(&j, 8, 9 + 500000, in, 4) == 0, "a jump of seconds is a new origin, no silence");
	jitter_new_origin(&j);
	CHECK(jitter_put(&j, 9, 9 + 500000 + 44100, in, 4) == 0, "after jitter_new_origin, no silence");
	CHECK(jitter_put(&j, 11, 9 + 500000 + 44108, in, 4) == 4, "and gaps count from there");
	jitter_free(&j);
}

static void test_dry(void)
{
	struct jitter j;
	int16_t in[8], out[64];

	jitter_init(&j, FB, 64, 4, 4);
	frames_of(in, 4, 100);
	jitter_put(&j, 1, 1000, in, 4);
	CHECK(jitter_get(&j, out, 10, 1) == 10 && is_run(out, 4, 100, 1) && is_run(out + 8, 6, 0, 0),
	      "runs dry: the rest is silence");
	CHECK(j.rebuffers == 1 && !jitter_ready(&j), "ran dry once, fills again");
	/* 6 frames of silence already stand in for the 8 missing: 2 more. */
	frames_of(in, 4, 112);
	CHECK(jitter_put(&j, 3, 1012, in, 4) == 2, "the gap less what was delivered as silence");
	CHECK(jitter_get(&j, out, 4, 0) == 4, "wait mode: audio once at the depth");
	CHECK(jitter_get(&j, out, 4, 0) == 2, "wait mode: no silence when dry");
	jitter_free(&j);
}

/* The buffer runs dry; the late audio comes in a burst (the oldest, up to
 * the silence given, dropped) or at its pace (all kept). */
static void test_stall(void)
{
	struct jitter j;
	int16_t in[8], out[64];

	for (int burst = 1; burst >= 0; burst--) {
		jitter_init(&j, FB, 64, 8, 4);
		for (int k = 0; k < 2; k++) {
			frames_of(in, 4, 100 + 4 * k);
			jitter_put(&j, k, 4 * k, in, 4);
		}
		jitter_get(&j, out, 8, 1);
		CHECK(jitter_get(&j, out, 12, 1) == 12 && j.dry_frames == 12,
		      "%s: dry, 12 frames of silence given", burst ? "burst" : "pace");
		if (burst) {
			for (int k = 2; k < 7; k++) {
				frames_of(in, 4, 100 + 4 * k);
				jitter_put(&j, k, 4 * k, in, 4);
			}
			CHECK(j.late_frames == 8 && j.level == 12,
			      "burst: 8 of the 20 late frames dropped, a packet over the depth kept "
			      "(late %llu, level %u)", (unsigned long long)j.late_frames, j.level);
			CHECK(jitter_get(&j, out, 12, 1) == 12 && is_run(out, 12, 116, 1),
			      "burst: the newest audio, the lag within a packet of before");
		} else {
			frames_of(in, 4, 108);
			jitter_put(&j, 2, 8, in, 4);
			jitter_get(&j, out, 4, 1);
			frames_of(in, 4, 112);
			jitter_put(&j, 3, 12, in, 4);
			CHECK(jitter_get(&j, out, 8, 1) == 8 && is_run(out, 8, 108, 1) && j.late_frames == 0,
			      "pace: all the late audio kept");
			frames_of(in, 4, 116);
			for (int k = 4; k < 7; k++)
				jitter_put(&j, k, 4 * k, in, 4);
			CHECK(j.late_frames == 0, "pace: once delivering again, nothing is owed");
		}
		jitter_free(&j);
	}
	/* A gap while dry: the silence given counts against it, nothing owed. */
	jitter_init(&j, FB, 64, 8, 4);
	frames_of(in, 4, 100);
	jitter_put(&j, 0, 0, in, 4);
	jitter_put(&j, 1, 4, in, 4);
	jitter_get(&j, out, 8, 1);
	jitter_get(&j, out, 12, 1);
	for (int k = 5; k < 10; k++)
		jitter_put(&j, k, 4 * k, in, 4);
	CHECK(j.late_frames == 0 && j.lost_frames == 12 && j.level == 20,
	      "the phone's clock ran on: its gap was the silence given (late %llu, lost %llu, level %u)",
	      (unsigned long long)j.late_frames, (unsigned long long)j.lost_frames, j.level);
	jitter_free(&j);
}

static void test_trim(void)
{
	struct jitter j;
	int16_t in[8], out[64];

	jitter_init(&j, FB, 64, 8, 4);
	for (int k = 0; k < 6; k++) {
		frames_of(in, 4, 100 + 4 * k);
		jitter_put(&j, k, 4 * k, in, 4);
	}
	CHECK(jitter_trim(&j, 1) == 16 && j.level == 8, "running: above depth + slack + 2 packets, "
	      "back to the depth (level %u)", j.level);
	CHECK(jitter_get(&j, out, 8, 1) == 8 && is_run(out, 8, 116, 1), "the newest audio kept");
	frames_of(in, 4, 124);
	jitter_put(&j, 6, 24, in, 4);
	jitter_put(&j, 7, 28, in, 4);
	jitter_put(&j, 8, 32, in, 4);
	CHECK(jitter_trim(&j, 1) == 0, "running: within the slack, nothing dropped");
	CHECK(jitter_trim(&j, 0) == 4 && j.level == 8, "stopped: kept at the depth");
	jitter_free(&j);
}

static void test_wrap(void)
{
	struct jitter j;
	int16_t in[14], out[14];
	int ok = 1;

	jitter_init(&j, FB, 10, 2, 1);
	for (int k = 0; k < 40; k++) {
		frames_of(in, 3, 3 * k);
		jitter_put(&j, k, 3 * k, in, 3);
		ok &= jitter_get(&j, out, 3, 1) == 3 && is_run(out, 3, 3 * k, 1);
	}
	CHECK(ok, "frames intact across the ring's end");
	jitter_free(&j);
}

int main(void)
{
	test_in_order();
	test_gap_and_late();
	test_dry();
	test_stall();
	test_trim();
	test_wrap();
	return check_finish();
}
