/* One headset's voice link: see link.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <alsa/asoundlib.h>

#include "bluez.h"
#include "dbus.h"
#include "io_thread.h"
#include "link.h"
#include "profile.h"
#include "sco.h"
#include "slc.h"

#define SCO_CONNECT_MS 5000
/* After the frame with the last samples, two of silence: the first flushes
 * the headset decoder's delay (73 samples); the second is encoded only once
 * the queue holds less than a packet, so all before the first has left. */
#define FLUSH_FRAMES 2
#define SILENCE_LOST_MS 1000    /* no SCO packet this long: the link is gone */
/* Nothing heard this long after connecting: the headset's side sends only
 * what its host writes (see the own clock), and we pace the link. */
#define FIRST_PACKET_MS 250
/* Paced by us, the microphone is filled with silence after this long
 * without a packet: longer than a writer's bursts (bluez-alsa writes a few
 * frames at a time). */
#define QUIET_FILL_MS 100
#define MS_NS 1000000LL
#define MAX_PACKET 1024

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hfp_link *registry;

/* --- the capture side: what arrived --------------------------------------- */

static void capture_samples(struct hfp_link *l, const int16_t *pcm, unsigned n)
{
	struct hfp_side *s = &l->side[HFP_CAPTURE];
	uint64_t hw = atomic_load(&s->hw), appl = atomic_load(&s->appl);

	if (!atomic_load(&s->running) || !s->size)
		return;
	/* A full ring: the program fell behind by a whole buffer. Like a
	 * card, newer audio is dropped, and the program sees avail > size. */
	if (hw + n - appl > s->size) {
		atomic_store(&s->hw, hw + n);
		hfp_link_notify(l, HFP_CAPTURE);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		s->ring[(hw + i) % s->size] = pcm[i];
	atomic_store(&s->hw, hw + n);
	if (hfp_capture_hw(s) - appl >= atomic_load(&s->avail_min))
		hfp_link_notify(l, HFP_CAPTURE);
}

static void receive_msbc(struct hfp_link *l, const uint8_t *buf, size_t len)
{
	int16_t pcm[4 * MSBC_SAMPLES];

	while (len) {
		size_t used = 0, frames = msbc_decode(&l->dec, buf, len, &used, pcm, 4);

		capture_samples(l, pcm, (unsigned)(frames * MSBC_SAMPLES));
		buf += used;
		len -= used;
		if (!used && !frames)
			break;
	}
}

/* --- the playback side: what is answered ----------------------------------- */

/* n samples from the program's ring; silence for what it has not written. */
static void playback_samples(struct hfp_link *l, int16_t *pcm, unsigned n)
{
	struct hfp_side *s = &l->side[HFP_PLAYBACK];
	uint64_t hw = atomic_load(&s->hw), appl = atomic_load(&s->appl);
	unsigned have = 0;

	if (atomic_load(&s->running) && s->size)
		have = appl - hw < n ? (unsigned)(appl - hw) : n;
	for (unsigned i = 0; i < have; i++)
		pcm[i] = s->ring[(hw + i) % s->size];
	memset(pcm + have, 0, (n - have) * sizeof(*pcm));
	if (have) {
		atomic_store(&s->hw, hw + have);
		if (s->size - (appl - hw - have) >= atomic_load(&s->avail_min))
			hfp_link_notify(l, HFP_PLAYBACK);
	}
}

/* Encoded bytes for a packet of len: CVSD is the samples themselves. */
static int fill_out(struct hfp_link *l, size_t len)
{
	int16_t pcm[MSBC_SAMPLES];

	if (l->codec != HFP_CODEC_MSBC) {
		playback_samples(l, (int16_t *)l->out, (unsigned)(len / 2));
		memset(l->out + len / 2 * 2, 0, len % 2);
		l->out_len = len;
		return 0;
	}
	while (l->out_len < len) {
		uint64_t hw = atomic_load(&l->side[HFP_PLAYBACK].hw);

		playback_samples(l, pcm, MSBC_SAMPLES);
		if (atomic_load(&l->side[HFP_PLAYBACK].hw) != hw)
			atomic_store(&l->dry_frames, 0);
		else if (atomic_fetch_add(&l->dry_frames, 1) + 1 == FLUSH_FRAMES)
			hfp_link_notify(l, HFP_PLAYBACK);   /* a drain waits for this */
		if (msbc_encode(&l->enc, pcm, l->out + l->out_len) < 0)
			return -EIO;
		l->out_len += MSBC_FRAME_LEN;
	}
	return 0;
}

static int answer_packet(struct hfp_link *l, size_t len)
{
	ssize_t n;

	if (fill_out(l, len) < 0)
		return -EIO;
	n = send(l->sco_fd, l->out, len, MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		return -errno;
	/* A full socket loses this packet's audio, as the air would. */
	memmove(l->out, l->out + len, l->out_len - len);
	l->out_len -= len;
	return 0;
}

/* One SCO packet in, one out of the same size (none on our own clock). */
static int on_packet(struct hfp_link *l, const uint8_t *buf, size_t len)
{
	int err = 0;

	pthread_mutex_lock(&l->lock);
	if (l->codec == HFP_CODEC_MSBC)
		receive_msbc(l, buf, len);
	else
		capture_samples(l, (const int16_t *)buf, (unsigned)(len / 2));
	if (!l->clock.own)
		err = answer_packet(l, len);
	pthread_mutex_unlock(&l->lock);
	return err;
}

/* --- our own clock, for a headset side that waits to be sent to ----------- */

/* A real controller sends a packet every few milliseconds from the moment
 * the link is up, and the link runs on that.  A controller that forwards
 * only what its host writes (BlueZ's emulator, with bluez-alsa or any
 * program that writes only while it has audio) sends nothing until then,
 * and both ends would wait on each other.  So: if nothing came in the first
 * FIRST_PACKET_MS, we send one packet per tick of our own clock, in the
 * size a non-USB controller takes (48 bytes of CVSD, one 60-byte mSBC
 * frame; less if the kernel's MTU is smaller), for the rest of the link's
 * life; what arrives is still decoded as it comes, and after QUIET_FILL_MS
 * of nothing the microphone gets a tick of silence per tick, so that a
 * recording runs on time.  Quiet is then no sign of a lost link: the
 * socket's and the channel's ends still are. */
static void own_clock_start(struct hfp_link *l, int64_t now)
{
	struct hfp_clock *c = &l->clock;
	int msbc = l->codec == HFP_CODEC_MSBC, mtu = sco_kernel_mtu(l->sco_fd);
	size_t len = msbc ? MSBC_FRAME_LEN : 48;

	if (mtu >= 2 && (size_t)mtu < len)
		len = (size_t)mtu & ~(size_t)1;
	c->own = 1;
	c->len = len;
	c->samples = msbc ? (unsigned)(len * MSBC_SAMPLES / MSBC_FRAME_LEN) : (unsigned)(len / 2);
	c->tick_ns = (int64_t)c->samples * IO_NS / l->rate;
	c->next = now;
	SNDERR("bluetooth: %s sends no voice until it is sent some; alsa-bt paces the link "
	       "(%zu-byte packets every %.1f ms)", l->address, len, c->tick_ns / 1e6);
}

static int own_clock_tick(struct hfp_link *l, int64_t now)
{
	int16_t silence[2 * MSBC_SAMPLES] = { 0 };
	int err;

	pthread_mutex_lock(&l->lock);
	err = answer_packet(l, l->clock.len);
	if (now - l->clock.last_rx > QUIET_FILL_MS * MS_NS)
		capture_samples(l, silence, l->clock.samples);
	pthread_mutex_unlock(&l->lock);
	return err;
}

/* The link's time, once per wakeup: 0, or -1 once it is lost. */
static int clock_step(struct hfp_link *l)
{
	struct hfp_clock *c = &l->clock;
	int64_t now = io_now_ns();
	int due = 0;

	if (!c->own) {
		if (c->last_rx)
			return now - c->last_rx > SILENCE_LOST_MS * MS_NS ? -1 : 0;
		if (now - c->start < FIRST_PACKET_MS * MS_NS)
			return 0;
		own_clock_start(l, now);
	}
	for (; now >= c->next && due < 4; due++, c->next += c->tick_ns)
		if (own_clock_tick(l, now) < 0)
			return -1;
	if (now >= c->next)          /* far behind (the process was stopped): no burst */
		c->next = now + c->tick_ns;
	return 0;
}

/* How long poll may sleep: until the next tick on our own clock. */
static int clock_wait_ms(const struct hfp_link *l)
{
	int64_t left;

	if (!l->clock.own)
		return 100;
	left = l->clock.next - io_now_ns();
	return left <= 0 ? 0 : (int)((left + MS_NS - 1) / MS_NS);
}

/* --- the headset's gains and the mixer ------------------------------------------ */

/* One gain, the file's value against the headset's: to_headset, the file's
 * is sent (the mixer set it); otherwise the headset's is kept in the file.
 * Returns 1 if the file's value changed. A headset without remote volume
 * control keeps its own (slc_set_* refuses). */
static int sync_gain(struct slc *slc, int *file, int *headset, int to_headset,
		     int (*send)(struct slc *, int))
{
	if (to_headset && *file >= 0 && *file != *headset) {
		if (send(slc, *file) == 0)
			*headset = *file;
		return 0;
	}
	if (!to_headset && *headset >= 0 && *file != *headset) {
		*file = *headset;
		return 1;
	}
	return 0;
}

/* At the start (to_headset: the mixer's last values win, else the headset's
 * are noted), when the file changed (the mixer's to the headset), and when
 * the headset reported a change (SLC events: the headset's to the file). */
static void sync_gains(struct hfp_link *l, int to_headset)
{
	struct slc *slc = &l->profile->slc;
	struct volume_state st;
	int save;

	if (!l->have_gains)
		return;
	volume_store_lock();
	volume_store_load(&l->gains, &st);
	slc->events &= ~(SLC_EV_SPEAKER | SLC_EV_MIC | SLC_EV_BATTERY);
	save = sync_gain(slc, &st.voice_speaker, &slc->speaker_gain, to_headset, slc_set_speaker_gain);
	save |= sync_gain(slc, &st.voice_mic, &slc->mic_gain, to_headset, slc_set_mic_gain);
	if (slc->battery >= 0 && slc->battery != st.voice_battery) {
		st.voice_battery = slc->battery;   /* the mixer's battery element shows it */
		save = 1;
	}
	if (save)
		volume_store_save(&l->gains, &st);
	volume_store_unlock();
}

/* --- the I/O thread ---------------------------------------------------------- */

static void lost(struct hfp_link *l, const char *why)
{
	if (atomic_exchange(&l->error, -ENODEV) == 0)
		SNDERR("bluetooth: the headset %s (%s) is gone: %s", l->name, l->address, why);
	hfp_link_notify(l, HFP_PLAYBACK);
	hfp_link_notify(l, HFP_CAPTURE);
}

/* Returns 0 to go on, -1 once the link is lost. */
static int read_sco(struct hfp_link *l)
{
	uint8_t buf[MAX_PACKET] __attribute__((aligned(2)));
	ssize_t n;

	while ((n = recv(l->sco_fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		l->clock.last_rx = io_now_ns();
		if (on_packet(l, buf, (size_t)n) < 0) {
			lost(l, "its voice link failed");
			return -1;
		}
	}
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		lost(l, "its voice link closed");
		return -1;
	}
	return 0;
}

/* The bus, when it has something (not at every packet): 0, or -1 once
 * bluetoothd ended the link (RequestDisconnection, Release, or gone). */
static int service_bus(struct hfp_link *l)
{
	if (bluez_dispatch(l->bz) < 0 || atomic_load(&l->profile->gone)) {
		lost(l, "bluetoothd ended the connection");
		return -1;
	}
	dbus_connection_flush(l->bz->conn);   /* our replies to bluetoothd */
	return 0;
}

static void *link_thread(void *arg)
{
	struct hfp_link *l = arg;
	int bus_fd = -1;

	dbus_connection_get_unix_fd(l->bz->conn, &bus_fd);
	if (service_bus(l) < 0)          /* what the open read and left */
		return NULL;
	while (!atomic_load(&l->quit)) {
		struct pollfd fds[5] = {
			{ .fd = l->wake_fd, .events = POLLIN },
			{ .fd = l->sco_fd, .events = POLLIN },
			{ .fd = l->profile->fd, .events = POLLIN },
			{ .fd = bus_fd, .events = POLLIN },
			{ .fd = l->have_gains ? l->gains.inotify_fd : -1, .events = POLLIN },
		};

		if (poll(fds, 5, clock_wait_ms(l)) < 0 && errno != EINTR)
			break;
		if (fds[0].revents)
			io_drain(l->wake_fd);
		if (fds[1].revents && read_sco(l) < 0)
			break;
		if (fds[2].revents && hfp_profile_service(l->profile) < 0) {
			lost(l, "it closed the Service Level Connection");
			break;
		}
		if (l->profile->slc.events & (SLC_EV_SPEAKER | SLC_EV_MIC | SLC_EV_BATTERY))
			sync_gains(l, 0);
		if (fds[4].revents && volume_store_changed(&l->gains)) {
			sync_gains(l, 1);
			if (hfp_profile_service(l->profile) < 0) {   /* sends what sync_gains queued */
				lost(l, "it closed the Service Level Connection");
				break;
			}
		}
		if (fds[3].revents && service_bus(l) < 0)
			break;
		if (clock_step(l) < 0) {
			lost(l, l->clock.own ? "its voice link failed"
					     : "no voice packet for 1 s (out of range?)");
			break;
		}
	}
	return NULL;
}

/* --- making and ending a link ------------------------------------------------ */

static void link_free(struct hfp_link *l)
{
	if (l->thread) {
		atomic_store(&l->quit, 1);
		io_poke(l->wake_fd);
		pthread_join(l->thread, NULL);
	}
	if (l->sco_fd >= 0) {
		shutdown(l->sco_fd, SHUT_RDWR);
		close(l->sco_fd);
	}
	if (l->profile)
		hfp_profile_close(l->profile);
	if (l->bz)
		bluez_close(l->bz);
	if (l->have_gains)
		volume_store_close(&l->gains);
	for (int d = 0; d < 2; d++) {
		if (l->side[d].event_fd >= 0)
			close(l->side[d].event_fd);
		free(l->side[d].ring);
	}
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	if (l->codec == HFP_CODEC_MSBC) {
		msbc_encoder_free(&l->enc);
		msbc_decoder_free(&l->dec);
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static int sco_error(struct hfp_link *l, int err)
{
	if (err == -EAFNOSUPPORT)
		SNDERR("bluetooth: this kernel has no Bluetooth SCO sockets (CONFIG_BT): no headset voice");
	else
		SNDERR("bluetooth: the voice link to %s (%s) did not open: %s",
		       l->name, l->address, strerror(-err));
	return err;
}

/* Within the open's TIMEOUT, but a link is given half a second at least. */
static int connect_sco(const struct bluez_device *dev, int msbc, int64_t deadline)
{
	int64_t left = deadline - dbusx_now_ms();

	return sco_connect(dev->adapter_address, dev->address,
			   msbc ? SCO_VOICE_TRANSPARENT : SCO_VOICE_CVSD_16BIT,
			   left < 500 ? 500 : left > SCO_CONNECT_MS ? SCO_CONNECT_MS : (int)left);
}

/* The SCO socket, the codec's state and the thread, once the SLC agreed a codec. */
static int open_voice(struct hfp_link *l, const struct bluez_device *dev, int64_t deadline)
{
	int msbc = l->codec == HFP_CODEC_MSBC, err;

	l->sco_fd = connect_sco(dev, msbc, deadline);
	/* The kernel says so at connect when the adapter cannot carry mSBC
	 * (no transparent SCO): CVSD is agreed again, as PipeWire does. */
	if (l->sco_fd == -EOPNOTSUPP && msbc) {
		SNDERR("bluetooth: the adapter %s cannot carry mSBC (transparent SCO); "
		       "falling back to CVSD (8 kHz) for %s", l->adapter, l->address);
		if ((err = hfp_profile_choose_again(l->profile, 0, deadline)) < 0)
			return err;
		l->codec = l->profile->slc.codec;
		msbc = l->codec == HFP_CODEC_MSBC;
		l->sco_fd = connect_sco(dev, msbc, deadline);
	}
	if (l->sco_fd < 0)
		return sco_error(l, l->sco_fd);
	l->rate = msbc ? MSBC_RATE : 8000;
	if (msbc && (msbc_encoder_init(&l->enc) < 0 || msbc_decoder_init(&l->dec) < 0))
		return -ENOMEM;
	/* Without a place for the state (no HOME), the headset keeps its gains. */
	l->have_gains = volume_store_open(&l->gains, dev->address, 1) == 0;
	if (l->have_gains) {
		sync_gains(l, 1);              /* the mixer's last values to the headset */
		sync_gains(l, 0);              /* the headset's, where the mixer has none */
		volume_store_changed(&l->gains);   /* our own save is not news */
		if (hfp_profile_service(l->profile) < 0) {
			SNDERR("bluetooth: the headset %s closed its channel while connecting", l->address);
			return -ECONNRESET;
		}
	}
	l->clock.start = io_now_ns();
	if (pthread_create(&l->thread, NULL, link_thread, l) != 0) {
		l->thread = 0;
		return -EAGAIN;
	}
	return 0;
}

static int link_new(struct bluez *bz, const struct bluez_device *dev, int64_t deadline,
		    struct hfp_link **out)
{
	struct hfp_link *l = calloc(1, sizeof(*l));
	int err;

	if (!l) {
		bluez_close(bz);
		return -ENOMEM;
	}
	l->bz = bz;
	l->sco_fd = l->wake_fd = l->side[0].event_fd = l->side[1].event_fd = -1;
	pthread_mutex_init(&l->lock, NULL);
	snprintf(l->address, sizeof(l->address), "%s", dev->address);
	snprintf(l->adapter, sizeof(l->adapter), "%s", dev->adapter);
	snprintf(l->name, sizeof(l->name), "%s", dev->name);
	l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	l->side[0].event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	l->side[1].event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->wake_fd < 0 || l->side[0].event_fd < 0 || l->side[1].event_fd < 0)
		err = -errno;
	else if ((err = hfp_profile_open(bz, dev, 1, NULL, deadline, &l->profile)) == 0) {
		l->codec = l->profile->slc.codec;
		err = open_voice(l, dev, deadline);
	}
	if (err < 0) {
		link_free(l);   /* closes bz */
		return err;
	}
	*out = l;
	return 0;
}

static struct hfp_link *find_link(const char *address)
{
	for (struct hfp_link *l = registry; l; l = l->next)
		if (!strcasecmp(l->address, address))
			return l;
	return NULL;
}

static int take_side(struct hfp_link *l, int dir)
{
	if (l->side[dir].open) {
		SNDERR("bluetooth: the headset %s's %s is open already in this program",
		       l->address, dir == HFP_PLAYBACK ? "earpiece (playback)" : "microphone (capture)");
		return -EBUSY;
	}
	l->side[dir].open = 1;
	l->users++;
	return 0;
}

int hfp_link_acquire(const struct bt_options *opt, int dir, struct hfp_link **out)
{
	int64_t deadline = dbusx_now_ms() + opt->connect_timeout_ms;
	struct bluez_device dev;
	struct hfp_link *l;
	struct bluez *bz;
	int err;

	if ((err = bluez_open(&bz)) < 0)
		return err;
	if ((err = bluez_find_device_role(bz, opt->adapter[0] ? opt->adapter : NULL,
					  opt->device[0] ? opt->device : NULL, BLUEZ_HEADSET,
					  deadline, &dev)) < 0) {
		bluez_close(bz);
		return err;
	}
	/* Held while a new link comes up: the other direction, opened by
	 * another thread meanwhile, must find it rather than make another. */
	pthread_mutex_lock(&registry_lock);
	if ((l = find_link(dev.address))) {
		bluez_close(bz);
		err = take_side(l, dir);
	} else if ((err = link_new(bz, &dev, deadline, &l)) == 0) {
		l->next = registry;
		registry = l;
		err = take_side(l, dir);
	}
	pthread_mutex_unlock(&registry_lock);
	if (err == 0)
		*out = l;
	return err;
}

void hfp_link_release(struct hfp_link *l, int dir)
{
	int last;

	pthread_mutex_lock(&registry_lock);
	pthread_mutex_lock(&l->lock);
	atomic_store(&l->side[dir].running, 0);
	l->side[dir].open = 0;
	pthread_mutex_unlock(&l->lock);
	last = --l->users == 0;
	if (last)
		for (struct hfp_link **p = &registry; *p; p = &(*p)->next)
			if (*p == l) {
				*p = l->next;
				break;
			}
	pthread_mutex_unlock(&registry_lock);
	if (last)
		link_free(l);
}

/* --- what the PCMs ask ---------------------------------------------------------- */

int hfp_link_set_buffer(struct hfp_link *l, int dir, unsigned frames)
{
	struct hfp_side *s = &l->side[dir];
	int16_t *ring = calloc(frames, sizeof(*ring));

	if (!ring)
		return -ENOMEM;
	pthread_mutex_lock(&l->lock);
	free(s->ring);
	s->ring = ring;
	s->size = frames;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

void hfp_link_prepare(struct hfp_link *l, int dir)
{
	struct hfp_side *s = &l->side[dir];

	pthread_mutex_lock(&l->lock);
	atomic_store(&s->running, 0);
	atomic_store(&s->hw, 0);
	atomic_store(&s->appl, 0);
	if (dir == HFP_PLAYBACK && l->codec != HFP_CODEC_MSBC)
		l->out_len = 0;
	pthread_mutex_unlock(&l->lock);
	hfp_link_ack(l, dir);
}

void hfp_link_run(struct hfp_link *l, int dir, int running)
{
	pthread_mutex_lock(&l->lock);
	atomic_store(&l->side[dir].running, running);
	pthread_mutex_unlock(&l->lock);
}

unsigned hfp_link_queued(struct hfp_link *l)
{
	/* out_len is the I/O thread's; a read that races it is off by a frame. */
	size_t bytes = __atomic_load_n(&l->out_len, __ATOMIC_RELAXED);

	return l->codec == HFP_CODEC_MSBC ? (unsigned)(bytes / MSBC_FRAME_LEN * MSBC_SAMPLES)
					  : (unsigned)(bytes / 2);
}

int hfp_link_played_out(struct hfp_link *l)
{
	return l->codec != HFP_CODEC_MSBC || atomic_load(&l->dry_frames) >= FLUSH_FRAMES;
}

void hfp_link_notify(struct hfp_link *l, int dir)
{
	io_poke(l->side[dir].event_fd);
}

void hfp_link_ack(struct hfp_link *l, int dir)
{
	io_drain(l->side[dir].event_fd);
}
