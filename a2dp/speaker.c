/* Connecting to a speaker for playback: see speaker.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <alsa/asoundlib.h>

#include "dbus.h"
#include "speaker.h"

static struct volume_store *volume_store_of(struct a2dp_speaker *sp)
{
	return sp->have_volume_store ? &sp->volume : NULL;
}

/* CODEC=, else the codec chosen in the mixer first, then ours best first. */
static int codec_list(const struct a2dp_speaker *sp, const struct volume_state *st,
		      const struct a2dp_codec **codecs)
{
	int n = a2dp_codec_parse_list(sp->opt.codec, codecs, A2DP_MAX_CODECS, NULL);
	const struct a2dp_codec *wanted;

	if (n < 0 || sp->opt.codec[0])
		return n;     /* n < 0 cannot be: bt_options_parse checked CODEC= */
	if (!(wanted = a2dp_codec_by_name(st->wanted)) || n >= A2DP_MAX_CODECS)
		return n;
	memmove(codecs + 1, codecs, sizeof(*codecs) * n);
	codecs[0] = wanted;
	for (int i = 1; i <= n; i++)
		if (codecs[i] == wanted) {       /* it was listed: now it is first */
			memmove(codecs + i, codecs + i + 1, sizeof(*codecs) * (n - i));
			return n;
		}
	return n + 1;
}

/* The mixer shows the codec the speaker configured; the next open remembers
 * what the speaker offers. */
static void note_codec(struct a2dp_speaker *sp)
{
	if (sp->have_volume_store)
		volume_store_note_codec(&sp->volume, sp->codec->name, sp->ep->offers);
}

const struct a2dp_codec *a2dp_speaker_first_choice(struct a2dp_speaker *sp,
						   const struct bt_options *opt)
{
	const struct a2dp_codec *codecs[A2DP_MAX_CODECS], *offered[A2DP_MAX_CODECS];
	struct a2dp_speaker with = { .opt = *opt };
	struct volume_state st = { .volume = VOLUME_DEFAULT };
	int n, k;

	if (sp->have_volume_store)
		volume_store_load(&sp->volume, &st);
	n = codec_list(&with, &st, codecs);
	k = a2dp_codec_parse_list(sp->ep->offers, offered, A2DP_MAX_CODECS, NULL);
	for (int i = 0; i < n; i++)
		if (a2dp_codec_listed(offered, k, codecs[i]))
			return codecs[i];
	return sp->codec;
}

int a2dp_speaker_open(struct a2dp_speaker *sp, const struct bt_options *opt)
{
	struct a2dp_codec_prefs prefs = { .rate = 44100, .bitpool = opt->bitpool,
					  .ldac_quality = opt->ldac_quality };
	int64_t deadline = dbusx_now_ms() + opt->connect_timeout_ms;
	const struct a2dp_codec *codecs[A2DP_MAX_CODECS];
	struct volume_state st = { .volume = VOLUME_DEFAULT };
	struct bluez_device dev;
	int err, n;

	memset(sp, 0, sizeof(*sp));
	sp->opt = *opt;
	if ((err = bluez_open(&sp->bz)) < 0 ||
	    (err = bluez_find_device(sp->bz, opt->adapter, opt->device[0] ? opt->device : NULL,
				     deadline, &dev)) < 0)
		return err;
	/* Without a place for the state (no HOME), play at full volume, unmuted. */
	sp->have_volume_store = volume_store_open(&sp->volume, dev.address, 1) == 0;
	if (sp->have_volume_store)
		volume_store_load(&sp->volume, &st);
	if ((n = codec_list(sp, &st, codecs)) < 0)
		return n;
	if ((err = a2dp_endpoint_open(sp->bz, &dev, codecs, n, &prefs, st.offers, deadline,
				      &sp->ep)) < 0)
		return err;
	sp->codec = sp->ep->codec;
	/* LDAC learns the link's MTU only now: too small, the next codec plays. */
	while ((err = a2dp_stream_new(&sp->stream, sp->ep, sp->codec, volume_store_of(sp))) ==
	       -EMSGSIZE) {
		SNDERR("%s: the link's MTU (%u bytes) is too small for %s: playing with the next codec",
		       dev.address, sp->ep->write_mtu, sp->codec->title);
		if ((err = a2dp_endpoint_drop_codec(sp->ep, deadline)) < 0)
			return err;
		sp->codec = sp->ep->codec;
	}
	note_codec(sp);
	return err;
}

void a2dp_speaker_close(struct a2dp_speaker *sp)
{
	a2dp_stream_free(sp->stream);
	a2dp_endpoint_close(sp->ep);
	bluez_close(sp->bz);
	if (sp->have_volume_store)
		volume_store_close(&sp->volume);
	memset(sp, 0, sizeof(*sp));
}

int a2dp_speaker_set_rate(struct a2dp_speaker *sp, unsigned rate)
{
	struct a2dp_codec_prefs prefs = { .rate = rate, .bitpool = sp->opt.bitpool,
					  .ldac_quality = sp->opt.ldac_quality };
	int err;

	a2dp_stream_free(sp->stream);
	sp->stream = NULL;
	err = a2dp_endpoint_reconfigure(sp->ep, &prefs,
					dbusx_now_ms() + sp->opt.connect_timeout_ms);
	if (err == 0)
		err = a2dp_stream_new(&sp->stream, sp->ep, sp->codec, volume_store_of(sp));
	if (err < 0)
		return err;
	if (a2dp_stream_rate(sp->stream) != rate) {
		SNDERR("%s chose %u Hz when asked for %u Hz", sp->ep->dev.address,
		       a2dp_stream_rate(sp->stream), rate);
		return -EINVAL;
	}
	return 0;
}

int a2dp_speaker_rates(const struct a2dp_speaker *sp, unsigned *rates, int max)
{
	int n = sp->codec->caps_rates(sp->ep->sink_caps, sp->ep->sink_caps_len, rates, max);

	/* The speaker configured us itself (not what we selected), or we never saw
	 * its capabilities: only the rate it chose is on offer. */
	if (n <= 0 || !a2dp_endpoint_config_is_ours(sp->ep)) {
		rates[0] = a2dp_stream_rate(sp->stream);
		n = 1;
	}
	return n;
}
