/* Finding a speaker's mixer, or starting it: see mix_spawn.h. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mix_spawn.h"

#define MIXER_FD 3          /* the mixer's end of the first program's connection */

/* Which system bus: the same adapter and address on another bus (a test's
 * private one) is another speaker. FNV-1a. */
static uint64_t bus_hash(void)
{
	const char *bus = getenv("DBUS_SYSTEM_BUS_ADDRESS");
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = bus ? bus : ""; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	return h;
}

socklen_t mix_socket_name(struct sockaddr_un *sa, uid_t uid, const char *adapter,
			  const char *address)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* Abstract (a leading NUL): gone with the socket, nothing to clean. */
	n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "alsa-bt/mix/%u/%016llx/%s/%s",
		     (unsigned)uid, (unsigned long long)bus_hash(), adapter, address);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

int mix_check_peer(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != getuid())
		return -EACCES;
	return 0;
}

int mix_socket_at(const char *adapter, const char *address, int backlog)
{
	struct sockaddr_un sa;
	socklen_t len = mix_socket_name(&sa, getuid(), adapter, address);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), err;

	if (fd < 0)
		return -errno;
	if (backlog ? bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, backlog) < 0
		    : connect(fd, (struct sockaddr *)&sa, len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	if (!backlog && (err = mix_check_peer(fd)) < 0) {
		close(fd);
		return err;
	}
	return fd;
}

/* The mixer's program: ALSABT_MIXER, else beside this plugin. */
static int mixer_path(char *path, size_t size)
{
	const char *env = getenv("ALSABT_MIXER");
	Dl_info info;
	const char *slash;

	if (env && *env) {
		snprintf(path, size, "%s", env);
		return 0;
	}
	if (!dladdr((void *)mixer_path, &info) || !info.dli_fname ||
	    !(slash = strrchr(info.dli_fname, '/')))
		return -ENOENT;
	snprintf(path, size, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname,
		 MIX_MIXER_NAME);
	return access(path, X_OK) == 0 ? 0 : -ENOENT;
}

/* What the mixer keeps of the program's environment: where the buses and
 * the per-user state are, our own settings, and the sanitizers' options. */
static int keep_env(const char *e)
{
	static const char *const keep[] = { "DBUS_SYSTEM_BUS_ADDRESS=", "HOME=",
		"XDG_RUNTIME_DIR=", "XDG_STATE_HOME=", "ALSABT_", "ASAN_OPTIONS=",
		"UBSAN_OPTIONS=", "TSAN_OPTIONS=", "LSAN_OPTIONS=", NULL };

	for (int i = 0; keep[i]; i++)
		if (!strncmp(e, keep[i], strlen(keep[i])))
			return 1;
	return 0;
}

static char **mixer_env(void)
{
	extern char **environ;
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	if (!(env = calloc(n + 1, sizeof(*env))))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (keep_env(environ[i]))
			env[k++] = environ[i];
	return env;
}

/* Starts the mixer with fd as its descriptor 3; waits for the process we
 * started, which leaves at once (the mixer goes on in its child). */
static int spawn_mixer(const char *path, char *const argv[], int fd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, deflt;
	const char *log = getenv("ALSABT_MIXER_LOG");
	char **env = mixer_env();
	pid_t pid;
	int err;

	if (!env)
		return -ENOMEM;
	sigemptyset(&none);
	sigemptyset(&deflt);
	/* A program that ignores these must not make its mixer ignore them. */
	sigaddset(&deflt, SIGPIPE);
	sigaddset(&deflt, SIGTERM);
	sigaddset(&deflt, SIGCHLD);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
				 POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &deflt);
	/* Never the program's stdout or stderr: a shell reading them would wait
	 * for the mixer to end. */
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, log && *log ? log : "/dev/null",
					 O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, fd, MIXER_FD);
	posix_spawn_file_actions_addclosefrom_np(&fa, MIXER_FD + 1);
	err = posix_spawn(&pid, path, &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	if (err)
		return -err;
	/* ECHILD: the program reaps its children itself, or ignores SIGCHLD. */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return 0;
}

int mix_connect(const char *adapter, const char *address, char *const argv[],
		char *why, size_t whylen)
{
	char path[4096];
	int fd, sv[2], err;

	if ((fd = mix_socket_at(adapter, address, 0)) >= 0 || fd != -ECONNREFUSED)
		return fd;
	/* A set-uid program would start the mixer as its owner, with a clean
	 * environment that is not the user's: keep to playing alone. */
	if (getauxval(AT_SECURE)) {
		snprintf(why, whylen, "a set-uid program");
		return -ENOEXEC;
	}
	if (mixer_path(path, sizeof(path)) < 0) {
		snprintf(why, whylen, "%s is not installed beside the plugin", MIX_MIXER_NAME);
		return -ENOEXEC;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	/* dup2 onto itself would keep close-on-exec: keep the end off fd 3. */
	if (sv[1] == MIXER_FD) {
		int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, MIXER_FD + 1);

		close(sv[1]);
		sv[1] = moved;
	}
	err = sv[1] < 0 ? -EMFILE : spawn_mixer(path, argv, sv[1]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (err < 0) {
		close(sv[0]);
		snprintf(why, whylen, "%s could not be started (%s)", path, strerror(-err));
		return -ENOEXEC;
	}
	return sv[0];
}
