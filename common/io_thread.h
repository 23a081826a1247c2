/*
 * What the playback stream and the capture share about their I/O thread:
 * its descriptors (a wake-up for it, an event for the application's poll,
 * and the capture's CLOCK_MONOTONIC tick; the playback stream's clock is a
 * deadline of its wait, fd_watch.h), the thread itself, and the handshake by
 * which the application asks for a state change and waits until the thread
 * has made it.
 */
#ifndef ALSABT_IO_THREAD_H
#define ALSABT_IO_THREAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define IO_NS 1000000000LL

struct io_thread {
	int wake_fd;          /* the application wakes the I/O thread */
	int event_fd;         /* the I/O thread wakes the application's poll */
	int timer_fd;         /* io_thread_init_timer()'s, or -1 */
	pthread_t thread;
	int running;
	/* Also guards what the owner keeps beside the state (its clock, stats). */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int want;             /* requested state, by the application */
	unsigned gen, seen_gen;
};

int64_t io_now_ns(void);
/* The frames a clock at rate has counted in ns (0 before it starts), in
 * 128 bits: the product passes 2^64 after 4.4 days at 48 kHz. */
static inline uint64_t io_frames_in(int64_t ns, unsigned rate)
{
	return ns <= 0 ? 0 : (uint64_t)((unsigned __int128)ns * rate / IO_NS);
}
/* An eventfd made readable, or emptied. */
void io_poke(int fd);
void io_drain(int fd);

/* Descriptors and lock; -errno if a descriptor cannot be made. */
int io_thread_init(struct io_thread *t);
/* The timer too (the capture's tick). */
int io_thread_init_timer(struct io_thread *t);
int io_thread_start(struct io_thread *t, void *(*fn)(void *), void *arg);
/* Asks for quit_state and joins the thread (if started), then closes all. */
void io_thread_destroy(struct io_thread *t, int quit_state);

/* prepare: an underrun (-EPIPE) is over; any other error stays, even one
 * the I/O thread sets at this very moment. */
void io_clear_underrun(_Atomic int *error);

/* The application: asks for a state and returns once the thread made it. */
void io_request(struct io_thread *t, int want);
/* The I/O thread: makes a pending request, apply(arg, want) under the lock. */
void io_apply_request(struct io_thread *t, void (*apply)(void *arg, int want), void *arg);

#endif
