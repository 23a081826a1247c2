/* The I/O thread's descriptors and its state-request handshake. */
#include <errno.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "io_thread.h"

int64_t io_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * IO_NS + ts.tv_nsec;
}

void io_poke(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: it is readable anyway. */
	}
}

void io_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* Nothing pending: fine. */
	}
}

int io_thread_init(struct io_thread *t)
{
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->running = 0;
	t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	t->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	t->timer_fd = -1;
	return t->wake_fd < 0 || t->event_fd < 0 ? -errno : 0;
}

int io_thread_init_timer(struct io_thread *t)
{
	int err = io_thread_init(t);

	if (err)
		return err;
	t->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	return t->timer_fd < 0 ? -errno : 0;
}

int io_thread_start(struct io_thread *t, void *(*fn)(void *), void *arg)
{
	int err = pthread_create(&t->thread, NULL, fn, arg);

	t->running = !err;
	return -err;
}

static void close_fd(int fd)
{
	if (fd >= 0)
		close(fd);
}

void io_thread_destroy(struct io_thread *t, int quit_state)
{
	if (t->running) {
		io_request(t, quit_state);
		pthread_join(t->thread, NULL);
		t->running = 0;
	}
	close_fd(t->wake_fd);
	close_fd(t->event_fd);
	close_fd(t->timer_fd);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
}

void io_request(struct io_thread *t, int want)
{
	pthread_mutex_lock(&t->lock);
	t->want = want;
	t->gen++;
	io_poke(t->wake_fd);
	while (t->seen_gen != t->gen)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

void io_apply_request(struct io_thread *t, void (*apply)(void *arg, int want), void *arg)
{
	pthread_mutex_lock(&t->lock);
	if (t->gen != t->seen_gen) {
		apply(arg, t->want);
		t->seen_gen = t->gen;
		pthread_cond_broadcast(&t->cond);
	}
	pthread_mutex_unlock(&t->lock);
}

void io_clear_underrun(_Atomic int *error)
{
	int underrun = -EPIPE;

	atomic_compare_exchange_strong(error, &underrun, 0);
}
