// SPDX-License-Identifier: GPL-2.0
/*
 * fsync_hammer DEV THREADS MILLIS
 *
 * THREADS threads overwrite their own 4 KiB block of the block device DEV
 * and fsync it, over and over, for MILLIS milliseconds, while the caller
 * unbinds the driver or unloads its module underneath.  If DEV is a
 * directory (a mounted file system), each thread overwrites its own file
 * DEV/thread.N and fdatasyncs it instead.  Every fsync must return 0 or EIO,
 * and none may take longer than 10 seconds.  Prints one summary line, with
 * the longest fsync in milliseconds; exits 1 on any other result.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pmem_test.h"

#define BLOCK 4096
#define MAX_THREADS 64
#define SLOW_NS (10ull * 1000 * 1000 * 1000)

static const char *dev;
static int dev_is_dir;
static uint64_t deadline;

struct result {
	unsigned long ok, eio, other, slow, open_failed, write_failed;
	uint64_t max_ns;
	int other_errno;
	int idx;
};

static void *hammer(void *arg)
{
	struct result *r = arg;
	char buf[BLOCK], path[4096];
	off_t off = (off_t)(r->idx + 1) * BLOCK;
	int fd;

	if (dev_is_dir) {
		snprintf(path, sizeof(path), "%s/thread.%d", dev, r->idx);
		fd = open(path, O_RDWR | O_CREAT, 0644);
		off = 0;
	} else {
		fd = open(dev, O_RDWR);
	}

	if (fd < 0) {
		r->open_failed++;
		return NULL;
	}
	memset(buf, 0x5a, sizeof(buf));
	while (now_ns() < deadline) {
		uint64_t t0;
		int ret;

		if (pwrite(fd, buf, BLOCK, off) != BLOCK)
			r->write_failed++;
		t0 = now_ns();
		ret = dev_is_dir ? fdatasync(fd) : fsync(fd);
		t0 = now_ns() - t0;
		if (t0 > SLOW_NS)
			r->slow++;
		if (t0 > r->max_ns)
			r->max_ns = t0;
		if (!ret) {
			r->ok++;
		} else if (errno == EIO) {
			r->eio++;
			usleep(1000);
		} else {
			r->other++;
			r->other_errno = errno;
			usleep(1000);
		}
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	struct result res[MAX_THREADS] = {}, sum = {};
	pthread_t tid[MAX_THREADS];
	int n;

	if (argc != 4) {
		fprintf(stderr, "usage: %s DEV THREADS MILLIS\n", argv[0]);
		return 2;
	}
	struct stat st;

	dev = argv[1];
	dev_is_dir = !stat(dev, &st) && S_ISDIR(st.st_mode);
	n = atoi(argv[2]);
	if (n < 1 || n > MAX_THREADS)
		return 2;
	deadline = now_ns() + strtoull(argv[3], NULL, 0) * 1000000ull;
	for (int i = 0; i < n; i++) {
		res[i].idx = i;
		pthread_create(&tid[i], NULL, hammer, &res[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(tid[i], NULL);
		sum.ok += res[i].ok;
		sum.eio += res[i].eio;
		sum.other += res[i].other;
		sum.slow += res[i].slow;
		sum.open_failed += res[i].open_failed;
		sum.write_failed += res[i].write_failed;
		if (res[i].max_ns > sum.max_ns)
			sum.max_ns = res[i].max_ns;
		if (res[i].other)
			sum.other_errno = res[i].other_errno;
	}
	printf("fsync ok=%lu eio=%lu other=%lu (errno %d) slow=%lu ",
	       sum.ok, sum.eio, sum.other, sum.other_errno, sum.slow);
	printf("open_failed=%lu write_failed=%lu max_ms=%llu\n", sum.open_failed,
	       sum.write_failed, (unsigned long long)(sum.max_ns / 1000000));
	return sum.other || sum.slow ? 1 : 0;
}
