// SPDX-License-Identifier: GPL-2.0
/*
 * flush_count.so: an LD_PRELOAD library for the QEMU of a benchmark boot that
 * counts the host's flushes of the virtio-pmem backing files and the time
 * they take.
 *
 * $VPMEM_COUNT_FILES names the backing files (comma separated); fsync() and
 * fdatasync() of a descriptor open on one of them are counted.  The counts
 * live in the file $VPMEM_COUNT_OUT, mapped shared, as two native 64-bit
 * integers updated atomically: the calls completed, and the nanoseconds
 * spent in them.  The benchmark's host side reads them at the guest's marks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 16

static struct {
	dev_t dev;
	ino_t ino;
} files[MAX_FILES];
static int nfiles;
static uint64_t *counts;

__attribute__((constructor)) static void setup(void)
{
	const char *names = getenv("VPMEM_COUNT_FILES");
	const char *out = getenv("VPMEM_COUNT_OUT");
	char *list, *name, *save;
	struct stat st;
	void *map;
	int fd;

	if (!names || !out)
		return;
	list = strdup(names);
	for (name = strtok_r(list, ",", &save); name && nfiles < MAX_FILES;
	     name = strtok_r(NULL, ",", &save)) {
		if (stat(name, &st))
			continue;
		files[nfiles].dev = st.st_dev;
		files[nfiles].ino = st.st_ino;
		nfiles++;
	}
	free(list);
	fd = open(out, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 2 * sizeof(uint64_t)))
		abort();
	map = mmap(NULL, 2 * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		abort();
	close(fd);
	counts = map;
}

/* Whether fd is open on one of the backing files. */
static int watched(int fd)
{
	struct stat st;

	if (!counts || fstat(fd, &st))
		return 0;
	for (int i = 0; i < nfiles; i++)
		if (files[i].dev == st.st_dev && files[i].ino == st.st_ino)
			return 1;
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Calls real(fd), counting it if fd is a backing file. */
static int counted(int (*real)(int), int fd)
{
	uint64_t t0;
	int ret;

	if (!watched(fd))
		return real(fd);
	t0 = now_ns();
	ret = real(fd);
	__atomic_add_fetch(&counts[1], now_ns() - t0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&counts[0], 1, __ATOMIC_RELEASE);
	return ret;
}

int fsync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	return counted(real, fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	return counted(real, fd);
}
