/*
 * hfp_client: hfp/profile.c driven alone, for the integration tests (no PCM
 * uses it yet). Opens the Audio Gateway on one headset, prints what the
 * Service Level Connection agreed, answers the headset for --hold ms, then
 * closes.
 *
 *   hfp_client ADDRESS [--adapter hciN] [--timeout MS] [--hold MS] [--no-msbc] [--trace]
 *
 * --trace: every byte of the AT exchange on stderr ("< " from the headset,
 * "> " ours).
 *
 * stdout, one line each:
 *   FDS n                          open descriptors before the open
 *   SLC codec=msbc|cvsd hf_version=0x0108 hf_features=N brsf=N open_ms=T
 *   GAINS speaker=N mic=N battery=N    after the open, and on each change
 *   CHANNEL_CLOSED | GONE          the headset or bluetoothd ended it first
 *   CLOSED close_ms=T
 *   FDS n                          open descriptors after the close
 *   ERROR rc=N (text)              the open failed (exit status 1)
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bluez.h"
#include "dbus.h"
#include "../../hfp/profile.h"
#include "count_dir.h"

static int count_fds(void)
{
	return count_dir("/proc/self/fd") - 1;     /* less opendir's own */
}

static void print_gains(const struct slc *s)
{
	printf("GAINS speaker=%d mic=%d battery=%d\n", s->speaker_gain, s->mic_gain, s->battery);
	fflush(stdout);
}

/* Answers the headset until hold_ms passes or the link ends. */
static void hold(struct hfp_profile *p, int hold_ms)
{
	int64_t until = dbusx_now_ms() + hold_ms;
	struct slc before = p->slc;

	for (int64_t left; (left = until - dbusx_now_ms()) > 0;) {
		struct pollfd fds[2] = { { .fd = p->fd, .events = POLLIN }, { .fd = -1, .events = POLLIN } };

		dbus_connection_get_unix_fd(p->bz->conn, &fds[1].fd);
		poll(fds, 2, (int)left);
		if (fds[1].revents)
			bluez_dispatch(p->bz);
		if (atomic_load(&p->gone)) {
			printf("GONE\n");
			return;
		}
		if (hfp_profile_service(p) < 0) {
			printf("CHANNEL_CLOSED\n");
			return;
		}
		if (p->slc.speaker_gain != before.speaker_gain || p->slc.mic_gain != before.mic_gain ||
		    p->slc.battery != before.battery)
			print_gains(&p->slc);
		before = p->slc;
	}
}

int main(int argc, char **argv)
{
	const char *address = NULL, *adapter = NULL;
	int timeout_ms = 10000, hold_ms = 0, msbc = 1, err;
	FILE *trace = NULL;
	struct bluez *bz = NULL;
	struct bluez_device dev;
	struct hfp_profile *p;
	int64_t t0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--adapter") && i + 1 < argc)
			adapter = argv[++i];
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--hold") && i + 1 < argc)
			hold_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--no-msbc"))
			msbc = 0;
		else if (!strcmp(argv[i], "--trace"))
			trace = stderr;
		else
			address = argv[i];
	}
	printf("FDS %d\n", count_fds());
	t0 = dbusx_now_ms();
	if ((err = bluez_open(&bz)) < 0 ||
	    (err = bluez_find_device_role(bz, adapter, address, BLUEZ_HEADSET, t0 + timeout_ms, &dev)) < 0 ||
	    (err = hfp_profile_open(bz, &dev, msbc, trace, t0 + timeout_ms, &p)) < 0) {
		printf("ERROR rc=%d (%s)\n", err, strerror(-err));
		if (bz)
			bluez_close(bz);
		return 1;
	}
	printf("SLC codec=%s hf_version=0x%04x hf_features=%u brsf=%u open_ms=%lld\n",
	       p->slc.codec == HFP_CODEC_MSBC ? "msbc" : "cvsd", p->hf_version, p->hf_features,
	       p->slc.hf_features, (long long)(dbusx_now_ms() - t0));
	print_gains(&p->slc);
	hold(p, hold_ms);
	t0 = dbusx_now_ms();
	hfp_profile_close(p);
	bluez_close(bz);
	printf("CLOSED close_ms=%lld\nFDS %d\n", (long long)(dbusx_now_ms() - t0), count_fds());
	return 0;
}
