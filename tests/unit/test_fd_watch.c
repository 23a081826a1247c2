/* The I/O thread's wait: its deadline against the clock (also where
 * epoll_pwait2 is refused, or the epoll set is closed under it), readiness
 * per slot, descriptors that change, close or hang up, and no leaked
 * descriptor. */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "check.h"
#include "fd_watch.h"
#include "io_thread.h"

#define MS 1000000LL

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static void test_deadline(void)
{
	struct fd_watch w;
	int wake = eventfd(0, EFD_NONBLOCK);

	CHECK(fd_watch_init(&w) == 0, "init");
	fd_watch_set(&w, 0, wake, EPOLLIN);
	for (int i = 0; i < 5; i++) {
		int64_t due = io_now_ns() + (3 + 7 * i) * MS, n = fd_watch_wait(&w, due), now = io_now_ns();

		CHECK(n == 0, "nothing ready: the deadline came (%lld)", (long long)n);
		CHECK(now >= due, "never before the deadline: %lld ns early", (long long)(due - now));
		CHECK(now < due + 500 * MS, "the deadline, not much later: %lld ms late",
		      (long long)((now - due) / MS));
	}
	CHECK(fd_watch_wait(&w, 1) == 0, "a deadline past: returns at once");
	io_poke(wake);
	CHECK(fd_watch_wait(&w, 0) == 1 && (w.revents[0] & EPOLLIN), "no deadline: the poke");
	fd_watch_close(&w);
	close(wake);
}

/* A kernel older than 5.11 as far as epoll_pwait2 goes (ENOSYS), or a
 * container's seccomp filter that does not know the call (EPERM). */
static int refuse_pwait2(int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_epoll_pwait2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
	       prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0 ? 0 : -1;
}

static void test_deadline_refused(int err)
{
	int status = 0;
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) == 0) {
		if (refuse_pwait2(err) < 0) {
			printf("FAIL: cannot install the seccomp filter\n");
			_exit(2);
		}
		check_passed = check_failed = 0;
		CHECK(syscall(SYS_epoll_pwait2, -1, NULL, 0, NULL, NULL, 0) < 0 && errno == err,
		      "epoll_pwait2 refused: %s", strerror(errno));
		test_deadline();
		printf("epoll_pwait2 refused (%s): ", strerror(err));
		status = check_finish();
		fflush(stdout);
		_exit(status);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "epoll_pwait2 refused (%s): the deadline in milliseconds, its checks above passed (status %#x)",
	      strerror(err), status);
}

static void test_slots(void)
{
	struct fd_watch w;
	int a = eventfd(0, EFD_NONBLOCK), b = eventfd(0, EFD_NONBLOCK);

	CHECK(fd_watch_init(&w) == 0, "init");
	fd_watch_set(&w, 1, a, EPOLLIN);
	fd_watch_set(&w, 3, -1, EPOLLIN);
	io_poke(a);
	CHECK(fd_watch_wait(&w, 1) == 1, "one ready");
	CHECK(w.revents[1] & EPOLLIN, "in its slot");
	CHECK(!w.revents[0] && !w.revents[2] && !w.revents[3], "the others not");
	fd_watch_set(&w, 1, b, EPOLLIN);    /* the slot's descriptor changed */
	CHECK(fd_watch_wait(&w, 1) == 0, "the old descriptor is out of the set");
	io_poke(b);
	CHECK(fd_watch_wait(&w, 1) == 1 && (w.revents[1] & EPOLLIN), "the new one is in");
	fd_watch_set(&w, 1, -1, EPOLLIN);
	CHECK(fd_watch_wait(&w, 1) == 0, "an empty slot: nothing");
	fd_watch_set(&w, 2, b, 0);
	CHECK(fd_watch_wait(&w, 1) == 0, "no events asked: a readable one is not ready");
	fd_watch_set(&w, 2, b, EPOLLIN);
	CHECK(fd_watch_wait(&w, 1) == 1 && (w.revents[2] & EPOLLIN), "events changed: ready");
	fd_watch_close(&w);
	close(a);
	close(b);
}

static void test_hangup_and_close(void)
{
	struct fd_watch w;
	int sv[2], e, again;
	FILE *plain = tmpfile();

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair");
	CHECK(fd_watch_init(&w) == 0, "init");
	fd_watch_set(&w, 0, sv[0], 0);
	CHECK(fd_watch_wait(&w, 1) == 0, "an open peer: nothing");
	close(sv[1]);
	CHECK(fd_watch_wait(&w, 1) == 1 && (w.revents[0] & EPOLLHUP), "hang-up reported unasked");
	fd_watch_set(&w, 0, -1, 0);
	CHECK(fd_watch_wait(&w, 1) == 0, "handled and taken out: no longer");
	close(sv[0]);

	/* A descriptor closed while registered, its number taken by another. */
	e = eventfd(0, EFD_NONBLOCK);
	fd_watch_set(&w, 1, e, EPOLLIN);
	close(e);
	again = eventfd(0, EFD_NONBLOCK);
	fd_watch_set(&w, 1, -1, EPOLLIN);
	fd_watch_set(&w, 1, again, EPOLLIN);
	io_poke(again);
	CHECK(again == e, "the same number again (%d, %d)", e, again);
	CHECK(fd_watch_wait(&w, 1) == 1 && (w.revents[1] & EPOLLIN), "the new file is watched");
	/* Closed and its number reused while the slot still holds it: a change
	 * of events registers the new file. */
	close(again);
	e = eventfd(0, EFD_NONBLOCK);
	fd_watch_set(&w, 1, e, EPOLLIN | EPOLLPRI);
	io_poke(e);
	CHECK(e == again, "the same number again (%d, %d)", again, e);
	CHECK(fd_watch_wait(&w, 1) == 1 && (w.revents[1] & EPOLLIN), "the reused number is watched");
	fd_watch_set(&w, 1, -1, 0);
	close(e);

	/* A file epoll cannot watch: never ready, as ppoll would leave it. */
	fd_watch_set(&w, 2, plain ? fileno(plain) : -1, EPOLLIN);
	CHECK(plain && fd_watch_wait(&w, 1) == 0, "a plain file: never ready");
	fd_watch_close(&w);
	if (plain)
		fclose(plain);
}

/* The program closed our epoll descriptor (a bug, but in its process):
 * the wait still keeps its deadline and sees its descriptors. */
static void test_epoll_closed(void)
{
	struct fd_watch w;
	int wake = eventfd(0, EFD_NONBLOCK);
	int64_t due, now;
	int n;

	CHECK(fd_watch_init(&w) == 0, "init");
	fd_watch_set(&w, 1, wake, EPOLLIN);
	close(w.epoll_fd);
	due = io_now_ns() + 5 * MS;
	n = fd_watch_wait(&w, due);
	now = io_now_ns();
	CHECK(n == 0 && now >= due, "the deadline, polled (%d): %lld ns early", n, (long long)(due - now));
	io_poke(wake);
	CHECK(fd_watch_wait(&w, 0) == 1 && (w.revents[1] & EPOLLIN) && !w.revents[0],
	      "the descriptor, polled");
	w.epoll_fd = -1;
	fd_watch_close(&w);
	close(wake);
}

static void test_no_leak(void)
{
	int before = open_fds();
	struct fd_watch w;

	int made = 0;

	for (int i = 0; i < 100; i++) {
		made += fd_watch_init(&w) == 0;
		fd_watch_close(&w);
	}
	CHECK(made == 100, "made %d of 100", made);
	CHECK(open_fds() == before, "no descriptor left: %d before, %d after", before, open_fds());
}

int main(void)
{
	test_deadline();
	test_deadline_refused(ENOSYS);
	test_deadline_refused(EPERM);
	test_slots();
	test_hangup_and_close();
	test_epoll_closed();
	test_no_leak();
	return check_finish();
}
