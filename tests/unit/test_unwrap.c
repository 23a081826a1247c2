/* alsa-lib's application pointer, which wraps at its boundary (2^30 frames
 * or so on 32-bit systems), followed into the capture's 64-bit count. */
#include <stdint.h>

#include "../../common/alsa_pointer.h"
#include "check.h"

int main(void)
{
	const uint64_t boundary = 1u << 30, buffer = 16384;
	uint64_t ours, theirs;
	int bad = 0;

	/* both 64-bit and equal: unchanged */
	CHECK(alsa_pointer_unwrap(1000, 1000, boundary) == 1000, "equal");
	/* alsa-lib's pointer behind ours (mmap: not yet committed) or ahead
	 * (snd_pcm_forward), by up to a buffer, across every wrap */
	for (ours = 3 * boundary - 3 * buffer; ours < 3 * boundary + 3 * buffer; ours += 997) {
		for (int64_t off = -(int64_t)buffer; off <= (int64_t)buffer; off += 4093) {
			uint64_t want = ours + off;

			theirs = want % boundary;
			if (alsa_pointer_unwrap(ours, theirs, boundary) != want)
				bad++;
		}
	}
	CHECK(!bad, "%d positions near the third wrap came out wrong", bad);
	/* no boundary known (sw_params not seen): taken as it is */
	CHECK(alsa_pointer_unwrap(5, 7, 0) == 7, "no boundary");
	/* a 64-bit boundary (alsa-lib's on 64-bit systems) */
	CHECK(alsa_pointer_unwrap(UINT64_C(1) << 40, (UINT64_C(1) << 40) - 5, UINT64_C(1) << 62) ==
	      (UINT64_C(1) << 40) - 5, "64-bit");
	/* mmap capture: what alsa-lib has already is skipped, never more than asked */
	CHECK(alsa_capture_delivered(100, 100, 50, 1) == 0, "none delivered yet");
	CHECK(alsa_capture_delivered(130, 100, 50, 1) == 30, "30 delivered");
	CHECK(alsa_capture_delivered(200, 100, 50, 1) == 50, "all delivered");
	CHECK(alsa_capture_delivered(130, 100, 50, 0) == 0, "RW access: copied again");
	return check_finish();
}
