// SPDX-License-Identifier: GPL-2.0
/*
 * A virtio-pmem device shows up as an nvdimm region of the device's size on a
 * "virtio-pmem" bus registered under the virtio device, with one DAX-capable
 * /dev/pmemN block device.  Works with either driver bound (virtio_pmem or
 * virtio_pmem_rust); skips without a virtio-pmem device or a bound driver.
 *
 * Environment: VPMEM_DEV (the block device to check, default the first
 * device's), VPMEM_SIZES (the devices' sizes as the host set them up, checked
 * against the regions when given): see pmem_test.h.
 */
#include <glob.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "../../../kselftest_harness.h"
#include "pmem_test.h"

/* Count the regions on virtio-pmem buses under bound virtio-pmem devices; sum their sizes. */
static int virtio_regions(uint64_t *total)
{
	struct vpmem_dev devs[VPMEM_MAX];
	int n = vpmem_devices(devs, VPMEM_MAX), regions = 0;

	*total = 0;
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX + 32], prov[64];
		uint64_t size;

		if (!devs[i].region[0])
			continue;
		snprintf(path, sizeof(path), "%s/../provider", devs[i].region);
		if (read_attr(path, prov, sizeof(prov)) || strcmp(prov, "virtio-pmem"))
			continue;
		snprintf(path, sizeof(path), "%s/size", devs[i].region);
		if (read_u64_attr(path, &size))
			continue;
		*total += size;
		regions++;
	}
	return regions;
}

TEST(region_has_device_size)
{
	uint64_t want = expected_size(0), total, sum = 0;
	int n = virtio_regions(&total);

	ASSERT_GE(n, 1) TH_LOG("no nvdimm region on a virtio-pmem bus");
	if (!want)
		SKIP(return, "VPMEM_SIZES not set: the devices' sizes are not known");
	/* Regions are enumerated in bus order, which need not be probe order. */
	for (int i = 0; expected_size(i); i++)
		sum += expected_size(i);
	EXPECT_EQ(sum, total);
}

TEST(pmem_block_device)
{
	const struct vpmem_dev *d = vpmem_of(PMEM_DEV);
	char path[PATH_MAX + 32];
	uint64_t bytes = 0, region = 0, total;
	struct stat st;
	int fd;

	ASSERT_GE(virtio_regions(&total), 1);
	ASSERT_NE(NULL, d) TH_LOG("%s is not on a virtio-pmem device", PMEM_DEV);
	snprintf(path, sizeof(path), "%s/size", d->region);
	ASSERT_EQ(0, read_u64_attr(path, &region));
	ASSERT_EQ(0, stat(PMEM_DEV, &st));
	ASSERT_TRUE(S_ISBLK(st.st_mode));
	fd = open(PMEM_DEV, O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ioctl(fd, BLKGETSIZE64, &bytes));
	close(fd);
	/* A raw (io) namespace spans the whole region. */
	uint64_t want = expected_size(0);

	EXPECT_TRUE(bytes == want || bytes == region)
		TH_LOG("%s is %llu bytes, region %llu, device %llu", PMEM_DEV,
		       (unsigned long long)bytes, (unsigned long long)region,
		       (unsigned long long)want);
}

TEST(pmem_supports_dax)
{
	char path[128];
	uint64_t dax = 0;

	blk_attr(path, sizeof(path), PMEM_DEV, "queue/dax");
	ASSERT_EQ(0, read_u64_attr(path, &dax));
	EXPECT_EQ(1ULL, (unsigned long long)dax);
}

TEST(one_block_device_per_device)
{
	struct vpmem_dev devs[VPMEM_MAX];
	int n = vpmem_devices(devs, VPMEM_MAX), want = 0, have = 0, bound = 0;

	for (int i = 0; i < n; i++)
		bound += !!devs[i].driver[0];
	while (expected_size(want))
		want++;
	if (!want) {
		/* Sizes not given: every bound device has one. */
		want = bound;
	} else {
		EXPECT_EQ(want, n) TH_LOG("%d virtio-pmem devices, VPMEM_SIZES names %d", n, want);
	}
	for (int i = 0; i < n; i++) {
		EXPECT_EQ(devs[i].driver[0] ? 1 : 0, devs[i].nblk)
			TH_LOG("%s (driver %s): %d block devices", devs[i].name,
			       devs[i].driver[0] ? devs[i].driver : "none", devs[i].nblk);
		have += devs[i].nblk;
	}
	EXPECT_EQ(want, have);
}

int main(int argc, char **argv)
{
	vpmem_require();
	return test_harness_run(argc, argv);
}
