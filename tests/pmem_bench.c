// SPDX-License-Identifier: GPL-2.0
/*
 * pmem_bench DIR THREADS SECONDS
 *
 * fsync benchmark: THREADS threads each overwrite a 4 KiB block of their own
 * file in DIR and fdatasync it, for SECONDS seconds.  Prints one line:
 *   threads=N ops=N ops_per_s=N p50_us=N p99_us=N errors=N
 * Exits 1 if any call failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmem_test.h"

#define BLOCK 4096
#define MAX_THREADS 64
#define MAX_SAMPLES (1 << 16)

static uint64_t deadline;
static const char *dir;

struct worker {
	pthread_t tid;
	int idx;
	unsigned long ops, errors;
	uint32_t *lat_us;
	unsigned long nlat;
};

static void *run(void *arg)
{
	struct worker *w = arg;
	char path[256], buf[BLOCK];
	int fd;

	snprintf(path, sizeof(path), "%s/bench.%d", dir, w->idx);
	fd = open(path, O_CREAT | O_RDWR, 0644);
	if (fd < 0 || ftruncate(fd, BLOCK)) {
		w->errors++;
		return NULL;
	}
	memset(buf, w->idx, sizeof(buf));
	if (pwrite(fd, buf, BLOCK, 0) != BLOCK || fsync(fd))
		w->errors++;
	while (now_ns() < deadline) {
		uint64_t t0 = now_ns();

		buf[0]++;
		if (pwrite(fd, buf, BLOCK, 0) != BLOCK || fdatasync(fd))
			w->errors++;
		if (w->nlat < MAX_SAMPLES)
			w->lat_us[w->nlat++] = (now_ns() - t0) / 1000;
		w->ops++;
	}
	close(fd);
	unlink(path);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static struct worker w[MAX_THREADS];
	unsigned long ops = 0, errors = 0, n_lat = 0;
	uint32_t *all;
	double secs;
	uint64_t t0;
	int n;

	if (argc != 4) {
		fprintf(stderr, "usage: %s DIR THREADS SECONDS\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	n = atoi(argv[2]);
	if (n < 1 || n > MAX_THREADS)
		return 2;
	t0 = now_ns();
	deadline = t0 + strtoull(argv[3], NULL, 0) * 1000000000ull;
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
	printf("threads=%d ops=%lu ops_per_s=%.0f p50_us=%u p99_us=%u errors=%lu\n",
	       n, ops, ops / secs, n_lat ? all[n_lat / 2] : 0,
	       n_lat ? all[(n_lat * 99) / 100] : 0, errors);
	return errors ? 1 : 0;
}
