/*
 * fuzz_volume_state: the per-speaker state file (written by the other plugin,
 * or by anyone who can write to ~/.local/state/alsa-bt) into common/volume.c's
 * volume_store_load. Invariants: volume 0..127, muted and pending 0 or 1, the
 * gain of any loaded state within unity; what volume_store_save writes loads
 * back the same.
 */
#include "../../common/volume.c"

#include <unistd.h>

#include "fuzz_common.h"

static struct volume_store vs;
static char dir[256];

static void cleanup(void)
{
	unlink(vs.path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc; (void)argv;
	/* Every input is a file written, read, saved and read again: memory is faster. */
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/alsabt-fuzz-volume.XXXXXX", tmp);
	if (!mkdtemp(dir))
		abort();
	memset(&vs, 0, sizeof(vs));
	vs.inotify_fd = -1;
	snprintf(vs.dir, sizeof(vs.dir), "%s", dir);
	snprintf(vs.name, sizeof(vs.name), "00_1B_66_AA_BB_CC");
	snprintf(vs.path, sizeof(vs.path), "%s/%s", vs.dir, vs.name);
	atexit(cleanup);
	return 0;
}

static void check_state(const struct volume_state *st)
{
	uint32_t gain = volume_gain_q16(st->volume, st->muted);
	int16_t pcm[4] = { 32767, -32768, 1, -1 };

	INVARIANT(st->volume >= 0 && st->volume <= VOLUME_MAX, "volume %d", st->volume);
	INVARIANT(st->muted == 0 || st->muted == 1, "muted %d", st->muted);
	INVARIANT(st->pending == 0 || st->pending == 1, "pending %d", st->pending);
	INVARIANT(st->voice_speaker >= -1 && st->voice_speaker <= VOICE_GAIN_MAX &&
		  st->voice_mic >= -1 && st->voice_mic <= VOICE_GAIN_MAX,
		  "voice gains %d %d", st->voice_speaker, st->voice_mic);
	INVARIANT(st->voice_battery >= -1 && st->voice_battery <= 100, "battery %d", st->voice_battery);
	INVARIANT(gain <= 65536, "gain %u", gain);
	INVARIANT(!st->muted || gain == 0, "muted with gain %u", gain);
	INVARIANT(memchr(st->codec, 0, sizeof(st->codec)) && memchr(st->wanted, 0, sizeof(st->wanted)) &&
		  memchr(st->offers, 0, sizeof(st->offers)), "codec names unterminated");
	INVARIANT(strspn(st->offers, "abcdefghijklmnopqrstuvwxyz0123456789_:") == strlen(st->offers),
		  "offers '%s'", st->offers);
	INVARIANT(strspn(st->codec, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(st->codec) &&
		  strspn(st->wanted, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(st->wanted),
		  "codec names '%s' '%s'", st->codec, st->wanted);
	volume_apply(pcm, 4, gain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct volume_state st, again;
	FILE *f = fopen(vs.path, "we");

	if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
		abort();
	memset(&st, 0x5a, sizeof(st));
	volume_store_load(&vs, &st);
	check_state(&st);

	INVARIANT(volume_store_save(&vs, &st) == 0, "save failed");
	memset(&again, 0x5a, sizeof(again));
	volume_store_load(&vs, &again);
	INVARIANT(!strcmp(again.codec, st.codec) && !strcmp(again.wanted, st.wanted),
		  "codec '%s' '%s' loaded back as '%s' '%s'", st.codec, st.wanted, again.codec, again.wanted);
	INVARIANT(!strcmp(again.offers, st.offers), "offers '%s' loaded back as '%s'", st.offers,
		  again.offers);
	INVARIANT(again.volume == st.volume && again.muted == st.muted && again.pending == st.pending,
		  "saved %d/%d/%d, loaded %d/%d/%d", st.volume, st.muted, st.pending,
		  again.volume, again.muted, again.pending);
	INVARIANT(again.voice_speaker == st.voice_speaker && again.voice_mic == st.voice_mic &&
		  again.voice_battery == st.voice_battery,
		  "voice gains %d %d loaded back as %d %d", st.voice_speaker, st.voice_mic,
		  again.voice_speaker, again.voice_mic);
	return 0;
}
