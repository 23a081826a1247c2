/*
 * Shared by the capability targets (fuzz_*_caps.c), included after the
 * codec's own .c: the checks every codec's choice of configuration must
 * pass, whatever the codec.
 */
#ifndef ALSABT_FUZZ_CODEC_H
#define ALSABT_FUZZ_CODEC_H

#include <string.h>

#include "fuzz_common.h"

/*
 * caps_rates and select_config of codec c on blob, as bluetoothd's
 * SelectConfiguration calls them. Checked: caps_rates lists distinct rates,
 * at most max, into an array of exactly max (ASan sees any overrun);
 * select_config gives config_len bytes, -EINVAL exactly when caps_rates
 * does, or -ENOTSUP; its choice passes parse_config (into fmt), is not
 * written past its length and needs all of its room (-ENOSPC with one byte
 * less). Returns select_config's answer; config holds the choice.
 */
static inline int fuzz_select(const struct a2dp_codec *c, const uint8_t *blob, size_t len,
			      const struct a2dp_codec_prefs *prefs, int max, int config_len,
			      uint8_t config[A2DP_MAX_CAPS], struct a2dp_format *fmt)
{
	unsigned *rates = malloc(sizeof(*rates) * (max ? max : 1));
	uint8_t scratch[A2DP_MAX_CAPS];
	int n, nrates = c->caps_rates(blob, len, rates, max);

	CHECK_CAPS_RATES(nrates, rates, max);
	free(rates);

	memset(config, 0xee, A2DP_MAX_CAPS);
	n = c->select_config(blob, len, prefs, config, A2DP_MAX_CAPS);
	INVARIANT(n == config_len || n == -EINVAL || n == -ENOTSUP, "select_config %d", n);
	INVARIANT((n == -EINVAL) == (nrates == -EINVAL), "select_config %d, caps_rates %d", n, nrates);
	if (n > 0) {
		INVARIANT(c->parse_config(config, n, fmt) == 0, "parse_config refuses our choice");
		INVARIANT(config[n] == 0xee, "wrote past its length");
		INVARIANT(c->select_config(blob, len, prefs, scratch, n - 1) == -ENOSPC, "short buffer");
	}
	return n;
}

#endif
