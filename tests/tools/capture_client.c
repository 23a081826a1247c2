/*
 * capture_client: a small ALSA capture client for the capture tests. It does
 * what arecord cannot: a non-blocking poll loop, snd_pcm_delay logging, the
 * time an error arrives, and the process's file descriptors and threads
 * before the open and after the close.
 *
 *   capture_client -D DEVICE -d SECONDS [-o out.raw] [--period-us N] [--buffer-us N]
 *                  [--stall-at S --stall-for S] [--log-reads FILE]
 *                  [--rewind-at S --rewind N] [--forward-at S --forward N]
 *
 * --stall-at/--stall-for: once S seconds have been read, stop reading for a
 * while (forces an overrun); the XRUN is reported, snd_pcm_prepare and
 * snd_pcm_start recover, reading goes on.
 *
 * --rewind-at S --rewind N / --forward-at S --forward N: once S seconds
 * have been read, snd_pcm_rewind (read the last N frames again) or
 * snd_pcm_forward (skip N), logged as REWIND/FORWARD t= frames= (what it
 * did) at= (frames read before).
 *
 * --log-reads (make bench): one line per snd_pcm_readi() that returned
 * frames, "t_ns,frames,total": CLOCK_MONOTONIC in ns just after it returned,
 * the frames it returned, the frames read so far including them. stdout is
 * unchanged.
 *
 * Output, one line per event, times in seconds of CLOCK_MONOTONIC:
 *   BEFORE fds=N threads=N
 *   OPEN t= rate= channels= buffer= period=
 *   DELAY t= frames= avail= read=        (~every 50 ms)
 *   XRUN t= err=-32     RECOVERED t=
 *   ERROR t= where=W err=-N msg=TEXT
 *   CLOSED t= fds=N threads=N
 * Exit status 0 after SECONDS of audio, 1 after an ERROR line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#include "count_dir.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void counts(const char *tag)
{
	/* the directory stream reading /proc/self/fd is one of them */
	printf("%s t=%.6f fds=%d threads=%d\n", tag, now(), count_dir("/proc/self/fd") - 1,
	       count_dir("/proc/self/task"));
	fflush(stdout);
}

static int fail(const char *where, int err)
{
	printf("ERROR t=%.6f where=%s err=%d msg=%s\n", now(), where, err, snd_strerror(err));
	fflush(stdout);
	return 1;
}

static int setup(snd_pcm_t *pcm, unsigned period_us, unsigned buffer_us)
{
	snd_pcm_hw_params_t *hw;
	snd_pcm_uframes_t buffer, period;
	unsigned rate = 44100;
	int err;

	snd_pcm_hw_params_alloca(&hw);
	if ((err = snd_pcm_hw_params_any(pcm, hw)) < 0 ||
	    (err = snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED)) < 0 ||
	    (err = snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16_LE)) < 0 ||
	    (err = snd_pcm_hw_params_set_channels(pcm, hw, 2)) < 0 ||
	    (err = snd_pcm_hw_params_set_rate_near(pcm, hw, &rate, NULL)) < 0 ||
	    (err = snd_pcm_hw_params_set_buffer_time_near(pcm, hw, &buffer_us, NULL)) < 0 ||
	    (err = snd_pcm_hw_params_set_period_time_near(pcm, hw, &period_us, NULL)) < 0 ||
	    (err = snd_pcm_hw_params(pcm, hw)) < 0)
		return err;
	snd_pcm_get_params(pcm, &buffer, &period);
	printf("OPEN t=%.6f rate=%u channels=2 buffer=%lu period=%lu\n", now(), rate, buffer, period);
	fflush(stdout);
	return 0;
}

static double stall_at = -1, stall_for, rewind_at = -1, forward_at = -1;
static long rewind_n, forward_n;
static FILE *reads_log;

static int recover(snd_pcm_t *pcm, int err)
{
	printf("XRUN t=%.6f err=%d\n", now(), err);
	if ((err = snd_pcm_prepare(pcm)) < 0 || (err = snd_pcm_start(pcm)) < 0)
		return fail("recover", err);
	printf("RECOVERED t=%.6f\n", now());
	fflush(stdout);
	return 0;
}

/* --rewind / --forward: once `*at` seconds are read and alsa-lib allows n
 * frames, moves the pointer (logged as WHAT) and is done. */
static void move_once(snd_pcm_t *pcm, const char *what, double *at, long n, long got,
		      snd_pcm_sframes_t (*allowed)(snd_pcm_t *),
		      snd_pcm_sframes_t (*move)(snd_pcm_t *, snd_pcm_uframes_t))
{
	if (*at < 0 || got < *at * 44100 || allowed(pcm) < n)
		return;
	printf("%s t=%.6f frames=%ld at=%ld\n", what, now(), (long)move(pcm, (snd_pcm_uframes_t)n),
	       got);
	*at = -1;
}

/* Reads until `frames` have been read; logs the delay every 50 ms. */
static int run(snd_pcm_t *pcm, long frames, FILE *out)
{
	int16_t buf[4096 * 2];
	struct pollfd pfd[8];
	int nfds = snd_pcm_poll_descriptors(pcm, pfd, 8);
	double next_log = 0;
	long got = 0;
	int err;

	if ((err = snd_pcm_start(pcm)) < 0)
		return fail("start", err);
	while (got < frames) {
		unsigned short revents;
		snd_pcm_sframes_t n, delay = 0;

		if (poll(pfd, nfds, 2000) <= 0)
			return fail("poll", -ETIMEDOUT);
		if ((err = snd_pcm_poll_descriptors_revents(pcm, pfd, nfds, &revents)) < 0)
			return fail("revents", err);
		if (stall_at >= 0 && got >= stall_at * 44100) {
			usleep((useconds_t)(stall_for * 1e6));
			stall_at = -1;
		}
		/* as far as alsa-lib says it may go (ioplug moves the pointer
		 * without that check), with the hardware pointer brought up to date */
		if ((rewind_at >= 0 || forward_at >= 0) && snd_pcm_avail_update(pcm) < 0)
			rewind_at = forward_at = -1;    /* readi says what went wrong */
		move_once(pcm, "REWIND", &rewind_at, rewind_n, got, snd_pcm_rewindable, snd_pcm_rewind);
		move_once(pcm, "FORWARD", &forward_at, forward_n, got, snd_pcm_forwardable,
			  snd_pcm_forward);
		n = snd_pcm_readi(pcm, buf, 4096);
		if (n == -EAGAIN)
			continue;
		if (n == -EPIPE) {
			if ((err = recover(pcm, n)))
				return err;
			continue;
		}
		if (n < 0)
			return fail("readi", n);
		if (reads_log) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			fprintf(reads_log, "%lld,%ld,%ld\n", (long long)ts.tv_sec * 1000000000 + ts.tv_nsec,
				(long)n, got + (long)n);
		}
		if (out)
			fwrite(buf, 4, n, out);
		got += n;
		if (now() >= next_log) {
			if ((err = snd_pcm_delay(pcm, &delay)) < 0)
				return fail("delay", err);
			printf("DELAY t=%.6f frames=%ld avail=%ld read=%ld\n", now(), (long)delay,
			       (long)snd_pcm_avail(pcm), got);
			next_log = now() + 0.05;
		}
	}
	return 0;
}

static void *note_tid(void *arg)
{
	*(pid_t *)arg = (pid_t)syscall(SYS_gettid);
	return NULL;
}

/* A sanitizer's runtime starts a thread of its own with the first
 * pthread_create: one is made and joined before the counts are taken, and
 * waited for until /proc no longer lists it (pthread_join can return while
 * the kernel still shows the exiting thread: seen as one thread too many
 * before the open). */
static void settle_runtime(void)
{
	char path[64];
	pid_t tid = 0;
	pthread_t t;

	if (pthread_create(&t, NULL, note_tid, &tid) != 0)
		return;
	pthread_join(t, NULL);
	snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tid);
	for (int i = 0; i < 1000 && tid && access(path, F_OK) == 0; i++)
		usleep(1000);
}

int main(int argc, char **argv)
{
	const char *dev = NULL, *path = NULL, *reads_path = NULL;
	unsigned period_us = 20000, buffer_us = 200000;
	double seconds = 1;
	snd_pcm_t *pcm;
	FILE *out = NULL;
	int err, rc;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-D"))
			dev = argv[i + 1];
		else if (!strcmp(argv[i], "-d"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "-o"))
			path = argv[i + 1];
		else if (!strcmp(argv[i], "--period-us"))
			period_us = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--buffer-us"))
			buffer_us = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--stall-at"))
			stall_at = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--stall-for"))
			stall_for = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--rewind-at"))
			rewind_at = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--rewind"))
			rewind_n = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--forward-at"))
			forward_at = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--forward"))
			forward_n = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--log-reads"))
			reads_path = argv[i + 1];
	}
	if (!dev) {
		fprintf(stderr, "usage: capture_client -D DEVICE -d SECONDS [-o out.raw]\n");
		return 2;
	}
	settle_runtime();
	counts("BEFORE");
	if ((err = snd_pcm_open(&pcm, dev, SND_PCM_STREAM_CAPTURE, SND_PCM_NONBLOCK)) < 0)
		return fail("open", err);
	if (path)
		out = fopen(path, "wb");
	if (reads_path && !(reads_log = fopen(reads_path, "w")))
		return fail("log-reads", -errno);
	rc = (err = setup(pcm, period_us, buffer_us)) < 0 ? fail("hw_params", err)
							  : run(pcm, (long)(seconds * 44100), out);
	snd_pcm_close(pcm);
	if (out)
		fclose(out);
	if (reads_log)
		fclose(reads_log);
	snd_config_update_free_global();
	counts("CLOSED");
	return rc;
}
