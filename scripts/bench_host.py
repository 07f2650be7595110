#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run one benchmark boot (vpmem.bench=1 in tests/plan) and count host flushes.

bench_host.py --log LOG --marks MARKS --images IMG,... --preload SO
              [--timeout S] -- QEMU ARGS...

QEMU runs with tests/host/flush_count.c preloaded, which counts the host's
fsync()/fdatasync() calls on the backing files IMG,... and the time spent in
them. The guest (tests/bench_test.sh) prints "VPMEM-HOST mark ID" on its
console before and after each measured point and waits a moment; for each
such line, this script appends "ID FLUSHES NANOSECONDS" (the counts at that
moment) to MARKS. The host flushes of a point are the difference between its
two marks. Exits with QEMU's status, or 124 on a timeout.
"""

import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

MARK = re.compile(rb"VPMEM-HOST mark (\S+)")
KV = re.compile(rb"(\w+)=(\S+)")
IOPS = re.compile(rb'"write"\s*:\s*\{.*?"iops"\s*:\s*([0-9.]+)')


def progress(line, fio):
    """Prints a line per measured point (BENCHPT), with fio's rate for fio points."""
    if line.startswith(b"BENCHFIO "):
        m = IOPS.search(line)
        fio[line.split()[1]] = m.group(1).decode() if m else "?"
    elif line.startswith(b"BENCHPT "):
        p = {k.decode(): v.decode(errors="replace") for k, v in KV.findall(line)}
        rate = p.get("ops_per_s") or fio.get(b"id=" + p.get("id", "").encode(), "?")
        print(f"bench: {p.get('backing')} rep {p.get('rep')} {p.get('driver'):4} "
              f"{p.get('workload'):9} {p.get('threads'):>2} threads: {float(rate):8.0f} ops/s",
              flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--marks", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--preload", required=True)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("qemu", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    qemu = a.qemu[1:] if a.qemu[:1] == ["--"] else a.qemu

    fd, counts = tempfile.mkstemp(prefix="vpmem-counts.")
    os.close(fd)
    env = dict(os.environ, LD_PRELOAD=a.preload, VPMEM_COUNT_FILES=a.images,
               VPMEM_COUNT_OUT=counts)
    open(a.log, "wb").close()
    marks = open(a.marks, "w")
    q = subprocess.Popen(qemu + ["-serial", "file:" + a.log, "-monitor", "none",
                                 "-display", "none"],
                         env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + a.timeout
    rest, rc, fio = b"", None, {}
    try:
        with open(a.log, "rb") as log:
            while rc is None:
                rc = q.poll()
                data = log.read()
                if not data:
                    if time.monotonic() > deadline:
                        q.kill()
                        q.wait()
                        rc = 124
                        break
                    time.sleep(0.01)
                    continue
                lines = (rest + data).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    progress(line.rstrip(b"\r"), fio)
                    m = MARK.search(line)
                    if not m:
                        continue
                    with open(counts, "rb") as c:
                        raw = c.read(16)
                    n, ns = struct.unpack("=QQ", raw) if len(raw) == 16 else (0, 0)
                    marks.write(f"{m.group(1).decode(errors='replace')} {n} {ns}\n")
                    marks.flush()
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()
        os.unlink(counts)
        marks.close()
    return rc if rc is not None else q.returncode


if __name__ == "__main__":
    sys.exit(main())
