// SPDX-License-Identifier: GPL-2.0
/*
 * slow_sync.so: an LD_PRELOAD library for the QEMU of a test boot that makes
 * the host's flush of a virtio-pmem backing file slow, or blocks it, on
 * command.  libfiu (used for host failures) can make fsync fail but not
 * wait, hence this library.
 *
 * Only fsync() and fdatasync() of a descriptor whose file's path starts with
 * $VPMEM_SLOW_PATH are touched; every other call goes straight through.
 * Before such a call, the control file $VPMEM_SLOW_CTL is read:
 *   "delay MS"  the call sleeps MS milliseconds first;
 *   "once MS"   the next call sleeps MS milliseconds first, and the file is
 *               set to "off" for the calls after it;
 *   "hang"      the call waits until the file says something else;
 *   anything else, or no file: no change.
 * The runner writes the control file when the guest asks on its console.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts))
		;
}

/* Reads the control file: returns -1 to hang, else the delay in ms (0: none). */
static long control(void)
{
	const char *path = getenv("VPMEM_SLOW_CTL");
	char buf[64] = "";
	FILE *f;

	if (!path)
		return 0;
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	if (!strncmp(buf, "hang", 4))
		return -1;
	if (!strncmp(buf, "delay ", 6))
		return strtol(buf + 6, NULL, 10);
	if (!strncmp(buf, "once ", 5)) {
		f = fopen(path, "w");
		if (f) {
			fputs("off\n", f);
			fclose(f);
		}
		return strtol(buf + 5, NULL, 10);
	}
	return 0;
}

/* Whether fd is a file under $VPMEM_SLOW_PATH. */
static int watched(int fd)
{
	const char *prefix = getenv("VPMEM_SLOW_PATH");
	char link[64], target[PATH_MAX];
	ssize_t n;

	if (!prefix || !*prefix)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return 0;
	target[n] = '\0';
	return !strncmp(target, prefix, strlen(prefix));
}

static void maybe_wait(int fd)
{
	long ms;

	if (!watched(fd))
		return;
	while ((ms = control()) < 0)
		sleep_ms(10);
	if (ms > 0)
		sleep_ms(ms);
}

int fsync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	maybe_wait(fd);
	return real(fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	maybe_wait(fd);
	return real(fd);
}
