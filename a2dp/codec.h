/*
 * The A2DP codec table. A codec is a set of functions (capabilities,
 * configuration choice, encoder, bitrate steps, delay), so the stream code
 * and the BlueZ client never name a codec. SBC is the one entry today.
 */
#ifndef A2DP_CODEC_H
#define A2DP_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define A2DP_MAX_CAPS 32

/* What the user asked for; zero fields mean "choose the best". */
struct a2dp_codec_prefs {
	unsigned rate;       /* preferred sampling rate in Hz */
	unsigned bitpool;    /* SBC: bitpool override, capped by the sink */
};

/* The PCM side of a configuration. */
struct a2dp_format {
	unsigned rate;
	unsigned channels;
};

struct a2dp_encoder;

struct a2dp_codec {
	const char *name;
	uint8_t id;                 /* A2DP codec id (SBC = 0) */

	/* Our source capabilities, for RegisterEndpoint. Returns the length. */
	int (*fill_caps)(uint8_t *caps, size_t size);
	/* The best configuration within the sink's capabilities.
	 * Returns its length, or -EINVAL (malformed) / -ENOTSUP (nothing in common). */
	int (*select_config)(const uint8_t *caps, size_t len,
			     const struct a2dp_codec_prefs *prefs,
			     uint8_t *config, size_t size);
	/* Validates one configuration (exactly one choice per field) and reads its format. */
	int (*parse_config)(const uint8_t *config, size_t len, struct a2dp_format *fmt);
	/* The sampling rates the sink's capabilities allow, best first. Returns the count. */
	int (*caps_rates)(const uint8_t *caps, size_t len, unsigned *rates, int max);

	int (*encoder_new)(struct a2dp_encoder **enc, const uint8_t *config, size_t len);
	void (*encoder_free)(struct a2dp_encoder *enc);
	/* PCM frames (samples per channel) in one codec frame. */
	unsigned (*frame_samples)(const struct a2dp_encoder *enc);
	/* Codec frames in one packet of at most mtu bytes, RTP header included; 0 if none fits. */
	unsigned (*frames_per_packet)(const struct a2dp_encoder *enc, size_t mtu);
	/* Encodes nframes codec frames of interleaved S16 native-endian PCM into
	 * dst as a media payload (payload header + frames). Returns bytes written. */
	ssize_t (*encode)(struct a2dp_encoder *enc, const int16_t *pcm, unsigned nframes,
			  uint8_t *dst, size_t size);
	/* One congestion step down: how many raise_bitrate() steps undo it (0 at
	 * the limit). One step up: 1 if the bitrate rose, 0 at the maximum. */
	int (*lower_bitrate)(struct a2dp_encoder *enc);
	int (*raise_bitrate)(struct a2dp_encoder *enc);
	/* Encoded bytes per codec frame at the current bitrate (for queue accounting). */
	size_t (*frame_bytes)(const struct a2dp_encoder *enc);
	/* Algorithmic delay of encoder + decoder, in PCM frames. */
	unsigned (*delay)(const struct a2dp_encoder *enc);
};

extern const struct a2dp_codec a2dp_codec_sbc;

/* Looks a codec up by its A2DP id; NULL if we do not have it. */
const struct a2dp_codec *a2dp_codec_find(uint8_t id);

#endif
