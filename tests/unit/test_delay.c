/* The delay arithmetic of snd_pcm_delay beyond the ring buffer. */
#include "../../a2dp/stream.h"
#include "check.h"

int main(void)
{
	struct a2dp_delay_parts p = {
		.sent = 6400, .played = 6400, .frame_bytes = 119, .frame_samples = 128,
		.codec_delay = 73, .sink_delay = 0, .rate = 44100,
	};

	CHECK(a2dp_delay_compose(&p) == 73, "idle: codec only, %lld", (long long)a2dp_delay_compose(&p));
	p.played = 5760;                 /* one 640-frame packet sent ahead of the clock */
	CHECK(a2dp_delay_compose(&p) == 640 + 73, "ahead %lld", (long long)a2dp_delay_compose(&p));
	p.queued_bytes = 5 * 119;        /* that packet still in the socket: not counted twice */
	CHECK(a2dp_delay_compose(&p) == 640 + 73, "queue = ahead %lld", (long long)a2dp_delay_compose(&p));
	p.queued_bytes = 15 * 119;       /* congestion: two more packets queued */
	CHECK(a2dp_delay_compose(&p) == 1920 + 73, "queued %lld", (long long)a2dp_delay_compose(&p));
	p.queued_bytes = 0;
	p.sink_delay = 1500;             /* 150 ms reported by the sink */
	CHECK(a2dp_delay_compose(&p) == 640 + 73 + 6615, "sink %lld", (long long)a2dp_delay_compose(&p));
	p.played = 7000;                 /* the clock ran past what was sent (late thread) */
	CHECK(a2dp_delay_compose(&p) == 73 + 6615, "never negative ahead %lld", (long long)a2dp_delay_compose(&p));
	p.frame_bytes = 0;
	CHECK(a2dp_delay_compose(&p) == 73 + 6615, "no frame size yet");
	return check_finish();
}
