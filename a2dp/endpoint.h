/*
 * Our A2DP endpoint on one device: RegisterEndpoint, ConnectProfile,
 * the MediaEndpoint1 calls bluetoothd makes to us, and the transport
 * (Acquire/Release, Delay, State) it hands us. A Source (we play to a
 * speaker) or a Sink (a phone plays to us: the capture PCM).
 */
#ifndef A2DP_ENDPOINT_H
#define A2DP_ENDPOINT_H

#include <stdatomic.h>
#include <stdint.h>

#include "bluez.h"
#include "codec.h"

/* One MediaEndpoint1 object of ours: one per codec key (SBC and SBC-XQ share one). */
struct a2dp_sep {
	char path[64];
	const struct a2dp_codec *codec;    /* the first listed codec with its key */
	int registered;
};

/* MediaTransport1.State */
enum a2dp_transport_state { A2DP_IDLE, A2DP_PENDING, A2DP_ACTIVE };

struct a2dp_endpoint {
	struct bluez *bz;
	int sink;                      /* we are the A2DP Sink (capture) */
	struct bluez_device dev;
	/* The codecs we offer, best first; one endpoint each, registered in this
	 * order, since BlueZ tries them in registration order. */
	const struct a2dp_codec *codecs[A2DP_MAX_CODECS];
	int ncodecs;
	struct a2dp_sep seps[A2DP_MAX_CODECS];
	int nseps;
	int exported;                  /* our object paths and filter: installed */
	struct a2dp_codec_prefs prefs;
	const struct a2dp_codec *codec;    /* what the speaker configured; NULL before */
	const struct a2dp_codec *selected_codec;  /* what our last SelectConfiguration chose */

	/* Written while dispatching (the app thread during open, then the I/O thread). */
	volatile int configured;
	char transport[192];
	uint8_t config[A2DP_MAX_CAPS];
	int config_len;
	uint8_t sink_caps[A2DP_MAX_CAPS];
	int sink_caps_len;
	uint8_t selected[A2DP_MAX_CAPS];   /* what we answered SelectConfiguration */
	int selected_len;
	const char *rejected;              /* why we refused what bluetoothd offered */

	int fd;                        /* acquired transport, -1 if none */
	uint16_t read_mtu, write_mtu;

	/* Read by the app thread at any time. */
	atomic_int gone;               /* transport cleared, bluetoothd gone, bus lost */
	atomic_uint delay;             /* sink's Delay, 1/10 ms */
	atomic_int volume;             /* MediaTransport1.Volume, -1 while absent */
	atomic_int state;              /* MediaTransport1.State, enum a2dp_transport_state */

	/* Sink: the TryAcquire in flight (the I/O thread's), NULL if none. */
	DBusPendingCall *acquiring;
	/* Sink: the transport our own delay was last reported on. */
	char delay_reported[192];
	/* Source: the codecs of ours the speaker offers ("aptx:sbc:sbc_xq"), when
	 * BlueZ listed its endpoints during this open; "" if it did not. */
	char offers[A2DP_CODEC_LIST_MAX];
};

/* Registers an endpoint per codec of `codecs` (best first) that can be used
 * here and that the speaker offers, connects and acquires; bounded by
 * deadline_ms. -ENOTSUP (logged, naming what the speaker offers) when
 * nothing is left. BlueZ knows what a speaker offers only while it is
 * connected; before that, `remembered` (ep->offers of an earlier open, NULL
 * or "" if none) stands in, unless it leaves none of `codecs`. */
int a2dp_endpoint_open(struct bluez *bz, const struct bluez_device *dev,
		       const struct a2dp_codec *const *codecs, int ncodecs,
		       const struct a2dp_codec_prefs *prefs, const char *remembered,
		       int64_t deadline_ms, struct a2dp_endpoint **out);
/* The Sink side, for the capture PCM: registers an A2DP Sink endpoint per
 * codec of `codecs` that can decode, connects to the device's A2DP Source
 * and waits for bluetoothd to configure us; the transport is acquired later,
 * when the phone starts streaming (a2dp_endpoint_try_acquire). -ENOTSUP when
 * no listed codec can decode. */
int a2dp_endpoint_open_sink(struct bluez *bz, const struct bluez_device *dev,
			    const struct a2dp_codec *const *codecs, int ncodecs,
			    const struct a2dp_codec_prefs *prefs,
			    int64_t deadline_ms, struct a2dp_endpoint **out);
/* Sink: asks for the transport without blocking (TryAcquire, which works
 * only while State is "pending"). Then call a2dp_endpoint_acquired() after
 * each dispatch: 1 when ep->fd is ours, 0 while waiting, negative on refusal
 * (logged). */
int a2dp_endpoint_try_acquire(struct a2dp_endpoint *ep);
int a2dp_endpoint_acquired(struct a2dp_endpoint *ep);
/* Sink, once acquired: tells the phone our delay (1/10 ms) through the
 * transport's Delay, once per transport. BlueZ sends it as an AVDTP delay
 * report (5.79 and later; earlier ones refuse the write: nothing is lost). */
void a2dp_endpoint_report_delay(struct a2dp_endpoint *ep, unsigned tenths_ms);
/* Sink: the phone closed the socket (it stopped the stream); closes our end
 * and releases the transport without waiting. */
void a2dp_endpoint_drop_fd(struct a2dp_endpoint *ep);

/* Tears the stream down and sets it up again with other preferences (another
 * rate), keeping the codec. */
int a2dp_endpoint_reconfigure(struct a2dp_endpoint *ep, const struct a2dp_codec_prefs *prefs,
			      int64_t deadline_ms);
/* The configured codec cannot run on this link (LDAC's MTU): tears the stream
 * down and sets it up again without it. */
int a2dp_endpoint_drop_codec(struct a2dp_endpoint *ep, int64_t deadline_ms);
/* Releases the transport and unregisters; never blocks for more than about 2 s. */
void a2dp_endpoint_close(struct a2dp_endpoint *ep);

/* Did the speaker configure what we selected? If not (it chose itself), only
 * the configured rate is on offer. */
int a2dp_endpoint_config_is_ours(const struct a2dp_endpoint *ep);

/* The bus fd to poll, and a non-blocking dispatch of whatever arrived. */
int a2dp_endpoint_bus_fd(struct a2dp_endpoint *ep);
void a2dp_endpoint_dispatch(struct a2dp_endpoint *ep);

#endif
