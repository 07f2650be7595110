// SPDX-License-Identifier: GPL-2.0
/*
 * I/O at one place of a file or block device, reporting what the kernel
 * answered, for the bad-block tests (badblocks_test.sh):
 *
 *   poison_io read FILE OFFSET LEN [direct]   pread; prints "read ok" or
 *                                             "read rc=N errno=NAME"
 *   poison_io write FILE OFFSET LEN [direct]  pwrite of 0x5a bytes, then
 *                                             fdatasync; prints "write ok"
 *                                             or "write rc=N errno=NAME"
 *   poison_io phys FILE OFFSET                prints the byte offset on the
 *                                             device that holds OFFSET of
 *                                             FILE (FIEMAP)
 *   poison_io map FILE OFFSET WAIT_MS         asks for early memory-failure
 *                                             signals (PR_MCE_KILL_EARLY),
 *                                             maps the page at OFFSET shared,
 *                                             loads from it, prints "mapped",
 *                                             waits WAIT_MS (a memory error
 *                                             may be reported meanwhile),
 *                                             loads again; prints
 *                                             "first=R async=S second=R"
 *     R: "ok" or "sigbus:CODE"; S: "none" or "sigbus:CODE"; CODE is
 *     BUS_MCEERR_AR, BUS_MCEERR_AO, BUS_ADRERR or a number.
 *
 * The output is one line; the exit status is 0 unless the arguments or the
 * setup (open, mmap) fail.
 */
#include <errno.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static sigjmp_buf load_env;
static atomic_int loading, async_code;
static char sink;

static const char *code_name(int code, char *buf, size_t len)
{
	switch (code) {
	case BUS_MCEERR_AR:
		return "BUS_MCEERR_AR";
	case BUS_MCEERR_AO:
		return "BUS_MCEERR_AO";
	case BUS_ADRERR:
		return "BUS_ADRERR";
	}
	snprintf(buf, len, "%d", code);
	return buf;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	if (loading)
		siglongjmp(load_env, si->si_code);
	/* Reported while not touching the page: remember it and go on. */
	async_code = si->si_code;
}

/* Loads one byte at p; returns 0 or the SIGBUS code. */
static int load(const char *p)
{
	int code = sigsetjmp(load_env, 1);

	if (code) {
		loading = 0;
		return code;
	}
	loading = 1;
	sink += __atomic_load_n(p, __ATOMIC_RELAXED);
	loading = 0;
	return 0;
}

static void print_load(const char *what, int code)
{
	char buf[16];

	if (code)
		printf("%s=sigbus:%s", what, code_name(code, buf, sizeof(buf)));
	else
		printf("%s=ok", what);
}

static int do_io(int write, const char *path, off_t off, size_t len, int direct)
{
	int fd = open(path, (write ? O_RDWR : O_RDONLY) | (direct ? O_DIRECT : 0));
	void *buf;
	ssize_t rc;

	if (fd < 0 || posix_memalign(&buf, 4096, len)) {
		perror(path);
		return 1;
	}
	memset(buf, 0x5a, len);
	rc = write ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
	if (write && rc == (ssize_t)len && fdatasync(fd))
		rc = -1;
	if (rc == (ssize_t)len)
		printf("%s ok\n", write ? "write" : "read");
	else
		printf("%s rc=%zd errno=%s\n", write ? "write" : "read", rc,
		       rc < 0 ? strerrorname_np(errno) : "none");
	close(fd);
	return 0;
}

static int do_phys(const char *path, off_t off)
{
	struct {
		struct fiemap map;
		struct fiemap_extent extent;
	} fm = { .map = { .fm_start = off, .fm_length = 1, .fm_flags = FIEMAP_FLAG_SYNC,
			  .fm_extent_count = 1 } };
	int fd = open(path, O_RDONLY);

	if (fd < 0 || ioctl(fd, FS_IOC_FIEMAP, &fm.map) || fm.map.fm_mapped_extents != 1) {
		perror(path);
		return 1;
	}
	printf("%llu\n", (unsigned long long)(fm.extent.fe_physical + off - fm.extent.fe_logical));
	return 0;
}

static int do_map(const char *path, off_t off, long wait_ms)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	struct timespec ts = { wait_ms / 1000, (wait_ms % 1000) * 1000000 };
	long page = sysconf(_SC_PAGESIZE);
	int fd = open(path, O_RDWR), first, second;
	char *map;
	char buf[16];

	if (fd < 0) {
		perror(path);
		return 1;
	}
	map = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, off & ~(page - 1));
	if (map == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	sigaction(SIGBUS, &sa, NULL);
	if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0)) {
		perror("PR_MCE_KILL");
		return 1;
	}
	first = load(map + (off & (page - 1)));
	printf("mapped\n");
	fflush(stdout);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	second = load(map + (off & (page - 1)));
	print_load("first", first);
	if (async_code)
		printf(" async=sigbus:%s ", code_name(async_code, buf, sizeof(buf)));
	else
		printf(" async=none ");
	print_load("second", second);
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "read"))
		return do_io(0, argv[2], strtoll(argv[3], NULL, 0), strtoul(argv[4], NULL, 0),
			     argc > 5 && !strcmp(argv[5], "direct"));
	if (argc >= 5 && !strcmp(argv[1], "write"))
		return do_io(1, argv[2], strtoll(argv[3], NULL, 0), strtoul(argv[4], NULL, 0),
			     argc > 5 && !strcmp(argv[5], "direct"));
	if (argc == 4 && !strcmp(argv[1], "phys"))
		return do_phys(argv[2], strtoll(argv[3], NULL, 0));
	if (argc == 5 && !strcmp(argv[1], "map"))
		return do_map(argv[2], strtoll(argv[3], NULL, 0), strtol(argv[4], NULL, 0));
	fprintf(stderr, "usage: poison_io read|write FILE OFFSET LEN [direct]\n"
			"       poison_io phys FILE OFFSET\n"
			"       poison_io map FILE OFFSET WAIT_MS\n");
	return 2;
}
