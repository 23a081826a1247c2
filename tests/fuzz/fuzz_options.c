/*
 * fuzz_options: the text of a plugin's ALSA configuration (asoundrc, or the
 * @args of bluetooth:DEV=...) into common/options.c's bt_options_parse. The
 * input is the body of a compound: `bluetooth { <input> }` is loaded with
 * snd_config_load and the compound handed to bt_options_parse, as alsa-lib
 * hands it to the plugins. Inputs with '<' (an include: alsa-lib would open
 * files) are skipped. Invariants of an accepted configuration: the device
 * is "" or a valid address, the strings are terminated, bitpool 0..250,
 * connect_timeout 100..120000 ms.
 */
#include "../../common/options.c"

#include <stdint.h>

#include "fuzz_common.h"

static void silent(const char *file, int line, const char *function, int err, const char *fmt, ...)
{
	(void)file; (void)line; (void)function; (void)err; (void)fmt;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc; (void)argv;
	snd_lib_error_set_handler(silent);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char head[] = "bluetooth {\n", tail[] = "\n}\n";
	snd_config_t *top = NULL, *conf;
	snd_input_t *in = NULL;
	struct bt_options o;
	char *text;
	size_t len;
	int err;

	if (memchr(data, '<', size))
		return 0;
	len = sizeof(head) - 1 + size + sizeof(tail) - 1;
	text = malloc(len);
	memcpy(text, head, sizeof(head) - 1);
	memcpy(text + sizeof(head) - 1, data, size);
	memcpy(text + sizeof(head) - 1 + size, tail, sizeof(tail) - 1);

	if (snd_config_top(&top) < 0 || snd_input_buffer_open(&in, text, len) < 0)
		abort();
	if (snd_config_load(top, in) == 0 &&
	    snd_config_search(top, "bluetooth", &conf) == 0 &&
	    snd_config_get_type(conf) == SND_CONFIG_TYPE_COMPOUND) {
		memset(&o, 0x5a, sizeof(o));
		err = bt_options_parse(conf, "bluetooth", &o);
		INVARIANT(err == 0 || err == -EINVAL, "bt_options_parse returned %d", err);
		if (err == 0) {
			INVARIANT(memchr(o.device, 0, sizeof(o.device)), "device unterminated");
			INVARIANT(!o.device[0] || bluez_valid_address(o.device), "device '%s'", o.device);
			INVARIANT(memchr(o.adapter, 0, sizeof(o.adapter)), "adapter unterminated");
			INVARIANT(o.bitpool <= 250, "bitpool %u", o.bitpool);
			INVARIANT(o.connect_timeout_ms >= 100 && o.connect_timeout_ms <= 120000,
				  "connect_timeout %d", o.connect_timeout_ms);
		}
	}
	snd_input_close(in);
	snd_config_delete(top);
	free(text);
	return 0;
}
