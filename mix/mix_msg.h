/*
 * One message of the mix protocol (mix_proto.h) over its SOCK_SEQPACKET
 * connection, with up to two descriptors beside it (SCM_RIGHTS).
 */
#ifndef MIX_MSG_H
#define MIX_MSG_H

#include <stddef.h>
#include <sys/types.h>

#define MIX_MAX_FDS 2

/* 0 or -errno; never SIGPIPE. */
int mix_send(int fd, const void *msg, size_t len, const int *fds, int nfds, int flags);
/* The message's length (0: the other end hung up) or -1 with errno; its
 * descriptors (close-on-exec) in fds, *nfds of them; more are closed. */
ssize_t mix_recv(int fd, void *buf, size_t size, int *fds, int *nfds, int flags);

#endif
