// SPDX-License-Identifier: GPL-2.0
/*
 * fsdax on virtio-pmem: ext4 mounts with -o dax, write/fsync/fdatasync/msync
 * succeed, MAP_SYNC is refused (the region is asynchronous: durability needs
 * an explicit flush), and data survives an unmount/remount.  Works with
 * either driver bound (virtio_pmem or virtio_pmem_rust); skips without a
 * virtio-pmem device or a bound driver.
 *
 * It makes a new ext4 file system on the device and mounts it on /mnt.
 * Environment: VPMEM_DEV, the block device to test (default: the first
 * virtio-pmem device's), see pmem_test.h.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include "../../../kselftest_harness.h"
#include "pmem_test.h"

#define FILE_LEN (1024 * 1024)

FIXTURE(dax) {
	char path[64];
};

FIXTURE_SETUP(dax)
{
	ASSERT_EQ(0, ensure_fs(PMEM_DEV)) TH_LOG("mkfs.ext4 on %s failed", PMEM_DEV);
	ASSERT_EQ(0, mount_dax(PMEM_DEV, PMEM_MNT));
	snprintf(self->path, sizeof(self->path), PMEM_MNT "/%s", _metadata->name);
}

FIXTURE_TEARDOWN(dax)
{
	unlink(self->path);
	umount(PMEM_MNT);
}

TEST_F(dax, mount_is_dax_always)
{
	char line[512];
	int found = 0;
	FILE *f = fopen("/proc/mounts", "r");

	ASSERT_NE(NULL, f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " " PMEM_MNT " ext4 ") && strstr(line, "dax=always"))
			found = 1;
	fclose(f);
	EXPECT_TRUE(found) TH_LOG("ext4 on %s is not mounted dax=always", PMEM_MNT);
}

TEST_F(dax, file_is_dax)
{
	struct statx stx;

	ASSERT_EQ(0, write_file(self->path, 4096, 1, 0));
	ASSERT_EQ(0, statx(AT_FDCWD, self->path, 0, STATX_BASIC_STATS, &stx));
	ASSERT_TRUE(!!(stx.stx_attributes_mask & STATX_ATTR_DAX));
	EXPECT_TRUE(!!(stx.stx_attributes & STATX_ATTR_DAX));
}

TEST_F(dax, write_fsync)
{
	ASSERT_EQ(0, write_file(self->path, FILE_LEN, 2, 1));
	EXPECT_EQ(0, verify_file(self->path, FILE_LEN, 2));
}

TEST_F(dax, write_fdatasync)
{
	uint8_t buf[4096];
	int fd = open(self->path, O_CREAT | O_RDWR, 0644);

	ASSERT_GE(fd, 0);
	for (int i = 0; i < 16; i++) {
		fill_pattern(buf, sizeof(buf), 3, i * sizeof(buf));
		ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fd, buf, sizeof(buf), i * sizeof(buf)));
		ASSERT_EQ(0, fdatasync(fd));
	}
	ASSERT_EQ(0, close(fd));
	EXPECT_EQ(0, verify_file(self->path, 16 * sizeof(buf), 3));
}

TEST_F(dax, msync_ms_sync)
{
	int fd = open(self->path, O_CREAT | O_RDWR, 0644);
	uint8_t *p;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ftruncate(fd, FILE_LEN));
	p = mmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	fill_pattern(p, FILE_LEN, 4, 0);
	EXPECT_EQ(0, msync(p, FILE_LEN, MS_SYNC));
	munmap(p, FILE_LEN);
	close(fd);
	EXPECT_EQ(0, verify_file(self->path, FILE_LEN, 4));
}

TEST_F(dax, map_sync_refused)
{
	int fd = open(self->path, O_CREAT | O_RDWR, 0644);
	void *p;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ftruncate(fd, 4096));
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EOPNOTSUPP, errno);
	if (p != MAP_FAILED)
		munmap(p, 4096);
	/* Without MAP_SYNC the same mapping is fine. */
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE, fd, 0);
	EXPECT_NE(MAP_FAILED, p);
	if (p != MAP_FAILED)
		munmap(p, 4096);
	close(fd);
}

TEST_F(dax, data_survives_remount)
{
	ASSERT_EQ(0, write_file(self->path, FILE_LEN, 5, 1));
	ASSERT_EQ(0, umount(PMEM_MNT));
	ASSERT_EQ(0, mount_dax(PMEM_DEV, PMEM_MNT));
	EXPECT_EQ(0, verify_file(self->path, FILE_LEN, 5));
}

int main(int argc, char **argv)
{
	vpmem_require();
	return test_harness_run(argc, argv);
}
