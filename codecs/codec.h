/*
 * The A2DP codec table. A codec is a set of functions (capabilities,
 * configuration choice, encoder, bitrate steps, delay) plus what the stream
 * must know to send it (its framing, its PCM sample format), so the stream
 * code and the BlueZ client never name a codec.
 */
#ifndef ALSABT_CODEC_H
#define ALSABT_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define A2DP_MAX_CAPS 32
#define A2DP_MAX_CODECS 8          /* entries of the table */
#define A2DP_CODEC_LIST_MAX 96     /* "ldac:aptx_hd:aptx:aac:sbc:sbc_xq" and room */
#define A2DP_MAX_FRAGMENTED 2048  /* > an AAC LC stereo frame's 2 x 6144 bits */
#define A2DP_CODEC_SBC 0x00
#define A2DP_CODEC_AAC 0x02
#define A2DP_CODEC_VENDOR 0xff

/* What identifies a codec on the wire: the A2DP codec id and, for vendor
 * codecs (0xFF), the vendor id and vendor codec id that open their blob. */
struct a2dp_codec_key {
	uint8_t id;
	uint32_t vendor;
	uint16_t vendor_codec;
};

/* What the user asked for; zero fields mean "choose the best". */
struct a2dp_codec_prefs {
	unsigned rate;       /* preferred sampling rate in Hz */
	unsigned bitpool;    /* SBC: bitpool override, capped by the sink */
	enum a2dp_ldac_quality { LDAC_AUTO, LDAC_HQ, LDAC_SQ, LDAC_MQ } ldac_quality;
};

/* The PCM side of a configuration. */
struct a2dp_format {
	unsigned rate;
	unsigned channels;
};

/* Interleaved native-endian samples the encoder takes. */
enum a2dp_sample_format {
	A2DP_S16,            /* int16_t */
	A2DP_S32,            /* int32_t; codecs with more than 16 bits use the top 24 */
};

/* How a media packet is built around the codec's payload. */
enum a2dp_framing {
	A2DP_FRAMING_RTP,    /* 12-byte RTP header, then the codec's payload */
	A2DP_FRAMING_RAW,    /* the codec's bytes alone (aptX) */
};

struct a2dp_encoder;
struct a2dp_decoder;

struct a2dp_codec {
	const char *name;           /* the CODEC= name: "sbc", "aptx_hd" */
	const char *title;          /* for people: "aptX HD" */
	struct a2dp_codec_key key;
	enum a2dp_framing framing;
	int rtp_marker;             /* RTP marker bit on the last packet of a frame (AAC, RFC 3016) */
	/* encode() may return more than the MTU holds: the stream sends it in
	 * several RTP packets (AAC, RFC 3016), up to A2DP_MAX_FRAGMENTED more. */
	int fragments;
	/* A packet is only ever a whole packet's PCM: the stream pads short
	 * ones (underrun, drain) to that, not to a codec frame (LDAC). */
	int whole_packets;
	enum a2dp_sample_format sample_format;

	/* 0 if the codec can be used here (its library loads), else negative;
	 * the reason is logged once. NULL: always. */
	int (*available)(void);
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

	/* mtu: the link's write MTU, for codecs whose setup depends on it (AAC's
	 * bitrate, LDAC's packing: -EMSGSIZE when it is too small); prefs: the
	 * user's (LDAC's quality), or NULL. */
	int (*encoder_new)(struct a2dp_encoder **enc, const uint8_t *config, size_t len, size_t mtu,
			   const struct a2dp_codec_prefs *prefs);
	void (*encoder_free)(struct a2dp_encoder *enc);
	/* PCM frames (samples per channel) in one codec frame. */
	unsigned (*frame_samples)(const struct a2dp_encoder *enc);
	/* Codec frames in one packet of at most mtu bytes, any RTP header
	 * included; 0 if none fits. */
	unsigned (*frames_per_packet)(const struct a2dp_encoder *enc, size_t mtu);
	/* Encodes nframes codec frames of interleaved PCM in sample_format into
	 * dst as the packet's payload (after the RTP header, if any). Returns
	 * bytes written; 0: nothing to send for these frames (counted as a
	 * dropped packet). */
	ssize_t (*encode)(struct a2dp_encoder *enc, const void *pcm, unsigned nframes,
			  uint8_t *dst, size_t size);
	/* One congestion step down: how many raise_bitrate() steps undo it (0 at
	 * the limit, or a codec without steps). One step up: 1 if the bitrate
	 * rose, 0 at the maximum. */
	int (*lower_bitrate)(struct a2dp_encoder *enc);
	int (*raise_bitrate)(struct a2dp_encoder *enc);
	/* After each packet sent or dropped: the link's transmit queue, in
	 * packets, for a codec that adapts its bitrate itself (LDAC's ABR); its
	 * lower/raise_bitrate() then return 0, so one controller steers. NULL: none. */
	void (*on_packet)(struct a2dp_encoder *enc, unsigned queued_packets);
	/* Encoded bytes per codec frame at the current bitrate (for queue accounting). */
	size_t (*frame_bytes)(const struct a2dp_encoder *enc);
	/* Algorithmic delay of encoder + decoder, in PCM frames. */
	unsigned (*delay)(const struct a2dp_encoder *enc);

	/* Receiving (an A2DP Sink, the capture PCM). NULL where we cannot decode
	 * the codec: then the capture does not offer it. */
	int (*decoder_new)(struct a2dp_decoder **dec, const uint8_t *config, size_t len);
	void (*decoder_free)(struct a2dp_decoder *dec);
	/* The most PCM frames one packet's payload can decode to. */
	unsigned (*decoder_max_frames)(const struct a2dp_decoder *dec);
	/* Decodes one packet's payload (after the RTP header, if any) into
	 * interleaved PCM in sample_format; flags: A2DP_DECODE_*. Returns the
	 * PCM frames written (samples per channel), 0 for a fragment kept until
	 * the rest of its frame comes (A2DP_DECODE_MORE), or -EINVAL for a
	 * payload that does not decode. */
	ssize_t (*decode)(struct a2dp_decoder *dec, const uint8_t *payload, size_t len,
			  unsigned flags, void *pcm, unsigned max_frames);
};

/* What the receiver knows of a packet beside its payload (decode()'s flags). */
#define A2DP_DECODE_MORE 0x1       /* no RTP marker, for a codec with rtp_marker
				    * (on a stream that sets it): more of this
				    * codec frame follows */
#define A2DP_DECODE_AFTER_GAP 0x2  /* packets are missing right before this one
				    * (RTP sequence): a partial frame held is lost */

extern const struct a2dp_codec a2dp_codec_sbc;
extern const struct a2dp_codec a2dp_codec_sbc_xq;
extern const struct a2dp_codec a2dp_codec_aptx;
extern const struct a2dp_codec a2dp_codec_aptx_hd;
extern const struct a2dp_codec a2dp_codec_aac;
extern const struct a2dp_codec a2dp_codec_ldac;

/* Every codec we have, best first; NULL-terminated. */
extern const struct a2dp_codec *const a2dp_codecs[];

/* The key a capability or configuration blob of codec id `id` carries:
 * -EINVAL for a vendor blob too short to name its codec. */
int a2dp_codec_key_of(uint8_t id, const uint8_t *blob, size_t len, struct a2dp_codec_key *key);
int a2dp_codec_key_equal(const struct a2dp_codec_key *a, const struct a2dp_codec_key *b);
/* The first codec of the table with this key; NULL if we do not have it. */
const struct a2dp_codec *a2dp_codec_find(const struct a2dp_codec_key *key);
const struct a2dp_codec *a2dp_codec_by_name(const char *name);

/* "sbc, sbc_xq, aptx, aptx_hd, aac, ldac": the names CODEC= knows. */
const char *a2dp_codec_known_names(void);
/* Parses a CODEC= list ("aptx_hd:aptx:sbc"; ':' or ' ' separate, "" is
 * the default order) into out (in order, no repeats). Returns the count, or
 * -EINVAL with *bad pointing at the first unknown name in s. */
int a2dp_codec_parse_list(const char *s, const struct a2dp_codec **out, int max,
			  const char **bad);

/* Is c among the first n of list? */
int a2dp_codec_listed(const struct a2dp_codec *const *list, int n, const struct a2dp_codec *c);
/* The names of a list, ':' between them ("aptx:sbc"), as the parser reads them. */
void a2dp_codec_list_names(const struct a2dp_codec *const *codecs, int n, char *buf, size_t size);

/* For people: "sbc", "aptx", "aac", "vendor 0x012d:0x00aa". */
void a2dp_codec_describe(uint8_t id, const uint8_t *caps, size_t len, char *buf, size_t size);

/* A symbol of a codec library: where its address goes, its name. */
struct a2dp_symbol {
	void **fn;
	const char *name;
};
/* dlopen()s lib (kept for the life of the process, as the plugin itself is)
 * and resolves every symbol. -ENOENT, with *why, if either fails. */
int a2dp_load_library(const char *lib, const struct a2dp_symbol *syms, size_t n, const char **why);

/* Writes the vendor header (vendor LE32, codec LE16) of a vendor blob. */
void a2dp_vendor_header(uint8_t *blob, const struct a2dp_codec_key *key);

#endif
