/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the virtio-pmem guest tests.
 *
 * The guest init exports VPMEM_DRIVER (c, rust) and VPMEM_SIZES (expected
 * byte size of each device, comma separated, in probe order).
 */
#ifndef PMEM_TEST_H
#define PMEM_TEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The device under test: $VPMEM_ARG if it names one, else /dev/pmem0. */
#define PMEM_DEV pmem_dev()
#define PMEM_MNT "/mnt"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static inline const char *pmem_dev(void)
{
	const char *arg = getenv("VPMEM_ARG");

	return arg && !strncmp(arg, "/dev/", 5) ? arg : "/dev/pmem0";
}

/* Read a sysfs attribute into buf (trailing newline removed). */
static inline int read_attr(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return 0;
}

static inline int read_u64_attr(const char *path, uint64_t *val)
{
	char buf[64];
	int ret = read_attr(path, buf, sizeof(buf));

	if (ret)
		return ret;
	*val = strtoull(buf, NULL, 0);
	return 0;
}

/* Expected size of device @idx from VPMEM_SIZES, or 0 if not given. */
static inline uint64_t expected_size(int idx)
{
	const char *s = getenv("VPMEM_SIZES");

	while (s && *s && idx--) {
		s = strchr(s, ',');
		s = s ? s + 1 : NULL;
	}
	return s && *s ? strtoull(s, NULL, 0) : 0;
}

/* Deterministic test data: byte @off of stream @seed. */
static inline uint8_t pattern_byte(uint64_t seed, uint64_t off)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ull ^ (off / 8 + 1) * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (off % 8)));
}

static inline void fill_pattern(uint8_t *buf, size_t len, uint64_t seed, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern_byte(seed, off + i);
}

/* Index of the first byte that differs from the pattern, or -1. */
static inline long check_pattern(const uint8_t *buf, size_t len, uint64_t seed, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != pattern_byte(seed, off + i))
			return (long)i;
	return -1;
}

static inline int make_fs(const char *dev)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s >/dev/null 2>&1", dev);
	return system(cmd) == 0 ? 0 : -1;
}

/* mkfs.ext4 @dev once per boot (tests run each case in a child process). */
static inline int ensure_fs(const char *dev)
{
	char marker[128];
	struct stat st;

	snprintf(marker, sizeof(marker), "/tmp/.mkfs_done_%s", strrchr(dev, '/') + 1);
	if (!stat(marker, &st))
		return 0;
	if (make_fs(dev))
		return -1;
	close(open(marker, O_CREAT | O_WRONLY, 0644));
	return 0;
}

static inline int mount_dax(const char *dev, const char *dir)
{
	mkdir(dir, 0755);
	return mount(dev, dir, "ext4", 0, "dax") ? -errno : 0;
}

/* Write @len bytes of stream @seed to @path (created) and close it. */
static inline int write_file(const char *path, size_t len, uint64_t seed, int do_fsync)
{
	uint8_t *buf = malloc(len);
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	fill_pattern(buf, len, seed, 0);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	if (write(fd, buf, len) != (ssize_t)len)
		ret = -EIO;
	if (!ret && do_fsync && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	free(buf);
	return ret;
}

/* 0 if @path holds exactly @len bytes of stream @seed. */
static inline int verify_file(const char *path, size_t len, uint64_t seed)
{
	uint8_t *buf = malloc(len + 1);
	ssize_t n;
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	n = read(fd, buf, len + 1);
	if (n != (ssize_t)len || check_pattern(buf, len, seed, 0) >= 0)
		ret = -EILSEQ;
	close(fd);
	free(buf);
	return ret;
}

#endif /* PMEM_TEST_H */
