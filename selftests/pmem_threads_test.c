// SPDX-License-Identifier: GPL-2.0
/*
 * Concurrent durability calls on fsdax: 1 to 16 threads each overwrite their
 * own file block by block and make every block durable with fsync, fdatasync
 * or msync(MS_SYNC).  Every call must succeed, and after an unmount/remount
 * every file must hold the last data written.  Works with either driver
 * bound (virtio_pmem or virtio_pmem_rust); skips without a virtio-pmem device
 * or a bound driver.
 *
 * It makes a new ext4 file system on the device and mounts it on /mnt.
 * Environment: VPMEM_DEV, the block device to test (default: the first
 * virtio-pmem device's), see pmem_test.h.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "../../../kselftest_harness.h"
#include "pmem_test.h"

#define BLOCK 4096
#define BLOCKS 32

enum sync_op { OP_FSYNC, OP_FDATASYNC, OP_MSYNC };

struct worker {
	pthread_t tid;
	char path[64];
	enum sync_op op;
	uint64_t seed;
	int failures;
	int first_errno;
};

static void note_failure(struct worker *w, int err)
{
	if (!w->failures++)
		w->first_errno = err;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	uint8_t buf[BLOCK];
	uint8_t *map = NULL;
	int fd = open(w->path, O_CREAT | O_RDWR | O_TRUNC, 0644);

	if (fd < 0 || ftruncate(fd, BLOCK * BLOCKS)) {
		note_failure(w, errno);
		return NULL;
	}
	if (w->op == OP_MSYNC) {
		map = mmap(NULL, BLOCK * BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			note_failure(w, errno);
			close(fd);
			return NULL;
		}
	}
	for (int i = 0; i < BLOCKS; i++) {
		off_t off = (off_t)i * BLOCK;
		int ret;

		if (map) {
			fill_pattern(map + off, BLOCK, w->seed, off);
			ret = msync(map + off, BLOCK, MS_SYNC);
		} else {
			fill_pattern(buf, BLOCK, w->seed, off);
			if (pwrite(fd, buf, BLOCK, off) != BLOCK) {
				note_failure(w, errno);
				continue;
			}
			ret = w->op == OP_FSYNC ? fsync(fd) : fdatasync(fd);
		}
		if (ret)
			note_failure(w, errno);
	}
	if (map)
		munmap(map, BLOCK * BLOCKS);
	if (close(fd))
		note_failure(w, errno);
	return NULL;
}

FIXTURE(threads) {
	struct worker w[16];
};

FIXTURE_VARIANT(threads) {
	int nthreads;
	enum sync_op op;
};

FIXTURE_VARIANT_ADD(threads, fsync_1) {
	.nthreads = 1,
	.op = OP_FSYNC,
};

FIXTURE_VARIANT_ADD(threads, fsync_2) {
	.nthreads = 2,
	.op = OP_FSYNC,
};

FIXTURE_VARIANT_ADD(threads, fsync_4) {
	.nthreads = 4,
	.op = OP_FSYNC,
};

FIXTURE_VARIANT_ADD(threads, fsync_8) {
	.nthreads = 8,
	.op = OP_FSYNC,
};

FIXTURE_VARIANT_ADD(threads, fsync_16) {
	.nthreads = 16,
	.op = OP_FSYNC,
};

FIXTURE_VARIANT_ADD(threads, fdatasync_1) {
	.nthreads = 1,
	.op = OP_FDATASYNC,
};

FIXTURE_VARIANT_ADD(threads, fdatasync_8) {
	.nthreads = 8,
	.op = OP_FDATASYNC,
};

FIXTURE_VARIANT_ADD(threads, fdatasync_16) {
	.nthreads = 16,
	.op = OP_FDATASYNC,
};

FIXTURE_VARIANT_ADD(threads, msync_1) {
	.nthreads = 1,
	.op = OP_MSYNC,
};

FIXTURE_VARIANT_ADD(threads, msync_8) {
	.nthreads = 8,
	.op = OP_MSYNC,
};

FIXTURE_VARIANT_ADD(threads, msync_16) {
	.nthreads = 16,
	.op = OP_MSYNC,
};

FIXTURE_SETUP(threads)
{
	ASSERT_EQ(0, ensure_fs(PMEM_DEV)) TH_LOG("mkfs.ext4 on %s failed", PMEM_DEV);
	ASSERT_EQ(0, mount_dax(PMEM_DEV, PMEM_MNT));
}

FIXTURE_TEARDOWN(threads)
{
	umount(PMEM_MNT);
}

TEST_F(threads, all_durable_and_intact)
{
	int n = variant->nthreads;

	for (int i = 0; i < n; i++) {
		struct worker *w = &self->w[i];

		memset(w, 0, sizeof(*w));
		snprintf(w->path, sizeof(w->path), PMEM_MNT "/t%d", i);
		w->op = variant->op;
		w->seed = 100 + i;
		ASSERT_EQ(0, pthread_create(&w->tid, NULL, work, w));
	}
	for (int i = 0; i < n; i++)
		pthread_join(self->w[i].tid, NULL);
	for (int i = 0; i < n; i++) {
		EXPECT_EQ(0, self->w[i].failures)
			TH_LOG("thread %d: %d failures, first errno %d", i,
			       self->w[i].failures, self->w[i].first_errno);
	}

	ASSERT_EQ(0, umount(PMEM_MNT));
	ASSERT_EQ(0, mount_dax(PMEM_DEV, PMEM_MNT));
	for (int i = 0; i < n; i++) {
		EXPECT_EQ(0, verify_file(self->w[i].path, BLOCK * BLOCKS, self->w[i].seed))
			TH_LOG("%s does not hold the last data written", self->w[i].path);
	}
	for (int i = 0; i < n; i++)
		unlink(self->w[i].path);
}

int main(int argc, char **argv)
{
	vpmem_require();
	return test_harness_run(argc, argv);
}
