/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the virtio-pmem tests.
 *
 * The devices under test are found in sysfs: virtio devices of device id 27
 * (0x001b, virtio-pmem), the driver bound to each (virtio_pmem or
 * virtio_pmem_rust), the nvdimm bus it registered under the virtio device,
 * its region and the region's /dev/pmemN.
 *
 * Environment (all optional):
 *   VPMEM_DEV    the block device to test, e.g. /dev/pmem1 (it must belong to
 *                a virtio-pmem device); default: the block device of the
 *                first virtio-pmem device
 *   VPMEM_SIZES  the byte size of each virtio-pmem device as the host set
 *                them up, comma separated, in probe order (a test runner that
 *                knows them sets it; the region test checks them)
 */
#ifndef PMEM_TEST_H
#define PMEM_TEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The block device under test: $VPMEM_DEV, else the first virtio-pmem device's. */
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

/* A virtio-pmem device, as sysfs shows it. */
struct vpmem_dev {
	char name[32];		/* the virtio device, e.g. virtio0 */
	char driver[64];	/* the driver bound to it, "" if none */
	char region[PATH_MAX];	/* its nvdimm region in sysfs, "" if none */
	char blk[32];		/* the region's block device, e.g. pmem0, "" if none */
	int nblk;		/* block devices under the virtio device */
};

#define VPMEM_MAX 16
#define VIRTIO_ID_PMEM_STR "0x001b"

static inline int vpmem_index(const char *path)
{
	const char *p = strrchr(path, '/');

	return atoi(p ? p + strlen("/virtio") : path);
}

static inline int vpmem_cmp(const void *a, const void *b)
{
	return vpmem_index(*(char * const *)a) - vpmem_index(*(char * const *)b);
}

/* The block devices whose sysfs path runs through virtio device @name. */
static inline int vpmem_block_devices(const char *name, char *first, size_t len)
{
	char want[64], real[PATH_MAX];
	glob_t g;
	int n = 0;

	if (first && len)
		first[0] = '\0';
	snprintf(want, sizeof(want), "/%s/ndbus", name);
	if (glob("/sys/block/pmem*", 0, NULL, &g))
		return 0;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		if (!realpath(g.gl_pathv[i], real) || !strstr(real, want))
			continue;
		if (!n++ && first)
			snprintf(first, len, "%s", strrchr(g.gl_pathv[i], '/') + 1);
	}
	globfree(&g);
	return n;
}

/* Fill @devs with the virtio-pmem devices, in virtio index order; returns how many. */
static inline int vpmem_devices(struct vpmem_dev *devs, int max)
{
	char path[PATH_MAX], buf[PATH_MAX];
	glob_t g;
	int n = 0;

	if (glob("/sys/bus/virtio/devices/virtio*", 0, NULL, &g))
		return 0;
	qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), vpmem_cmp);
	for (size_t i = 0; i < g.gl_pathc && n < max; i++) {
		struct vpmem_dev *d = &devs[n];
		glob_t r;
		ssize_t len;

		snprintf(path, sizeof(path), "%s/device", g.gl_pathv[i]);
		if (read_attr(path, buf, sizeof(buf)) || strcmp(buf, VIRTIO_ID_PMEM_STR))
			continue;
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%s", strrchr(g.gl_pathv[i], '/') + 1);
		snprintf(path, sizeof(path), "%s/driver", g.gl_pathv[i]);
		len = readlink(path, buf, sizeof(buf) - 1);
		if (len > 0) {
			buf[len] = '\0';
			snprintf(d->driver, sizeof(d->driver), "%s", strrchr(buf, '/') + 1);
		}
		snprintf(path, sizeof(path), "%s/ndbus*/region*", g.gl_pathv[i]);
		if (!glob(path, 0, NULL, &r)) {
			snprintf(d->region, sizeof(d->region), "%s", r.gl_pathv[0]);
			globfree(&r);
		}
		d->nblk = vpmem_block_devices(d->name, d->blk, sizeof(d->blk));
		n++;
	}
	globfree(&g);
	return n;
}

/* The virtio-pmem device whose block device is @dev (/dev/pmemN), or NULL. */
static inline const struct vpmem_dev *vpmem_of(const char *dev)
{
	static struct vpmem_dev devs[VPMEM_MAX];
	const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
	int n = vpmem_devices(devs, VPMEM_MAX);

	for (int i = 0; i < n; i++)
		if (devs[i].nblk && !strcmp(devs[i].blk, name))
			return &devs[i];
	return NULL;
}

static inline const char *pmem_dev(void)
{
	static char dev[64];
	struct vpmem_dev devs[VPMEM_MAX];
	const char *env = getenv("VPMEM_DEV");
	int n;

	if (env && *env)
		return env;
	if (dev[0])
		return dev;
	n = vpmem_devices(devs, VPMEM_MAX);
	for (int i = 0; i < n; i++) {
		if (devs[i].blk[0]) {
			snprintf(dev, sizeof(dev), "/dev/%s", devs[i].blk);
			return dev;
		}
	}
	return "/dev/pmem0";
}

/*
 * Exit with KSFT_SKIP unless a virtio-pmem device has a driver bound; exit
 * with KSFT_FAIL if VPMEM_DEV names a block device that is not one's.
 */
static inline void vpmem_require(void)
{
	struct vpmem_dev devs[VPMEM_MAX];
	int n = vpmem_devices(devs, VPMEM_MAX), bound = -1;
	const char *env = getenv("VPMEM_DEV");

	if (!n) {
		printf("1..0 # SKIP no virtio-pmem device (virtio device %s)\n",
		       VIRTIO_ID_PMEM_STR);
		exit(4); /* KSFT_SKIP */
	}
	for (int i = n - 1; i >= 0; i--)
		if (devs[i].driver[0])
			bound = i;
	if (bound < 0) {
		printf("1..0 # SKIP no driver bound to %s (load virtio_pmem or virtio_pmem_rust)\n",
		       devs[0].name);
		exit(4); /* KSFT_SKIP */
	}
	if (env && *env && !vpmem_of(env)) {
		printf("VPMEM_DEV=%s is not the block device of a virtio-pmem device\n", env);
		exit(1); /* KSFT_FAIL */
	}
	printf("# %d virtio-pmem device(s), %s bound to %s, testing %s\n",
	       n, devs[bound].driver, devs[bound].name, pmem_dev());
}

/* The sysfs path of block device @dev (/dev/pmemN), attribute @attr. */
static inline void blk_attr(char *buf, size_t len, const char *dev, const char *attr)
{
	snprintf(buf, len, "/sys/block/%s/%s", strrchr(dev, '/') + 1, attr);
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

/*
 * mkfs.ext4 @dev once per run of a test program (the harness runs each case in
 * a child process of the program's main process).
 */
static inline int ensure_fs(const char *dev)
{
	char marker[128];
	struct stat st;

	snprintf(marker, sizeof(marker), "/tmp/.vpmem_mkfs_%s_%d", strrchr(dev, '/') + 1,
		 (int)getppid());
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
