// SPDX-License-Identifier: GPL-2.0
/*
 * Data written and fsynced in one boot reads back in the next boot on the
 * same backing file.  VPMEM_ARG selects the phase: "write" (first boot:
 * mkfs, write, fsync, unmount) or "verify" (second boot: mount, compare).
 */
#include "kselftest_harness.h"
#include "pmem_test.h"

#define PERSIST_FILE PMEM_MNT "/persist.dat"
#define PERSIST_LEN (4 << 20)
#define PERSIST_SEED 42

TEST(persist_across_reboot)
{
	const char *phase = getenv("VPMEM_ARG");

	ASSERT_NE(NULL, phase) TH_LOG("VPMEM_ARG must be write or verify");
	if (!strcmp(phase, "write")) {
		ASSERT_EQ(0, make_fs(PMEM_DEV));
		ASSERT_EQ(0, mount_dax(PMEM_DEV, PMEM_MNT));
		ASSERT_EQ(0, write_file(PERSIST_FILE, PERSIST_LEN, PERSIST_SEED, 1));
		ASSERT_EQ(0, umount(PMEM_MNT));
	} else {
		ASSERT_EQ(0, strcmp(phase, "verify")) TH_LOG("unknown phase %s", phase);
		ASSERT_EQ(0, mount_dax(PMEM_DEV, PMEM_MNT));
		EXPECT_EQ(0, verify_file(PERSIST_FILE, PERSIST_LEN, PERSIST_SEED));
		umount(PMEM_MNT);
	}
}

TEST_HARNESS_MAIN
