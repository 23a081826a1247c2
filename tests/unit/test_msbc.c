/* mSBC with its H2 header: a round trip through libsbc checked as audio
 * (alignment, SNR, every frame), over SCO packets of every size headsets
 * use, with frames lost, corrupted and junk between them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../hfp/msbc.h"
#include "check.h"

#define FRAMES 400              /* 3 s */
#define SAMPLES (FRAMES * MSBC_SAMPLES)

static int16_t input[SAMPLES];
static uint8_t stream[FRAMES * MSBC_FRAME_LEN];
static int16_t output[(FRAMES + 8) * MSBC_SAMPLES];

/* A sweep 100 Hz .. 7 kHz at half scale: speech's band. */
static void make_input(void)
{
	double phase = 0;
	int i;

	for (i = 0; i < SAMPLES; i++) {
		double f = 100 * pow(70, (double)i / SAMPLES);

		phase += 2 * M_PI * f / MSBC_RATE;
		input[i] = (int16_t)(16000 * sin(phase));
	}
}

static int encode_all(void)
{
	struct msbc_encoder e;
	int i, bad = 0;

	if (msbc_encoder_init(&e) < 0)
		return -1;
	for (i = 0; i < FRAMES; i++)
		bad += msbc_encode(&e, input + i * MSBC_SAMPLES, stream + i * MSBC_FRAME_LEN) < 0;
	msbc_encoder_free(&e);
	return bad;
}

/* Feeds len bytes in packets of `packet` bytes; returns the frames out. */
static size_t decode_all(struct msbc_decoder *d, const uint8_t *in, size_t len, size_t packet,
			 size_t max_frames_a_call)
{
	size_t off = 0, frames = 0;

	while (off < len) {
		size_t n = len - off < packet ? len - off : packet, done = 0;

		while (done < n) {
			size_t used, room = (FRAMES + 8) - frames;

			if (room > max_frames_a_call)
				room = max_frames_a_call;
			frames += msbc_decode(d, in + off + done, n - done, &used,
					      output + frames * MSBC_SAMPLES, room);
			done += used;
			if (!used && !room)
				return frames;      /* the output is full */
		}
		off += n;
	}
	return frames;
}

/* The codec's delay (samples): the lag that matches best. */
static int best_lag(size_t samples)
{
	double best = -1;
	int lag, at = 0;

	for (lag = 0; lag < 400; lag++) {
		double c = 0;
		size_t i;

		for (i = 4000; i < 12000 && i + lag < samples; i++)
			c += (double)input[i] * output[i + lag];
		if (c > best) {
			best = c;
			at = lag;
		}
	}
	return at;
}

static double snr(int lag, size_t from, size_t to)
{
	double sig = 0, err = 0;
	size_t i;

	for (i = from; i < to; i++) {
		double d = (double)input[i] - output[i + lag];

		sig += (double)input[i] * input[i];
		err += d * d;
	}
	return err > 0 ? 10 * log10(sig / err) : 200;
}

static void test_round_trip(void)
{
	static const size_t packets[] = { 24, 48, 60, 72, 1 };
	size_t k;

	for (k = 0; k < sizeof(packets) / sizeof(packets[0]); k++) {
		struct msbc_decoder d;
		size_t frames;
		int lag;

		msbc_decoder_init(&d);
		frames = decode_all(&d, stream, sizeof(stream), packets[k], FRAMES + 8);
		lag = best_lag(frames * MSBC_SAMPLES);
		CHECK(frames == FRAMES && d.frames == FRAMES && !d.lost && !d.bad,
		      "packets of %zu: %zu frames (%llu good, %llu lost, %llu bad)", packets[k], frames,
		      (unsigned long long)d.frames, (unsigned long long)d.lost,
		      (unsigned long long)d.bad);
		CHECK(d.skipped_bytes == 0, "packets of %zu: %llu bytes skipped", packets[k],
		      (unsigned long long)d.skipped_bytes);
		CHECK(lag == 73, "packets of %zu: lag %d (mSBC's delay: 73 samples)", packets[k], lag);
		CHECK(snr(lag, 0, SAMPLES - lag) > 55, "packets of %zu: SNR %.1f dB (58.2 measured)", packets[k],
		      snr(lag, 0, SAMPLES - lag));
		msbc_decoder_free(&d);
	}
}

/* Frame 100 never arrives, frame 200's sync byte is corrupt, junk before
 * frame 0 and between 300 and 301: every frame still comes out, in time,
 * whatever room the reader gives (1: the concealed ones come a call late). */
static void test_losses(size_t room)
{
	static uint8_t bad[sizeof(stream) + 64];
	struct msbc_decoder d;
	size_t len = 0, frames;
	int i, lag;

	memcpy(bad, "\x01\x08junk\xad\x01", 8);
	len = 8;
	for (i = 0; i < FRAMES; i++) {
		if (i == 100)
			continue;
		memcpy(bad + len, stream + i * MSBC_FRAME_LEN, MSBC_FRAME_LEN);
		if (i == 200)
			bad[len + 2] = 0x9c;        /* SBC's sync, not mSBC's */
		len += MSBC_FRAME_LEN;
		if (i == 300) {
			memcpy(bad + len, "\xf8\x01\x38garbage", 10);
			len += 10;
		}
	}
	msbc_decoder_init(&d);
	frames = decode_all(&d, bad, len, 48, room);
	if (room == 1)          /* what the last call left */
		frames += msbc_decode(&d, NULL, 0, &len, output + frames * MSBC_SAMPLES, 8);
	CHECK(frames == FRAMES && d.lost == 2 && d.frames == FRAMES - 2,
	      "room %zu: %zu frames out (%llu good, %llu concealed)", room, frames,
	      (unsigned long long)d.frames,
	      (unsigned long long)d.lost);
	CHECK(d.skipped_bytes == 8 + MSBC_FRAME_LEN + 10, "%llu bytes skipped",
	      (unsigned long long)d.skipped_bytes);
	lag = best_lag(frames * MSBC_SAMPLES);
	CHECK(lag == 73, "lag %d", lag);
	/* in time: the audio after each loss is where it belongs */
	CHECK(snr(lag, 101 * MSBC_SAMPLES, 199 * MSBC_SAMPLES) > 50 &&
	      snr(lag, 201 * MSBC_SAMPLES, SAMPLES - lag) > 50, "after the losses: %.1f, %.1f dB",
	      snr(lag, 101 * MSBC_SAMPLES, 199 * MSBC_SAMPLES), snr(lag, 201 * MSBC_SAMPLES, SAMPLES - lag));
	msbc_decoder_free(&d);
}

/* A concealed frame fades the last one out; a second is silence. */
static void test_concealment(void)
{
	struct msbc_decoder d;
	size_t frames, used;
	uint8_t two[2 * MSBC_FRAME_LEN];
	int i, peak_last = 0, peak_second = 0;

	memcpy(two, stream, MSBC_FRAME_LEN);
	memcpy(two + MSBC_FRAME_LEN, stream + 3 * MSBC_FRAME_LEN, MSBC_FRAME_LEN);  /* 1, 2 lost */
	msbc_decoder_init(&d);
	frames = msbc_decode(&d, two, sizeof(two), &used, output, 8);
	for (i = 0; i < 10; i++)
		if (abs(output[2 * MSBC_SAMPLES - 10 + i]) > peak_last)
			peak_last = abs(output[2 * MSBC_SAMPLES - 10 + i]);
	for (i = 0; i < MSBC_SAMPLES; i++)
		if (abs(output[2 * MSBC_SAMPLES + i]) > peak_second)
			peak_second = abs(output[2 * MSBC_SAMPLES + i]);
	CHECK(frames == 4 && used == sizeof(two) && d.lost == 2, "%zu frames, %zu used", frames, used);
	CHECK(peak_last < 1500 && peak_second == 0, "the fade ends near 0 (%d), then silence (%d)",
	      peak_last, peak_second);
	msbc_decoder_free(&d);
}

int main(void)
{
	make_input();
	CHECK(encode_all() == 0, "every frame encodes to 57 bytes");
	CHECK(stream[0] == 0x01 && stream[1] == 0x08 && stream[2] == 0xad &&
	      stream[MSBC_FRAME_LEN + 1] == 0x38 && stream[3 * MSBC_FRAME_LEN + 1] == 0xf8 &&
	      stream[4 * MSBC_FRAME_LEN + 1] == 0x08 && stream[MSBC_FRAME_LEN - 1] == 0,
	      "H2 headers, sequence 0..3, pad");
	test_round_trip();
	test_losses(3);
	test_losses(1);
	test_concealment();
	return check_finish();
}
