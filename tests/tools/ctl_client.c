/* Holds a ctl open and reads one element every 100 ms, printing
 *   READ t=SECONDS rc=ERR value=V
 * so tests can see what an open mixer gets when bluetoothd goes away.
 * Usage: ctl_client DEVICE ELEMENT-NAME SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <alsa/asoundlib.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	snd_ctl_elem_value_t *val;
	snd_ctl_t *ctl;
	double start = now(), end;
	int err;

	if (argc != 4) {
		fprintf(stderr, "usage: ctl_client DEVICE ELEMENT SECONDS\n");
		return 2;
	}
	end = start + atof(argv[3]);
	if ((err = snd_ctl_open(&ctl, argv[1], 0)) < 0) {
		printf("OPEN rc=%d\n", err);
		return 1;
	}
	snd_ctl_elem_value_alloca(&val);
	snd_ctl_elem_value_set_interface(val, SND_CTL_ELEM_IFACE_MIXER);
	snd_ctl_elem_value_set_name(val, argv[2]);
	while (now() < end) {
		err = snd_ctl_elem_read(ctl, val);
		printf("READ t=%.3f rc=%d value=%ld\n", now() - start, err,
		       err < 0 ? -1 : snd_ctl_elem_value_get_integer(val, 0));
		fflush(stdout);
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
	}
	snd_ctl_close(ctl);
	return 0;
}
