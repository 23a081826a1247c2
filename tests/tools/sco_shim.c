/*
 * The radio of the HFP tests: preloaded into the program under test, it
 * turns the SCO socket hfp/sco.c opens into an AF_UNIX SOCK_SEQPACKET
 * connection to the scripted headset (ALSABT_SCO_SOCKET, a path), since
 * this machine's kernel has no Bluetooth.  Everything else of the plugin
 * runs as it does on a real kernel.
 *
 * What the plugin set is passed on: the first datagram the headset
 * receives is "voice=0xNNNN bind=XX:..:XX connect=XX:..:XX", so that the
 * test checks the voice setting (CVSD or transparent) and the addresses.
 * ALSABT_SCO_REFUSE=errno makes the connection fail with that errno;
 * ALSABT_SCO_NO_TRANSPARENT=1 fails a transparent (mSBC) one with
 * EOPNOTSUPP, as the kernel does for an adapter without it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define AF_BT 31
#define BTPROTO_SCO 2
#define SOL_BLUETOOTH 274
#define BT_VOICE 11
#define MAX_FD 4096

static struct { int sco; uint16_t voice; char bind[18]; } fds[MAX_FD];

static int ours(int fd)
{
	return fd >= 0 && fd < MAX_FD && fds[fd].sco;
}

static void address(const struct sockaddr *sa, char out[18])
{
	const uint8_t *b = (const uint8_t *)sa->sa_data;   /* after the family: bdaddr reversed */

	snprintf(out, 18, "%02X:%02X:%02X:%02X:%02X:%02X", b[5], b[4], b[3], b[2], b[1], b[0]);
}

int socket(int domain, int type, int protocol)
{
	static int (*real)(int, int, int);
	int fd;

	if (!real)
		real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
	if (domain != AF_BT || protocol != BTPROTO_SCO)
		return real(domain, type, protocol);
	fd = real(AF_UNIX, type, 0);
	if (fd >= 0 && fd < MAX_FD) {
		memset(&fds[fd], 0, sizeof(fds[fd]));
		fds[fd].sco = 1;
	}
	return fd;
}

int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);

	if (!real)
		real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	if (!ours(fd))
		return real(fd, sa, len);
	address(sa, fds[fd].bind);
	return 0;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	static int (*real)(int, int, int, const void *, socklen_t);

	if (!real)
		real = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
	if (!ours(fd) || level != SOL_BLUETOOTH)
		return real(fd, level, name, val, len);
	if (name != BT_VOICE || len < 2) {
		errno = ENOPROTOOPT;
		return -1;
	}
	memcpy(&fds[fd].voice, val, 2);
	return 0;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	const char *path = getenv("ALSABT_SCO_SOCKET"), *refuse = getenv("ALSABT_SCO_REFUSE");
	char hello[96], to[18];

	if (!real)
		real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
	if (!ours(fd))
		return real(fd, sa, len);
	if (refuse) {
		errno = atoi(refuse);
		return -1;
	}
	if (getenv("ALSABT_SCO_NO_TRANSPARENT") && fds[fd].voice == 0x0003) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if (!path || strlen(path) >= sizeof(un.sun_path)) {
		errno = EHOSTUNREACH;
		return -1;
	}
	strcpy(un.sun_path, path);
	if (real(fd, (struct sockaddr *)&un, sizeof(un)) < 0)
		return -1;
	address(sa, to);
	snprintf(hello, sizeof(hello), "voice=0x%04x bind=%s connect=%s", fds[fd].voice,
		 fds[fd].bind, to);
	if (send(fd, hello, strlen(hello), MSG_NOSIGNAL) < 0)
		return -1;
	return 0;
}

int close(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "close");
	if (fd >= 0 && fd < MAX_FD)
		fds[fd].sco = 0;
	return real(fd);
}
