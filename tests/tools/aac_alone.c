/*
 * aac_alone: what libavcodec's AAC encoder and decoder give on a signal by
 * themselves (no plugin, no LATM, no transport): the reference the end-to-end
 * AAC SNR is held to.
 *
 *   aac_alone IN.raw OUT.raw RATE BITRATE
 *
 * IN: interleaved stereo S16 native-endian; OUT: the decoded signal in the
 * same format, encoder and decoder delays included (2048: the encoder is
 * primed with a frame of silence, as the plugin does). Exit 0, or 1 with a
 * line.
 */
#include <stdio.h>
#include <stdlib.h>

#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/log.h>

#define N 1024

static int fail(const char *what)
{
	fprintf(stderr, "aac_alone: %s\n", what);
	return 1;
}

static void write_frame(FILE *out, const AVFrame *f)
{
	for (int i = 0; i < f->nb_samples; i++)
		for (int c = 0; c < 2; c++) {
			float v = ((const float *)f->data[c])[i] * 32768.0f;
			short s = v > 32767 ? 32767 : v < -32768 ? -32768 : (short)(v < 0 ? v - 0.5f : v + 0.5f);

			fwrite(&s, 2, 1, out);
		}
}

/* Everything the decoder has for what the encoder produced so far. */
static int pump(AVCodecContext *enc, AVCodecContext *dec, AVPacket *pkt, AVFrame *df, FILE *out)
{
	while (avcodec_receive_packet(enc, pkt) == 0) {
		if (avcodec_send_packet(dec, pkt) < 0)
			return -1;
		av_packet_unref(pkt);
		while (avcodec_receive_frame(dec, df) == 0)
			write_frame(out, df);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const AVCodec *ec = avcodec_find_encoder(AV_CODEC_ID_AAC), *dc = avcodec_find_decoder(AV_CODEC_ID_AAC);
	AVCodecContext *enc, *dec;
	AVFrame *f = av_frame_alloc(), *df = av_frame_alloc();
	AVPacket *pkt = av_packet_alloc();
	FILE *in, *out;
	short buf[2 * N];
	size_t got;
	int64_t pts = 0;

	if (argc != 5 || !(in = fopen(argv[1], "rb")) || !(out = fopen(argv[2], "wb")))
		return fail("usage: aac_alone IN.raw OUT.raw RATE BITRATE");
	av_log_set_level(AV_LOG_ERROR);
	if (!ec || !dc || !(enc = avcodec_alloc_context3(ec)) || !(dec = avcodec_alloc_context3(dc)))
		return fail("no AAC in libavcodec");
	enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
	enc->sample_rate = dec->sample_rate = atoi(argv[3]);
	enc->bit_rate = atoi(argv[4]);
	enc->bit_rate_tolerance = 0;
	enc->profile = FF_PROFILE_AAC_LOW;
	av_channel_layout_default(&enc->ch_layout, 2);
	av_channel_layout_default(&dec->ch_layout, 2);
	if (avcodec_open2(enc, ec, NULL) < 0 || !(dec->extradata = av_mallocz(enc->extradata_size + 64)))
		return fail("cannot open the encoder");
	for (int i = 0; i < enc->extradata_size; i++)
		dec->extradata[i] = enc->extradata[i];
	dec->extradata_size = enc->extradata_size;
	if (avcodec_open2(dec, dc, NULL) < 0)
		return fail("cannot open the decoder");
	f->nb_samples = N;
	f->format = AV_SAMPLE_FMT_FLTP;
	av_channel_layout_default(&f->ch_layout, 2);
	if (av_frame_get_buffer(f, 0) < 0)
		return fail("no memory");
	/* A frame of silence first, as the plugin primes the encoder: its rate
	 * control starts from that frame, and the output is delayed by 1024 more. */
	if (av_frame_make_writable(f) < 0)
		return fail("no memory");
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < N; i++)
			((float *)f->data[c])[i] = 0;
	f->pts = pts;
	pts += N;
	if (avcodec_send_frame(enc, f) < 0 || pump(enc, dec, pkt, df, out) < 0)
		return fail("encoding failed");
	while ((got = fread(buf, 4, N, in)) > 0) {
		/* Writable first: the encoder may still hold the last frame's buffer. */
		if (av_frame_make_writable(f) < 0)
			return fail("no memory");
		for (int i = 0; i < N; i++)
			for (int c = 0; c < 2; c++)
				((float *)f->data[c])[i] = (size_t)i < got ? buf[2 * i + c] / 32768.0f : 0;
		f->pts = pts;
		pts += N;
		if (avcodec_send_frame(enc, f) < 0 || pump(enc, dec, pkt, df, out) < 0)
			return fail("encoding failed");
	}
	avcodec_send_frame(enc, NULL);
	pump(enc, dec, pkt, df, out);
	avcodec_free_context(&enc);
	avcodec_free_context(&dec);
	av_frame_free(&f);
	av_frame_free(&df);
	av_packet_free(&pkt);
	fclose(in);
	return fclose(out) ? fail("write failed") : 0;
}
