/*
 * The receive side (the capture PCM): a thread that reads RTP packets from
 * the transport a phone streams on, decodes them into the jitter buffer, and
 * delivers PCM into a ring the application reads, clocked by a monotonic
 * timer at the stream's nominal rate.
 *
 * Threads: the application thread owns the ring's read side (appl), the state
 * requests and avail_min; the I/O thread owns the socket, the decoder, the
 * jitter buffer, the ring's write side (hw), the clock and the D-Bus
 * connection once the stream exists.
 */
#ifndef A2DP_CAPTURE_H
#define A2DP_CAPTURE_H

#include <stdint.h>

#include "codec.h"
#include "endpoint.h"
#include "volume.h"

struct a2dp_capture;

struct a2dp_capture_opts {
	unsigned jitter_ms;       /* depth before delivering */
	int wait_on_pause;        /* nothing to deliver: wait (else deliver silence) */
};

/* ep: configured as a Sink (a2dp_endpoint_open_sink); it must outlive the
 * capture. vs: the phone's volume and mute, applied as gain (the phone's
 * AVRCP volume slider, or the mixer), or NULL for none; it must outlive the
 * capture too. */
int a2dp_capture_new(struct a2dp_capture **c, struct a2dp_endpoint *ep,
		     const struct a2dp_codec *codec, const struct a2dp_capture_opts *opts,
		     struct volume_store *vs);
void a2dp_capture_free(struct a2dp_capture *c);

unsigned a2dp_capture_rate(const struct a2dp_capture *c);
unsigned a2dp_capture_channels(const struct a2dp_capture *c);
unsigned a2dp_capture_sample_bits(const struct a2dp_capture *c);

/* With the capture stopped: the ring size in frames (the ALSA buffer). */
int a2dp_capture_set_buffer(struct a2dp_capture *c, unsigned frames);
void *a2dp_capture_ring(struct a2dp_capture *c);
uint64_t a2dp_capture_hw(const struct a2dp_capture *c);     /* frames delivered */
uint64_t a2dp_capture_appl(const struct a2dp_capture *c);   /* frames read */
void a2dp_capture_consume(struct a2dp_capture *c, unsigned frames);
void a2dp_capture_set_avail_min(struct a2dp_capture *c, unsigned frames);

void a2dp_capture_prepare(struct a2dp_capture *c);
void a2dp_capture_start(struct a2dp_capture *c);
void a2dp_capture_stop(struct a2dp_capture *c);
void a2dp_capture_pause(struct a2dp_capture *c, int enable);

/* 0, -EPIPE after an overrun, -ENODEV when the phone or bluetoothd went away. */
int a2dp_capture_error(const struct a2dp_capture *c);
/* Frames received but not yet delivered into the ring (the jitter buffer). */
unsigned a2dp_capture_buffered(const struct a2dp_capture *c);

/* The descriptor the application polls: readable when something changed. */
int a2dp_capture_event_fd(const struct a2dp_capture *c);
void a2dp_capture_ack_event(struct a2dp_capture *c);
void a2dp_capture_notify(struct a2dp_capture *c);

#endif
