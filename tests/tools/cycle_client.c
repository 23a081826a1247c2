/*
 * cycle_client: opens, plays a short burst to and closes one ALSA PCM many
 * times in ONE process, and reports what the process holds, so that a test
 * can see leaked file descriptors, threads and heap. Also a client that opens
 * a PCM and holds it before writing (--hold), and one that times each step.
 *
 *   cycle_client -D DEVICE [options]
 *
 *   -n N, --cycles N      open/play/close cycles (default 1000)
 *   --burst-ms MS         audio written per cycle, a 1 kHz tone (default 20)
 *   --every K             a STAT line every K cycles (default 100), and one
 *                         after cycle 10 (the baseline: alsa-lib loads and
 *                         caches its configuration on the first open)
 *   --rate HZ             44100 (default) or 48000
 *   --hold S              after the open, wait S seconds before hw_params
 *                         and the first write (an application that opens
 *                         early); prints HELD when it goes on
 *   --times               a CYCLE line per cycle with how long each step took
 *   --keep-going          an error ends the cycle, not the program
 *   --buffer-ms MS        the ALSA buffer (default 80; periods are 20 ms)
 *
 * Odd cycles (the first one too) drain: snd_pcm_drain returns once the burst
 * has been played. Even cycles drop: snd_pcm_drop as soon as the plugin has
 * taken the first packet's worth of audio from the buffer, so that every
 * cycle really encodes and sends.
 *
 * Output, one line per event (t in seconds of CLOCK_MONOTONIC):
 *   STAT cycle=K fds=N threads=N heap=BYTES heap_src=mallinfo2|sanitizer
 *        rss_kb=N t=T            fds: entries of /proc/self/fd (without the
 *                                one reading it); threads: /proc/self/task;
 *                                heap: bytes in use (mallinfo2 uordblks +
 *                                hblkhd; under a sanitizer, whose malloc
 *                                mallinfo2 does not see, the sanitizer's
 *                                allocated bytes); rss: VmRSS
 *   OPENED t=                    (with --hold) the open returned
 *   HELD t=                      (with --hold) the hold is over
 *   CYCLE i=K mode=drain|drop open_ms= play_ms= end_ms= close_ms= rc=   (--times;
 *                                end: the drain or the drop; rc: 0 or -errno)
 *   ERROR cycle=K where=W err=-N rt=T msg=TEXT   (rt: CLOCK_REALTIME)
 *   DONE cycles=N errors=N total_s=S per_cycle_ms=MS
 * Exit status 0 if every cycle succeeded, 1 otherwise, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#include "count_dir.h"

#define CHANNELS 2
#define BASELINE_CYCLE 10
#define FIRST_PACKET_WAIT_S 0.2

static const char *device;
static long cycles = 1000, burst_ms = 20, every = 100;
static unsigned rate = 44100;
static double hold_s = -1;
static long buffer_ms = 80;
static int times, keep_going;
static size_t (*sanitizer_allocated)(void);
static snd_pcm_uframes_t buffer_frames;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* --- what the process holds --- */

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static size_t heap_in_use(void)
{
	struct mallinfo2 mi;

	if (sanitizer_allocated)
		return sanitizer_allocated();
	mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void stat_line(long cycle)
{
	/* opendir itself holds one descriptor while counting. */
	int fds = count_dir("/proc/self/fd") - 1;

	printf("STAT cycle=%ld fds=%d threads=%d heap=%zu heap_src=%s rss_kb=%ld t=%.6f\n", cycle,
	       fds, count_dir("/proc/self/task"), heap_in_use(), sanitizer_allocated ? "sanitizer" : "mallinfo2",
	       rss_kb(), now_s());
	fflush(stdout);
}

/* --- one cycle --- */

static int report(long cycle, const char *where, int err)
{
	struct timespec rt;

	/* rt: wall-clock time, to compare with when a fault was made in another process */
	clock_gettime(CLOCK_REALTIME, &rt);
	printf("ERROR cycle=%ld where=%s err=%d rt=%.6f msg=%s\n", cycle, where, err,
	       rt.tv_sec + rt.tv_nsec / 1e9, snd_strerror(err));
	fflush(stdout);
	return err;
}

static int setup(snd_pcm_t *pcm, snd_pcm_uframes_t burst)
{
	snd_pcm_hw_params_t *hw;
	snd_pcm_sw_params_t *sw;
	snd_pcm_uframes_t period = rate / 50, buffer = rate * buffer_ms / 1000;   /* 20 ms periods */
	unsigned r = rate;
	int err;

	snd_pcm_hw_params_alloca(&hw);
	snd_pcm_sw_params_alloca(&sw);
	if ((err = snd_pcm_hw_params_any(pcm, hw)) < 0 ||
	    (err = snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED)) < 0 ||
	    (err = snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16_LE)) < 0 ||
	    (err = snd_pcm_hw_params_set_channels(pcm, hw, CHANNELS)) < 0 ||
	    (err = snd_pcm_hw_params_set_rate_near(pcm, hw, &r, NULL)) < 0 ||
	    (err = snd_pcm_hw_params_set_period_size_near(pcm, hw, &period, NULL)) < 0 ||
	    (err = snd_pcm_hw_params_set_buffer_size_near(pcm, hw, &buffer)) < 0 ||
	    (err = snd_pcm_hw_params(pcm, hw)) < 0)
		return err;
	buffer_frames = buffer;
	if (burst > buffer)
		burst = buffer;
	/* Starts as soon as the burst is written. */
	if ((err = snd_pcm_sw_params_current(pcm, sw)) < 0 ||
	    (err = snd_pcm_sw_params_set_start_threshold(pcm, sw, burst)) < 0 ||
	    (err = snd_pcm_sw_params(pcm, sw)) < 0)
		return err;
	return 0;
}

/* Waits (bounded) until the plugin has taken audio from the buffer. */
static void wait_first_packet(snd_pcm_t *pcm, snd_pcm_uframes_t written)
{
	double until = now_s() + FIRST_PACKET_WAIT_S;

	while (now_s() < until) {
		snd_pcm_sframes_t a = snd_pcm_avail(pcm);

		if (a < 0 || (snd_pcm_uframes_t)a > buffer_frames - written)
			return;
		sleep_s(0.001);
	}
}

static int cycle(long i, const int16_t *tone, snd_pcm_uframes_t frames)
{
	snd_pcm_t *pcm;
	snd_pcm_uframes_t done = 0;
	int drain = i % 2 == 1, err;
	double t0 = now_s(), t1, t2 = 0, t3, t4;

	if ((err = snd_pcm_open(&pcm, device, SND_PCM_STREAM_PLAYBACK, 0)) < 0)
		return report(i, "open", err);
	t1 = now_s();
	if (hold_s >= 0) {
		printf("OPENED t=%.6f\n", t1);
		fflush(stdout);
		sleep_s(hold_s);
		printf("HELD t=%.6f\n", now_s());
		fflush(stdout);
	}
	if ((err = setup(pcm, frames)) < 0) {
		report(i, "setup", err);
		goto out;
	}
	while (done < frames) {
		snd_pcm_sframes_t n = snd_pcm_writei(pcm, tone + done * CHANNELS, frames - done);

		if (n < 0) {
			report(i, "write", (int)n);
			err = (int)n;
			goto out;
		}
		done += n;
	}
	t2 = now_s();
	if (drain) {
		if ((err = snd_pcm_drain(pcm)) < 0)
			report(i, "drain", err);
	} else {
		wait_first_packet(pcm, done);
		if ((err = snd_pcm_drop(pcm)) < 0)
			report(i, "drop", err);
	}
out:
	t3 = now_s();
	{
		int rc = snd_pcm_close(pcm);

		if (rc < 0 && !err)
			err = report(i, "close", rc);
	}
	t4 = now_s();
	if (times) {
		if (!t2)
			t2 = t3;
		printf("CYCLE i=%ld mode=%s open_ms=%.1f play_ms=%.1f end_ms=%.1f close_ms=%.1f rc=%d\n",
		       i, drain ? "drain" : "drop", (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
		       (t4 - t3) * 1e3, err);
		fflush(stdout);
	}
	return err;
}

static void usage(void)
{
	fprintf(stderr, "usage: cycle_client -D DEVICE [-n CYCLES] [--burst-ms MS] [--every K] "
			"[--rate HZ] [--hold S] [--times] [--keep-going] [--buffer-ms MS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "cycles", required_argument, NULL, 'n' },
		{ "burst-ms", required_argument, NULL, 'b' },
		{ "every", required_argument, NULL, 'e' },
		{ "rate", required_argument, NULL, 'r' },
		{ "hold", required_argument, NULL, 'H' },
		{ "times", no_argument, NULL, 't' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "buffer-ms", required_argument, NULL, 'B' },
		{ NULL, 0, NULL, 0 },
	};
	snd_pcm_uframes_t frames;
	int16_t *tone;
	long errors = 0;
	double start;
	int c;

	while ((c = getopt_long(argc, argv, "D:n:", longopts, NULL)) != -1) {
		switch (c) {
		case 'D': device = optarg; break;
		case 'n': cycles = atol(optarg); break;
		case 'b': burst_ms = atol(optarg); break;
		case 'e': every = atol(optarg); break;
		case 'r': rate = (unsigned)atol(optarg); break;
		case 'H': hold_s = atof(optarg); break;
		case 't': times = 1; break;
		case 'k': keep_going = 1; break;
		case 'B': buffer_ms = atol(optarg); break;
		default: usage();
		}
	}
	if (!device || cycles < 1 || burst_ms < 1 || every < 1 || !rate || buffer_ms < 40)
		usage();
	/* Under ASan or TSan malloc is the sanitizer's: ask it, mallinfo2 would not see it. */
	*(void **)&sanitizer_allocated = dlsym(RTLD_DEFAULT, "__sanitizer_get_current_allocated_bytes");

	frames = (snd_pcm_uframes_t)rate * burst_ms / 1000;
	if (!(tone = malloc(frames * CHANNELS * sizeof(*tone))))
		return 1;
	for (snd_pcm_uframes_t i = 0; i < frames; i++)
		tone[2 * i] = tone[2 * i + 1] = (int16_t)(8000 * sin(2 * M_PI * 1000.0 * i / rate));

	stat_line(0);
	start = now_s();
	for (long i = 1; i <= cycles; i++) {
		if (cycle(i, tone, frames) < 0) {
			errors++;
			if (!keep_going)
				break;
		}
		if (i == BASELINE_CYCLE || i % every == 0 || i == cycles)
			stat_line(i);
	}
	printf("DONE cycles=%ld errors=%ld total_s=%.3f per_cycle_ms=%.2f\n", cycles, errors,
	       now_s() - start, (now_s() - start) * 1e3 / cycles);
	free(tone);
	/* What a tidy application does at exit: alsa-lib's cached configuration. */
	snd_config_update_free_global();
	return errors ? 1 : 0;
}
