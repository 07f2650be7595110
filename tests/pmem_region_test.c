// SPDX-License-Identifier: GPL-2.0
/*
 * The virtio-pmem device shows up as an nvdimm region of the device's size
 * on a "virtio-pmem" bus, with a DAX-capable /dev/pmem block device.
 */
#include <glob.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "kselftest_harness.h"
#include "pmem_test.h"

/* Count the regions on virtio-pmem buses; sum their sizes. */
static int virtio_regions(uint64_t *total, uint64_t *first)
{
	glob_t g;
	int n = 0;

	*total = 0;
	*first = 0;
	if (glob("/sys/bus/nd/devices/region*", 0, NULL, &g))
		return 0;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		char path[512], prov[64];
		uint64_t size;

		snprintf(path, sizeof(path), "%s/../provider", g.gl_pathv[i]);
		if (read_attr(path, prov, sizeof(prov)) || strcmp(prov, "virtio-pmem"))
			continue;
		snprintf(path, sizeof(path), "%s/size", g.gl_pathv[i]);
		if (read_u64_attr(path, &size))
			continue;
		if (!n)
			*first = size;
		*total += size;
		n++;
	}
	globfree(&g);
	return n;
}

TEST(region_has_device_size)
{
	uint64_t want = expected_size(0), total, first;
	int n = virtio_regions(&total, &first);

	ASSERT_GE(n, 1) TH_LOG("no nvdimm region on a virtio-pmem bus");
	ASSERT_NE(0ULL, (unsigned long long)want) TH_LOG("VPMEM_SIZES not set by the runner");
	/* Regions are enumerated in bus order, which need not be probe order. */
	uint64_t sum = 0;

	for (int i = 0; expected_size(i); i++)
		sum += expected_size(i);
	EXPECT_EQ(sum, total);
}

TEST(pmem_block_device)
{
	struct stat st;
	uint64_t bytes = 0, total, first;
	int fd;

	ASSERT_GE(virtio_regions(&total, &first), 1);
	ASSERT_EQ(0, stat(PMEM_DEV, &st));
	ASSERT_TRUE(S_ISBLK(st.st_mode));
	fd = open(PMEM_DEV, O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ioctl(fd, BLKGETSIZE64, &bytes));
	close(fd);
	/* A raw (io) namespace spans the whole region. */
	uint64_t want = expected_size(0);

	EXPECT_TRUE(bytes == want || bytes == first)
		TH_LOG("pmem0 is %llu bytes, region %llu, device %llu",
		       (unsigned long long)bytes, (unsigned long long)first,
		       (unsigned long long)want);
}

TEST(pmem_supports_dax)
{
	uint64_t dax = 0;

	ASSERT_EQ(0, read_u64_attr("/sys/block/pmem0/queue/dax", &dax));
	EXPECT_EQ(1ULL, (unsigned long long)dax);
}

TEST(one_block_device_per_device)
{
	int want = 0, have = 0;
	char path[64];
	struct stat st;

	while (expected_size(want))
		want++;
	for (int i = 0; i < 16; i++) {
		snprintf(path, sizeof(path), "/dev/pmem%d", i);
		if (!stat(path, &st))
			have++;
	}
	EXPECT_EQ(want, have);
}

TEST_HARNESS_MAIN
