// SPDX-License-Identifier: GPL-2.0
/*
 * pmem_bench [-m MODE] PATH THREADS SECONDS
 *
 * fsync benchmark: THREADS threads each repeat one 4 KiB durable write for
 * SECONDS seconds.  MODE says which (default: file):
 *   file    overwrite a 4 KiB block of the thread's own file in directory
 *           PATH, then fdatasync() it;
 *   msync   dirty a 4 KiB page of a shared mapping of the thread's own file
 *           in PATH (a DAX mapping on ext4 -o dax), then msync(MS_SYNC) it;
 *   raw     write 4 KiB with O_DIRECT at the thread's own offset of the
 *           block device PATH, then fdatasync() it;
 *   append  append 4 KiB to the thread's own file in PATH, then fdatasync()
 *           it: on ext4 with a journal each call commits the journal (a FUA
 *           write); the file is truncated to nothing every 256 blocks;
 *   flush   fdatasync() the block device PATH, writing nothing: each call is
 *           one flush of the device and nothing else.
 * Prints one line:
 *   mode=M threads=N ops=N ops_per_s=N p50_us=N p99_us=N p999_us=N errors=N
 * Exits 1 if any call failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pmem_test.h"

#define BLOCK 4096
#define MAX_THREADS 64
#define MAX_SAMPLES (1 << 17)
#define APPEND_WRAP 256

enum mode { FILE_MODE, MSYNC_MODE, RAW_MODE, APPEND_MODE, FLUSH_MODE };

static const char * const mode_names[] = { "file", "msync", "raw", "append", "flush" };

static uint64_t deadline;
static const char *path;
static enum mode mode;

struct worker {
	pthread_t tid;
	int idx;
	unsigned long ops, errors;
	uint32_t *lat_us;
	unsigned long nlat;
};

/* Opens the thread's file or the device; returns the fd, or -1. */
static int open_target(struct worker *w, char *name, size_t len)
{
	int fd;

	if (mode == RAW_MODE)
		return open(path, O_RDWR | O_DIRECT);
	if (mode == FLUSH_MODE)
		return open(path, O_RDWR);
	snprintf(name, len, "%s/bench.%d", path, w->idx);
	fd = open(name, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0)
		return -1;
	if (mode != APPEND_MODE && ftruncate(fd, BLOCK)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Makes one 4 KiB write durable; returns 0 or -1. */
static int one_op(struct worker *w, int fd, char *buf, char *map, unsigned long n)
{
	off_t off;

	buf[0]++;
	switch (mode) {
	case FLUSH_MODE:
		return fdatasync(fd);
	case MSYNC_MODE:
		map[0]++;
		memset(map + 1, buf[0], 64);
		return msync(map, BLOCK, MS_SYNC);
	case RAW_MODE:
		off = (off_t)w->idx * BLOCK;
		break;
	case APPEND_MODE:
		if (n && n % APPEND_WRAP == 0 && ftruncate(fd, 0))
			return -1;
		off = (off_t)(n % APPEND_WRAP) * BLOCK;
		break;
	default:
		off = 0;
	}
	if (pwrite(fd, buf, BLOCK, off) != BLOCK)
		return -1;
	return fdatasync(fd);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	char name[256], *map = NULL, *buf;
	int fd;

	if (posix_memalign((void **)&buf, BLOCK, BLOCK)) {
		w->errors++;
		return NULL;
	}
	memset(buf, w->idx, BLOCK);
	fd = open_target(w, name, sizeof(name));
	if (fd < 0) {
		w->errors++;
		free(buf);
		return NULL;
	}
	if (mode == MSYNC_MODE) {
		map = mmap(NULL, BLOCK, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			w->errors++;
			goto out;
		}
	}
	while (now_ns() < deadline) {
		uint64_t t0 = now_ns();

		if (one_op(w, fd, buf, map, w->ops))
			w->errors++;
		if (w->nlat < MAX_SAMPLES)
			w->lat_us[w->nlat++] = (now_ns() - t0) / 1000;
		w->ops++;
	}
	if (map)
		munmap(map, BLOCK);
out:
	close(fd);
	if (mode != RAW_MODE && mode != FLUSH_MODE)
		unlink(name);
	free(buf);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int bad_args(const char *prog)
{
	fprintf(stderr, "usage: %s [-m file|msync|raw|append|flush] PATH THREADS SECONDS\n", prog);
	return 2;
}

int main(int argc, char **argv)
{
	static struct worker w[MAX_THREADS];
	unsigned long ops = 0, errors = 0, n_lat = 0;
	uint32_t *all;
	double secs;
	uint64_t t0;
	int n, opt;

	while ((opt = getopt(argc, argv, "m:")) != -1) {
		unsigned int i;

		if (opt != 'm')
			return bad_args(argv[0]);
		for (i = 0; i < ARRAY_SIZE(mode_names); i++)
			if (!strcmp(optarg, mode_names[i]))
				break;
		if (i == ARRAY_SIZE(mode_names))
			return bad_args(argv[0]);
		mode = i;
	}
	if (argc - optind != 3)
		return bad_args(argv[0]);
	path = argv[optind];
	n = atoi(argv[optind + 1]);
	if (n < 1 || n > MAX_THREADS)
		return bad_args(argv[0]);
	t0 = now_ns();
	deadline = t0 + strtoull(argv[optind + 2], NULL, 0) * 1000000000ull;
	for (int i = 0; i < n; i++) {
		w[i].idx = i;
		w[i].lat_us = calloc(MAX_SAMPLES, sizeof(uint32_t));
		if (!w[i].lat_us)
			return 2;
		pthread_create(&w[i].tid, NULL, run, &w[i]);
	}
	for (int i = 0; i < n; i++)
		pthread_join(w[i].tid, NULL);
	secs = (now_ns() - t0) / 1e9;
	all = calloc((size_t)n * MAX_SAMPLES, sizeof(uint32_t));
	if (!all)
		return 2;
	for (int i = 0; i < n; i++) {
		ops += w[i].ops;
		errors += w[i].errors;
		memcpy(all + n_lat, w[i].lat_us, w[i].nlat * sizeof(uint32_t));
		n_lat += w[i].nlat;
	}
	qsort(all, n_lat, sizeof(uint32_t), cmp_u32);
	printf("mode=%s threads=%d ops=%lu ops_per_s=%.0f p50_us=%u p99_us=%u p999_us=%u errors=%lu\n",
	       mode_names[mode], n, ops, ops / secs, n_lat ? all[n_lat / 2] : 0,
	       n_lat ? all[(n_lat * 99) / 100] : 0, n_lat ? all[(n_lat * 999) / 1000] : 0,
	       errors);
	return errors ? 1 : 0;
}
