/* Parsing of the options both plugins take (see conf/20-bluetooth.conf). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bluez.h"
#include "codec.h"
#include "options.h"

#define MAX_BITPOOL 250
#define MAX_TIMEOUT_MS 120000
#define MIN_JITTER_MS 10
#define MAX_JITTER_MS 500       /* the buffer holds 2 s: depth + slack fit */
#define MAX_LINGER_MS 600000

/* Integer options may come as integers or as strings (from @args). */
static int get_long(snd_config_t *n, long *v)
{
	const char *s;
	char *end;

	if (snd_config_get_integer(n, v) == 0)
		return 0;
	if (snd_config_get_string(n, &s) < 0 || !*s)
		return -EINVAL;
	*v = strtol(s, &end, 10);
	return *end ? -EINVAL : 0;
}

static int parse_device(snd_config_t *n, const char *plugin, struct bt_options *o)
{
	const char *s;

	if (snd_config_get_string(n, &s) < 0) {
		SNDERR("%s: DEV must be a string like 00:1B:66:AA:BB:CC", plugin);
		return -EINVAL;
	}
	/* 00:00:00:00:00:00 is bluez-alsa's way of saying "any": accept it too. */
	if (!*s || !strcmp(s, "00:00:00:00:00:00")) {
		o->device[0] = 0;
		return 0;
	}
	if (!bluez_valid_address(s)) {
		SNDERR("%s: DEV=%s is not a Bluetooth address: write it as XX:XX:XX:XX:XX:XX (see 'bluetoothctl devices')",
		       plugin, s);
		return -EINVAL;
	}
	snprintf(o->device, sizeof(o->device), "%s", s);
	return 0;
}

static int parse_ranged(snd_config_t *n, const char *plugin, const char *key,
			long min, long max, long *v)
{
	if (get_long(n, v) < 0 || *v < min || *v > max) {
		SNDERR("%s: %s must be a number from %ld to %ld", plugin, key, min, max);
		return -EINVAL;
	}
	return 0;
}

/* CODEC=aptx_hd:aptx:sbc, checked here so that a typo fails at once. */
static int parse_codec(snd_config_t *n, const char *plugin, struct bt_options *o)
{
	const struct a2dp_codec *list[A2DP_MAX_CODECS];
	const char *s = NULL, *bad = NULL;

	if (snd_config_get_string(n, &s) < 0 || strlen(s) >= sizeof(o->codec) ||
	    a2dp_codec_parse_list(s, list, A2DP_MAX_CODECS, &bad) < 0) {
		SNDERR("%s: CODEC=%s: unknown codec '%.*s' (known: %s; separate several with ':')",
		       plugin, s ? s : "?", bad ? (int)strcspn(bad, ": ") : 0, bad ? bad : "",
		       a2dp_codec_known_names());
		return -EINVAL;
	}
	snprintf(o->codec, sizeof(o->codec), "%s", s);
	return 0;
}

/* A word from a fixed list: its index in names, or -EINVAL after one line
 * naming the choices (say). */
static int parse_word(snd_config_t *n, const char *plugin, const char *key,
		      const char *const *names, int count, const char *say)
{
	const char *s = NULL;

	if (snd_config_get_string(n, &s) == 0)
		for (int i = 0; i < count; i++)
			if (!strcmp(s, names[i]))
				return i;
	SNDERR("%s: %s=%s: say %s", plugin, key, s ? s : "?", say);
	return -EINVAL;
}

static int parse_ldac_quality(snd_config_t *n, const char *plugin, struct bt_options *o)
{
	static const char *const names[] = { "auto", "hq", "sq", "mq" };   /* enum a2dp_ldac_quality */
	int i = parse_word(n, plugin, "LDAC_QUALITY", names, 4, "hq, sq, mq or auto");

	if (i >= 0)
		o->ldac_quality = i;
	return i < 0 ? i : 0;
}

static int parse_on_pause(snd_config_t *n, const char *plugin, struct bt_options *o)
{
	static const char *const names[] = { "silence", "wait" };
	int i = parse_word(n, plugin, "ON_PAUSE", names, 2, "silence or wait");

	if (i >= 0)
		o->wait_on_pause = i;
	return i < 0 ? i : 0;
}

static int parse_profile(snd_config_t *n, const char *plugin, struct bt_options *o)
{
	static const char *const names[] = { [BT_PROFILE_A2DP] = "a2dp", [BT_PROFILE_HFP] = "hfp" };
	int i = parse_word(n, plugin, "PROFILE", names, 2, "a2dp (music) or hfp (a headset's voice)");

	if (i >= 0)
		o->profile = i;
	return i < 0 ? i : 0;
}

static int parse_key(snd_config_t *n, const char *id, const char *plugin, struct bt_options *o)
{
	const char *s;
	long v;
	int err;

	if (!strcmp(id, "device"))
		return parse_device(n, plugin, o);
	if (!strcmp(id, "adapter")) {
		if (snd_config_get_string(n, &s) < 0) {
			SNDERR("%s: adapter must be a string like hci0", plugin);
			return -EINVAL;
		}
		snprintf(o->adapter, sizeof(o->adapter), "%s", s);
		return 0;
	}
	if (!strcmp(id, "bitpool")) {
		if ((err = parse_ranged(n, plugin, "bitpool (0 = automatic)", 0, MAX_BITPOOL, &v)) == 0)
			o->bitpool = v;
		return err;
	}
	if (!strcmp(id, "codec"))
		return parse_codec(n, plugin, o);
	if (!strcmp(id, "ldac_quality"))
		return parse_ldac_quality(n, plugin, o);
	if (!strcmp(id, "connect_timeout")) {
		if ((err = parse_ranged(n, plugin, "connect_timeout (ms)", 100, MAX_TIMEOUT_MS, &v)) == 0)
			o->connect_timeout_ms = v;
		return err;
	}
	if (!strcmp(id, "jitter_ms")) {
		if ((err = parse_ranged(n, plugin, "jitter_ms", MIN_JITTER_MS, MAX_JITTER_MS, &v)) == 0)
			o->jitter_ms = v;
		return err;
	}
	if (!strcmp(id, "on_pause"))
		return parse_on_pause(n, plugin, o);
	if (!strcmp(id, "mix")) {
		if ((err = parse_ranged(n, plugin, "mix (0 plays alone, 1 mixes)", 0, 1, &v)) == 0)
			o->mix = v;
		return err;
	}
	if (!strcmp(id, "linger_ms")) {
		if ((err = parse_ranged(n, plugin, "linger_ms", 0, MAX_LINGER_MS, &v)) == 0)
			o->linger_ms = v;
		return err;
	}
	if (!strcmp(id, "profile"))
		return parse_profile(n, plugin, o);
	SNDERR("%s: unknown option '%s' (known: device, adapter, profile, codec, ldac_quality, bitpool, connect_timeout, jitter_ms, on_pause, mix, linger_ms)",
	       plugin, id);
	return -EINVAL;
}

int bt_options_parse(snd_config_t *conf, const char *plugin, struct bt_options *o)
{
	snd_config_iterator_t i, next;

	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = BT_DEFAULT_CONNECT_TIMEOUT_MS;
	o->jitter_ms = BT_DEFAULT_JITTER_MS;
	o->linger_ms = BT_DEFAULT_LINGER_MS;
	o->mix = BT_DEFAULT_MIX;
	snd_config_for_each(i, next, conf) {
		snd_config_t *n = snd_config_iterator_entry(i);
		const char *id;
		int err;

		if (snd_config_get_id(n, &id) < 0)
			continue;
		if (!strcmp(id, "comment") || !strcmp(id, "type") || !strcmp(id, "hint"))
			continue;
		if ((err = parse_key(n, id, plugin, o)) < 0)
			return err;
	}
	return 0;
}

/* Options from another process (a program's HELLO to the mixer): the same
 * ranges as parsed ones, every string ended. */
int bt_options_check(struct bt_options *o)
{
	const struct a2dp_codec *list[A2DP_MAX_CODECS];
	const char *bad;

	o->device[sizeof(o->device) - 1] = 0;
	o->adapter[sizeof(o->adapter) - 1] = 0;
	o->codec[sizeof(o->codec) - 1] = 0;
	if (o->device[0] && !bluez_valid_address(o->device))
		return -EINVAL;
	if (o->adapter[strspn(o->adapter, "abcdefghijklmnopqrstuvwxyzABCDEF0123456789:")])
		return -EINVAL;
	if (o->codec[0] && a2dp_codec_parse_list(o->codec, list, A2DP_MAX_CODECS, &bad) < 0)
		return -EINVAL;
	if (o->bitpool > MAX_BITPOOL || o->ldac_quality < 0 || o->ldac_quality > 3 ||
	    o->connect_timeout_ms < 100 || o->connect_timeout_ms > MAX_TIMEOUT_MS ||
	    o->jitter_ms > MAX_JITTER_MS || (o->wait_on_pause & ~1) ||
	    o->profile != BT_PROFILE_A2DP || (o->mix & ~1) || o->linger_ms > MAX_LINGER_MS)
		return -EINVAL;
	return 0;
}
