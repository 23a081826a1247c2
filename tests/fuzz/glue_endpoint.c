/* Glue of fuzz_dbus_endpoint to a2dp/endpoint.c (its handlers are static). */
#include "../../a2dp/endpoint.c"

#include "dbus_glue.h"
#include "fuzz_common.h"

struct a2dp_endpoint *glue_endpoint_new(int configured, unsigned rate, unsigned bitpool)
{
	struct a2dp_endpoint *ep = calloc(1, sizeof(*ep));

	if (!ep)
		abort();
	snprintf(ep->dev.path, sizeof(ep->dev.path), "%s", FUZZ_DEVICE_PATH);
	snprintf(ep->dev.address, sizeof(ep->dev.address), "%s", FUZZ_DEVICE_ADDR);
	snprintf(ep->dev.adapter, sizeof(ep->dev.adapter), "hci0");
	snprintf(ep->dev.adapter_path, sizeof(ep->dev.adapter_path), "%s", FUZZ_ADAPTER_PATH);
	snprintf(ep->seps[0].path, sizeof(ep->seps[0].path), "%s", FUZZ_ENDPOINT_PATH);
	ep->seps[0].codec = ep->codecs[0] = ep->codec = &a2dp_codec_sbc;
	ep->seps[0].registered = 1;
	ep->nseps = ep->ncodecs = 1;
	/* The plugins only listen to bluetoothd's unique name (no bus: conn NULL). */
	if (!(ep->bz = calloc(1, sizeof(*ep->bz))))
		abort();
	snprintf(ep->bz->owner, sizeof(ep->bz->owner), "%s", FUZZ_BLUEZ_UNIQUE);
	ep->prefs.rate = rate;
	ep->prefs.bitpool = bitpool;
	ep->fd = -1;
	atomic_init(&ep->volume, -1);
	if (configured) {
		static const uint8_t config[] = { 0x21, 0x15, 2, 53 };

		ep->configured = 1;
		snprintf(ep->transport, sizeof(ep->transport), "%s", FUZZ_TRANSPORT_PATH);
		memcpy(ep->config, config, sizeof(config));
		ep->config_len = sizeof(config);
	}
	return ep;
}

void glue_endpoint_free(struct a2dp_endpoint *ep)
{
	free(ep->bz);
	free(ep);
}

DBusHandlerResult glue_endpoint_message(struct a2dp_endpoint *ep, DBusMessage *msg)
{
	/* libdbus calls the handler registered for our exact object path. */
	if (!dbus_message_has_path(msg, ep->seps[0].path))
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	/* conn is never used but by dbus_connection_send, which the target replaces. */
	return endpoint_message(NULL, msg, ep);
}

void glue_endpoint_filter(struct a2dp_endpoint *ep, DBusMessage *msg)
{
	INVARIANT(endpoint_filter(NULL, msg, ep) == DBUS_HANDLER_RESULT_NOT_YET_HANDLED,
		  "the filter must leave messages to the object handlers");
}

void glue_endpoint_check(const struct a2dp_endpoint *ep)
{
	struct a2dp_format fmt;

	INVARIANT(memchr(ep->transport, 0, sizeof(ep->transport)), "transport path unterminated");
	INVARIANT(ep->sink_caps_len >= 0 && ep->sink_caps_len <= A2DP_MAX_CAPS,
		  "sink_caps_len %d", ep->sink_caps_len);
	INVARIANT(ep->config_len >= 0 && ep->config_len <= A2DP_MAX_CAPS,
		  "config_len %d", ep->config_len);
	if (ep->configured) {
		INVARIANT(ep->transport[0] == '/', "configured without a transport path");
		INVARIANT(ep->codec->parse_config(ep->config, ep->config_len, &fmt) == 0,
			  "configured with a configuration parse_config refuses");
		INVARIANT(fmt.channels == 1 || fmt.channels == 2, "channels %u", fmt.channels);
	}
	INVARIANT(atomic_load(&ep->volume) >= -1 && atomic_load(&ep->volume) <= 65535,
		  "volume %d", atomic_load(&ep->volume));
	if (fuzz_strict())
		/* MediaTransport1.Volume is 0..127 (BlueZ's media-api). */
		INVARIANT(atomic_load(&ep->volume) <= 127,
			  "[strict] speaker volume %d taken from bluetoothd unchecked",
			  atomic_load(&ep->volume));
}

unsigned long glue_endpoint_digest(const struct a2dp_endpoint *ep)
{
	unsigned long h = 5381;
	const unsigned char *p;

#define MIX(ptr, len) for (p = (const unsigned char *)(ptr); p < (const unsigned char *)(ptr) + (len); p++) \
		h = h * 33 + *p
	int configured = ep->configured, gone = atomic_load(&ep->gone);
	int registered = ep->seps[0].registered, volume = atomic_load(&ep->volume);
	unsigned delay = atomic_load(&ep->delay);

	MIX(&configured, sizeof(configured));
	MIX(&gone, sizeof(gone));
	MIX(&registered, sizeof(registered));
	MIX(&volume, sizeof(volume));
	MIX(&delay, sizeof(delay));
	MIX(ep->transport, strlen(ep->transport));
	MIX(ep->config, ep->config_len);
#undef MIX
	return h;
}
