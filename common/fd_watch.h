/*
 * The descriptors an I/O thread waits on, kept in one epoll instance.
 *
 * ppoll() re-registers every descriptor at every wait and walks them all
 * again when it wakes; a stream's thread wakes some twenty times a second
 * on its clock alone, with four descriptors of which none is usually
 * ready. Here a wait that times out touches none of them.
 *
 * Each slot holds at most one descriptor (or -1); the owner says before
 * each wait which one, and a slot whose descriptor changed is registered
 * again. A descriptor that reports a hang-up for good (a dead D-Bus
 * connection, a closed socket) must be set to -1 once handled, or the wait
 * returns at once for ever.
 */
#ifndef ALSABT_FD_WATCH_H
#define ALSABT_FD_WATCH_H

#include <stdint.h>

#define FD_WATCH_SLOTS 4

struct fd_watch {
	int epoll_fd;
	int fd[FD_WATCH_SLOTS];         /* as registered, -1 when none */
	uint32_t events[FD_WATCH_SLOTS];
	uint32_t revents[FD_WATCH_SLOTS];   /* the last wait's, per slot */
};

/* -errno if the epoll instance cannot be made. */
int fd_watch_init(struct fd_watch *w);
void fd_watch_close(struct fd_watch *w);
/* The descriptor for a slot (-1: none) and the EPOLL* events it waits for;
 * hang-up and error are always reported. */
void fd_watch_set(struct fd_watch *w, unsigned slot, int fd, uint32_t events);
/* Waits until a descriptor is ready or until deadline_ns on CLOCK_MONOTONIC
 * (0: no deadline). Returns how many slots are ready (their revents set),
 * 0 when the deadline came, or -errno (-EINTR). Should the epoll set fail,
 * the slots are polled instead. */
int fd_watch_wait(struct fd_watch *w, int64_t deadline_ns);

#endif
