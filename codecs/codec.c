/* The codec table: lookup by wire key and by name, and CODEC= lists. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

/* Best first: the order of our endpoints when CODEC= names none. */
const struct a2dp_codec *const a2dp_codecs[] = {
	&a2dp_codec_ldac,
	&a2dp_codec_aptx_hd,
	&a2dp_codec_aptx,
	&a2dp_codec_aac,
	&a2dp_codec_sbc,
	&a2dp_codec_sbc_xq,
	NULL,
};

/* SBC-XQ only when asked for (see the README): dual channel at a high
 * bitpool is more than many sinks' radios carry without stutter, and the
 * sink cannot tell us which ones those are. */
static const struct a2dp_codec *const default_order[] = {
	&a2dp_codec_ldac,
	&a2dp_codec_aptx_hd,
	&a2dp_codec_aptx,
	&a2dp_codec_aac,
	&a2dp_codec_sbc,
	NULL,
};

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int a2dp_codec_key_of(uint8_t id, const uint8_t *blob, size_t len, struct a2dp_codec_key *key)
{
	memset(key, 0, sizeof(*key));
	key->id = id;
	if (id != A2DP_CODEC_VENDOR)
		return 0;
	if (len < 6)
		return -EINVAL;
	key->vendor = get_le32(blob);
	key->vendor_codec = (uint16_t)(blob[4] | blob[5] << 8);
	return 0;
}

int a2dp_load_library(const char *lib, const struct a2dp_symbol *syms, size_t n, const char **why)
{
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);

	for (size_t i = 0; h && i < n; i++)
		if (!(*syms[i].fn = dlsym(h, syms[i].name))) {
			*why = syms[i].name;
			return -ENOENT;     /* h stays: a library once opened is kept */
		}
	if (!h)
		*why = dlerror();
	return h ? 0 : -ENOENT;
}

void a2dp_vendor_header(uint8_t *blob, const struct a2dp_codec_key *key)
{
	blob[0] = key->vendor;
	blob[1] = key->vendor >> 8;
	blob[2] = key->vendor >> 16;
	blob[3] = key->vendor >> 24;
	blob[4] = key->vendor_codec;
	blob[5] = key->vendor_codec >> 8;
}

int a2dp_codec_key_equal(const struct a2dp_codec_key *a, const struct a2dp_codec_key *b)
{
	return a->id == b->id && a->vendor == b->vendor && a->vendor_codec == b->vendor_codec;
}

const struct a2dp_codec *a2dp_codec_find(const struct a2dp_codec_key *key)
{
	for (int i = 0; a2dp_codecs[i]; i++)
		if (a2dp_codec_key_equal(&a2dp_codecs[i]->key, key))
			return a2dp_codecs[i];
	return NULL;
}

const struct a2dp_codec *a2dp_codec_by_name(const char *name)
{
	for (int i = 0; a2dp_codecs[i]; i++)
		if (!strcmp(a2dp_codecs[i]->name, name))
			return a2dp_codecs[i];
	return NULL;
}

const char *a2dp_codec_known_names(void)
{
	return "sbc, sbc_xq, aptx, aptx_hd, aac, ldac";
}

int a2dp_codec_listed(const struct a2dp_codec *const *list, int n, const struct a2dp_codec *c)
{
	for (int i = 0; i < n; i++)
		if (list[i] == c)
			return 1;
	return 0;
}

int a2dp_codec_parse_list(const char *s, const struct a2dp_codec **out, int max,
			  const char **bad)
{
	int n = 0;

	while (*s == ':' || *s == ' ')
		s++;
	if (!*s) {
		for (int i = 0; default_order[i] && n < max; i++)
			out[n++] = default_order[i];
		return n;
	}
	while (*s) {
		size_t len = strcspn(s, ": ");
		char name[16];
		const struct a2dp_codec *c = NULL;

		if (len < sizeof(name)) {
			memcpy(name, s, len);
			name[len] = 0;
			c = a2dp_codec_by_name(name);
		}
		if (!c) {
			if (bad)
				*bad = s;
			return -EINVAL;
		}
		if (!a2dp_codec_listed(out, n, c) && n < max)
			out[n++] = c;
		s += len;
		while (*s == ':' || *s == ' ')
			s++;
	}
	return n;
}

void a2dp_codec_list_names(const struct a2dp_codec *const *codecs, int n, char *buf, size_t size)
{
	size_t pos = 0;

	buf[0] = 0;
	for (int i = 0; i < n && pos < size; i++)
		pos += snprintf(buf + pos, size - pos, "%s%s", i ? ":" : "", codecs[i]->name);
}

void a2dp_codec_describe(uint8_t id, const uint8_t *caps, size_t len, char *buf, size_t size)
{
	static const struct { struct a2dp_codec_key key; const char *name; } others[] = {
		{ { 0x01, 0, 0 }, "mp3" },
		{ { 0x04, 0, 0 }, "atrac" },
		{ { A2DP_CODEC_VENDOR, 0x0000000a, 0x0001 }, "faststream" },
		{ { A2DP_CODEC_VENDOR, 0x0000000a, 0x0002 }, "aptx_ll" },
	};
	struct a2dp_codec_key key;
	const struct a2dp_codec *c;

	if (a2dp_codec_key_of(id, caps, len, &key) < 0) {
		snprintf(buf, size, "vendor codec (malformed)");
		return;
	}
	if ((c = a2dp_codec_find(&key))) {
		snprintf(buf, size, "%s", c->name);
		return;
	}
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		if (a2dp_codec_key_equal(&others[i].key, &key)) {
			snprintf(buf, size, "%s", others[i].name);
			return;
		}
	if (id == A2DP_CODEC_VENDOR)
		snprintf(buf, size, "vendor 0x%04x:0x%04x", (unsigned)key.vendor, key.vendor_codec);
	else
		snprintf(buf, size, "codec 0x%02x", id);
}
