/* alsa-lib's pointers as the plugins' rings count them. Shared by the
 * capture of a phone (pcm_bt/pcm_capture.c) and a headset's voice
 * (pcm_bt/pcm_voice.c). */
#ifndef ALSABT_ALSA_POINTER_H
#define ALSABT_ALSA_POINTER_H

#include <stdint.h>

/* alsa-lib's application pointer, which wraps at its boundary (2^30 frames
 * or so on a 32-bit system: 6-13 hours), as a count in ours, which does not
 * wrap: the two are never more than half a boundary apart. */
static inline uint64_t alsa_pointer_unwrap(uint64_t ours, uint64_t theirs, uint64_t boundary)
{
	uint64_t d;

	if (!boundary)
		return theirs;
	d = (ours % boundary + boundary - theirs % boundary) % boundary;   /* ours ahead by */
	return d <= boundary / 2 ? ours - d : ours + (boundary - d);
}

/* Capture with mmap access (arecord -M, the plug's conversions): alsa-lib
 * calls transfer at every avail_update for everything available, into its
 * own buffer, and moves its application pointer only at mmap_commit. Of the
 * `size` frames asked for from `start` (its pointer), those up to `appl`
 * (ours) are there already, and their place in our ring may hold newer
 * audio now: how many to skip. With RW access the two pointers are equal,
 * but after snd_pcm_rewind: then the frames asked for are copied again. */
static inline uint64_t alsa_capture_delivered(uint64_t appl, uint64_t start, uint64_t size,
					      int mmap)
{
	if (!mmap || appl <= start)
		return 0;
	return appl - start < size ? appl - start : size;
}

#endif
