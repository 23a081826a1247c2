/* SCO sockets (Linux: net/bluetooth/sco.c; doc/sco-protocol.rst).  The
 * kernel's ABI is spelled out here: the headers are in libbluetooth-dev,
 * which nothing else of ours needs. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sco.h"

#ifndef AF_BLUETOOTH
#define AF_BLUETOOTH 31
#endif
#define BTPROTO_SCO 2
#define SOL_BLUETOOTH 274
#define BT_VOICE 11
#define SOL_SCO 17
#define SCO_OPTIONS 0x01

struct sco_address {            /* struct sockaddr_sco */
	sa_family_t family;
	uint8_t bdaddr[6];
};
_Static_assert(sizeof(struct sco_address) == 8, "struct sockaddr_sco is 8 bytes");

int sco_parse_address(const char *text, uint8_t out[6])
{
	unsigned b[6];
	char tail;

	if (!text || strlen(text) != 17 ||
	    sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (text[3 * i + 2] != (i == 5 ? '\0' : ':'))
			return -EINVAL;
		out[5 - i] = (uint8_t)b[i];
	}
	return 0;
}

/* The connection started by a non-blocking connect(): 0 once up, -errno. */
static int wait_connected(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0, n;
	socklen_t len = sizeof(err);

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

int sco_connect(const char *adapter, const char *device, uint16_t voice, int timeout_ms)
{
	struct sco_address local = { .family = AF_BLUETOOTH }, remote = { .family = AF_BLUETOOTH };
	struct { uint16_t setting; } v = { voice };
	int fd, err = 0;

	if (sco_parse_address(adapter, local.bdaddr) < 0 ||
	    sco_parse_address(device, remote.bdaddr) < 0)
		return -EINVAL;
	fd = socket(AF_BLUETOOTH, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, BTPROTO_SCO);
	if (fd < 0)
		return -errno;
	/* bind chooses the adapter; the voice setting must precede connect */
	if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0 ||
	    setsockopt(fd, SOL_BLUETOOTH, BT_VOICE, &v, sizeof(v)) < 0)
		err = -errno;
	else if (connect(fd, (struct sockaddr *)&remote, sizeof(remote)) < 0)
		err = errno == EINPROGRESS ? wait_connected(fd, timeout_ms) : -errno;
	if (err < 0) {
		close(fd);
		return err;
	}
	return fd;
}

int sco_kernel_mtu(int fd)
{
	struct { uint16_t mtu; } opt = { 0 };
	socklen_t len = sizeof(opt);

	if (getsockopt(fd, SOL_SCO, SCO_OPTIONS, &opt, &len) < 0)
		return -errno;
	return opt.mtu;
}
