/*
 * rtp_sink: the test speaker. Reads A2DP media packets from one end of a
 * SOCK_SEQPACKET transport socket, decodes them into a WAV file and logs one
 * CSV line per packet. Codecs: SBC (RTP + payload header, libsbc), aptX (no
 * RTP, raw codewords) and aptX HD (RTP, no payload header), both with
 * libfreeaptx's decoder, and AAC (RTP with the marker bit, LATM) with
 * libavcodec's aac_latm decoder (our LATM is also read back by latm_read);
 * LDAC, which nothing in Debian decodes, is checked frame by frame (sync
 * byte, rate, channels, lengths) and written as silence.
 *
 *   rtp_sink --fd N --wav OUT.wav --log OUT.csv [--mtu M] [--codec sbc|aptx|aptx_hd|aac|ldac]
 *            [--rate R]   (aptX: the stream's rate, which it does not carry)
 *            [--ready-fd N] (writes a byte to N and closes it once it is reading)
 *
 * CSV columns: t_ns,len,seq,ts,ssrc,pt,nframes,pcm_frames,errors
 *   t_ns        arrival time, CLOCK_MONOTONIC in ns: the kernel's receive
 *               timestamp when the socket has SO_TIMESTAMPNS on (the mock sets
 *               it before starting us, so packets queued while we start up
 *               keep their times), else when read
 *   len         packet length in bytes (RTP header included)
 *   seq,ts,ssrc,pt  RTP fields; empty when the packet is not RTP
 *   nframes     frame count from the media payload header (empty if none)
 *   pcm_frames  PCM frames (samples per channel) decoded from this packet
 *               (aptX: carried by it, 4 per codeword)
 *   errors      not RTP (but for aptX) / no payload header / truncated read / longer than
 *               --mtu / each frame that failed to decode or has a sample rate
 *               or channel count different from the first / frame count that
 *               does not match the bytes (count too high, or bytes left over) /
 *               aptX: a payload that is not whole codewords, or codewords that
 *               lost sync / AAC: no marker bit, LATM we cannot read, a frame
 *               the decoder refuses or that gives other than 1024 samples /
 *               LDAC: a frame without the 0xAA sync, of another rate than
 *               --rate or not stereo, frames of different lengths in one
 *               packet, or a count that does not match the bytes
 *
 * The WAV header is rewritten after every packet (data first, then header,
 * each flushed), so a reader always sees a valid file that claims no more
 * data than is on disk. Until the first frame is decoded the header says
 * 44100 Hz stereo with no data. EOF (read of 0, or ECONNRESET and similar),
 * SIGTERM and SIGINT finalise the files and exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <freeaptx.h>
#include <libavcodec/avcodec.h>
#include <sbc/sbc.h>

#include "latm.h"
#include "rtp.h"

#define BUF_SIZE 65536
#define SBC_SYNCWORD 0x9c

struct wav {
	FILE *f;
	unsigned rate;
	unsigned channels;
	uint64_t data_bytes;
};

struct sbc_hdr {
	unsigned rate;
	unsigned channels;
	unsigned blocks;
	unsigned subbands;
	unsigned bitpool;
	unsigned mode;
	size_t length;  /* whole frame in bytes */
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

/* Writes the 44-byte header at the start of the file and returns to the end. */
static int wav_write_header(struct wav *w)
{
	uint8_t h[44];
	uint32_t data = w->data_bytes > 0xffffffffu - 36 ? 0xffffffffu - 36 : (uint32_t)w->data_bytes;
	unsigned align = w->channels * 2;

	memcpy(h, "RIFF", 4);
	put_le32(h + 4, 36 + data);
	memcpy(h + 8, "WAVEfmt ", 8);
	put_le32(h + 16, 16);
	put_le16(h + 20, 1);               /* PCM */
	put_le16(h + 22, w->channels);
	put_le32(h + 24, w->rate);
	put_le32(h + 28, w->rate * align);
	put_le16(h + 32, align);
	put_le16(h + 34, 16);
	memcpy(h + 36, "data", 4);
	put_le32(h + 40, data);

	if (fflush(w->f) || fseek(w->f, 0, SEEK_SET) ||
	    fwrite(h, sizeof(h), 1, w->f) != 1 || fflush(w->f) ||
	    fseek(w->f, 0, SEEK_END))
		return -1;
	return 0;
}

/* Parses an SBC frame header (A2DP 1.3 section 12.6.2) and computes the frame length. */
static int sbc_parse_header(const uint8_t *p, size_t len, struct sbc_hdr *h)
{
	static const unsigned rates[4] = { 16000, 32000, 44100, 48000 };
	unsigned nrof_bits;

	if (len < 4 || p[0] != SBC_SYNCWORD)
		return -1;
	h->rate = rates[p[1] >> 6];
	h->blocks = 4 * (((p[1] >> 4) & 3) + 1);
	h->mode = (p[1] >> 2) & 3;
	h->subbands = p[1] & 1 ? 8 : 4;
	h->bitpool = p[2];
	h->channels = h->mode == SBC_MODE_MONO ? 1 : 2;

	switch (h->mode) {
	case SBC_MODE_MONO:
	case SBC_MODE_DUAL_CHANNEL:
		nrof_bits = h->blocks * h->channels * h->bitpool;
		break;
	case SBC_MODE_STEREO:
		nrof_bits = h->blocks * h->bitpool;
		break;
	default: /* joint stereo */
		nrof_bits = h->subbands + h->blocks * h->bitpool;
		break;
	}
	h->length = 4 + (4 * h->subbands * h->channels) / 8 + (nrof_bits + 7) / 8;
	return 0;
}

enum sink_codec { CODEC_SBC, CODEC_APTX, CODEC_APTX_HD, CODEC_AAC, CODEC_LDAC };

struct sink {
	enum sink_codec codec;
	struct aptx_context *aptx;
	AVCodecContext *aac;
	AVPacket *aac_pkt;
	AVFrame *aac_frame;
	uint8_t loas[BUF_SIZE + 3];
	size_t aac_len;              /* fragments gathered so far (RFC 3016) */
	uint8_t aptx_pcm[BUF_SIZE * 6];   /* 24-bit stereo out of one packet's codewords */
	sbc_t sbc;
	struct sbc_hdr first;      /* format of the first decoded frame */
	int have_format;
	unsigned dec_subbands;     /* configuration the decoder was initialised with */
	unsigned dec_blocks;
	struct wav wav;
	int16_t pcm[2 * 16 * 8];   /* one frame: at most 16 blocks x 8 subbands x 2 channels */
	uint8_t frag[BUF_SIZE];    /* reassembly of a fragmented frame */
	size_t frag_len;
	int frag_active;
	uint64_t total_pcm;
	uint64_t total_errors;
};

/* Decodes one whole SBC frame and appends it to the WAV. Returns PCM frames, or -1. */
static int decode_frame(struct sink *s, const uint8_t *p, size_t len, size_t *consumed)
{
	struct sbc_hdr h;
	size_t written = 0;
	ssize_t ret;

	if (sbc_parse_header(p, len, &h) || h.length > len)
		return -1;
	*consumed = h.length;

	if (!s->have_format) {
		s->first = h;
		s->have_format = 1;
		s->wav.rate = h.rate;
		s->wav.channels = h.channels;
	} else if (h.rate != s->first.rate || h.channels != s->first.channels) {
		return -1;  /* the WAV cannot change format */
	}
	/* libsbc sets up its synthesis state from the first frame only. */
	if (s->dec_subbands && (h.subbands != s->dec_subbands || h.blocks != s->dec_blocks))
		sbc_reinit(&s->sbc, 0);
	s->dec_subbands = h.subbands;
	s->dec_blocks = h.blocks;

	ret = sbc_decode(&s->sbc, p, h.length, s->pcm, sizeof(s->pcm), &written);
	if (ret <= 0 || (size_t)ret != h.length || written == 0)
		return -1;
	if (fwrite(s->pcm, written, 1, s->wav.f) != 1) {
		perror("rtp_sink: write wav");
		return -1;
	}
	s->wav.data_bytes += written;
	return (int)(written / (2 * h.channels));
}

struct pkt_result {
	int nframes;       /* -1 when unknown */
	unsigned pcm_frames;
	unsigned errors;
};

static void handle_media(struct sink *s, const uint8_t *pl, size_t len, struct pkt_result *r)
{
	unsigned count, i;
	size_t off = 1, used;
	int n;

	if (len < 1) {
		r->errors++;
		return;
	}
	count = pl[0] & 0x0f;
	r->nframes = (int)count;

	if (pl[0] & 0x80) {
		/* Fragmented frame: S starts it, L ends it, the count is the fragments left. */
		if (pl[0] & 0x40) {
			s->frag_len = 0;
			s->frag_active = 1;
		} else if (!s->frag_active) {
			r->errors++;
			return;
		}
		if (s->frag_len + len - 1 > sizeof(s->frag)) {
			s->frag_active = 0;
			r->errors++;
			return;
		}
		memcpy(s->frag + s->frag_len, pl + 1, len - 1);
		s->frag_len += len - 1;
		if (pl[0] & 0x20) {
			s->frag_active = 0;
			n = decode_frame(s, s->frag, s->frag_len, &used);
			if (n < 0 || used != s->frag_len)
				r->errors++;
			if (n > 0)
				r->pcm_frames += n;
		}
		return;
	}
	if (s->frag_active) {  /* an unfinished fragmented frame was abandoned */
		s->frag_active = 0;
		r->errors++;
	}

	for (i = 0; i < count; i++) {
		struct sbc_hdr h;

		if (off >= len) {     /* fewer frames than announced */
			r->errors++;
			return;
		}
		used = 0;
		n = decode_frame(s, pl + off, len - off, &used);
		if (n < 0) {
			r->errors++;
			/* Skip a frame whose header is sane; otherwise the rest is lost. */
			if (used == 0) {
				if (sbc_parse_header(pl + off, len - off, &h) || h.length > len - off)
					return;
				used = h.length;
			}
		} else {
			r->pcm_frames += n;
		}
		off += used;
	}
	if (off != len)               /* bytes left over: more frames than announced */
		r->errors++;
}

/* aptX / aptX HD: whole codewords, decoded into 24-bit samples and written
 * to the WAV as 16-bit (rounded). */
static void handle_aptx(struct sink *s, const uint8_t *pl, size_t len, struct pkt_result *r)
{
	size_t cw = s->codec == CODEC_APTX_HD ? 6 : 4, written = 0, dropped = 0, n;
	static int16_t out[BUF_SIZE * 2];
	int synced = 0;

	if (len % cw)
		r->errors++;
	aptx_decode_sync(s->aptx, pl, len - len % cw, s->aptx_pcm, sizeof(s->aptx_pcm),
			 &written, &synced, &dropped);
	if (!synced || dropped)
		r->errors++;
	n = written / 3;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = s->aptx_pcm + 3 * i;
		int32_t v = (int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 24) >> 8;
		int32_t q = (v + 128) >> 8;

		out[i] = q > 32767 ? 32767 : q;
	}
	if (n && fwrite(out, n * 2, 1, s->wav.f) != 1)
		r->errors++;
	s->wav.data_bytes += n * 2;
	/* What the packet carries (the RTP timestamps count these): the decoder
	 * holds its 90-sample start-up back, so the WAV is that much shorter. */
	r->pcm_frames += len / cw * 4;
	r->nframes = (int)(len / cw);
}

/* One AAC frame in LATM, in one packet or in fragments ending with the
 * marker bit (RFC 3016): checked with our reader, decoded by libavcodec's
 * aac_latm decoder, which wants the LOAS sync layer (11-bit sync, 13-bit
 * length) in front. */
static void handle_aac(struct sink *s, const struct rtp_packet *p, struct pkt_result *r)
{
	static uint8_t frame[BUF_SIZE];
	static int16_t out[8192];
	unsigned rate, channels;
	size_t len;

	if (s->aac_len + p->payload_len > BUF_SIZE - 3) {
		s->aac_len = 0;
		r->errors++;
		return;
	}
	memcpy(s->loas + 3 + s->aac_len, p->payload, p->payload_len);
	s->aac_len += p->payload_len;
	r->nframes = 0;
	if (!p->marker)
		return;               /* more of this frame follows */
	len = s->aac_len;
	s->aac_len = 0;
	r->nframes = 1;
	r->pcm_frames += 1024;
	if (latm_read(s->loas + 3, len, &rate, &channels, frame, sizeof(frame)) <= 0 || len > 0x1fff) {
		r->errors++;
		return;
	}
	s->loas[0] = 0x56;
	s->loas[1] = 0xe0 | len >> 8;
	s->loas[2] = len;
	s->aac_pkt->data = s->loas;
	s->aac_pkt->size = len + 3;
	if (avcodec_send_packet(s->aac, s->aac_pkt) < 0) {
		r->errors++;
		return;
	}
	while (avcodec_receive_frame(s->aac, s->aac_frame) == 0) {
		AVFrame *f = s->aac_frame;
		int n = f->nb_samples;

		if (f->format != AV_SAMPLE_FMT_FLTP || f->ch_layout.nb_channels != 2 || n > 4096) {
			r->errors++;
			continue;
		}
		s->wav.rate = f->sample_rate;
		s->wav.channels = 2;
		for (int i = 0; i < n; i++)
			for (int c = 0; c < 2; c++) {
				float v = ((const float *)f->data[c])[i] * 32768.0f;

				out[2 * i + c] = v > 32767 ? 32767 : v < -32768 ? -32768 : (int16_t)lrintf(v);
			}
		if (fwrite(out, (size_t)n * 4, 1, s->wav.f) != 1)
			r->errors++;
		s->wav.data_bytes += (size_t)n * 4;
	}
}

/* LDAC frames, structure only: each a 3-byte header (MSB first: sync 0xAA,
 * rate id 3 bits, channel config 2, frame length - 1 9, status 2) and its
 * bytes. 128 samples a frame at 44.1/48 kHz; written to the WAV as silence. */
static void handle_ldac(struct sink *s, const uint8_t *pl, size_t len, unsigned rate,
			struct pkt_result *r)
{
	static const int16_t zero[128 * 2];
	unsigned count, found = 0, first_len = 0, want_sr = rate == 48000 ? 1 : 0;
	size_t off = 1;

	if (len < 1) {
		r->errors++;
		return;
	}
	count = pl[0] & 0x0f;
	r->nframes = (int)count;
	while (off + 3 <= len) {
		const uint8_t *h = pl + off;
		unsigned sr = h[1] >> 5, cc = (h[1] >> 3) & 3, flen = ((h[1] & 7) << 6 | h[2] >> 2) + 1;

		if (h[0] != 0xaa || sr != want_sr || cc != 2 || (first_len && flen + 3 != first_len) ||
		    off + 3 + flen > len) {
			r->errors++;
			return;
		}
		first_len = flen + 3;
		off += first_len;
		found++;
		if (fwrite(zero, sizeof(zero), 1, s->wav.f) == 1)
			s->wav.data_bytes += sizeof(zero);
	}
	s->wav.rate = rate;
	r->pcm_frames += found * 128;
	if (found != count || off != len)
		r->errors++;
}

/* The decoder, set up for AAC LC stereo at this rate from the start (an
 * AudioSpecificConfig as extradata): otherwise it builds its tables on the
 * first packet, tens of ms during which packets queue and the arrival times
 * logged would look bunched. */
static int aac_open(struct sink *s, unsigned rate)
{
	const AVCodec *c = avcodec_find_decoder_by_name("aac_latm");
	unsigned sfi = rate == 48000 ? 3 : 4;

	if (!c || !(s->aac = avcodec_alloc_context3(c)) ||
	    !(s->aac->extradata = av_mallocz(2 + AV_INPUT_BUFFER_PADDING_SIZE)))
		return -1;
	s->aac->extradata[0] = 2 << 3 | sfi >> 1;          /* AOT 2 (LC), rate index */
	s->aac->extradata[1] = (sfi & 1) << 7 | 2 << 3;    /* 2 channels */
	s->aac->extradata_size = 2;
	if (avcodec_open2(s->aac, c, NULL) < 0 ||
	    !(s->aac_pkt = av_packet_alloc()) || !(s->aac_frame = av_frame_alloc()))
		return -1;
	return 0;
}

/* The kernel's receive timestamp (CLOCK_REALTIME) on CLOCK_MONOTONIC, or now. */
static void arrival_time(struct msghdr *msg, struct timespec *out)
{
	struct cmsghdr *c;
	struct timespec real, mono;

	clock_gettime(CLOCK_MONOTONIC, out);
	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		int64_t ns;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS)
			continue;
		memcpy(&real, CMSG_DATA(c), sizeof(real));
		clock_gettime(CLOCK_REALTIME, &mono);   /* now, on both clocks */
		ns = ((int64_t)out->tv_sec - mono.tv_sec) * 1000000000 + out->tv_nsec - mono.tv_nsec +
		     (int64_t)real.tv_sec * 1000000000 + real.tv_nsec;
		out->tv_sec = ns / 1000000000;
		out->tv_nsec = ns % 1000000000;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: rtp_sink --fd N --wav OUT.wav --log OUT.csv [--mtu M] [--codec sbc|aptx|aptx_hd|aac|ldac] [--rate R] [--ready-fd N]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fd", required_argument, NULL, 'f' },
		{ "wav", required_argument, NULL, 'w' },
		{ "log", required_argument, NULL, 'l' },
		{ "mtu", required_argument, NULL, 'm' },
		{ "codec", required_argument, NULL, 'c' },
		{ "rate", required_argument, NULL, 'r' },
		{ "ready-fd", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct sink s;   /* large buffers: keep off the stack */
	const char *wav_path = NULL, *log_path = NULL;
	long fd = -1, mtu = 0, aptx_rate = 44100;   /* --rate, for aptX and AAC */
	long ready_fd = -1;
	FILE *log;
	uint8_t *buf;
	uint64_t packets = 0;
	sigset_t block, orig;
	struct sigaction sa;
	int c, use_recv = 1;
	char *end;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fd = strtol(optarg, &end, 10);
			if (*end || fd < 0)
				fd = -1;
			break;
		case 'w':
			wav_path = optarg;
			break;
		case 'r':
			aptx_rate = strtol(optarg, &end, 10);
			if (*end || aptx_rate <= 0) {
				fprintf(stderr, "rtp_sink: bad --rate\n");
				return 2;
			}
			break;
		case 'c':
			if (!strcmp(optarg, "aptx"))
				s.codec = CODEC_APTX;
			else if (!strcmp(optarg, "aptx_hd"))
				s.codec = CODEC_APTX_HD;
			else if (!strcmp(optarg, "aac"))
				s.codec = CODEC_AAC;
			else if (!strcmp(optarg, "ldac"))
				s.codec = CODEC_LDAC;
			else if (strcmp(optarg, "sbc")) {
				fprintf(stderr, "rtp_sink: unknown --codec %s\n", optarg);
				return 2;
			}
			break;
		case 'l':
			log_path = optarg;
			break;
		case 'R':
			ready_fd = strtol(optarg, &end, 10);
			if (*end || ready_fd < 0) {
				fprintf(stderr, "rtp_sink: bad --ready-fd\n");
				return 2;
			}
			break;
		case 'm':
			mtu = strtol(optarg, &end, 10);
			if (*end || mtu <= 0) {
				fprintf(stderr, "rtp_sink: bad --mtu\n");
				return 2;
			}
			break;
		default:
			usage();
			return c == 'h' ? 0 : 2;
		}
	}
	if (fd < 0 || !wav_path || !log_path || optind != argc) {
		usage();
		return 2;
	}

	if (fcntl((int)fd, F_GETFD) < 0) {
		fprintf(stderr, "rtp_sink: fd %ld: %s\n", fd, strerror(errno));
		return 2;
	}
	buf = malloc(BUF_SIZE);
	s.wav.f = fopen(wav_path, "wb");
	log = fopen(log_path, "w");
	if (!buf || !s.wav.f || !log) {
		perror("rtp_sink: open");
		return 2;
	}
	s.wav.rate = s.codec == CODEC_SBC ? 44100 : aptx_rate;
	s.wav.channels = 2;
	if (s.codec == CODEC_AAC && aac_open(&s, aptx_rate) < 0) {
		fprintf(stderr, "rtp_sink: no aac_latm decoder\n");
		return 2;
	}
	if ((s.codec == CODEC_APTX || s.codec == CODEC_APTX_HD) &&
	    !(s.aptx = aptx_init(s.codec == CODEC_APTX_HD))) {
		fprintf(stderr, "rtp_sink: aptx_init failed\n");
		return 2;
	}
	if (sbc_init(&s.sbc, 0) || wav_write_header(&s.wav)) {
		fprintf(stderr, "rtp_sink: init failed\n");
		return 2;
	}
	fprintf(log, "t_ns,len,seq,ts,ssrc,pt,nframes,pcm_frames,errors\n");
	fflush(log);

	/* Signals are only delivered inside ppoll, so none is lost between check and wait. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);
	if (ready_fd >= 0) {            /* set up: whoever spawned us may hand the socket over */
		if (write((int)ready_fd, "r", 1) != 1)
			perror("rtp_sink: --ready-fd");
		close((int)ready_fd);
	}

	while (!stop_signal) {
		struct pollfd pfd = { .fd = (int)fd, .events = POLLIN };
		struct pkt_result r = { .nframes = -1 };
		struct rtp_packet pkt;
		struct timespec now;
		ssize_t len;
		int truncated = 0, is_rtp;

		if (ppoll(&pfd, 1, NULL, &orig) < 0) {
			if (errno == EINTR)
				continue;
			perror("rtp_sink: poll");
			break;
		}
		if (use_recv) {
			struct iovec iov = { .iov_base = buf, .iov_len = BUF_SIZE };
			union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(struct timespec))]; } ctl;
			struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
					      .msg_controllen = sizeof(ctl) };

			len = recvmsg((int)fd, &msg, MSG_DONTWAIT);
			if (len < 0 && errno == ENOTSOCK) {
				use_recv = 0;
				continue;
			}
			truncated = !!(msg.msg_flags & MSG_TRUNC);
			arrival_time(&msg, &now);
		} else {
			len = read((int)fd, buf, BUF_SIZE);
			clock_gettime(CLOCK_MONOTONIC, &now);
		}
		if (len < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			if (errno != ECONNRESET && errno != EPIPE && errno != ENOTCONN)
				perror("rtp_sink: read");
			break;
		}
		if (len == 0)
			break;

		packets++;
		if (truncated)
			r.errors++;
		if (mtu && len > mtu)
			r.errors++;
		is_rtp = s.codec != CODEC_APTX && rtp_parse(buf, (size_t)len, &pkt) == 0;
		if (s.codec == CODEC_APTX)
			handle_aptx(&s, buf, (size_t)len, &r);
		else if (is_rtp && s.codec == CODEC_APTX_HD)
			handle_aptx(&s, pkt.payload, pkt.payload_len, &r);
		else if (is_rtp && s.codec == CODEC_AAC)
			handle_aac(&s, &pkt, &r);
		else if (is_rtp && s.codec == CODEC_LDAC)
			handle_ldac(&s, pkt.payload, pkt.payload_len, aptx_rate, &r);
		else if (is_rtp)
			handle_media(&s, pkt.payload, pkt.payload_len, &r);
		else
			r.errors++;
		fflush(s.wav.f);
		if (wav_write_header(&s.wav))
			perror("rtp_sink: write wav header");

		fprintf(log, "%" PRIu64 ",%zd,", (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec, len);
		if (is_rtp)
			fprintf(log, "%u,%" PRIu32 ",%" PRIu32 ",%u,", pkt.seq, pkt.timestamp, pkt.ssrc,
				pkt.payload_type);
		else
			fprintf(log, ",,,,");
		if (r.nframes >= 0)
			fprintf(log, "%d", r.nframes);
		fprintf(log, ",%u,%u\n", r.pcm_frames, r.errors);
		fflush(log);
		s.total_pcm += r.pcm_frames;
		s.total_errors += r.errors;
	}

	if (s.frag_active)
		s.total_errors++;
	if (wav_write_header(&s.wav) || fclose(s.wav.f))
		perror("rtp_sink: finalise wav");
	if (fclose(log))
		perror("rtp_sink: close log");
	sbc_finish(&s.sbc);
	if (s.aptx)
		aptx_finish(s.aptx);
	avcodec_free_context(&s.aac);
	av_packet_free(&s.aac_pkt);
	av_frame_free(&s.aac_frame);
	free(buf);
	fprintf(stderr, "rtp_sink: %" PRIu64 " packets, %" PRIu64 " pcm frames, %" PRIu64
		" errors%s\n", packets, s.total_pcm, s.total_errors,
		stop_signal ? " (signal)" : "");
	return 0;
}
