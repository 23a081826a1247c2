/*
 * pcm_client: a small ALSA playback client for the integration tests. It does
 * what aplay cannot: mmap, non-blocking I/O with an explicit poll loop, pause,
 * a forced underrun with recovery, snd_pcm_delay logging, avail_min wakeups.
 *
 *   pcm_client -D DEVICE -i in.wav [options]
 *
 *   --mmap                 MMAP_INTERLEAVED (mmap_begin/commit), else writei
 *   --nonblock             open with SND_PCM_NONBLOCK; poll loop; drain is
 *                          repeated (-EAGAIN) with poll until it completes
 *   --period-us N          period time (default 50000)
 *   --buffer-us N          buffer time (default 200000)
 *   --pause-at S --pause-for S
 *                          once S seconds of the file have been written,
 *                          snd_pcm_pause(1), sleep, snd_pcm_pause(0)
 *   --sleep-at S --sleep-for S
 *                          once S seconds of the file have been written, stop
 *                          writing for a while (forces an underrun); the XRUN
 *                          is reported, snd_pcm_prepare recovers, play goes on
 *   --vanish-check         any error (even -EPIPE) is final: no recovery,
 *                          ERROR + STATE lines, close, exit 1
 *   --delay-log FILE       DELAY lines go there (default stdout)
 *   --write-then-sleep     blocking writes of 10 ms, usleep(5 ms) in between,
 *                          never polls
 *   --avail-min FRAMES     sw_params avail_min (default: the period); implies
 *                          the explicit poll loop
 *   --poll-log FILE        POLL lines go there (default stdout)
 *   --start-after S        wait S seconds with the buffer filled before the
 *                          first START (an application that opens early)
 *   --timeout S            hard limit on the whole run (default 30)
 *   --nonblock-call        --nonblock, and also snd_pcm_nonblock(pcm, 1) after
 *                          the open (alsa-lib passes only that call, not the
 *                          open mode, on to an ioplug's io->nonblock)
 *   --params-after FILE    after the open, wait for FILE to exist before
 *                          hw_params (the test changes the speaker meanwhile)
 *   --retry-params FILE    if hw_params fails: HW_PARAMS_FAILED, then what an
 *                          application may still do (snd_pcm_dump, the poll
 *                          descriptors and their revents: POLLED), then wait
 *                          for FILE and try hw_params once more
 *
 * The stream is started explicitly (start_threshold = boundary) once the
 * buffer is full, an event position is reached or the file is all written.
 *
 * Output, one line per event, times in seconds of CLOCK_MONOTONIC:
 *   OPEN t=        PARAMS rate= channels= buffer= period= access= nonblock=
 *   START t=       PAUSE t= rc=        RESUME t= rc=
 *   XRUN t= err=-32 where=   RECOVERED t=
 *   DELAY t= frames= written= avail= state=    (~every 50 ms, and just
 *                  before each START with state=PREPARED)
 *   POLL t= avail= revents=0x.. [spurious=1]   (each poll wakeup; spurious =
 *                  no POLLOUT: the client polls again)
 *   DRAIN_BEGIN t= written= avail= delay=
 *   DRAIN_CALL t= rc= took=   (the first snd_pcm_drain call: -EAGAIN at once
 *                  in non-blocking mode)
 *   DRAIN_END t= rc= polls=
 *   ERROR t= where=W err=-N msg=TEXT      STATE t= state=      CLOSED t=
 * Exit status 0 on success, 1 after an ERROR line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#define MAX_XRUNS 20
#define DELAY_EVERY 0.040   /* "about every 50 ms": each write of a 50 ms period logs */
#define POLL_SLICE_MS 1000

struct opts {
	const char *device, *input, *delay_log, *poll_log, *params_after, *retry_params;
	int mmap, nonblock, nonblock_call, vanish_check, write_then_sleep;
	long period_us, buffer_us, avail_min;
	double pause_at, pause_for, sleep_at, sleep_for, timeout, start_after;
};

static struct opts opt = {
	.period_us = 50000, .buffer_us = 200000, .avail_min = -1,
	.pause_at = -1, .sleep_at = -1, .timeout = 30,
};

static snd_pcm_t *pcm;
static FILE *delay_out, *poll_out;
static double deadline;
static unsigned rate, channels;
static int16_t *samples;
static snd_pcm_uframes_t total, written, buffer_size, period_size, avail_min;
static int started, poll_loop;
static double last_delay_log = -1;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void out(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out(FILE *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fflush(f);
}

/* --- the watchdog: nothing may hang, whatever the plugin does --- */

static void *watchdog(void *arg)
{
	struct timespec ts;
	char line[128];
	int n;

	(void)arg;
	ts.tv_sec = (time_t)deadline;
	ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	n = snprintf(line, sizeof(line), "ERROR t=%.6f where=timeout err=%d msg=no progress within --timeout\n",
		     now_s(), -ETIMEDOUT);
	if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
		/* nothing more to do */
	}
	_exit(1);
	return NULL;
}

static int remaining_ms(void)
{
	double left = deadline - now_s();

	if (left <= 0)
		return 0;
	return left * 1000 > POLL_SLICE_MS ? POLL_SLICE_MS : (int)(left * 1000) + 1;
}

static void sleep_s(double s)
{
	double until = now_s() + s;
	struct timespec ts;

	if (until > deadline)
		until = deadline;
	ts.tv_sec = (time_t)until;
	ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* --- WAV input --- */

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const unsigned char *p) { return p[0] | p[1] << 8; }

static int read_wav(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char hdr[12], ch[8], fmt[16];
	int have_fmt = 0;

	if (!f) {
		fprintf(stderr, "pcm_client: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fread(hdr, 1, 12, f) != 12 || memcmp(hdr, "RIFF", 4) || memcmp(hdr + 8, "WAVE", 4))
		goto bad;
	while (fread(ch, 1, 8, f) == 8) {
		uint32_t len = le32(ch + 4);

		if (!memcmp(ch, "fmt ", 4)) {
			uint16_t format;

			if (len < 16 || fread(fmt, 1, 16, f) != 16)
				goto bad;
			format = le16(fmt);
			channels = le16(fmt + 2);
			rate = le32(fmt + 4);
			if ((format != 1 && format != 0xfffe) || le16(fmt + 14) != 16 || !channels || !rate) {
				fprintf(stderr, "pcm_client: %s: only 16-bit PCM WAV\n", path);
				fclose(f);
				return -1;
			}
			have_fmt = 1;
			if (fseek(f, (long)(len - 16 + (len & 1)), SEEK_CUR) < 0)
				goto bad;
		} else if (!memcmp(ch, "data", 4)) {
			size_t frame = (size_t)channels * 2, cap, got;
			long here = ftell(f), end;

			if (!have_fmt || fseek(f, 0, SEEK_END) < 0 || (end = ftell(f)) < here ||
			    fseek(f, here, SEEK_SET) < 0)
				goto bad;
			cap = (size_t)(end - here);
			if (len < cap)
				cap = len;
			samples = malloc(cap + frame);
			if (!samples)
				goto bad;
			got = fread(samples, 1, cap, f);
			total = got / frame;
			fclose(f);
			return 0;
		} else if (fseek(f, (long)(len + (len & 1)), SEEK_CUR) < 0) {
			goto bad;
		}
	}
bad:
	fprintf(stderr, "pcm_client: %s: not a usable WAV file\n", path);
	fclose(f);
	return -1;
}

/* --- errors --- */

static void finish(int code)
{
	if (pcm) {
		snd_pcm_close(pcm);
		out(stdout, "CLOSED t=%.6f\n", now_s());
	}
	exit(code);
}

static void fail(const char *where, int err)
{
	out(stdout, "ERROR t=%.6f where=%s err=%d msg=%s\n", now_s(), where, err, snd_strerror(err));
	if (opt.vanish_check && pcm)
		out(stdout, "STATE t=%.6f state=%s\n", now_s(), snd_pcm_state_name(snd_pcm_state(pcm)));
	finish(1);
}

static int xruns;

/* An error from write/wait/poll/avail: recover from an underrun, else give up. */
static void on_error(const char *where, int err)
{
	if (err == -EPIPE && !opt.vanish_check && ++xruns <= MAX_XRUNS) {
		int rc;

		out(stdout, "XRUN t=%.6f err=%d where=%s\n", now_s(), err, where);
		if ((rc = snd_pcm_prepare(pcm)) < 0)
			fail("prepare", rc);
		out(stdout, "RECOVERED t=%.6f\n", now_s());
		started = 0;
		return;
	}
	fail(where, err);
}

/* The error a POLLERR stands for, as alsa-lib's snd_pcm_wait() maps it. */
static int state_error(void)
{
	switch (snd_pcm_state(pcm)) {
	case SND_PCM_STATE_XRUN: return -EPIPE;
	case SND_PCM_STATE_SUSPENDED: return -ESTRPIPE;
	case SND_PCM_STATE_DISCONNECTED: return -ENODEV;
	default: return -EIO;
	}
}

/* --- logging --- */

static void log_delay(int force)
{
	snd_pcm_sframes_t d = 0, a;
	double t;
	int rc;

	t = now_s();
	if (!force && last_delay_log >= 0 && t - last_delay_log < DELAY_EVERY)
		return;
	last_delay_log = t;
	rc = snd_pcm_delay(pcm, &d);
	t = now_s();
	a = snd_pcm_avail(pcm);
	if (rc < 0)
		out(delay_out, "DELAY t=%.6f frames=err%d written=%lu avail=%ld state=%s\n", t, rc,
		    (unsigned long)written, (long)a, snd_pcm_state_name(snd_pcm_state(pcm)));
	else
		out(delay_out, "DELAY t=%.6f frames=%ld written=%lu avail=%ld state=%s\n", t, (long)d,
		    (unsigned long)written, (long)a, snd_pcm_state_name(snd_pcm_state(pcm)));
}

/* --- setup --- */

static void wait_for_file(const char *path)
{
	while (access(path, F_OK) != 0) {
		if (now_s() > deadline)
			fail("wait", -ETIMEDOUT);
		sleep_s(0.01);
	}
}

/* What an application may do with a PCM whose hw_params failed, before it
 * tries again: none of it may crash or hang. */
static void after_failed_params(int err)
{
	struct pollfd pfds[4];
	unsigned short revents = 0;
	snd_output_t *o;
	int n, rc = 0;

	out(stdout, "HW_PARAMS_FAILED t=%.6f err=%d\n", now_s(), err);
	if (snd_output_buffer_open(&o) == 0) {
		snd_pcm_dump(pcm, o);
		snd_output_close(o);
	}
	n = snd_pcm_poll_descriptors(pcm, pfds, 4);
	if (n > 0) {
		poll(pfds, (nfds_t)n, 0);
		rc = snd_pcm_poll_descriptors_revents(pcm, pfds, (unsigned)n, &revents);
	}
	out(stdout, "POLLED t=%.6f fds=%d rc=%d revents=0x%x\n", now_s(), n, rc, revents);
	wait_for_file(opt.retry_params);
}

static void setup(void)
{
	snd_pcm_hw_params_t *hw;
	snd_pcm_sw_params_t *sw;
	snd_pcm_uframes_t boundary;
	unsigned r = rate, buffer_us = opt.buffer_us, period_us = opt.period_us;
	int dir = 0, err;

	snd_pcm_hw_params_alloca(&hw);
	snd_pcm_sw_params_alloca(&sw);
	if ((err = snd_pcm_hw_params_any(pcm, hw)) < 0 ||
	    (err = snd_pcm_hw_params_set_access(pcm, hw, opt.mmap ? SND_PCM_ACCESS_MMAP_INTERLEAVED
							      : SND_PCM_ACCESS_RW_INTERLEAVED)) < 0 ||
	    (err = snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16_LE)) < 0 ||
	    (err = snd_pcm_hw_params_set_channels(pcm, hw, channels)) < 0 ||
	    (err = snd_pcm_hw_params_set_rate_near(pcm, hw, &r, &dir)) < 0)
		fail("hw_params", err);
	if (r != rate)
		fail("hw_params", -EINVAL);
	if ((err = snd_pcm_hw_params_set_buffer_time_near(pcm, hw, &buffer_us, &dir)) < 0 ||
	    (err = snd_pcm_hw_params_set_period_time_near(pcm, hw, &period_us, &dir)) < 0)
		fail("hw_params", err);
	if ((err = snd_pcm_hw_params(pcm, hw)) < 0 && opt.retry_params) {
		after_failed_params(err);
		err = snd_pcm_hw_params(pcm, hw);
	}
	if (err < 0)
		fail("hw_params", err);
	snd_pcm_hw_params_get_buffer_size(hw, &buffer_size);
	snd_pcm_hw_params_get_period_size(hw, &period_size, &dir);

	avail_min = opt.avail_min > 0 ? (snd_pcm_uframes_t)opt.avail_min : period_size;
	if ((err = snd_pcm_sw_params_current(pcm, sw)) < 0 ||
	    (err = snd_pcm_sw_params_get_boundary(sw, &boundary)) < 0 ||
	    (err = snd_pcm_sw_params_set_start_threshold(pcm, sw, boundary)) < 0 ||
	    (err = snd_pcm_sw_params_set_stop_threshold(pcm, sw, buffer_size)) < 0 ||
	    (err = snd_pcm_sw_params_set_avail_min(pcm, sw, avail_min)) < 0 ||
	    (err = snd_pcm_sw_params(pcm, sw)) < 0)
		fail("sw_params", err);
	out(stdout, "PARAMS rate=%u channels=%u buffer=%lu period=%lu avail_min=%lu access=%s nonblock=%d frames=%lu\n",
	    rate, channels, (unsigned long)buffer_size, (unsigned long)period_size,
	    (unsigned long)avail_min, opt.mmap ? "mmap" : "rw", opt.nonblock, (unsigned long)total);
}

static void start(void)
{
	static int first = 1;
	int err;

	if (first && opt.start_after > 0)
		sleep_s(opt.start_after);
	first = 0;
	log_delay(1);
	if ((err = snd_pcm_start(pcm)) < 0)
		on_error("start", err);
	else {
		started = 1;
		out(stdout, "START t=%.6f\n", now_s());
	}
}

/* --- transfer --- */

static snd_pcm_sframes_t mmap_write(const int16_t *src, snd_pcm_uframes_t n)
{
	snd_pcm_uframes_t done = 0;

	while (done < n) {
		const snd_pcm_channel_area_t *areas;
		snd_pcm_uframes_t off, frames = n - done;
		snd_pcm_sframes_t c;
		int err = snd_pcm_mmap_begin(pcm, &areas, &off, &frames);

		if (err < 0)
			return done ? (snd_pcm_sframes_t)done : err;
		if (!frames)
			break;
		for (snd_pcm_uframes_t i = 0; i < frames; i++)
			for (unsigned c2 = 0; c2 < channels; c2++) {
				const snd_pcm_channel_area_t *a = &areas[c2];

				*(int16_t *)((char *)a->addr + (a->first + (off + i) * a->step) / 8) =
					src[(done + i) * channels + c2];
			}
		c = snd_pcm_mmap_commit(pcm, off, frames);
		if (c < 0)
			return done ? (snd_pcm_sframes_t)done : c;
		done += (snd_pcm_uframes_t)c;
		if ((snd_pcm_uframes_t)c != frames)
			break;
	}
	return (snd_pcm_sframes_t)done;
}

static snd_pcm_sframes_t do_write(snd_pcm_uframes_t n)
{
	const int16_t *src = samples + (size_t)written * channels;

	return opt.mmap ? mmap_write(src, n) : snd_pcm_writei(pcm, src, n);
}

/* Waits for room: the explicit poll loop, or snd_pcm_wait(). */
static void wait_room(void)
{
	if (poll_loop) {
		int n = snd_pcm_poll_descriptors_count(pcm), rc, err;
		struct pollfd pfd[8];
		unsigned short revents = 0;
		snd_pcm_sframes_t a;
		double t;

		if (n <= 0 || n > 8)
			fail("poll", n <= 0 ? n : -EINVAL);
		if ((err = snd_pcm_poll_descriptors(pcm, pfd, (unsigned)n)) < 0)
			fail("poll", err);
		rc = poll(pfd, (nfds_t)n, remaining_ms());
		t = now_s();
		if (rc < 0) {
			if (errno == EINTR)
				return;
			fail("poll", -errno);
		}
		if (rc == 0) {
			out(poll_out, "POLL t=%.6f timeout=1\n", t);
			return;
		}
		if ((err = snd_pcm_poll_descriptors_revents(pcm, pfd, (unsigned)n, &revents)) < 0) {
			out(poll_out, "POLL t=%.6f revents_err=%d\n", t, err);
			on_error("poll", err);
			return;
		}
		a = snd_pcm_avail_update(pcm);
		out(poll_out, "POLL t=%.6f avail=%ld revents=0x%x%s\n", t, (long)a, revents,
		    revents & POLLOUT ? "" : " spurious=1");
		if (revents & (POLLERR | POLLNVAL))
			on_error("poll", a < 0 ? (int)a : state_error());
		else if (a < 0)
			on_error("poll", (int)a);
	} else {
		int rc = snd_pcm_wait(pcm, remaining_ms());

		if (rc < 0)
			on_error("wait", rc);
	}
}

/* The frame position of an event at `at` seconds of the file; at least one
 * frame, so that there is something playing to pause or to starve. */
static snd_pcm_uframes_t position(double at)
{
	snd_pcm_uframes_t f = (snd_pcm_uframes_t)(at * rate + 0.5);

	return f ? f : 1;
}

static snd_pcm_uframes_t next_stop(int pause_done, int sleep_done)
{
	snd_pcm_uframes_t stop = total;

	if (opt.pause_at >= 0 && !pause_done && position(opt.pause_at) < stop)
		stop = position(opt.pause_at);
	if (opt.sleep_at >= 0 && !sleep_done && position(opt.sleep_at) < stop)
		stop = position(opt.sleep_at);
	return stop;
}

static void play(void)
{
	snd_pcm_uframes_t chunk = opt.write_then_sleep ? rate / 100 : period_size;
	int pause_done = 0, sleep_done = 0, use_wait = poll_loop || opt.mmap;

	for (;;) {
		snd_pcm_uframes_t stop = next_stop(pause_done, sleep_done), limit, n;
		snd_pcm_sframes_t avail, r;

		if (now_s() >= deadline)
			fail("timeout", -ETIMEDOUT);
		if (!started && written > 0 && (written >= stop))
			start();
		if (started && written >= stop && stop < total) {
			if (opt.pause_at >= 0 && !pause_done && written >= position(opt.pause_at)) {
				int rc = snd_pcm_pause(pcm, 1);

				out(stdout, "PAUSE t=%.6f rc=%d\n", now_s(), rc);
				if (rc < 0)
					fail("pause", rc);
				log_delay(1);
				sleep_s(opt.pause_for);
				log_delay(1);
				rc = snd_pcm_pause(pcm, 0);
				out(stdout, "RESUME t=%.6f rc=%d\n", now_s(), rc);
				if (rc < 0)
					fail("resume", rc);
				pause_done = 1;
			}
			if (opt.sleep_at >= 0 && !sleep_done && written >= position(opt.sleep_at)) {
				out(stdout, "SLEEP t=%.6f\n", now_s());
				sleep_s(opt.sleep_for);
				out(stdout, "WAKE t=%.6f\n", now_s());
				sleep_done = 1;
			}
			continue;
		}
		if (written >= total)
			break;
		limit = stop - written;
		/* A blocking writer that is running just writes: the write itself
		 * reports an underrun or a lost device, as for any application. */
		avail = use_wait || !started ? snd_pcm_avail_update(pcm) : 0;
		if (avail < 0) {
			on_error("avail", (int)avail);
			continue;
		}
		if (!started && avail == 0) {
			start();
			continue;
		}
		if (use_wait) {
			snd_pcm_uframes_t need = avail_min < limit ? avail_min : limit;

			if (started && (snd_pcm_uframes_t)avail < need) {
				wait_room();
				log_delay(0);
				continue;
			}
			n = (snd_pcm_uframes_t)avail < limit ? (snd_pcm_uframes_t)avail : limit;
			if (opt.write_then_sleep && n > chunk)
				n = chunk;
		} else {
			n = chunk < limit ? chunk : limit;
			if (!started && n > (snd_pcm_uframes_t)avail)
				n = (snd_pcm_uframes_t)avail;
		}
		r = do_write(n);
		if (r == -EAGAIN)
			continue;
		if (r < 0) {
			on_error("write", (int)r);
			continue;
		}
		written += (snd_pcm_uframes_t)r;
		log_delay(0);
		if (opt.write_then_sleep)
			usleep(5000);
	}
	if (!started)
		start();
}

static void drain(void)
{
	snd_pcm_sframes_t d = 0, a = snd_pcm_avail(pcm);
	int rc, polls = 0, first = 1;

	snd_pcm_delay(pcm, &d);
	out(stdout, "DRAIN_BEGIN t=%.6f written=%lu avail=%ld delay=%ld\n", now_s(),
	    (unsigned long)written, (long)a, (long)d);
	for (;;) {
		struct pollfd pfd[8];
		unsigned short revents;
		int n;

		double t0 = now_s();

		rc = snd_pcm_drain(pcm);
		if (first) {
			out(stdout, "DRAIN_CALL t=%.6f rc=%d took=%.6f\n", now_s(), rc, now_s() - t0);
			first = 0;
		}
		if (rc != -EAGAIN)
			break;
		if (now_s() >= deadline)
			break;
		n = snd_pcm_poll_descriptors_count(pcm);
		if (n <= 0 || n > 8 || snd_pcm_poll_descriptors(pcm, pfd, (unsigned)n) < 0) {
			usleep(10000);
			continue;
		}
		polls++;
		if (poll(pfd, (nfds_t)n, remaining_ms() < 100 ? remaining_ms() : 100) > 0)
			snd_pcm_poll_descriptors_revents(pcm, pfd, (unsigned)n, &revents);
	}
	out(stdout, "DRAIN_END t=%.6f rc=%d polls=%d\n", now_s(), rc, polls);
	if (rc < 0)
		fail("drain", rc);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pcm_client -D DEVICE -i in.wav [--mmap] [--nonblock] [--period-us N] [--buffer-us N]\n"
		"       [--pause-at S --pause-for S] [--sleep-at S --sleep-for S] [--vanish-check]\n"
		"       [--delay-log FILE] [--write-then-sleep] [--avail-min FRAMES] [--poll-log FILE]\n"
		"       [--timeout S] [--nonblock-call] [--start-after S]\n");
	exit(2);
}

static FILE *open_log(const char *path)
{
	FILE *f;

	if (!path)
		return stdout;
	if (!(f = fopen(path, "w"))) {
		fprintf(stderr, "pcm_client: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	return f;
}

int main(int argc, char **argv)
{
	enum { OPT_MMAP = 256, OPT_NONBLOCK, OPT_PERIOD, OPT_BUFFER, OPT_PAUSE_AT, OPT_PAUSE_FOR, OPT_SLEEP_AT,
	       OPT_SLEEP_FOR, OPT_VANISH, OPT_DELAY_LOG, OPT_WTS, OPT_AVAIL_MIN, OPT_POLL_LOG, OPT_TIMEOUT, OPT_NONBLOCK_CALL,
	       OPT_START_AFTER, OPT_PARAMS_AFTER, OPT_RETRY_PARAMS };
	static const struct option longopts[] = {
		{ "device", required_argument, NULL, 'D' },
		{ "input", required_argument, NULL, 'i' },
		{ "mmap", no_argument, NULL, OPT_MMAP },
		{ "nonblock", no_argument, NULL, OPT_NONBLOCK },
		{ "period-us", required_argument, NULL, OPT_PERIOD },
		{ "buffer-us", required_argument, NULL, OPT_BUFFER },
		{ "pause-at", required_argument, NULL, OPT_PAUSE_AT },
		{ "pause-for", required_argument, NULL, OPT_PAUSE_FOR },
		{ "sleep-at", required_argument, NULL, OPT_SLEEP_AT },
		{ "sleep-for", required_argument, NULL, OPT_SLEEP_FOR },
		{ "vanish-check", no_argument, NULL, OPT_VANISH },
		{ "delay-log", required_argument, NULL, OPT_DELAY_LOG },
		{ "write-then-sleep", no_argument, NULL, OPT_WTS },
		{ "avail-min", required_argument, NULL, OPT_AVAIL_MIN },
		{ "poll-log", required_argument, NULL, OPT_POLL_LOG },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "nonblock-call", no_argument, NULL, OPT_NONBLOCK_CALL },
		{ "start-after", required_argument, NULL, OPT_START_AFTER },
		{ "params-after", required_argument, NULL, OPT_PARAMS_AFTER },
		{ "retry-params", required_argument, NULL, OPT_RETRY_PARAMS },
		{ NULL, 0, NULL, 0 },
	};
	pthread_t dog;
	int c, err;

	while ((c = getopt_long(argc, argv, "D:i:", longopts, NULL)) != -1) {
		switch (c) {
		case 'D': opt.device = optarg; break;
		case 'i': opt.input = optarg; break;
		case OPT_MMAP: opt.mmap = 1; break;
		case OPT_NONBLOCK: opt.nonblock = 1; break;
		case OPT_PERIOD: opt.period_us = atol(optarg); break;
		case OPT_BUFFER: opt.buffer_us = atol(optarg); break;
		case OPT_PAUSE_AT: opt.pause_at = atof(optarg); break;
		case OPT_PAUSE_FOR: opt.pause_for = atof(optarg); break;
		case OPT_SLEEP_AT: opt.sleep_at = atof(optarg); break;
		case OPT_SLEEP_FOR: opt.sleep_for = atof(optarg); break;
		case OPT_VANISH: opt.vanish_check = 1; break;
		case OPT_DELAY_LOG: opt.delay_log = optarg; break;
		case OPT_WTS: opt.write_then_sleep = 1; break;
		case OPT_AVAIL_MIN: opt.avail_min = atol(optarg); break;
		case OPT_POLL_LOG: opt.poll_log = optarg; break;
		case OPT_TIMEOUT: opt.timeout = atof(optarg); break;
		case OPT_NONBLOCK_CALL: opt.nonblock = opt.nonblock_call = 1; break;
		case OPT_START_AFTER: opt.start_after = atof(optarg); break;
		case OPT_PARAMS_AFTER: opt.params_after = optarg; break;
		case OPT_RETRY_PARAMS: opt.retry_params = optarg; break;
		default: usage();
		}
	}
	if (!opt.device || !opt.input || optind != argc || opt.timeout <= 0 ||
	    opt.period_us <= 0 || opt.buffer_us <= 0)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	deadline = now_s() + opt.timeout;
	if (pthread_create(&dog, NULL, watchdog, NULL) != 0) {
		fprintf(stderr, "pcm_client: cannot start the watchdog\n");
		return 1;
	}
	delay_out = open_log(opt.delay_log);
	poll_out = open_log(opt.poll_log);
	poll_loop = opt.nonblock || opt.avail_min > 0;
	if (read_wav(opt.input) < 0)
		fail("input", -EINVAL);

	if ((err = snd_pcm_open(&pcm, opt.device, SND_PCM_STREAM_PLAYBACK,
				opt.nonblock ? SND_PCM_NONBLOCK : 0)) < 0) {
		pcm = NULL;
		fail("open", err);
	}
	if (opt.nonblock_call && (err = snd_pcm_nonblock(pcm, 1)) < 0)
		fail("nonblock", err);
	out(stdout, "OPEN t=%.6f\n", now_s());
	if (opt.params_after)
		wait_for_file(opt.params_after);
	setup();
	play();
	drain();
	snd_pcm_close(pcm);
	pcm = NULL;
	out(stdout, "CLOSED t=%.6f\n", now_s());
	if (delay_out != stdout)
		fclose(delay_out);
	if (poll_out != stdout)
		fclose(poll_out);
	return 0;
}
