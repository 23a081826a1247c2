/*
 * fuzz_slc: bytes from a headset's RFCOMM channel into hfp/slc.c, the AG's
 * Service Level Connection, with the AG's own calls (choose a codec, a
 * codec timeout, a gain, the call indicator) between the pieces. Input:
 * byte 0 = mSBC possible (bit 0) and the read size (bits 1-4); then pieces
 * separated by 0xff, each followed by the AG call its next byte picks.
 * Invariants: input always progresses once the output is written, every
 * answer is framed "\r\n...\r\n", and the state stays within its ranges.
 */
#include "../../hfp/slc.c"

#include <stdint.h>

#include "fuzz_common.h"

static void check_answers(struct slc *s)
{
	size_t n;
	const char *out = slc_output(s, &n);

	INVARIANT(n <= SLC_OUT_MAX, "out_len %zu", n);
	INVARIANT(n == 0 || (n >= 4 && !memcmp(out, "\r\n", 2) && !memcmp(out + n - 2, "\r\n", 2)),
		  "answer not framed: %.*s", (int)n, out);
	INVARIANT(!memchr(out, '\0', n), "a NUL in an answer");
	slc_consumed(s, n);
}

static void check_state(const struct slc *s)
{
	INVARIANT(s->state == SLC_STARTING || s->state == SLC_CONNECTED || s->state == SLC_FAILED,
		  "state %d", s->state);
	INVARIANT(s->codec >= 0 && s->codec <= HFP_CODEC_MSBC, "codec %d", s->codec);
	INVARIANT(s->codec_pending >= 0 && s->codec_pending <= HFP_CODEC_MSBC, "pending %d",
		  s->codec_pending);
	INVARIANT(s->codec != HFP_CODEC_MSBC || s->msbc_possible, "mSBC agreed on a link without it");
	INVARIANT(s->speaker_gain >= -1 && s->speaker_gain <= 15, "speaker %d", s->speaker_gain);
	INVARIANT(s->mic_gain >= -1 && s->mic_gain <= 15, "mic %d", s->mic_gain);
	INVARIANT(s->battery >= -1 && s->battery <= 100, "battery %d", s->battery);
	INVARIANT(s->line_len < SLC_LINE_MAX, "line_len %zu", s->line_len);
}

static void feed(struct slc *s, const uint8_t *p, size_t len, size_t chunk)
{
	while (len) {
		size_t n = len < chunk ? len : chunk, took = slc_input(s, (const char *)p, n);

		INVARIANT(took > 0, "no progress with the output written");
		check_answers(s);
		check_state(s);
		p += took;
		len -= took;
	}
}

static void ag_call(struct slc *s, uint8_t what)
{
	switch (what % 5) {
	case 0: slc_choose_codec(s); break;
	case 1: slc_codec_timeout(s); break;
	case 2: slc_set_speaker_gain(s, what / 5 % 20 - 2); break;
	case 3: slc_set_mic_gain(s, what / 5 % 20 - 2); break;
	default: slc_set_call(s, what & 0x10); break;
	}
	check_answers(s);
	check_state(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slc s;
	size_t chunk, i, start;

	if (size < 1)
		return 0;
	slc_init(&s, data[0] & 1);
	chunk = 1 + (data[0] >> 1 & 15) * 17;
	for (i = start = 1; i <= size; i++) {
		if (i < size && data[i] != 0xff)
			continue;
		feed(&s, data + start, i - start, chunk);
		if (i + 1 < size)
			ag_call(&s, data[++i]);
		start = i + 1;
	}
	return 0;
}
