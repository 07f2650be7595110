// SPDX-License-Identifier: GPL-2.0
/*
 * flush_snapshot.so: an LD_PRELOAD library for the QEMU of a power-cut boot.
 * It keeps, for every virtio-pmem backing file, a copy of the file as it
 * stood when the host's last flush of it completed: what a power cut right
 * after that flush would leave on the host's disk.
 *
 * After an fsync() or fdatasync() that succeeds on a descriptor whose file's
 * path starts with $VPMEM_SNAP_PATH, and before the call returns (so before
 * QEMU completes the guest's flush request), the file is copied into
 * $VPMEM_SNAP_DIR/<file name>.0 or .1, the one that does not hold the last
 * complete copy, and then "<number> <realtime ms> <0 or 1>" is appended to
 * $VPMEM_SNAP_DIR/<file name>.flushes: the last whole line of that file
 * names the last complete copy, also when QEMU was killed while copying.
 * (Two files written in place: no page of the copies is allocated twice.)
 * A copy that cannot be made stops QEMU (abort): a power-cut test must not
 * go on without its oracle.
 *
 * $VPMEM_SNAP_EVERY=N (by hand, to check the checker): only every Nth flush
 * is copied, as by a host whose cache acknowledges flushes it does not make
 * durable; a power-cut run must then report lost records.
 *
 * The copy also holds some of the writes the guest made while it was being
 * taken, a subset a real power cut may also have kept: nothing orders writes
 * that follow a flush.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The copies made so far, per backing file (a boot has a few). */
static struct {
	char name[NAME_MAX + 1];
	unsigned long count;
} files[16];

/* Returns the number of copies made of the file called name (the lock held). */
static unsigned long *count_of(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(files); i++) {
		if (!files[i].name[0])
			snprintf(files[i].name, sizeof(files[i].name), "%s", name);
		if (!strcmp(files[i].name, name))
			return &files[i].count;
	}
	fprintf(stderr, "flush_snapshot: too many backing files\n");
	abort();
}

/* Copies the file open at fd to out, from its start to its end. */
static int copy_all(int fd, int out)
{
	static char buf[1 << 20];
	struct stat st;
	off_t off = 0;

	if (fstat(fd, &st))
		return -1;
	while (off < st.st_size) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);

		if (n <= 0 || pwrite(out, buf, n, off) != n)
			return -1;
		off += n;
	}
	return 0;
}

/* Copies the file open at fd (path target) into $VPMEM_SNAP_DIR. */
static void snapshot(int fd, const char *target)
{
	const char *dir = getenv("VPMEM_SNAP_DIR");
	const char *name = strrchr(target, '/');
	char copy[PATH_MAX], flushes[PATH_MAX];
	struct timespec now;
	unsigned long *count;
	int out, slot;
	FILE *f;

	if (!dir || !name)
		return;
	name++;
	pthread_mutex_lock(&lock);
	count = count_of(name);
	slot = *count & 1;
	snprintf(copy, sizeof(copy), "%s/%s.%d", dir, name, slot);
	snprintf(flushes, sizeof(flushes), "%s/%s.flushes", dir, name);
	out = open(copy, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (out < 0 || copy_all(fd, out) || close(out)) {
		perror("flush_snapshot: cannot copy the backing file");
		abort();
	}
	clock_gettime(CLOCK_REALTIME, &now);
	f = fopen(flushes, "a");
	if (!f || fprintf(f, "%lu %lld %d\n", ++*count,
			  (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, slot) < 0 ||
	    fclose(f)) {
		perror("flush_snapshot: cannot log the copy");
		abort();
	}
	pthread_mutex_unlock(&lock);
}

/* Returns whether fd is a file under $VPMEM_SNAP_PATH, its path in target. */
static int watched(int fd, char *target, size_t size)
{
	const char *prefix = getenv("VPMEM_SNAP_PATH");
	char link[64];
	ssize_t n;

	if (!prefix || !*prefix)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, size - 1);
	if (n < 0)
		return 0;
	target[n] = '\0';
	return !strncmp(target, prefix, strlen(prefix));
}

static int after_sync(int fd, int ret)
{
	static unsigned long calls;
	const char *every = getenv("VPMEM_SNAP_EVERY");
	char target[PATH_MAX];
	unsigned long n;

	if (ret || !watched(fd, target, sizeof(target)))
		return ret;
	n = __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	if (!every || n % strtoul(every, NULL, 10) == 0)
		snapshot(fd, target);
	return ret;
}

int fsync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	return after_sync(fd, real(fd));
}

int fdatasync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	return after_sync(fd, real(fd));
}
