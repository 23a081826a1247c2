/* Volume and mute shared between the ctl and the PCM through a watched file. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "volume.h"

static int state_dir(char *dir, size_t size)
{
	const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (state && *state)
		snprintf(dir, size, "%s/alsa-bt", state);
	else if (home && *home)
		snprintf(dir, size, "%s/.local/state/alsa-bt", home);
	else
		return -ENOENT;
	return 0;
}

/* mkdir -p of the state directory. */
static int make_dirs(char *dir)
{
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	return mkdir(dir, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int volume_store_open(struct volume_store *vs, const char *address, int watch)
{
	int err;

	memset(vs, 0, sizeof(*vs));
	vs->inotify_fd = -1;
	snprintf(vs->name, sizeof(vs->name), "%s", address);
	for (char *p = vs->name; *p; p++)
		if (*p == ':')
			*p = '_';
	if ((err = state_dir(vs->dir, sizeof(vs->dir))) < 0 || (err = make_dirs(vs->dir)) < 0)
		return err;
	snprintf(vs->path, sizeof(vs->path), "%s/%s", vs->dir, vs->name);
	if (!watch)
		return 0;
	vs->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (vs->inotify_fd < 0)
		return -errno;
	/* The file is replaced by rename: watch the directory for it. */
	if (inotify_add_watch(vs->inotify_fd, vs->dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		err = -errno;
		close(vs->inotify_fd);
		vs->inotify_fd = -1;
		return err;
	}
	return 0;
}

void volume_store_close(struct volume_store *vs)
{
	if (vs->inotify_fd >= 0)
		close(vs->inotify_fd);
	vs->inotify_fd = -1;
}

/* Codec names are written as "-" when there is none; anything that is not a
 * plain lower-case name reads as none. */
static void name_or_none(char *name, const char *allowed)
{
	if (!strcmp(name, "-") || strspn(name, allowed) != strlen(name))
		name[0] = 0;
}

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyz0123456789_"

void volume_store_load(struct volume_store *vs, struct volume_state *st)
{
	FILE *f = vs->path[0] ? fopen(vs->path, "re") : NULL;
	const struct volume_state fresh = { .volume = VOLUME_DEFAULT, .voice_speaker = -1,
					    .voice_mic = -1, .voice_battery = -1 };
	struct volume_state s = fresh;

	if (f) {
		if (fscanf(f, "volume %d muted %d pending %d", &s.volume, &s.muted, &s.pending) != 3)
			s = fresh;
		else if (fscanf(f, " codec %15s wanted %15s", s.codec, s.wanted) != 2)
			s.codec[0] = s.wanted[0] = 0;     /* a file of an older version */
		else if (fscanf(f, " offers %95s", s.offers) != 1)
			s.offers[0] = 0;
		else if (fscanf(f, " voice %d %d", &s.voice_speaker, &s.voice_mic) != 2)
			s.voice_speaker = s.voice_mic = -1;
		else if (fscanf(f, " battery %d", &s.voice_battery) != 1)
			s.voice_battery = -1;
		fclose(f);
	}
	if (s.voice_speaker < -1 || s.voice_speaker > VOICE_GAIN_MAX)
		s.voice_speaker = -1;
	if (s.voice_mic < -1 || s.voice_mic > VOICE_GAIN_MAX)
		s.voice_mic = -1;
	if (s.voice_battery < -1 || s.voice_battery > 100)
		s.voice_battery = -1;
	name_or_none(s.codec, NAME_CHARS);
	name_or_none(s.wanted, NAME_CHARS);
	name_or_none(s.offers, NAME_CHARS ":");
	if (s.volume < 0 || s.volume > VOLUME_MAX)
		s.volume = VOLUME_DEFAULT;
	s.muted = !!s.muted;
	s.pending = !!s.pending;
	*st = s;
}

static _Atomic unsigned save_count;

int volume_store_save(struct volume_store *vs, const struct volume_state *st)
{
	char tmp[352];
	FILE *f;
	int err = 0;

	if (!vs->path[0])
		return -ENOENT;
	/* Unique in the process too: its ctl and its PCMs may save at once. */
	snprintf(tmp, sizeof(tmp), "%s.%d.%u", vs->path, (int)getpid(),
		 atomic_fetch_add(&save_count, 1));
	if (!(f = fopen(tmp, "we")))
		return -errno;
	if (fprintf(f, "volume %d muted %d pending %d codec %.15s wanted %.15s offers %.95s "
		    "voice %d %d battery %d\n", st->volume, st->muted, st->pending,
		    st->codec[0] ? st->codec : "-", st->wanted[0] ? st->wanted : "-",
		    st->offers[0] ? st->offers : "-", st->voice_speaker, st->voice_mic,
		    st->voice_battery) < 0)
		err = -EIO;
	if (fclose(f) != 0 && !err)
		err = -errno;
	if (!err && rename(tmp, vs->path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

int volume_store_changed(struct volume_store *vs)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int changed = 0;
	ssize_t n;

	if (vs->inotify_fd < 0)
		return 0;
	while ((n = read(vs->inotify_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->len && !strcmp(ev->name, vs->name))
				changed = 1;
			p += sizeof(*ev) + ev->len;
		}
	}
	return changed;
}

double volume_db(int volume)
{
	return VOLUME_MIN_DB * (VOLUME_MAX - volume) / VOLUME_MAX;
}

uint32_t volume_gain_q16(int volume, int muted)
{
	if (muted || volume <= 0)
		return 0;
	if (volume >= VOLUME_MAX)
		return 65536;
	return (uint32_t)lround(65536.0 * pow(10.0, volume_db(volume) / 20.0));
}

void volume_apply(int16_t *pcm, unsigned samples, uint32_t gain_q16)
{
	if (gain_q16 == 65536)
		return;
	for (unsigned i = 0; i < samples; i++)
		pcm[i] = (int16_t)(((int32_t)pcm[i] * (int64_t)gain_q16) >> 16);
}

void volume_apply_s32(int32_t *pcm, unsigned samples, uint32_t gain_q16)
{
	if (gain_q16 == 65536)
		return;
	for (unsigned i = 0; i < samples; i++)
		pcm[i] = (int32_t)(((int64_t)pcm[i] * gain_q16) >> 16);
}

static pthread_mutex_t edit_lock = PTHREAD_MUTEX_INITIALIZER;

void volume_store_lock(void)
{
	pthread_mutex_lock(&edit_lock);
}

void volume_store_unlock(void)
{
	pthread_mutex_unlock(&edit_lock);
}

void volume_store_note_codec(struct volume_store *vs, const char *name, const char *offers)
{
	struct volume_state st;

	volume_store_lock();
	volume_store_load(vs, &st);
	if (strcmp(st.codec, name) || (offers[0] && strcmp(st.offers, offers))) {
		snprintf(st.codec, sizeof(st.codec), "%s", name);
		if (offers[0])
			snprintf(st.offers, sizeof(st.offers), "%s", offers);
		volume_store_save(vs, &st);
	}
	volume_store_unlock();
}
