/*
 * duplex_client: what a VoIP program does with a headset: opens its capture
 * and its playback (one device, one process), and for S seconds writes each
 * period read from the microphone to the earpiece; then closes both and
 * reports what the process holds before the opens and after the closes.
 * Both are opened and closed once before the count, as a warm-up: what
 * alsa-lib caches, and a sanitizer's own thread, are not the plugin's.
 *
 *   duplex_client -D DEVICE [--seconds S] [--rate HZ] [--period-ms MS] [--ahead N]
 *
 * --ahead N: periods of silence written before the loop (default 3): the
 * earpiece's margin against the program being late.
 *
 * Output:
 *   OPENED rate=R period=P buffer=B
 *   DONE periods=N xruns=N
 *   HELD fds_before=N fds_after=N threads_before=N threads_after=N
 *   ERROR where=W err=-N msg=TEXT     (and exit 1)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <alsa/asoundlib.h>

#include "count_dir.h"

static int fail(const char *where, int err)
{
	printf("ERROR where=%s err=%d msg=%s\n", where, err, snd_strerror(err));
	return 1;
}

static int setup(snd_pcm_t *pcm, unsigned rate, snd_pcm_uframes_t period)
{
	snd_pcm_uframes_t buffer = period * 6;
	snd_pcm_hw_params_t *hw;
	int err;

	snd_pcm_hw_params_alloca(&hw);
	if ((err = snd_pcm_hw_params_any(pcm, hw)) < 0 ||
	    (err = snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED)) < 0 ||
	    (err = snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16)) < 0 ||
	    (err = snd_pcm_hw_params_set_channels(pcm, hw, 1)) < 0 ||
	    (err = snd_pcm_hw_params_set_rate(pcm, hw, rate, 0)) < 0 ||
	    (err = snd_pcm_hw_params_set_period_size_near(pcm, hw, &period, NULL)) < 0 ||
	    (err = snd_pcm_hw_params_set_buffer_size_near(pcm, hw, &buffer)) < 0 ||
	    (err = snd_pcm_hw_params(pcm, hw)) < 0)
		return err;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One period read, one written; an xrun on either side is recovered. */
static int loop(snd_pcm_t *cap, snd_pcm_t *play, snd_pcm_uframes_t period, unsigned ahead,
		double seconds, unsigned *periods, unsigned *xruns)
{
	int16_t *buf = calloc(period, sizeof(*buf));
	double end = now_s() + seconds;
	snd_pcm_sframes_t n;
	int err = 0;

	if (!buf)
		return -ENOMEM;
	for (unsigned i = 0; i < ahead && err >= 0; i++)
		err = (int)snd_pcm_writei(play, buf, period);
	if (err >= 0)
		err = snd_pcm_start(cap);
	while (err >= 0 && now_s() < end) {
		if ((n = snd_pcm_readi(cap, buf, period)) < 0) {
			(*xruns)++;
			fprintf(stderr, "capture: %s\n", snd_strerror((int)n));
			err = snd_pcm_recover(cap, (int)n, 1);
			if (err >= 0)
				err = snd_pcm_start(cap);
			continue;
		}
		if ((n = snd_pcm_writei(play, buf, (snd_pcm_uframes_t)n)) < 0) {
			(*xruns)++;
			fprintf(stderr, "playback: %s\n", snd_strerror((int)n));
			err = snd_pcm_recover(play, (int)n, 1);
			continue;
		}
		(*periods)++;
	}
	free(buf);
	return err < 0 ? err : 0;
}

int main(int argc, char **argv)
{
	const char *dev = NULL;
	double seconds = 3;
	unsigned rate = 16000, period_ms = 20, ahead = 3, periods = 0, xruns = 0;
	snd_pcm_t *cap = NULL, *play = NULL;
	int fds0, threads0, err;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-D")) dev = argv[i + 1];
		else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--rate")) rate = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--period-ms")) period_ms = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--ahead")) ahead = (unsigned)atoi(argv[i + 1]);
	}
	if (!dev) {
		fprintf(stderr, "usage: duplex_client -D DEVICE [--seconds S] [--rate HZ] [--period-ms MS]\n");
		return 2;
	}
	if ((err = snd_pcm_open(&cap, dev, SND_PCM_STREAM_CAPTURE, 0)) < 0 ||
	    (err = snd_pcm_open(&play, dev, SND_PCM_STREAM_PLAYBACK, 0)) < 0)
		return fail("warm-up open", err);
	snd_pcm_close(play);
	snd_pcm_close(cap);
	fds0 = count_dir("/proc/self/fd") - 1;
	threads0 = count_dir("/proc/self/task");
	snd_pcm_uframes_t period = rate * period_ms / 1000;

	if ((err = snd_pcm_open(&cap, dev, SND_PCM_STREAM_CAPTURE, 0)) < 0)
		return fail("open capture", err);
	if ((err = snd_pcm_open(&play, dev, SND_PCM_STREAM_PLAYBACK, 0)) < 0)
		return fail("open playback", err);
	if ((err = setup(cap, rate, period)) < 0)
		return fail("capture hw_params", err);
	if ((err = setup(play, rate, period)) < 0)
		return fail("playback hw_params", err);
	printf("OPENED rate=%u period=%lu\n", rate, (unsigned long)period);
	fflush(stdout);
	err = loop(cap, play, period, ahead, seconds, &periods, &xruns);
	if (err < 0)
		return fail("loop", err);
	snd_pcm_drain(play);
	snd_pcm_close(play);
	snd_pcm_close(cap);
	printf("DONE periods=%u xruns=%u\n", periods, xruns);
	printf("HELD fds_before=%d fds_after=%d threads_before=%d threads_after=%d\n", fds0,
	       count_dir("/proc/self/fd") - 1, threads0, count_dir("/proc/self/task"));
	return 0;
}
