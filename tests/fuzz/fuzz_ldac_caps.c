/*
 * fuzz_ldac_caps: LDAC capability and configuration blobs (from the speaker,
 * via bluetoothd's SelectConfiguration and SetConfiguration) into
 * codecs/ldac_codec.c: select_config, parse_config, caps_rates.
 *
 * Input: byte 0 picks the preferred rate (bits 0-2), byte 1 the size of
 * caps_rates' array; the rest is the blob (a valid one is 8 bytes).
 *
 * Invariants (abort on a break): select_config's result passes
 * parse_config, keeps the vendor header, lies within the caps, is 44.1 or
 * 48 kHz stereo and honours the preferred rate when offered; -EINVAL exactly
 * when caps_rates says so; caps_rates lists distinct rates, at most max.
 * The encoder (libldacBT_enc) is left to the unit tests.
 */
#include "../../codecs/ldac_codec.c"

#include "fuzz_codec.h"

static const unsigned pref_rates[] = { 0, 16000, 32000, 44100, 48000, 8000, 96000, 44099 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct a2dp_codec *c = &a2dp_codec_ldac;
	struct a2dp_codec_prefs prefs = { 0 };
	struct a2dp_format fmt;
	uint8_t config[A2DP_MAX_CAPS];
	const uint8_t *blob;
	size_t len;
	int n;

	if (size < 2)
		return 0;
	prefs.rate = pref_rates[data[0] & 7];
	blob = data + 2;
	len = size - 2;
	n = fuzz_select(c, blob, len, &prefs, data[1] % 6, LDAC_CAPS_LEN, config, &fmt);
	if (n > 0) {
		INVARIANT(!memcmp(config, blob, VENDOR_HEADER_LEN), "vendor header changed");
		INVARIANT(!(config[6] & ~blob[6]) && !(config[7] & ~blob[7]), "outside the caps");
		INVARIANT(fmt.channels == 2 && (fmt.rate == 44100 || fmt.rate == 48000), "format");
		if (freq_bit(prefs.rate) & blob[6])
			INVARIANT(fmt.rate == prefs.rate, "asked %u, got %u", prefs.rate, fmt.rate);
	}
	if (c->parse_config(blob, len, &fmt) == 0)
		INVARIANT(len == LDAC_CAPS_LEN && blob[7] == MODE_STEREO && rate_of(blob[6]), "accepted");
	return 0;
}
