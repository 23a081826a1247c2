/* The SCO socket's addresses, and what it says where it cannot be made: this
 * machine's kernel has no Bluetooth (the VM suite opens real ones). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "../../hfp/sco.h"
#include "check.h"

static int open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

int main(void)
{
	static const uint8_t want[6] = { 0xcc, 0xbb, 0xaa, 0x66, 0x1b, 0x00 };
	static const char *const bad[] = {
		"", "00:1B:66:AA:BB", "00:1B:66:AA:BB:CC:", "00-1B-66-AA-BB-CC", "0:1B:66:AA:BB:CCC",
		"00:1B:66:AA:BB:GG", "001B:66:AA:BB:CC:", " 00:1B:66:AA:BB:C",
	};
	uint8_t b[6];
	int fds = open_fds(), fd;

	CHECK(sco_parse_address("00:1B:66:AA:BB:CC", b) == 0 && !memcmp(b, want, 6),
	      "address in the kernel's order");
	CHECK(sco_parse_address("00:1b:66:aa:bb:cc", b) == 0 && !memcmp(b, want, 6), "lowercase");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(sco_parse_address(bad[i], b) == -EINVAL, "'%s' refused", bad[i]);
	CHECK(sco_parse_address(NULL, b) == -EINVAL, "NULL refused");
	CHECK(sco_connect("00:11:22:33:44:55", "bad", SCO_VOICE_CVSD_16BIT, 100) == -EINVAL,
	      "a bad device address: -EINVAL before any socket");
	fd = sco_connect("00:11:22:33:44:55", "00:1B:66:AA:BB:CC", SCO_VOICE_TRANSPARENT, 100);
	/* without Bluetooth in the kernel: -EAFNOSUPPORT; with it but no such
	 * adapter: -EADDRNOTAVAIL; either way an errno and no descriptor left */
	CHECK(fd < 0 && open_fds() == fds, "no Bluetooth here: %d (%s), fds %d -> %d", fd,
	      fd < 0 ? strerror(-fd) : "a descriptor", fds, open_fds());
	if (fd >= 0)
		close(fd);
	return check_finish();
}
