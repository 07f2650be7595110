#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Judge a guest serial log.

judge.py NAME LOG QEMU_RC SECONDS   print one result line per test case:
                                    "PASS|FAIL|SKIP|XFAIL <boot>: <test>: <case>"
                                    (XFAIL: a finding about the upstream driver,
                                    allowed only in its boots)
judge.py --summary RESULTS          print "N passed, N failed, N skipped";
                                    exit 1 if anything failed

A boot also fails as a whole ("<boot>: guest") on a kernel report (Oops,
BUG, WARNING, KASAN, lockdep, hung task, panic), a QEMU timeout, or a guest
that did not reach its clean end.
"""

import re
import sys

# Kernel reports that fail a run, whatever the tests said.
SPLATS = [
    (re.compile(r"\bOops\b|general protection fault"), "Oops"),
    (re.compile(r"\bBUG: |kernel BUG at"), "BUG"),
    (re.compile(r"WARNING: .*(at|CPU: )|WARNING: possible|------------\[ cut here \]"), "WARNING"),
    (re.compile(r"KASAN|UBSAN: "), "KASAN/UBSAN"),
    (re.compile(r"possible (circular|recursive) locking|inconsistent lock state|"
                r"possible irq lock inversion|lock held when returning|bad unlock balance|"
                r"suspicious RCU usage|INFO: trying to register non-static key|"
                r"BUG: sleeping function called"), "lockdep"),
    (re.compile(r"blocked for more than \d+ seconds|hung_task"), "hung task"),
    (re.compile(r"Kernel panic|kernel panic"), "panic"),
    (re.compile(r"unreferenced object 0x"), "kmemleak"),
    (re.compile(r"rust_panic|panicked at"), "Rust panic"),
]

TAP = re.compile(r"^(\s*)(not ok|ok) (\d+) (?:- )?([^#]*?)\s*(#\s*(SKIP|skip|TODO|XFAIL)\b.*)?$")
# An expected failure (KTAP "XFAIL") is a finding about the upstream driver: counted apart.
DIRECTIVE = {"SKIP": "SKIP", "skip": "SKIP", "TODO": "SKIP", "XFAIL": "XFAIL"}
TS = re.compile(r"^\[\s*\d+\.\d+\] ")
# run_kselftest.sh's result line for a program: "ok 1 selftests: DIR: NAME # SKIP",
# "not ok 1 selftests: DIR: NAME # exit=1" or "... # TIMEOUT 300 seconds".
KSFT = re.compile(r"^(not ok|ok) (\d+) ([^#]*?)\s*(#\s*(\S+).*)?$")


def judge(name, path, qrc, secs):
    try:
        raw = open(path, errors="replace").read().splitlines()
    except OSError:
        raw = []
    raw = [l.rstrip("\r") for l in raw]
    lines = [TS.sub("", l) for l in raw]
    out = []
    bad = []
    for l in lines:
        for rx, what in SPLATS:
            if rx.search(l):
                bad.append(f"{what}: {l.strip()[:160]}")
                break

    # Test programs, framed by the guest init. A kselftest ("ksft:NAME", run by the
    # kernel's run_kselftest.sh) comes wrapped: its own KTAP lines behind "# ", then
    # run_kselftest.sh's result for the whole program. Its own results count, as a
    # program's do; the wrapper's result adds a failure when it failed (exit status,
    # timeout) with no failed result of its own, and a skip when it skipped the
    # whole program.
    cur = None
    seen = {}
    plan = {}
    outer = {}
    why = {}
    for l in raw:
        if TS.match(l):
            continue  # the kernel's, not the program's
        m = re.match(r"^VPMEM-BEGIN (\S+)", l)
        if m:
            cur = m.group(1)
            seen[cur] = []
            continue
        m = re.match(r"^VPMEM-END (\S+) rc=(\d+)", l)
        if m and cur:
            rc = int(m.group(2))
            rs = seen[cur]
            own = len(rs)
            if cur.startswith("ksft:"):
                o = outer.get(cur)
                if o is None:
                    rs.append(("FAIL", f"no result from run_kselftest.sh (exit status {rc})"))
                elif o[0] == "FAIL" and not any(r == "FAIL" for r, _ in rs):
                    rs.append(("FAIL", f"kselftest: {o[1]}"))
                elif o[0] == "SKIP" and not rs:
                    rs.append(("SKIP", f"kselftest: {o[1]}: {why.get(cur, '')}".rstrip(": ")))
                rc = 0 if o and o[0] != "FAIL" else rc
            n = len(rs)
            if n == 0 or rc != 0 and not any(r == "FAIL" for r, _ in rs):
                rs.append(("FAIL", f"exit status {rc}, {n} results"))
            elif plan.get(cur) is not None and plan[cur] != own and \
                    not (plan[cur] == 0 and all(r == "SKIP" for r, _ in rs)):
                rs.append(("FAIL", f"planned {plan[cur]} tests, saw {own}"))
            cur = None
            continue
        if cur is None:
            continue
        if cur.startswith("ksft:"):
            m = KSFT.match(l)
            if m:
                # run_kselftest.sh's result for the program.
                res = "FAIL" if m.group(1) == "not ok" else (DIRECTIVE.get(m.group(5), "PASS"))
                outer[cur] = (res, (m.group(3).strip() + " " + (m.group(4) or "")).strip())
                continue
            if not l.startswith("# "):
                continue
            l = l[2:]
        m = re.match(r"^1\.\.(\d+)(?:\s*#\s*SKIP\s*(.*))?", l)
        if m and plan.get(cur) is None:
            plan[cur] = int(m.group(1))
            if m.group(2):
                why[cur] = m.group(2).strip()
            continue
        m = TAP.match(l)
        if m and m.group(1) == "":
            res = "FAIL" if m.group(2) == "not ok" else (DIRECTIVE.get(m.group(6), "PASS"))
            seen[cur].append((res, m.group(4).strip() or m.group(3)))
    upstream = re.search(r"\bvpmem\.driver=c\b", "\n".join(lines[:400])) is not None
    for t, rs in seen.items():
        for r, c in rs:
            if r == "XFAIL" and not upstream:
                r, c = "FAIL", f"{c} (an expected failure is only allowed of the upstream driver)"
            out.append(f"{r} {name}: {t}: {c}")

    # KUnit: suites at one indent level, cases one deeper. A module's suites run at each
    # load: a case counts once per boot, failed if it failed any time.
    suite = None
    kunit = {}
    cmd = next((l for l in lines if l.startswith("Kernel command line:")), "")
    m = re.search(r"vpmem\.kunit_count=(\S+)", cmd)
    count_only = re.compile(m.group(1)) if m else None
    for l in lines:
        m = re.match(r"^\s+# Subtest: (\S+)", l)
        if m:
            suite = m.group(1)
            continue
        m = TAP.match(l)
        if m and suite and len(m.group(1)) >= 4 and not l.startswith("VPMEM"):
            res = "FAIL" if m.group(2) == "not ok" else ("SKIP" if m.group(6) else "PASS")
            key = f"kunit {suite}: {m.group(4).strip()}"
            if count_only and not count_only.search(key):
                continue
            if kunit.get(key) != "FAIL":
                kunit[key] = res
    out += [f"{r} {name}: {k}" for k, r in kunit.items()]

    started = [l for l in lines if l.startswith("VPMEM-BEGIN")]
    if qrc == 124 or qrc == 137:
        bad.append(f"timeout after {secs} s")
    elif "VPMEM-DONE" not in lines:
        bad.append("guest did not reach its clean end (VPMEM-DONE)")
    if any(l.startswith("VPMEM-ERROR") for l in lines):
        bad += [l for l in lines if l.startswith("VPMEM-ERROR")]
    missing = set(re.findall(r"vpmem\.tests=(\S*)", "\n".join(lines[:400]))[:1][0].split(",")
                  if re.findall(r"vpmem\.tests=(\S*)", "\n".join(lines[:400])) else [])
    missing -= set(seen)
    missing.discard("")
    for t in sorted(missing):
        bad.append(f"test {t} never started")
    if bad:
        for b in bad[:10]:
            out.append(f"FAIL {name}: guest: {b}")
    else:
        out.append(f"PASS {name}: guest: clean boot in {secs} s ({len(started)} programs)")
    print("\n".join(out))


def summary(path):
    p = f = s = x = 0
    for l in open(path):
        if l.startswith("PASS "):
            p += 1
        elif l.startswith("FAIL "):
            f += 1
        elif l.startswith("SKIP "):
            s += 1
        elif l.startswith("XFAIL "):
            x += 1
    for l in open(path):
        if l.startswith("FAIL ") or l.startswith("XFAIL "):
            print(l.rstrip())
    findings = f", {x} findings about the upstream driver (XFAIL)" if x else ""
    print(f"{p} passed, {f} failed, {s} skipped{findings}")
    return 1 if f or p == 0 else 0


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        sys.exit(summary(sys.argv[2]))
    judge(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
