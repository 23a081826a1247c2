/*
 * The I/O side of playback: a ring of PCM the application fills, and a thread
 * that takes what is due by a monotonic clock, encodes it and sends one RTP
 * packet at a time on the transport socket.
 *
 * Threads: the application thread owns the ring's write side (appl), the state
 * requests and avail_min; the I/O thread owns the socket, the encoder, the read
 * side (hw), the clock origin and the error/drained flags. Each field below says
 * which thread writes it; the other only reads.
 */
#ifndef A2DP_STREAM_H
#define A2DP_STREAM_H

#include <stdint.h>

#include "codec.h"
#include "endpoint.h"
#include "volume.h"

struct a2dp_stream;

struct a2dp_stream_stats {
	uint64_t packets;
	uint64_t dropped;        /* packets lost to a congested socket */
	unsigned bitrate_steps;  /* raise steps the codec is below its negotiated bitrate */
	int64_t first_packet_ns; /* CLOCK_MONOTONIC of the first packet, 0 if none */
};

/* Takes the transport of ep (which must stay open while the stream lives).
 * vs, if not NULL, is the device's volume store, which the I/O thread follows:
 * software volume and mute, or the speaker's own volume (AVRCP). */
int a2dp_stream_new(struct a2dp_stream **s, struct a2dp_endpoint *ep,
		    const struct a2dp_codec *codec, struct volume_store *vs);
void a2dp_stream_free(struct a2dp_stream *s);

/* With the stream stopped: the ring size in frames (the ALSA buffer). */
int a2dp_stream_set_buffer(struct a2dp_stream *s, unsigned frames);
/* The smallest ring that keeps the sink fed: two packets at the current bitrate. */
unsigned a2dp_stream_min_buffer(const struct a2dp_stream *s);
unsigned a2dp_stream_rate(const struct a2dp_stream *s);
unsigned a2dp_stream_channels(const struct a2dp_stream *s);

/* The application's side. */
/* buffer x channels samples of the codec's sample format (16 or 32 bits). */
void *a2dp_stream_ring(struct a2dp_stream *s);
unsigned a2dp_stream_sample_bits(const struct a2dp_stream *s);
uint64_t a2dp_stream_appl(const struct a2dp_stream *s);
void a2dp_stream_commit(struct a2dp_stream *s, unsigned frames);
/* The ring pointer: frames the application may write over again. */
uint64_t a2dp_stream_hw(struct a2dp_stream *s);
/* Of the frames committed, those beyond what the ring pointer may show by
 * now, running or not: a packet sent early, or a source's packet about to be. */
uint64_t a2dp_stream_unshown(struct a2dp_stream *s);
void a2dp_stream_set_avail_min(struct a2dp_stream *s, unsigned frames);

/* Instead of an application writing ahead, a source that fills the ring just
 * in time, called by the I/O thread while running. fill: when a packet is
 * due (must = 1) it commits the `frames` still missing; for a packet that
 * could go early (must = 0) it may decline; it returns the
 * frames it committed, or -EAGAIN to be asked again in a moment (its lock
 * is held by a thread that may be waiting on this stream). sent: a packet
 * has gone to the socket, when an application would be woken. Set while
 * stopped. */
struct a2dp_stream_source {
	int (*fill)(void *arg, unsigned frames, int must);
	void (*sent)(void *arg);
};
void a2dp_stream_set_source(struct a2dp_stream *s, const struct a2dp_stream_source *src,
			    void *arg);

void a2dp_stream_prepare(struct a2dp_stream *s);
void a2dp_stream_start(struct a2dp_stream *s);
void a2dp_stream_stop(struct a2dp_stream *s);
void a2dp_stream_pause(struct a2dp_stream *s, int enable);
/* Starts draining; with wait, returns once the last sample has been played
 * by the clock and left the socket (or on error); else -EAGAIN until then. */
int a2dp_stream_drain(struct a2dp_stream *s, int wait);
int a2dp_stream_draining(const struct a2dp_stream *s);
int a2dp_stream_drained(const struct a2dp_stream *s);

/* The software gain now applied (Q16, 65536 = unity). */
uint32_t a2dp_stream_gain(const struct a2dp_stream *s);

/* 0, -EPIPE after an underrun, -ENODEV when the speaker or bluetoothd went away. */
int a2dp_stream_error(const struct a2dp_stream *s);
/* snd_pcm_delay: the ring, then what lies between it and the listener: sent
 * but not yet due by the clock, queued in the socket, the codec's delay and
 * the sink's reported Delay. */
int64_t a2dp_stream_delay(struct a2dp_stream *s);
/* The delay and a2dp_stream_unshown() both at now_ns, from one reading of
 * the clock: for a source that publishes them together at every packet. */
int64_t a2dp_stream_delay_at(struct a2dp_stream *s, int64_t now_ns, uint64_t *unshown);
/* The delay arithmetic on its own, so it can be tested. */
struct a2dp_delay_parts {
	uint64_t sent, played;       /* clock: frames sent, frames due by now */
	uint64_t in_ring;            /* of those sent, frames the ring still counts */
	size_t queued_bytes;         /* socket memory the queue holds */
	size_t packet_charge;        /* socket memory one packet takes; 0 unknown */
	unsigned packet_frames;      /* PCM frames in one packet */
	unsigned codec_delay;
	unsigned sink_delay;         /* the sink's Delay, 1/10 ms */
	unsigned rate;
};
int64_t a2dp_delay_compose(const struct a2dp_delay_parts *p);

/* The descriptor the application polls: readable when something changed. */
int a2dp_stream_event_fd(const struct a2dp_stream *s);
void a2dp_stream_ack_event(struct a2dp_stream *s);
void a2dp_stream_notify(struct a2dp_stream *s);
void a2dp_stream_get_stats(struct a2dp_stream *s, struct a2dp_stream_stats *st);

#endif
