/*
 * The mixer of one speaker: it holds the speaker (a2dp/speaker.h: endpoint,
 * transport, the stream and its clock), and plays the sum of the programs
 * connected to it. Each program keeps ALSA's semantics of its own: its
 * ring, start, pause, drop, drain, underrun and delay; one program's
 * trouble is no other's.
 *
 * Each packet is mixed when it is about to go, in the stream's I/O thread
 * (a2dp_stream_set_source), from what every running program has written: a
 * program's frames leave its ring when they are played, as from a card, and
 * the mix adds no latency. A program that has not written enough by then
 * has underrun, alone; the others play on.
 *
 * Threads: the loop (mixer_run) holds `lock` while it handles anything; the
 * I/O thread only tries it, since the loop may be waiting on the stream.
 */
#ifndef MIX_MIXER_H
#define MIX_MIXER_H

#include <pthread.h>
#include <stdint.h>

#include "mix_proto.h"
#include "speaker.h"

#define MIX_MAX_CLIENTS 16
#define MIX_DEFAULT_LINGER_MS 2000

enum mix_client_state { MC_FREE, MC_NEW, MC_STOPPED, MC_RUNNING, MC_PAUSED, MC_DRAINING };
enum mix_stream_state { SO_OFF, SO_PLAYING, SO_PAUSED, SO_DRAINING };

struct mix_client {
	enum mix_client_state state;
	int fd;                   /* the connection */
	int event_fd;             /* the program's poll; -1 before SETUP */
	struct mix_ring *ring;    /* NULL before SETUP */
	uint8_t *data;
	size_t map_size;
	unsigned buffer;
	int64_t drain_end_ns;     /* DRAINING with all mixed: when the last is heard */
	struct bt_options opt;    /* its HELLO's */
};

struct mixer {
	struct a2dp_speaker sp;
	int opened;               /* the speaker: 1 open, 0 not tried, -errno failed */
	const struct a2dp_codec *choice;  /* the codec it was opened trying first */
	char open_text[MIX_TEXT]; /* why not */
	int listen_fd;            /* -1 for none (the tests drive a mixer directly) */
	int timer_fd;             /* drain ends, the linger */
	unsigned linger_ms;
	struct mix_client clients[MIX_MAX_CLIENTS];
	/* 1 + the highest slot a program has had: the loops run at every
	 * packet look no further (usually one slot, not 16). */
	int top;
	enum mix_stream_state stream_on;
	int64_t *sum;
	unsigned sum_frames;
	int64_t idle_since_ns;    /* no program connected since then; 0 while one is */
	int quit;
	pthread_mutex_t lock;     /* all of the above, between the loop and the I/O thread */
	int ran_out;              /* the last mix ended a drain or made an underrun */
};

/* listen_fd: the bound, listening socket (or -1); first_fd: a first
 * connection (or -1). */
int mixer_init(struct mixer *m, int listen_fd, int first_fd, unsigned linger_ms);
void mixer_free(struct mixer *m);
/* Runs until no program has been connected for the linger time. */
void mixer_run(struct mixer *m);

/* The sum of n frames of nch channels of bits-bit samples, clamped. */
void mix_add(int64_t *sum, const uint8_t *ring, unsigned bits, unsigned buffer, uint64_t from,
	     unsigned n, unsigned nch);
void mix_clamp(uint8_t *out, const int64_t *sum, unsigned bits, unsigned n);

/* alsa-lib's errors (the shared code logs through SNDERR) go to stderr, and
 * the last one to the programs, as the reason of a failure. */
void mixer_catch_errors(void);

#endif
