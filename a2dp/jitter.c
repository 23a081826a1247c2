/* The capture's jitter buffer: see jitter.h for the time keeping and drift policy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jitter.h"

/* A gap longer than this is not a loss but a new stream (the phone restarted
 * its clock): no silence is invented for it. */
#define MAX_GAP_FRAMES 96000

int jitter_init(struct jitter *j, unsigned frame_bytes, unsigned capacity, unsigned target,
		unsigned slack)
{
	memset(j, 0, sizeof(*j));
	if (target + slack > capacity)
		return -EINVAL;
	if (!(j->buf = calloc(capacity, frame_bytes)))
		return -ENOMEM;
	j->frame_bytes = frame_bytes;
	j->capacity = capacity;
	j->target = target;
	j->slack = slack;
	return 0;
}

void jitter_free(struct jitter *j)
{
	free(j->buf);
	j->buf = NULL;
}

void jitter_reset(struct jitter *j)
{
	j->head = j->level = 0;
	j->filled = j->started = 0;
	j->dry_frames = j->owed_frames = 0;
}

void jitter_new_origin(struct jitter *j)
{
	j->started = 0;
	j->owed_frames = 0;
}

static void drop_oldest(struct jitter *j, unsigned n)
{
	j->head = (j->head + n) % j->capacity;
	j->level -= n;
}

/* Appends n frames of pcm (NULL: silence), dropping the oldest if full. */
static void append(struct jitter *j, const uint8_t *pcm, unsigned n)
{
	if (n > j->capacity) {
		if (pcm)
			pcm += (size_t)(n - j->capacity) * j->frame_bytes;
		n = j->capacity;
	}
	if (j->level + n > j->capacity) {
		j->dropped_frames += j->level + n - j->capacity;
		drop_oldest(j, j->level + n - j->capacity);
	}
	while (n) {
		unsigned tail = (j->head + j->level) % j->capacity;
		unsigned run = j->capacity - tail < n ? j->capacity - tail : n;
		uint8_t *dst = j->buf + (size_t)tail * j->frame_bytes;

		if (pcm) {
			memcpy(dst, pcm, (size_t)run * j->frame_bytes);
			pcm += (size_t)run * j->frame_bytes;
		} else {
			memset(dst, 0, (size_t)run * j->frame_bytes);
		}
		j->level += run;
		n -= run;
	}
}

/* Older than what was written: a sequence number behind the next one, at a
 * time other than the one that follows (a source that numbers afresh while
 * its timestamps run on is not late). */
static int older(const struct jitter *j, uint16_t seq, uint32_t ts)
{
	return ts != j->next_ts && (uint16_t)(seq - j->next_seq) >= 0x8000;
}

/* Frames of silence a packet at ts needs before it; -1: it is late. */
static int64_t gap_before(struct jitter *j, uint16_t seq, uint32_t ts, unsigned frames)
{
	int32_t d = (int32_t)(ts - j->next_ts);
	uint16_t lost = seq - j->next_seq;

	if (d == 0)
		return 0;
	/* Timestamps that do not count frames: trust the sequence. */
	if (lost == 0)
		return 0;
	if (older(j, seq, ts))
		return -1;
	if (d < 0 || d > MAX_GAP_FRAMES) {
		/* No sense in the timestamp: lost packets of this packet's size. */
		uint64_t g = (uint64_t)lost * frames;

		return g > MAX_GAP_FRAMES ? 0 : (int64_t)g;
	}
	return d;
}

int jitter_late(struct jitter *j, uint16_t seq, uint32_t ts)
{
	if (!j->started || !older(j, seq, ts))
		return 0;
	j->late_packets++;
	return 1;
}

/* Audio that came in a burst after the buffer ran dry: the oldest, up to
 * the silence given in its place, is dropped (see jitter.h). */
static void repay_owed(struct jitter *j)
{
	unsigned n;

	if (!j->owed_frames || j->level <= j->target + j->packet_frames)
		return;
	n = j->level - j->target;
	if (n > j->owed_frames)
		n = (unsigned)j->owed_frames;
	drop_oldest(j, n);
	j->owed_frames -= n;
	j->dropped_frames += n;
	j->late_frames += n;
}

int jitter_put(struct jitter *j, uint16_t seq, uint32_t ts, const void *pcm, unsigned frames)
{
	int64_t gap = 0, dry = (int64_t)j->dry_frames;
	int started = j->started;

	if (started && (gap = gap_before(j, seq, ts, frames)) < 0) {
		j->late_packets++;
		return -1;
	}
	j->started = 1;
	if (gap) {
		/* What the buffer's running dry already delivered as silence
		 * counts against the gap. */
		int64_t fill = gap > dry ? gap - dry : 0;

		j->lost_frames += gap;
		dry -= gap - fill;
		append(j, NULL, (unsigned)fill);
		gap = fill;
	}
	/* The silence no gap accounts for stood in for audio now late. */
	if (started)
		j->owed_frames += (uint64_t)dry;
	j->dry_frames = 0;
	append(j, pcm, frames);
	j->next_ts = ts + frames;
	j->next_seq = seq + 1;
	j->packet_frames = frames;
	repay_owed(j);
	if (j->level >= j->target)
		j->filled = 1;
	return (int)gap;
}

int jitter_trim(struct jitter *j, int running)
{
	unsigned limit = running ? j->target + j->slack + 2 * j->packet_frames : j->target;
	unsigned n;

	if (j->level <= limit)
		return 0;
	n = j->level - j->target;
	j->dropped_frames += n;
	drop_oldest(j, n);
	return n;
}

int jitter_ready(const struct jitter *j)
{
	return j->filled && j->level > 0;
}

unsigned jitter_get(struct jitter *j, void *out, unsigned n, int fill)
{
	uint8_t *dst = out;
	unsigned got = 0;

	if (jitter_ready(j))
		j->owed_frames = 0;          /* delivering again: late audio is kept */
	while (jitter_ready(j) && got < n) {
		unsigned run = j->capacity - j->head;

		if (run > j->level)
			run = j->level;
		if (run > n - got)
			run = n - got;
		memcpy(dst + (size_t)got * j->frame_bytes, j->buf + (size_t)j->head * j->frame_bytes,
		       (size_t)run * j->frame_bytes);
		drop_oldest(j, run);
		got += run;
	}
	if (j->filled && !j->level) {
		j->filled = 0;                       /* ran dry: fill to target again */
		j->rebuffers++;
	}
	if (!fill)
		return got;
	memset(dst + (size_t)got * j->frame_bytes, 0, (size_t)(n - got) * j->frame_bytes);
	/* Silence while audio waits for the depth is not audio missing; with
	 * nothing held, it stands in for what has not come. */
	if (j->started && !j->level)
		j->dry_frames += n - got;
	return n;
}
