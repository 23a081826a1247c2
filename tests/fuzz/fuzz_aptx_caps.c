/*
 * fuzz_aptx_caps: aptX / aptX HD capability and configuration blobs (from
 * the speaker, via bluetoothd's SelectConfiguration and SetConfiguration)
 * into codecs/aptx_codec.c: select_config, parse_config, caps_rates, and the
 * encoder on every configuration parse_config accepts; plus the codec
 * table's key parsing (a2dp_codec_key_of / a2dp_codec_find) of the blob.
 *
 * Input: byte 0 picks the codec (bit 0: aptX HD) and the preferred rate
 * (bits 1-3), bytes 1-2 an MTU (big endian), byte 3 the size of caps_rates'
 * array; the rest is the blob, any length (a valid one is 7 or 11 bytes).
 *
 * Invariants (abort on a break):
 *   - select_config's result passes parse_config, carries the codec's
 *     vendor header, lies within the caps, is stereo, honours the preferred
 *     rate when the sink offers it; -EINVAL exactly when caps_rates says so;
 *   - caps_rates lists distinct rates the caps offer, at most max;
 *   - on any configuration parse_config accepts, encoder_new succeeds,
 *     frames_per_packet codewords of full scale encode to exactly that many
 *     codewords within the MTU; no bitrate steps;
 *   - a blob whose key is aptX's or aptX HD's finds that codec.
 */
#include "../../codecs/aptx_codec.c"

#include "fuzz_codec.h"

static const unsigned pref_rates[] = { 0, 16000, 32000, 44100, 48000, 8000, 96000, 44099 };

static void check_encoder(const struct a2dp_codec *c, const uint8_t *config, size_t len, size_t mtu)
{
	struct a2dp_encoder *enc = NULL;
	size_t head = c->framing == A2DP_FRAMING_RTP ? RTP_HEADER_LEN : 0;
	unsigned fpp;
	int err = c->encoder_new(&enc, config, len, mtu, NULL);

	INVARIANT(err == 0, "encoder_new refused what parse_config accepts: %d", err);
	INVARIANT(c->frame_samples(enc) == 4 && c->delay(enc) == APTX_DELAY, "framing");
	INVARIANT(c->lower_bitrate(enc) == 0 && c->raise_bitrate(enc) == 0, "bitrate steps");
	fpp = c->frames_per_packet(enc, mtu);
	if (fpp) {
		size_t samples = (size_t)fpp * 4 * 2, room = mtu - head;
		void *pcm = malloc(samples * (c->sample_format == A2DP_S32 ? 4 : 2));
		uint8_t *dst = malloc(room);          /* exact: ASan sees any overrun */
		ssize_t n;

		for (size_t i = 0; i < samples; i++) {
			if (c->sample_format == A2DP_S32)
				((int32_t *)pcm)[i] = i & 2 ? INT32_MAX : INT32_MIN;
			else
				((int16_t *)pcm)[i] = i & 2 ? 32767 : -32768;
		}
		n = c->encode(enc, pcm, fpp, dst, room);
		INVARIANT(n == (ssize_t)(fpp * c->frame_bytes(enc)) && (size_t)n <= room,
			  "%u codewords: %zd bytes into %zu", fpp, n, room);
		free(pcm);
		free(dst);
	} else {
		INVARIANT(mtu < head + c->frame_bytes(enc), "nothing fits %zu", mtu);
	}
	c->encoder_free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct a2dp_codec *c;
	struct a2dp_codec_prefs prefs = { 0 };
	struct a2dp_codec_key key;
	struct a2dp_format fmt;
	uint8_t config[A2DP_MAX_CAPS];
	const uint8_t *blob;
	size_t len, mtu;
	int n, hd;

	if (size < 4)
		return 0;
	hd = data[0] & 1;
	c = hd ? &a2dp_codec_aptx_hd : &a2dp_codec_aptx;
	prefs.rate = pref_rates[(data[0] >> 1) & 7];
	mtu = (size_t)data[1] << 8 | data[2];
	blob = data + 4;
	len = size - 4;

	if (a2dp_codec_key_of(A2DP_CODEC_VENDOR, blob, len, &key) == 0) {
		const struct a2dp_codec *found = a2dp_codec_find(&key);

		if (a2dp_codec_key_equal(&key, &c->key))
			INVARIANT(found == c, "key of %s found %s", c->name, found ? found->name : "nothing");
	} else {
		INVARIANT(len < 6, "key refused for %zu bytes", len);
	}

	n = fuzz_select(c, blob, len, &prefs, data[3] % 6, blob_len(hd), config, &fmt);
	if (n > 0) {
		INVARIANT(!memcmp(config, blob, VENDOR_HEADER_LEN), "vendor header changed");
		INVARIANT(!(config[6] & ~blob[6]), "choice %02x outside caps %02x", config[6], blob[6]);
		INVARIANT(fmt.channels == 2, "channels %u", fmt.channels);
		if (prefs.rate && select_freq(blob[6], prefs.rate) &&
		    rate_of(select_freq(blob[6], prefs.rate)) == prefs.rate)
			INVARIANT(fmt.rate == prefs.rate, "asked %u, got %u", prefs.rate, fmt.rate);
		check_encoder(c, config, n, mtu);
	}
	if (c->parse_config(blob, len, &fmt) == 0) {
		INVARIANT(len == blob_len(hd) && fmt.channels == 2 && rate_of(blob[6] & 0xf0), "accepted");
		check_encoder(c, blob, len, mtu);
	}
	return 0;
}
