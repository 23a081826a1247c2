/*
 * What a program and the mixer of its speaker say to each other, and the
 * ring they share.
 *
 * Several programs play to one speaker through one mixer process per
 * speaker (alsa-bt-mixer, started by the first program that opens it; see
 * mix_spawn.h). Each program has:
 *  - a SOCK_SEQPACKET connection: requests (struct mix_msg) that the mixer
 *    answers one by one; its end (HUP) tells either side the other is gone;
 *  - a ring in a sealed memfd (struct mix_ring below, then the samples) that
 *    the program fills and the mixer takes from, as an ALSA ring;
 *  - an eventfd the mixer pokes when the program's avail reaches avail_min
 *    or its state changed: the program's poll descriptor.
 * Both sides are one build: a version mismatch (an old mixer still playing
 * after an upgrade) is refused at HELLO, never interpreted.
 */
#ifndef MIX_PROTO_H
#define MIX_PROTO_H

#include <stdatomic.h>
#include <stdint.h>

#include "options.h"

#define MIX_VERSION 2
#define MIX_RING_MAGIC 0x6d697872u     /* "mixr" */
#define MIX_MAX_RATES 8
#define MIX_TEXT 200

enum mix_msg_type {
	MIX_HELLO = 1,    /* -> rates on offer, format, min buffer; or the error */
	MIX_SETUP,        /* rate, buffer; SCM_RIGHTS: the ring's memfd, the eventfd */
	MIX_PREPARE,
	MIX_START,
	MIX_STOP,
	MIX_PAUSE,        /* value 1 pause, 0 resume */
	MIX_DRAIN,
	MIX_REPLY = 0x100,
	MIX_NOTICE = 0x200,  /* the mixer, unasked: a line for the program to log (text) */
};

struct mix_msg {
	uint32_t type;
	uint32_t version;
	int32_t value;            /* a reply: 0 or -errno */
	uint32_t rate;            /* SETUP, HELLO's reply: the stream's rate now */
	uint32_t channels, sample_bits;
	uint32_t buffer;          /* SETUP: the ring's frames */
	uint32_t min_buffer;      /* HELLO's reply: the smallest ring that keeps the sink fed */
	uint32_t n_rates;         /* HELLO's reply: the rates a SETUP may ask for */
	uint32_t rates[MIX_MAX_RATES];
	char text[MIX_TEXT];      /* a failed reply: the one line to log; HELLO: the speaker */
};

/* HELLO: the program's options. The first program's open the speaker;
 * later ones play with what the speaker was opened with. */
struct mix_hello {
	struct mix_msg msg;
	uint32_t opt_size;        /* sizeof(struct bt_options): the same build */
	struct bt_options opt;
};

/* The ring's header, at offset 0 of the memfd; the samples follow at
 * MIX_RING_DATA. Each field says who writes it; the other side only reads. */
struct mix_ring {
	uint32_t magic, version;
	uint32_t buffer, frame_bytes;            /* fixed at SETUP */
	/* The program. */
	_Atomic uint64_t appl;
	_Atomic uint32_t avail_min;
	/* The mixer. */
	_Atomic uint64_t hw;
	_Atomic int32_t error;                   /* 0, -EPIPE, -ENODEV */
	_Atomic uint32_t drained;
	/* The speaker's side of the delay, as the mixer last measured it: the
	 * program's frames already mixed are in it. Under seq (odd: being
	 * written). */
	_Atomic uint32_t seq;
	_Atomic int64_t delay_frames;            /* mixed, not yet heard */
	_Atomic int64_t delay_at_ns;             /* CLOCK_MONOTONIC of the measure */
	_Atomic uint32_t clock_running;          /* the delay goes down with the clock */
	/* Of hw, the frames the pointer does not show yet (a packet mixed
	 * before its time): it goes down with the clock too, so that the
	 * pointer runs no further ahead of the clock than a card's. Under seq
	 * with hw, as the mixer moves both at once. */
	_Atomic int64_t unshown_frames;
	char error_text[MIX_TEXT];               /* why error became -ENODEV */
};

#define MIX_RING_DATA 4096

#endif
