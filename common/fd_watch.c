/* The I/O thread's descriptors in an epoll instance; see fd_watch.h. */
#define _GNU_SOURCE     /* epoll_pwait2, ppoll */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "fd_watch.h"
#include "io_thread.h"

int fd_watch_init(struct fd_watch *w)
{
	memset(w, 0, sizeof(*w));
	for (unsigned i = 0; i < FD_WATCH_SLOTS; i++)
		w->fd[i] = -1;
	w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	return w->epoll_fd < 0 ? -errno : 0;
}

void fd_watch_close(struct fd_watch *w)
{
	if (w->epoll_fd >= 0)
		close(w->epoll_fd);
	w->epoll_fd = -1;
}

static int add_or_modify(struct fd_watch *w, unsigned slot, int fd, struct epoll_event *ev)
{
	/* The same number may be a new file's by now: the old file's entry
	 * went with it (ENOENT), and the new one is added. */
	if (fd == w->fd[slot] && epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, fd, ev) == 0)
		return 0;
	return epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, ev);
}

void fd_watch_set(struct fd_watch *w, unsigned slot, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u32 = slot };

	if (fd == w->fd[slot] && events == w->events[slot])
		return;
	/* A descriptor closed since is gone from the set already: ENOENT. */
	if (w->fd[slot] >= 0 && fd != w->fd[slot])
		epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->fd[slot], NULL);
	if (fd >= 0 && add_or_modify(w, slot, fd, &ev) < 0)
		fd = -1;        /* not pollable: as ppoll, never ready */
	w->fd[slot] = fd;
	w->events[slot] = events;
}

/* epoll_pwait2() (Linux 5.11) takes the timeout in nanoseconds; an older
 * kernel has epoll_wait()'s milliseconds, rounded up so that the thread
 * never wakes before its deadline. A seccomp filter that does not know the
 * call (older container runtimes) refuses it with EPERM, which the call
 * itself never returns: that too means use the old one. */
static _Atomic int no_pwait2;

static int64_t left_ns(int64_t deadline_ns)
{
	int64_t left = deadline_ns - io_now_ns();

	return left > 0 ? left : 0;
}

static int wait_until(struct fd_watch *w, struct epoll_event *ev, int n, int64_t deadline_ns)
{
	int64_t left = deadline_ns ? left_ns(deadline_ns) : 0;
	int got;

	if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
		struct timespec ts = { left / IO_NS, left % IO_NS };

		got = epoll_pwait2(w->epoll_fd, ev, n, deadline_ns ? &ts : NULL, NULL);
		if (got >= 0 || (errno != ENOSYS && errno != EPERM))
			return got;
		atomic_store(&no_pwait2, 1);
	}
	return epoll_wait(w->epoll_fd, ev, n, deadline_ns ? (int)((left + 999999) / 1000000) : -1);
}

/* The epoll set failed for good (its descriptor closed under us by the
 * program, say): the slots polled as ppoll() would, rather than a thread
 * spinning on the error inside the program. */
static int poll_slots(struct fd_watch *w, int64_t deadline_ns)
{
	struct pollfd p[FD_WATCH_SLOTS];
	int64_t left = deadline_ns ? left_ns(deadline_ns) : 0;
	struct timespec ts = { left / IO_NS, left % IO_NS };
	int n;

	for (unsigned i = 0; i < FD_WATCH_SLOTS; i++)
		p[i] = (struct pollfd){ .fd = w->fd[i], .events = (short)w->events[i] };
	if ((n = ppoll(p, FD_WATCH_SLOTS, deadline_ns ? &ts : NULL, NULL)) < 0)
		return -errno;
	for (unsigned i = 0; i < FD_WATCH_SLOTS; i++)   /* POLL* and EPOLL* bits agree */
		w->revents[i] = (uint16_t)p[i].revents;
	return n;
}

int fd_watch_wait(struct fd_watch *w, int64_t deadline_ns)
{
	struct epoll_event ev[FD_WATCH_SLOTS];
	int n = wait_until(w, ev, FD_WATCH_SLOTS, deadline_ns);

	memset(w->revents, 0, sizeof(w->revents));
	if (n < 0 && errno != EINTR)
		return poll_slots(w, deadline_ns);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++)
		w->revents[ev[i].data.u32] = ev[i].events;
	return n;
}
