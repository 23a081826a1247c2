/*
 * Finding the mixer of a speaker, or starting it.
 *
 * A speaker's mixer listens on an abstract unix socket named after the user
 * and the speaker: no file to leave behind, and the name is free again the
 * moment the mixer is gone. Whoever connects is checked by its credentials
 * (SO_PEERCRED) on both sides: another user can neither play into a user's
 * mixer nor pose as it.
 *
 * The first program starts it (posix_spawn, its own session, a clean
 * environment, no descriptor of the program but one end of a socket pair,
 * which becomes the program's connection). The mixer leaves the program's
 * process tree at once, lives while programs are connected and a moment
 * after (LINGER), and exits.
 */
#ifndef MIX_SPAWN_H
#define MIX_SPAWN_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#define MIX_MIXER_NAME "alsa-bt-mixer"

/* The socket name of the mixer of (adapter, address) for uid, on this
 * process's system bus. */
socklen_t mix_socket_name(struct sockaddr_un *sa, uid_t uid, const char *adapter,
			  const char *address);

/* The mixer's socket of (adapter, address) for this user: bound and
 * listening with backlog > 0 (-EADDRINUSE: another mixer has it; it started
 * at the same moment, and won), else connected, its peer checked. */
int mix_socket_at(const char *adapter, const char *address, int backlog);

/* 0 if the peer of fd runs as this process's user, else -EACCES. */
int mix_check_peer(int fd);

/* The mixer of (adapter, address), connected; started with argv (argv[0]
 * aside) when none runs. A connected SOCK_SEQPACKET descriptor, or -errno:
 * -ENOEXEC when no mixer can be started here (its program is missing, or
 * the program runs set-uid), with why in why. */
int mix_connect(const char *adapter, const char *address, char *const argv[],
		char *why, size_t whylen);

#endif
