/*
 * The test phone: streams a WAV file as A2DP SBC over RTP into a socket, at
 * real-time pace, as a phone's A2DP Source would. The mock bluetoothd spawns
 * it with the other end of the transport socket it hands the capture PCM.
 *
 *   phone_source --fd 3 --wav in.wav --config 21150235 [--mtu 672]
 *                [--drop 20,21] [--pause-at S --pause-for S] [--log out.csv]
 *
 * --drop: packet indices not sent (their sequence numbers and timestamps are
 * skipped, as a radio loses them). --pause-at/--pause-for: nothing is sent
 * for that long (the audio itself is not skipped: it continues after, with
 * timestamps that continue too; with --clock-runs 1 they jump by the pause,
 * as a phone whose RTP clock keeps running). --log: "index,seq,timestamp,frames,sent_ns".
 * After the file it keeps the socket open, silent, until killed.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sbc/sbc.h>

#include "../../a2dp/rtp.h"

#define MAX_DROPS 64
#define NS 1000000000LL

struct opts {
	int fd;
	const char *wav, *log;
	uint8_t config[4];
	unsigned mtu;
	long drops[MAX_DROPS];
	int ndrops;
	double pause_at, pause_for;
	int clock_runs;
};

static int parse_config(const char *hex, uint8_t *config)
{
	unsigned v[4];

	if (strlen(hex) != 8 || sscanf(hex, "%2x%2x%2x%2x", &v[0], &v[1], &v[2], &v[3]) != 4)
		return -1;
	for (int i = 0; i < 4; i++)
		config[i] = v[i];
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->mtu = 672;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (!strcmp(k, "--fd"))
			o->fd = atoi(v);
		else if (!strcmp(k, "--wav"))
			o->wav = v;
		else if (!strcmp(k, "--log"))
			o->log = v;
		else if (!strcmp(k, "--mtu"))
			o->mtu = atoi(v);
		else if (!strcmp(k, "--config") && parse_config(v, o->config) == 0)
			continue;
		else if (!strcmp(k, "--pause-at"))
			o->pause_at = atof(v);
		else if (!strcmp(k, "--pause-for"))
			o->pause_for = atof(v);
		else if (!strcmp(k, "--clock-runs"))
			o->clock_runs = atoi(v);
		else if (!strcmp(k, "--drop")) {
			char *end = (char *)v;

			while (*end && o->ndrops < MAX_DROPS) {
				o->drops[o->ndrops++] = strtol(end, &end, 10);
				if (*end == ',')
					end++;
			}
		} else {
			fprintf(stderr, "phone_source: bad argument %s %s\n", k, v);
			return -1;
		}
	}
	return o->fd >= 0 && o->wav && o->config[0] ? 0 : -1;
}

/* The PCM of a 16-bit WAV (the tests write plain 44-byte headers). */
static uint8_t *read_wav(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	long size;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 44 && fseek(f, 44, SEEK_SET) == 0 &&
	    (data = malloc(size - 44)) && fread(data, 1, size - 44, f) == (size_t)(size - 44))
		*len = size - 44;
	else {
		free(data);
		data = NULL;
	}
	fclose(f);
	return data;
}

static int dropped(const struct opts *o, long k)
{
	for (int i = 0; i < o->ndrops; i++)
		if (o->drops[i] == k)
			return 1;
	return 0;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
	struct timespec ts = { t / NS, t % NS };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static unsigned rate_of(uint8_t cfg0)
{
	switch (cfg0 & 0xf0) {
	case 0x80: return 16000;
	case 0x40: return 32000;
	case 0x20: return 44100;
	default: return 48000;
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	sbc_t sbc;
	uint8_t packet[4096];
	size_t len, codesize, frame_len, pos = 0;
	uint8_t *pcm;
	unsigned rate, fpp, frame_samples, seq = 1000;
	uint32_t ts = 50000;
	int64_t t0;
	FILE *log = NULL;

	if (parse_args(argc, argv, &o) < 0 || !(pcm = read_wav(o.wav, &len))) {
		fprintf(stderr, "usage: phone_source --fd N --wav F --config HEX [--mtu N] [--drop i,j] [--pause-at S --pause-for S] [--log F]\n");
		return 2;
	}
	if (o.log)
		log = fopen(o.log, "w");
	sbc_init_a2dp(&sbc, 0, o.config, 4);
	sbc.endian = SBC_LE;
	sbc.bitpool = o.config[3];        /* sbc_init_a2dp leaves 32 */
	rate = rate_of(o.config[0]);
	codesize = sbc_get_codesize(&sbc);
	frame_len = sbc_get_frame_length(&sbc);
	frame_samples = codesize / 4;
	fpp = (o.mtu - RTP_HEADER_LEN - 1) / frame_len;
	if (fpp > 15)
		fpp = 15;
	/* The last packet is padded with silence, and one more packet pushes the
	 * codec's delay out: the whole file arrives. */
	{
		size_t step = codesize * fpp, padded = (len + step - 1) / step * step + step;
		uint8_t *more = realloc(pcm, padded);

		if (!more)
			return 1;
		memset(more + len, 0, padded - len);
		pcm = more;
		len = padded;
	}
	t0 = now_ns();
	for (long k = 0; pos + codesize * fpp <= len; k++) {
		int64_t due = t0 + (int64_t)k * fpp * frame_samples * NS / rate;
		size_t n = RTP_HEADER_LEN + 1;

		if (o.pause_for > 0 && due >= t0 + (int64_t)(o.pause_at * NS)) {
			due += (int64_t)(o.pause_for * NS);
			if (o.clock_runs) {           /* once, at the first packet after it */
				ts += (uint32_t)(o.pause_for * rate);
				o.clock_runs = 0;
			}
		}
		sleep_until(due);
		rtp_write_header(packet, seq, ts, 1);
		packet[RTP_HEADER_LEN] = fpp;
		for (unsigned i = 0; i < fpp; i++) {
			ssize_t written = 0;

			sbc_encode(&sbc, pcm + pos, codesize, packet + n, sizeof(packet) - n, &written);
			pos += codesize;
			n += written;
		}
		if (!dropped(&o, k) && send(o.fd, packet, n, MSG_NOSIGNAL) < 0 && errno == EPIPE)
			break;
		if (log)
			fprintf(log, "%ld,%u,%u,%u,%lld,%d\n", k, seq & 0xffff, ts, fpp * frame_samples,
				(long long)now_ns(), dropped(&o, k));
		seq++;
		ts += fpp * frame_samples;
	}
	if (log)
		fclose(log);
	/* A phone keeps the stream open after the song, until the other end
	 * closes it or the mock ends us. */
	struct pollfd p = { .fd = o.fd, .events = 0 };

	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	sbc_finish(&sbc);
	free(pcm);
	return 0;
}
