// SPDX-License-Identifier: GPL-2.0
/*
 * dsync_write DEV
 *
 * Writes one 4 KiB block at offset 0 of the block device DEV with
 * O_DIRECT | O_DSYNC: the block layer sends it as a REQ_FUA write with no
 * preflush, so only the region's flush of that bio (no synchronous flush
 * caller) answers it.  Prints "dsync_write rc=R errno=E ms=T" and exits 0
 * whatever the write returned; exits 1 if DEV cannot be opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmem_test.h"

#define BLOCK 4096

int main(int argc, char **argv)
{
	uint64_t start;
	void *buf;
	ssize_t rc;
	int fd, err;

	if (argc != 2) {
		fprintf(stderr, "usage: dsync_write DEV\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_DIRECT | O_DSYNC);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	if (posix_memalign(&buf, BLOCK, BLOCK))
		return 1;
	memset(buf, 0x5a, BLOCK);
	start = now_ns();
	rc = pwrite(fd, buf, BLOCK, 0);
	err = rc < 0 ? errno : 0;
	printf("dsync_write rc=%zd errno=%d ms=%llu\n", rc, err,
	       (unsigned long long)((now_ns() - start) / 1000000));
	close(fd);
	free(buf);
	return 0;
}
