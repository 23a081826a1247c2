/*
 * alsa-bt-mixer: the mixer of one speaker, started by the first program
 * that opens it with mixing on (see mix_spawn.h, mixer.h). Not for people
 * to run: its descriptor 3 is that program's connection.
 *
 *   alsa-bt-mixer ADAPTER ADDRESS LINGER_MS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mix_spawn.h"
#include "mixer.h"

#define FIRST_FD 3

int main(int argc, char **argv)
{
	struct mixer m;
	int listen_fd;
	pid_t pid;

	if (argc != 4) {
		fprintf(stderr, "%s is started by the alsa-bt plugin, not by hand\n", argv[0]);
		return 2;
	}
	/* Out of the program's process tree: the program reaps this process. */
	if ((pid = fork()) < 0)
		return 1;
	if (pid > 0)
		_exit(0);
	signal(SIGPIPE, SIG_IGN);
	if (chdir("/") < 0)         /* not the program's directory: it may be unmounted */
		return 1;
	mixer_catch_errors();
	if ((listen_fd = mix_socket_at(argv[1], argv[2], MIX_MAX_CLIENTS)) < 0) {
		/* The program sees its connection end, and connects to the winner. */
		if (listen_fd != -EADDRINUSE)
			fprintf(stderr, "alsa-bt-mixer: cannot listen: %d\n", listen_fd);
		return listen_fd == -EADDRINUSE ? 0 : 1;
	}
	if (mixer_init(&m, listen_fd, FIRST_FD, (unsigned)strtoul(argv[3], NULL, 10)) < 0)
		return 1;
	mixer_run(&m);
	mixer_free(&m);
	return 0;
}
