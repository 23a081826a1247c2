/* mSBC frames and their H2 synchronisation header (HFP 1.8, section 5.7). */
#include <errno.h>
#include <string.h>

#include "msbc.h"

#define H2_SYNC 0x01
#define SBC_SYNC_MSBC 0xad

/* The second H2 byte carries the frame's sequence number 0..3. */
static const uint8_t h2_seq[4] = { 0x08, 0x38, 0xc8, 0xf8 };

static int h2_seq_of(uint8_t b)
{
	int i;

	for (i = 0; i < 4; i++)
		if (h2_seq[i] == b)
			return i;
	return -1;
}

/* --- encoder ------------------------------------------------------------ */

int msbc_encoder_init(struct msbc_encoder *e)
{
	memset(e, 0, sizeof(*e));
	if (sbc_init_msbc(&e->sbc, 0) < 0)
		return -ENOMEM;
	e->sbc.endian = SBC_LE;
	return 0;
}

void msbc_encoder_free(struct msbc_encoder *e)
{
	sbc_finish(&e->sbc);
}

int msbc_encode(struct msbc_encoder *e, const int16_t *pcm, uint8_t *frame)
{
	ssize_t written = 0;

	frame[0] = H2_SYNC;
	frame[1] = h2_seq[e->seq++ % 4];
	if (sbc_encode(&e->sbc, pcm, MSBC_SAMPLES * 2, frame + 2, MSBC_SBC_LEN, &written) < 0 ||
	    written != MSBC_SBC_LEN)
		return -EIO;
	frame[MSBC_FRAME_LEN - 1] = 0;
	return 0;
}

/* --- decoder ------------------------------------------------------------ */

int msbc_decoder_init(struct msbc_decoder *d)
{
	memset(d, 0, sizeof(*d));
	if (sbc_init_msbc(&d->sbc, 0) < 0)
		return -ENOMEM;
	d->sbc.endian = SBC_LE;
	d->next_seq = -1;
	return 0;
}

void msbc_decoder_free(struct msbc_decoder *d)
{
	sbc_finish(&d->sbc);
}

/* A frame that did not come: the last good one fading out, then silence
 * (a repeat at full level would buzz through a longer loss). */
static void conceal(struct msbc_decoder *d, int16_t *out)
{
	int i;

	if (d->concealing++) {
		memset(out, 0, MSBC_SAMPLES * sizeof(*out));
		return;
	}
	for (i = 0; i < MSBC_SAMPLES; i++)
		out[i] = (int16_t)(d->last[i] * (MSBC_SAMPLES - i) / MSBC_SAMPLES);
}

/* Where the next H2 header + mSBC sync starts in buf, or -1. */
static long find_frame(const uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i + 3 <= len; i++)
		if (buf[i] == H2_SYNC && h2_seq_of(buf[i + 1]) >= 0 && buf[i + 2] == SBC_SYNC_MSBC)
			return (long)i;
	return -1;
}

static void drop(struct msbc_decoder *d, size_t n)
{
	memmove(d->buf, d->buf + n, d->len - n);
	d->len -= n;
}

/* Frames lost before one with sequence number seq (0..3 more than expected). */
static unsigned frames_lost(const struct msbc_decoder *d, int seq)
{
	return d->next_seq < 0 ? 0 : (unsigned)((seq - d->next_seq) & 3);
}

/* The frame at the start of buf (whole) into out[]: first the frames lost
 * before it, concealed, as many as room takes (the rest are owed to the
 * next call), then it.  Returns the frames written; *done once it is. */
static size_t take_frame(struct msbc_decoder *d, int16_t *out, size_t room, int *done)
{
	int seq = h2_seq_of(d->buf[1]);
	size_t n = 0, written = 0;

	*done = 0;
	if (!d->owed_known) {
		d->owed = frames_lost(d, seq);
		d->owed_known = 1;
		d->next_seq = (seq + 1) & 3;
	}
	for (; d->owed && n < room; n++, d->owed--, d->lost++)
		conceal(d, out + n * MSBC_SAMPLES);
	if (n == room)
		return n;
	if (sbc_decode(&d->sbc, d->buf + 2, MSBC_SBC_LEN, out + n * MSBC_SAMPLES,
		       MSBC_SAMPLES * 2, &written) > 0 && written == MSBC_SAMPLES * 2) {
		memcpy(d->last, out + n * MSBC_SAMPLES, sizeof(d->last));
		d->concealing = 0;
		d->frames++;
	} else {
		conceal(d, out + n * MSBC_SAMPLES);
		d->bad++;
	}
	d->owed_known = 0;
	*done = 1;
	return n + 1;
}

/* Drops what cannot start a frame: everything before the next header, or
 * all but the last 2 bytes (a header may begin there).  The pad byte after
 * a frame is not counted as skipped. */
static void skip_to_frame(struct msbc_decoder *d)
{
	long at = find_frame(d->buf, d->len);
	size_t n = at >= 0 ? (size_t)at : d->len > 2 ? d->len - 2 : 0;

	if (!n)
		return;
	d->skipped_bytes += n - (d->after_frame && d->buf[0] == 0);
	d->after_frame = 0;
	drop(d, n);
}

size_t msbc_decode(struct msbc_decoder *d, const uint8_t *in, size_t len, size_t *used,
		   int16_t *pcm, size_t max_frames)
{
	size_t out = 0;

	*used = 0;
	for (;;) {
		size_t n;

		skip_to_frame(d);
		if (d->len >= MSBC_FRAME_LEN - 1 && find_frame(d->buf, 3) == 0) {
			int done;

			if (out == max_frames)
				return out;     /* no room: the frame waits */
			out += take_frame(d, pcm + out * MSBC_SAMPLES, max_frames - out, &done);
			if (done) {
				drop(d, MSBC_FRAME_LEN - 1);
				d->after_frame = 1;
			}
			continue;
		}
		if (*used == len)
			return out;
		n = len - *used < sizeof(d->buf) - d->len ? len - *used : sizeof(d->buf) - d->len;
		memcpy(d->buf + d->len, in + *used, n);
		d->len += n;
		*used += n;
	}
}
