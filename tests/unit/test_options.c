/* bt_options_check: the options a program sends its speaker's mixer are
 * those the plugin parses, or refused. */
#include <errno.h>
#include <string.h>

#include <alsa/asoundlib.h>

#include "check.h"
#include "options.h"

static int parse(const char *text, struct bt_options *o)
{
	snd_config_t *top = NULL;
	snd_input_t *in = NULL;
	int err;

	if ((err = snd_config_top(&top)) < 0 ||
	    (err = snd_input_buffer_open(&in, text, strlen(text))) < 0 ||
	    (err = snd_config_load(top, in)) == 0)
		err = bt_options_parse(top, "test", o);
	if (in)
		snd_input_close(in);
	if (top)
		snd_config_delete(top);
	return err;
}

static void parsed_pass(void)
{
	static const char *const confs[] = {
		"",
		"device \"00:1B:66:AA:BB:CC\" adapter hci1 codec \"aptx_hd:sbc\" bitpool 53",
		"mix 1 linger_ms 0 connect_timeout 100 ldac_quality mq jitter_ms 500 on_pause wait",
	};

	for (unsigned i = 0; i < sizeof(confs) / sizeof(*confs); i++) {
		struct bt_options o;

		CHECK(parse(confs[i], &o) == 0, "conf %u parses", i);
		CHECK(bt_options_check(&o) == 0, "conf %u: what the plugin parsed passes", i);
	}
}

static void strings_ended(void)
{
	struct bt_options o;

	parse("", &o);
	memset(o.adapter, 'a', sizeof(o.adapter));
	CHECK(bt_options_check(&o) == 0 && o.adapter[sizeof(o.adapter) - 1] == 0,
	      "an unended adapter is ended, not read past");
	parse("", &o);
	memset(o.device, '1', sizeof(o.device));
	CHECK(bt_options_check(&o) == -EINVAL, "an unended device is no address");
	parse("", &o);
	memset(o.codec, 's', sizeof(o.codec));
	CHECK(bt_options_check(&o) == -EINVAL, "an unended codec list names no codec");
}

static void out_of_range(void)
{
	struct bt_options o;

#define REFUSED(what, change) do {                                              \
		parse("", &o);                                                  \
		change;                                                         \
		CHECK(bt_options_check(&o) == -EINVAL, "%s is refused", what);  \
	} while (0)
	REFUSED("a bad address", strcpy(o.device, "00:1B:66:AA:BB"));
	REFUSED("an adapter with a slash", strcpy(o.adapter, "../hci0"));
	REFUSED("an unknown codec", strcpy(o.codec, "sbc:opus"));
	REFUSED("bitpool 251", o.bitpool = 251);
	REFUSED("LDAC quality 4", o.ldac_quality = 4);
	REFUSED("a negative LDAC quality", o.ldac_quality = -1);
	REFUSED("a 99 ms connect timeout", o.connect_timeout_ms = 99);
	REFUSED("a 121 s connect timeout", o.connect_timeout_ms = 120001);
	REFUSED("jitter 501 ms", o.jitter_ms = 501);
	REFUSED("on_pause 2", o.wait_on_pause = 2);
	REFUSED("the HFP profile", o.profile = BT_PROFILE_HFP);
	REFUSED("mix 2", o.mix = 2);
	REFUSED("a linger over 10 min", o.linger_ms = 600001);
#undef REFUSED
}

int main(void)
{
	parsed_pass();
	strings_ended();
	out_of_range();
	return check_finish();
}
