/*
 * fuzz_sbc_caps: SBC capability / configuration blobs (from the speaker, via
 * bluetoothd's SelectConfiguration and SetConfiguration) into
 * codecs/sbc_codec.c: select_config, parse_config, caps_rates, and the encoder
 * on every configuration parse_config accepts.
 *
 * Input: byte 0 picks the preferred rate, byte 1 the bitpool override,
 * bytes 2-3 an MTU (big endian), byte 4 the size of caps_rates' array; the
 * rest is the blob, any length (a valid one is 4 bytes).
 *
 * Invariants (abort on a break):
 *   - select_config's result passes parse_config, lies within the caps
 *     (every field's bit offered, bitpool within the sink's range), honours
 *     the preferred rate when the sink offers it and a bitpool override
 *     when the sink and the frame format allow it;
 *   - caps_rates lists distinct valid rates the caps offer, at most max;
 *     it and select_config agree on whether the caps are valid;
 *   - encoder_new succeeds on any configuration parse_config accepts, and
 *     one codec frame of silence / full scale encodes to exactly
 *     frame_bytes; frames_per_packet frames fit the MTU; the bitpool steps
 *     stay within the negotiated range.
 */
#include "../../codecs/sbc_codec.c"

#include <stdio.h>

#include "fuzz_common.h"

static const unsigned pref_rates[] = { 0, 16000, 32000, 44100, 48000, 8000, 96000, 44099 };

static void encode_one(const struct a2dp_codec *c, struct a2dp_encoder *enc,
		       const int16_t *pcm, const char *what)
{
	size_t fb = c->frame_bytes(enc);
	uint8_t *dst = malloc(1 + fb);   /* exact: ASan sees any overrun */
	ssize_t n = c->encode(enc, pcm, 1, dst, 1 + fb);

	INVARIANT(n == (ssize_t)(1 + fb), "%s: encode of one frame gave %zd, frame_bytes %zu",
		  what, n, fb);
	INVARIANT(dst[0] == 1, "payload header %u", dst[0]);
	free(dst);
}

static void check_encoder(const uint8_t *config, size_t len, const struct a2dp_format *fmt,
			  size_t mtu)
{
	const struct a2dp_codec *c = &a2dp_codec_sbc;
	struct a2dp_encoder *enc = NULL;
	unsigned fs, fpp;
	int16_t *silence, *loud;
	size_t samples;
	int err, steps;

	err = c->encoder_new(&enc, config, len, mtu, NULL);
	INVARIANT(err == 0, "encoder_new refused %02x %02x %02x %02x that parse_config accepts: %d",
		  config[0], config[1], config[2], config[3], err);
	fs = c->frame_samples(enc);
	INVARIANT(fs > 0 && fs <= 128, "frame_samples %u", fs);
	INVARIANT(enc->codesize == (size_t)fs * 2 * fmt->channels,
		  "codesize %zu for %u samples x %u channels", enc->codesize, fs, fmt->channels);
	INVARIANT(c->delay(enc) > 0, "no delay");
	INVARIANT(c->frame_bytes(enc) > 0, "frame_bytes 0");
	INVARIANT(enc->sbc.bitpool == config[3], "bitpool %u, configured %u", enc->sbc.bitpool, config[3]);

	samples = (size_t)fs * fmt->channels * SBC_MAX_FRAMES_PER_PACKET;
	silence = calloc(samples, sizeof(int16_t));
	loud = malloc(samples * sizeof(int16_t));
	for (size_t i = 0; i < samples; i++)
		loud[i] = (i / fmt->channels) & 1 ? 32767 : -32768;

	encode_one(c, enc, silence, "silence");
	encode_one(c, enc, loud, "full scale");

	/* What the stream does: as many frames as the MTU carries. */
	fpp = c->frames_per_packet(enc, mtu);
	INVARIANT(fpp <= SBC_MAX_FRAMES_PER_PACKET, "frames_per_packet %u", fpp);
	if (fpp) {
		size_t room = mtu - RTP_HEADER_LEN;
		uint8_t *dst = malloc(room);
		ssize_t n = c->encode(enc, loud, fpp, dst, room);

		INVARIANT(n > 0 && (size_t)n <= room, "%u frames: %zd bytes into %zu", fpp, n, room);
		INVARIANT((size_t)n == 1 + fpp * c->frame_bytes(enc), "%u frames: %zd bytes, frame_bytes %zu",
			  fpp, n, c->frame_bytes(enc));
		free(dst);
	} else {
		INVARIANT(mtu < RTP_HEADER_LEN + 1 + c->frame_bytes(enc),
			  "frames_per_packet 0 though one frame fits %zu", mtu);
	}

	/* Congestion steps: down to the minimum, back up to the maximum. */
	for (steps = 0; c->lower_bitrate(enc); steps++)
		INVARIANT(steps < 256 && enc->sbc.bitpool >= config[2], "bitpool %u below %u",
			  enc->sbc.bitpool, config[2]);
	INVARIANT(enc->sbc.bitpool == config[2], "lowest bitpool %u, minimum %u", enc->sbc.bitpool, config[2]);
	encode_one(c, enc, loud, "lowest bitpool");
	for (steps = 0; c->raise_bitrate(enc); steps++)
		INVARIANT(steps < 256 && enc->sbc.bitpool <= config[3], "bitpool %u above %u",
			  enc->sbc.bitpool, config[3]);
	INVARIANT(enc->sbc.bitpool == config[3], "highest bitpool %u, maximum %u", enc->sbc.bitpool, config[3]);
	encode_one(c, enc, loud, "highest bitpool");

	free(silence);
	free(loud);
	c->encoder_free(enc);
}

static int rate_offered(const uint8_t *caps, unsigned rate)
{
	return (SBC_FREQ_BITS(caps) & freq_bit_of(rate)) != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct a2dp_codec *c = &a2dp_codec_sbc;
	struct a2dp_codec_prefs prefs;
	struct a2dp_format fmt;
	const uint8_t *blob;
	uint8_t config[A2DP_MAX_CAPS];
	unsigned *rates;
	size_t len, mtu;
	int n, max, nrates;

	if (size < 5)
		return 0;
	prefs.rate = pref_rates[data[0] & 7];
	prefs.bitpool = data[1];
	mtu = (size_t)data[2] << 8 | data[3];
	max = data[4] % 6;
	blob = data + 5;
	len = size - 5;

	/* caps_rates, into an array of exactly max entries. */
	rates = malloc(sizeof(*rates) * (max ? max : 1));
	nrates = c->caps_rates(blob, len, rates, max);
	INVARIANT(nrates == -EINVAL || (nrates >= 0 && nrates <= max), "caps_rates %d (max %d)", nrates, max);
	for (int i = 0; i < nrates; i++) {
		INVARIANT(freq_bit_of(rates[i]) && rate_offered(blob, rates[i]), "rate %u not offered", rates[i]);
		for (int j = 0; j < i; j++)
			INVARIANT(rates[i] != rates[j], "rate %u twice", rates[i]);
	}
	free(rates);

	/* select_config as SelectConfiguration calls it. */
	memset(config, 0xee, sizeof(config));
	n = c->select_config(blob, len, &prefs, config, sizeof(config));
	INVARIANT(n == 4 || n == -EINVAL || n == -ENOTSUP, "select_config returned %d", n);
	INVARIANT((n == -EINVAL) == (nrates == -EINVAL), "select_config %d but caps_rates %d", n, nrates);
	if (n > 0) {
		unsigned limit;

		INVARIANT(c->parse_config(config, n, &fmt) == 0,
			  "select_config chose %02x %02x %02x %02x, which parse_config refuses",
			  config[0], config[1], config[2], config[3]);
		INVARIANT((config[0] & ~blob[0]) == 0 && (config[1] & ~blob[1]) == 0,
			  "configuration %02x %02x outside the caps %02x %02x",
			  config[0], config[1], blob[0], blob[1]);
		INVARIANT(config[2] >= blob[2] && config[3] <= blob[3] && config[2] <= config[3],
			  "bitpool %u..%u outside the sink's %u..%u", config[2], config[3], blob[2], blob[3]);
		INVARIANT(rate_offered(blob, fmt.rate), "rate %u not offered", fmt.rate);
		if (prefs.rate && rate_offered(blob, prefs.rate))
			INVARIANT(fmt.rate == prefs.rate, "asked %u, offered, got %u", prefs.rate, fmt.rate);
		limit = mode_bitpool_limit(SBC_MODE_BITS(config), SBC_SUBBAND_BITS(config));
		if (prefs.bitpool && prefs.bitpool >= blob[2] && prefs.bitpool <= blob[3] &&
		    prefs.bitpool <= limit)
			INVARIANT(config[3] == prefs.bitpool, "asked bitpool %u, got %u", prefs.bitpool, config[3]);
		INVARIANT(config[4] == 0xee, "select_config wrote past its length");
		check_encoder(config, n, &fmt, mtu);
	}
	/* Too small an output buffer is refused, not overrun. */
	if (n > 0) {
		uint8_t *small = malloc(3);
		INVARIANT(c->select_config(blob, len, &prefs, small, 3) == -ENOSPC, "3-byte buffer accepted");
		free(small);
	}

	/* parse_config as SetConfiguration calls it, and the encoder it leads to. */
	if (c->parse_config(blob, len, &fmt) == 0) {
		INVARIANT(len == 4, "parse_config accepted %zu bytes", len);
		INVARIANT(freq_bit_of(fmt.rate), "rate %u", fmt.rate);
		INVARIANT(fmt.channels == 1 || fmt.channels == 2, "channels %u", fmt.channels);
		check_encoder(blob, len, &fmt, mtu);
	}
	return 0;
}
