// SPDX-License-Identifier: GPL-2.0
/*
 * The guest's side of the power-cut test (tests/powercut_test.sh).
 *
 *   powercut run SEG DAXDIR JOURNALDIR SECONDS
 *	Writes numbered records in five streams at once, each in its own file
 *	"seg<SEG>-<stream>", and prints "PC-ACK <stream> <n>" once record n of
 *	a stream is durable by the file system's word (its fsync, fdatasync
 *	or msync returned 0).  Runs until killed (the host cuts the power),
 *	until a stream's file is full, or for SECONDS at most.
 *	  a0, a1  appended to a file on DAXDIR (ext4 -o dax), then fsync;
 *	  b       the same, then fdatasync;
 *	  m       written through a shared mapping of a preallocated file on
 *		  DAXDIR, one page per record, then msync(MS_SYNC) of that page;
 *	  j       appended to a file on JOURNALDIR (ext4 without DAX: the page
 *		  cache and jbd2's flush and FUA writes), then fsync.
 *   powercut verify SEG STREAM DIR ACKED
 *	Checks that records 0..ACKED of STREAM in DIR/seg<SEG>-<STREAM> are
 *	present and intact (ACKED -1: none was acknowledged); prints what it
 *	found as a KTAP comment.  Exit status 0 if so, 1 if not.
 *
 * A record is a header (magic, segment, stream, number, payload length and a
 * checksum of the whole record) and a payload that is a function of the
 * segment, stream, number and offset, so that stale or torn data cannot
 * pass.
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

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAGIC 0x54554350u	/* "PCUT" */
#define PAGE 4096
#define MAX_PAYLOAD 12000
#define FILE_CAP (4u << 20)	/* bytes per stream and segment */

struct header {
	uint32_t magic;
	uint32_t seg;
	uint32_t stream;
	uint32_t len;		/* payload bytes after the header */
	uint64_t seq;
	uint32_t sum;		/* FNV-1a of the record with sum = 0 */
	uint32_t pad;
};

enum kind { APPEND_FSYNC, APPEND_FDATASYNC, MAPPED };

static const struct stream {
	const char *name;
	enum kind kind;
	int journal;		/* on JOURNALDIR, else on DAXDIR */
} streams[] = {
	{ "a0", APPEND_FSYNC, 0 },
	{ "a1", APPEND_FSYNC, 0 },
	{ "b", APPEND_FDATASYNC, 0 },
	{ "m", MAPPED, 0 },
	{ "j", APPEND_FSYNC, 1 },
};

#define NSTREAMS ARRAY_SIZE(streams)

static unsigned int seg;
static const char *dirs[2];
static time_t deadline;

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n--)
		h = (h ^ *c++) * 16777619u;
	return h;
}

static unsigned char payload_byte(uint32_t stream, uint64_t seq, size_t i)
{
	uint64_t x = ((uint64_t)seg << 48) ^ ((uint64_t)stream << 40) ^ (seq << 16) ^ i;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* Fills buf with record seq of stream (len payload bytes); returns its size. */
static size_t make_record(unsigned char *buf, uint32_t stream, uint64_t seq, uint32_t len)
{
	struct header h = {
		.magic = MAGIC, .seg = seg, .stream = stream, .len = len, .seq = seq,
	};
	size_t i;

	for (i = 0; i < len; i++)
		buf[sizeof(h) + i] = payload_byte(stream, seq, i);
	memcpy(buf, &h, sizeof(h));
	h.sum = fnv(2166136261u, buf, sizeof(h) + len);
	memcpy(buf, &h, sizeof(h));
	return sizeof(h) + len;
}

/* Returns 0 if buf (avail bytes) starts with record seq of stream, its size in *size. */
static int check_record(const unsigned char *buf, size_t avail, uint32_t stream, uint64_t seq,
			size_t *size, const char **why)
{
	struct header h;
	uint32_t sum;
	size_t i;

	*why = "short file";
	if (avail < sizeof(h))
		return -1;
	memcpy(&h, buf, sizeof(h));
	*why = "no record header";
	if (h.magic != MAGIC || h.seg != seg || h.stream != stream)
		return -1;
	*why = "wrong record number";
	if (h.seq != seq)
		return -1;
	*why = "record cut short";
	if (h.len > MAX_PAYLOAD || avail < sizeof(h) + h.len)
		return -1;
	*why = "payload differs";
	for (i = 0; i < h.len; i++)
		if (buf[sizeof(h) + i] != payload_byte(stream, seq, i))
			return -1;
	*why = "checksum differs";
	sum = h.sum;
	h.sum = 0;
	if (fnv(fnv(2166136261u, &h, sizeof(h)), buf + sizeof(h), h.len) != sum)
		return -1;
	*size = sizeof(h) + h.len;
	return 0;
}

static void ack(const char *name, uint64_t seq)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "PC-ACK %s %llu\n", name,
			 (unsigned long long)seq);

	/* One write per line: lines of several streams do not interleave. */
	if (write(STDOUT_FILENO, line, n) != n)
		exit(2);
}

static void fail(const char *name, const char *what)
{
	dprintf(STDOUT_FILENO, "PC-ERROR %s: %s: %s\n", name, what, strerror(errno));
	exit(1);
}

static void *run_stream(void *arg)
{
	static __thread unsigned char buf[PAGE + MAX_PAYLOAD];
	const struct stream *s = arg;
	uint32_t id = s - streams;
	unsigned int rnd = seg * 7919 + id + time(NULL);
	unsigned char *map = NULL;
	char path[256];
	uint64_t seq;
	off_t off = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/seg%u-%s", dirs[s->journal], seg, s->name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail(s->name, "open");
	if (s->kind == MAPPED) {
		if (fallocate(fd, 0, 0, FILE_CAP) || fsync(fd))
			fail(s->name, "fallocate");
		map = mmap(NULL, FILE_CAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			fail(s->name, "mmap");
	}
	for (seq = 0; time(NULL) < deadline; seq++) {
		size_t n;

		if (s->kind == MAPPED) {
			if ((seq + 1) * PAGE > FILE_CAP)
				break;
			make_record(map + seq * PAGE, id, seq, PAGE - sizeof(struct header));
			if (msync(map + seq * PAGE, PAGE, MS_SYNC))
				fail(s->name, "msync");
		} else {
			n = make_record(buf, id, seq, rand_r(&rnd) % MAX_PAYLOAD);
			if (off + n > FILE_CAP)
				break;
			if (pwrite(fd, buf, n, off) != (ssize_t)n)
				fail(s->name, "pwrite");
			off += n;
			if (s->kind == APPEND_FDATASYNC ? fdatasync(fd) : fsync(fd))
				fail(s->name, "fsync");
		}
		ack(s->name, seq);
	}
	dprintf(STDOUT_FILENO, "PC-STOP %s after %llu records\n", s->name,
		(unsigned long long)seq);
	return NULL;
}

static int run(int seconds)
{
	pthread_t th[NSTREAMS];
	size_t i;

	deadline = time(NULL) + seconds;
	for (i = 0; i < NSTREAMS; i++)
		if (pthread_create(&th[i], NULL, run_stream, (void *)&streams[i]))
			return 1;
	for (i = 0; i < NSTREAMS; i++)
		pthread_join(th[i], NULL);
	return 0;
}

static int verify(const char *name, const char *dir, long long acked)
{
	uint32_t id;
	unsigned char *data;
	const char *why = "";
	char path[256];
	long long seq, good = 0;
	size_t off = 0, size, len;
	ssize_t n;
	int fd;

	for (id = 0; id < NSTREAMS && strcmp(streams[id].name, name); id++)
		;
	if (id == NSTREAMS)
		return 2;
	snprintf(path, sizeof(path), "%s/seg%u-%s", dir, seg, name);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("# %s: %lld records acknowledged, 0 intact: no file: %s\n", name,
		       acked + 1, strerror(errno));
		return acked < 0 ? 0 : 1;
	}
	data = malloc(FILE_CAP);
	if (!data)
		return 2;
	for (len = 0; len < FILE_CAP; len += n) {
		n = read(fd, data + len, FILE_CAP - len);
		if (n <= 0)
			break;
	}
	close(fd);
	/* Count the intact records from the start, past the acknowledged ones. */
	for (seq = 0;; seq++) {
		if (streams[id].kind == MAPPED)
			off = seq * PAGE;
		if (off >= len || check_record(data + off, len - off, id, seq, &size, &why))
			break;
		off += size;
		good++;
	}
	free(data);
	if (good > acked) {
		printf("# %s: %lld records acknowledged, %lld intact\n", name, acked + 1, good);
		return 0;
	}
	printf("# %s: %lld records acknowledged, only %lld intact: record %lld: %s\n",
	       name, acked + 1, good, good, why);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "run")) {
		seg = atoi(argv[2]);
		dirs[0] = argv[3];
		dirs[1] = argv[4];
		return run(atoi(argv[5]));
	}
	if (argc == 6 && !strcmp(argv[1], "verify")) {
		seg = atoi(argv[2]);
		return verify(argv[3], argv[4], atoll(argv[5]));
	}
	fprintf(stderr, "usage: powercut run SEG DAXDIR JOURNALDIR SECONDS\n"
			"       powercut verify SEG STREAM DIR ACKED\n");
	return 2;
}
