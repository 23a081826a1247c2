/*
 * fuzz_aac_caps: AAC capability and configuration blobs (from the speaker,
 * via bluetoothd's SelectConfiguration and SetConfiguration) into
 * codecs/aac_codec.c: select_config, parse_config, caps_rates; and LATM (what
 * the test sink reads back) into codecs/latm.c's latm_read.
 *
 * Input: byte 0 picks the preferred rate (bits 0-2) and what the rest is
 * (bit 7: a LATM element, else a blob), byte 1 the size of caps_rates' array;
 * the rest is the blob (a valid one is 6 bytes) or the LATM element.
 *
 * Invariants (abort on a break):
 *   - select_config's result passes parse_config, lies within the caps
 *     (object type, rate and channel bits offered), is MPEG-2 or MPEG-4 LC
 *     stereo, its bitrate within 64..320 kb/s or the sink's own, honours
 *     the preferred rate when offered; -EINVAL exactly when caps_rates says so;
 *   - caps_rates lists distinct rates, at most max;
 *   - a LATM element latm_read accepts is what latm_write writes for that
 *     frame, rate and channel count, byte for byte.
 * The encoder itself (libavcodec) is left to the unit tests: its start-up
 * would slow the fuzzer a thousandfold.
 */
#include "../../codecs/aac_codec.c"

#include "fuzz_codec.h"

static const unsigned pref_rates[] = { 0, 16000, 32000, 44100, 48000, 8000, 96000, 44099 };

static void check_latm(const uint8_t *in, size_t len)
{
	static uint8_t frame[8192], again[8192 + 64];
	unsigned rate, channels;
	int n = latm_read(in, len, &rate, &channels, frame, sizeof(frame)), m;

	if (n < 0)
		return;
	m = latm_write(again, sizeof(again), rate, channels, frame, n);
	INVARIANT(m == (int)len && !memcmp(again, in, len),
		  "latm_read accepted %zu bytes that latm_write writes as %d", len, m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct a2dp_codec *c = &a2dp_codec_aac;
	struct a2dp_codec_prefs prefs = { 0 };
	struct a2dp_format fmt;
	uint8_t config[A2DP_MAX_CAPS];
	const uint8_t *blob;
	size_t len;
	int n;

	if (size < 2)
		return 0;
	blob = data + 2;
	len = size - 2;
	if (data[0] & 0x80) {
		check_latm(blob, len);
		return 0;
	}
	prefs.rate = pref_rates[data[0] & 7];
	n = fuzz_select(c, blob, len, &prefs, data[1] % 6, 6, config, &fmt);
	if (n > 0) {
		unsigned br = caps_bitrate(config), sink = caps_bitrate(blob);

		for (int i = 0; i < 3; i++)
			INVARIANT(!(config[i] & ~blob[i]), "byte %d: %02x outside %02x", i, config[i], blob[i]);
		INVARIANT(config[0] == OBJ_MPEG2_LC || config[0] == OBJ_MPEG4_LC, "object %02x", config[0]);
		INVARIANT(fmt.channels == 2, "channels %u", fmt.channels);
		INVARIANT(br == MAX_BITRATE || (br >= MIN_BITRATE && br == sink), "bitrate %u (sink %u)",
			  br, sink);
		if (rate_in(blob, prefs.rate))
			INVARIANT(fmt.rate == prefs.rate, "asked %u, got %u", prefs.rate, fmt.rate);
	}
	if (c->parse_config(blob, len, &fmt) == 0)
		INVARIANT(len == 6 && fmt.channels == 2 && (fmt.rate == 44100 || fmt.rate == 48000),
			  "accepted %zu bytes, %u Hz", len, fmt.rate);
	return 0;
}
