#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run one boot of tests/plan as a chain of power cuts.

powercut.py --cuts N --log LOG --snapdir DIR --images IMG,... --preload SO
            --cmdline CMDLINE [--timeout S] [--seed N] -- QEMU ARGS...

Segment 0 boots QEMU on the boot's backing files; the guest test
(tests/powercut_test.sh) prints "PC-GO" when its workload starts, and this
script kills QEMU with SIGKILL at a random time after that: a power cut.
QEMU runs with tests/host/flush_snapshot.c preloaded, which copies each
backing file into DIR when a host flush of it completes; after the cut, each backing
file is replaced by that copy (what the host's disk would hold after the cut)
and segment 1 boots a fresh QEMU and guest on it. The guest gets, on its
command line, the last record of each stream that the previous segment
acknowledged on its console before the cut, and checks that all of them
survived. Segment N is not cut: it checks and powers off.

The whole chain writes one serial log (appended to), and at its end a KTAP
block "powercut-host" with one line per cut: when it came, the records
acknowledged before it and the host flushes of the segment, and, from the
next segment's check, the records found intact. Exits with QEMU's last
status, or 124 on a timeout.
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import time

ACK = re.compile(rb"^PC-ACK (\S+) (\d+)\r?$", re.M)
FOUND = re.compile(rb"^# (\S+): (-?\d+) records acknowledged, (?:only )?(\d+) intact", re.M)


def segment_text(log, start):
    with open(log, "rb") as f:
        f.seek(start)
        return f.read()


def flushes(snapdir, img):
    """Returns the host flushes of img so far, as (number, realtime ms, copy slot)."""
    try:
        with open(os.path.join(snapdir, os.path.basename(img) + ".flushes")) as f:
            return [tuple(int(x) for x in l.split()) for l in f
                    if l.endswith("\n") and len(l.split()) == 3]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuts", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--snapdir", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--preload", required=True)
    ap.add_argument("--cmdline", required=True)
    ap.add_argument("--timeout", type=int, default=300, help="per segment")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--min-delay", type=float, default=0.2)
    ap.add_argument("--max-delay", type=float, default=2.5)
    ap.add_argument("qemu", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    qemu = a.qemu[1:] if a.qemu[:1] == ["--"] else a.qemu
    images = a.images.split(",")
    snapdir = a.snapdir
    os.makedirs(snapdir, exist_ok=True)
    seed = a.seed if a.seed is not None else int(time.time())
    rng = random.Random(seed)
    print(f"powercut: {a.cuts} cuts, seed {seed} (--seed to repeat the cut times)", flush=True)

    env = dict(os.environ, LD_PRELOAD=a.preload, VPMEM_SNAP_DIR=snapdir,
               VPMEM_SNAP_PATH=os.path.commonprefix(images))
    serial = ["-chardev", f"file,id=con,path={a.log},append=on", "-serial", "chardev:con",
              "-monitor", "none", "-display", "none"]
    open(a.log, "wb").close()
    results = []
    acked = {}
    cuts = []
    rc = 0
    for seg in range(a.cuts + 1):
        cmdline = re.sub(r"\bvpmem\.tests=powercut_test\.sh\b", f"vpmem.tests=powercut_test.sh:{seg}",
                         a.cmdline)
        cmdline += f" vpmem.pc_cuts={a.cuts}"
        if acked:
            cmdline += " vpmem.pc_acked=" + ",".join(f"{s}:{n}" for s, n in sorted(acked.items()))
        start = os.path.getsize(a.log)
        t0 = time.time()
        p = subprocess.Popen(qemu + ["-append", cmdline] + serial, env=env,
                             stdin=subprocess.DEVNULL, stdout=sys.stdout, stderr=sys.stdout)
        if seg == a.cuts:
            try:
                rc = p.wait(timeout=a.timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = 124
            break
        go = f"PC-GO {seg}".encode()
        while p.poll() is None and time.time() - t0 < a.timeout:
            if go in segment_text(a.log, start):
                break
            time.sleep(0.05)
        if p.poll() is not None or time.time() - t0 >= a.timeout:
            p.kill()
            p.wait()
            results.append((False, f"segment {seg}: the workload never started (see the log)"))
            rc = 124 if p.returncode == -9 else (p.returncode or 1)
            break
        delay = rng.uniform(a.min_delay, a.max_delay)
        time.sleep(delay)
        p.kill()
        p.wait()
        cut_ms = time.time() * 1000
        text = segment_text(a.log, start)
        acked = {}
        for s, n in ACK.findall(text):
            acked[s.decode()] = max(acked.get(s.decode(), -1), int(n))
        seg_flushes = [f for img in images for f in flushes(snapdir, img) if f[1] >= t0 * 1000]
        last = max((f[1] for f in seg_flushes), default=None)
        errors = re.findall(rb"^PC-(?:ERROR|NOT-CUT).*$", text, re.M)
        cuts.append({"delay": delay, "acked": dict(acked), "flushes": len(seg_flushes),
                     "last_ms": None if last is None else cut_ms - last, "errors": errors})
        with open(a.log, "ab") as f:
            # On a line of its own: the cut may have left the guest's last line unfinished.
            f.write(f"\nVPMEM-HOST power cut {seg + 1} of {a.cuts}, {delay:.2f} s into the "
                    f"workload\n".encode())
        for img in images:
            done = flushes(snapdir, img)
            if done:
                shutil.copyfile(os.path.join(snapdir, f"{os.path.basename(img)}.{done[-1][2]}"), img)

    # One line per cut, with what the next segment found (its "# S: ... intact" lines).
    text = segment_text(a.log, 0)
    parts = re.split(rb"^VPMEM-HOST power cut \d+ of \d+.*$", text, flags=re.M)
    total_acked = total_found = lost = 0
    for i, c in enumerate(cuts):
        found = {}
        if i + 1 < len(parts):
            for s, n, good in FOUND.findall(parts[i + 1]):
                found[s.decode()] = (int(n), int(good))
        n_acked = sum(n + 1 for n in c["acked"].values())
        n_found = sum(min(good, n) for n, good in found.values())
        n_lost = sum(max(0, n - good) for n, good in found.values())
        total_acked += n_acked
        total_found += n_found
        lost += n_lost
        ok = not c["errors"] and c["flushes"] > 0 and len(found) == 5
        last = "none" if c["last_ms"] is None else f"the last {c['last_ms']:.0f} ms before it"
        desc = (f"cut {i + 1}: {c['delay']:.2f} s into the workload, {c['flushes']} host flushes "
                f"({last}), {n_acked} records acknowledged, {n_found} of them found, "
                f"{n_lost} lost")
        if c["errors"]:
            desc += ": " + "; ".join(e.decode(errors="replace") for e in c["errors"][:3])
        results.append((ok, desc))
    with open(a.log, "ab") as f:
        f.write(b"VPMEM-BEGIN powercut-host\n")
        f.write(f"1..{len(results)}\n".encode())
        for i, (ok, desc) in enumerate(results):
            f.write(f"{'ok' if ok else 'not ok'} {i + 1} {desc}\n".encode())
        f.write(f"# {len(cuts)} power cuts, {total_acked} records acknowledged, {total_found} "
                f"found, {lost} lost (seed {seed})\n".encode())
        f.write(f"VPMEM-END powercut-host rc={0 if all(ok for ok, _ in results) else 1}\n"
                .encode())
    print(f"powercut: {len(cuts)} cuts, {total_acked} records acknowledged, {total_found} found, "
          f"{lost} lost", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
