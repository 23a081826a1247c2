/* The delay arithmetic of snd_pcm_delay beyond the ring buffer. */
#include "../../a2dp/stream.h"
#include "check.h"

#define D(p) ((long long)a2dp_delay_compose(p))

int main(void)
{
	/* 5 frames of 128 a packet; one 608-byte packet charges 1280 bytes of
	 * socket memory (measured on AF_UNIX). */
	struct a2dp_delay_parts p = {
		.sent = 6400, .played = 6400, .packet_charge = 1280, .packet_frames = 640,
		.codec_delay = 73, .sink_delay = 0, .rate = 44100,
	};

	CHECK(D(&p) == 73, "idle: codec only, %lld", D(&p));
	p.played = 5760;                 /* one packet sent ahead of the clock */
	CHECK(D(&p) == 640 + 73, "ahead %lld", D(&p));
	p.queued_bytes = 1280;           /* that packet still in the socket: not counted twice */
	CHECK(D(&p) == 640 + 73, "queue = ahead %lld", D(&p));
	p.queued_bytes = 3 * 1280;       /* congestion: two more packets queued */
	CHECK(D(&p) == 1920 + 73, "queued %lld", D(&p));
	p.queued_bytes = 3 * 1280 - 100; /* charges are rounded to whole packets */
	CHECK(D(&p) == 1920 + 73, "rounded %lld", D(&p));
	p.queued_bytes = 0;
	p.sink_delay = 1500;             /* 150 ms reported by the sink */
	CHECK(D(&p) == 640 + 73 + 6615, "sink %lld", D(&p));
	p.played = 7000;                 /* the clock ran past what was sent (late thread) */
	CHECK(D(&p) == 73 + 6615, "never negative ahead %lld", D(&p));
	p.sink_delay = 0;
	p.played = 5760;
	p.sent = 7040;                   /* a packet sent early, still counted in the ring */
	p.in_ring = 640;
	CHECK(D(&p) == 640 + 73, "early packet counted once %lld", D(&p));
	p.queued_bytes = 2 * 1280;       /* both packets still in the socket */
	CHECK(D(&p) == 640 + 73, "early packet in the socket, once %lld", D(&p));
	p.queued_bytes = 4 * 1280;       /* and two more before them */
	CHECK(D(&p) == 1920 + 73, "queued beyond the early packet %lld", D(&p));
	p.sent = 7680;                   /* two sent early (EARLY_NS), both in the ring */
	p.in_ring = 1280;
	p.queued_bytes = 0;
	CHECK(D(&p) == 640 + 73, "two early packets counted once %lld", D(&p));
	p.queued_bytes = 3 * 1280;       /* all three still in the socket */
	CHECK(D(&p) == 640 + 73, "two early packets in the socket, once %lld", D(&p));
	p.queued_bytes = 5 * 1280;       /* and two more before them */
	CHECK(D(&p) == 1920 + 73, "queued beyond the two early packets %lld", D(&p));
	p.in_ring = 0;
	p.sent = 6400;
	p.played = 7000;
	p.sink_delay = 1500;
	p.queued_bytes = 0;
	p.packet_charge = 0;             /* not learned yet: the queue is not counted */
	p.queued_bytes = 5000;
	CHECK(D(&p) == 73 + 6615, "no packet charge yet %lld", D(&p));
	return check_finish();
}
