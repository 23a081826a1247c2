/*
 * fuzz_msbc: bytes from a SCO socket into hfp/msbc.c's decoder: the H2
 * header search across packets, sequence gaps, libsbc's mSBC decoding and
 * the concealment. Input: byte 0 = the packet size (1..256) and byte 1 =
 * the room for frames each call (1..8), then the bytes. Invariants: every
 * byte is taken once there is room, no more frames than room, every frame
 * out is a good, concealed-lost or concealed-bad one, the buffer stays
 * within bounds.
 */
#include "../../hfp/msbc.c"

#include <stdint.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int16_t pcm[8 * MSBC_SAMPLES];
	static struct msbc_decoder d;
	size_t packet, room, off = 2, out = 0;

	if (size < 2 || msbc_decoder_init(&d) < 0)
		return 0;
	packet = 1 + data[0];
	room = 1 + data[1] % 8;
	while (off < size) {
		size_t n = size - off < packet ? size - off : packet, done = 0;

		while (done < n) {
			size_t used, frames = msbc_decode(&d, data + off + done, n - done, &used, pcm, room);

			INVARIANT(frames <= room, "%zu frames for room %zu", frames, room);
			INVARIANT(used <= n - done, "used %zu of %zu", used, n - done);
			INVARIANT(used || frames, "no progress");
			INVARIANT(d.len <= sizeof(d.buf), "buffer %zu", d.len);
			out += frames;
			done += used;
		}
		off += n;
	}
	INVARIANT(out == d.frames + d.lost + d.bad, "%zu out, %llu good %llu lost %llu bad", out,
		  (unsigned long long)d.frames, (unsigned long long)d.lost, (unsigned long long)d.bad);
	msbc_decoder_free(&d);
	return 0;
}
