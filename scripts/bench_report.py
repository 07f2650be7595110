#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the logs of `make bench` into a CSV, a markdown table and a plot.

bench_report.py OUTDIR

Reads OUTDIR/logs/bench-*.log (the guests' BENCHPT, BENCHFIO, BENCHALLOC and
BENCHMEM lines), their .marks files (host flushes counted at each point's
marks by scripts/bench_host.py), OUTDIR/ceiling.txt (the host's own 4 KiB
write + fsync rate, from scripts/bench.sh) and OUTDIR/modules.txt, and writes:
  OUTDIR/bench.csv   every point;
  OUTDIR/bench.md    medians with their range over the repetitions, ours/C;
  OUTDIR/bench.png   ops/s and p99 against threads (gnuplot).
"""

import collections
import csv
import glob
import json
import os
import re
import statistics
import subprocess
import sys

WORKLOADS = ["dax", "fio-psync", "fio-mmap", "msync", "raw", "journal"]
TITLES = {
    "dax": "4 KiB overwrite + fdatasync, ext4 -o dax",
    "fio-psync": "fio psync, --fdatasync=1, ext4 -o dax",
    "fio-mmap": "fio mmap, --fdatasync=1 (msync), ext4 -o dax",
    "msync": "dirty a DAX page + msync(MS_SYNC)",
    "raw": "O_DIRECT 4 KiB write + fdatasync, /dev/pmem0",
    "journal": "4 KiB append + fdatasync, ext4 with journal, no DAX",
}
BACKINGS = {"file": "file on the host's disk", "shm": "null host (/dev/shm)"}
FIELDS = ["workload", "backing", "driver", "threads", "rep", "ops_per_s", "p50_us", "p99_us",
          "p999_us", "host_flushes_per_fsync", "cpu_busy_pct", "irqs_per_fsync",
          "host_flush_us", "ops", "host_flushes"]
KV = re.compile(r"(\w+)=(\S+)")


def fio_point(report):
    """Returns ops, ops/s and the fdatasync latency percentiles (us) of a fio report."""
    job = report["jobs"][0]
    w, s = job["write"], job["sync"]
    pct = s.get("lat_ns", {}).get("percentile", {})

    def p(key):
        return round(pct.get(key, 0) / 1000)
    return {"ops": w["total_ios"], "ops_per_s": round(w["iops"]), "p50_us": p("50.000000"),
            "p99_us": p("99.000000"), "p999_us": p("99.900000"), "errors": job["error"]}


def read_logs(outdir):
    points, allocs, mem = [], [], []
    for log in sorted(glob.glob(os.path.join(outdir, "logs", "bench-*.log"))):
        marks = {}
        if os.path.exists(log + ".marks"):
            for line in open(log + ".marks"):
                f = line.split()
                if len(f) == 3:
                    marks[f[0]] = (int(f[1]), int(f[2]))
        fio = {}
        for raw in open(log, errors="replace"):
            line = raw.rstrip("\r\n")
            if line.startswith("BENCHFIO "):
                _, ident, js = line.split(" ", 2)
                try:
                    fio[ident.split("=", 1)[1]] = fio_point(json.loads(js))
                except (ValueError, KeyError, IndexError) as e:
                    print(f"bench_report: bad fio report for {ident}: {e}", file=sys.stderr)
            elif line.startswith("BENCHPT "):
                p = dict(KV.findall(line))
                if p["workload"].startswith("fio-"):
                    if p["id"] not in fio:
                        continue
                    p.update(fio[p["id"]])
                if "ops" not in p:
                    print(f"bench_report: no result for {p['id']}", file=sys.stderr)
                    continue
                ops = int(p["ops"])
                s, e = marks.get(p["id"] + ".start"), marks.get(p["id"] + ".end")
                hf = e[0] - s[0] if s and e else None
                p["host_flushes"] = hf
                p["host_flushes_per_fsync"] = round(hf / ops, 3) if hf is not None and ops else ""
                p["host_flush_us"] = round((e[1] - s[1]) / hf / 1000) if hf else ""
                p["irqs_per_fsync"] = round(int(p["irqs"]) / ops, 3) if ops else ""
                p["cpu_busy_pct"] = p["cpu_busy"]
                points.append(p)
            elif line.startswith("BENCHALLOC "):
                allocs.append(dict(KV.findall(line)))
            elif line.startswith("BENCHMEM "):
                mem.append(dict(KV.findall(line)))
    return points, allocs, mem


def med(values):
    return statistics.median(values) if values else float("nan")


def spread(values, fmt="{:.0f}"):
    if not values:
        return "-"
    return (fmt + " ({}-{})").format(med(values), fmt.format(min(values)), fmt.format(max(values)))


def main():
    outdir = sys.argv[1]
    points, allocs, mem = read_logs(outdir)
    if not points:
        sys.exit("bench_report: no BENCHPT lines in " + outdir + "/logs")
    with open(os.path.join(outdir, "bench.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for p in points:
            w.writerow(p)

    by = collections.defaultdict(list)
    for p in points:
        by[(p["backing"], p["workload"], int(p["threads"]), p["driver"])].append(p)

    def vals(key, field):
        return [float(p[field]) for p in by.get(key, []) if p[field] not in ("", None)]

    ceiling = {}
    if os.path.exists(os.path.join(outdir, "ceiling.txt")):
        for line in open(os.path.join(outdir, "ceiling.txt")):
            f = line.split()
            if len(f) >= 2:
                ceiling[f[0]] = float(f[1])

    md = ["# Benchmark results", ""]
    md.append("Medians over the repetitions, with their range in parentheses; "
              "p99 is the latency of one durable write (fio: of its fdatasync/msync). "
              "\"host fl.\" is host flushes per guest fsync, counted on the host.")
    md.append("")
    threads = sorted({int(p["threads"]) for p in points})
    reps = len({p["rep"] for p in points})
    for backing in [b for b in BACKINGS if any(p["backing"] == b for p in points)]:
        md.append(f"## Backing: {BACKINGS[backing]}")
        md.append("")
        if backing in ceiling:
            md.append(f"Host ceiling (fio on the same file system, one job): "
                      f"{ceiling[backing]:.0f} 4 KiB writes per second with an fsync after "
                      f"each (one host flush per guest fsync)"
                      + (f", {ceiling[backing + '-per8']:.0f} with an fsync after every 8 "
                         f"(8 guest fsyncs per host flush)" if backing + "-per8" in ceiling
                         else "") + ".")
            md.append("")
        for wl in WORKLOADS:
            if not any((backing, wl, t, d) in by for t in threads for d in ("c", "rust")):
                continue
            md.append(f"### {wl}: {TITLES[wl]}")
            md.append("")
            md.append("| threads | C ops/s | ours ops/s | ours/C | C p99 us | ours p99 us | "
                      "p99 ours/C | host fl. C / ours | CPU busy % C / ours |")
            md.append("|---|---|---|---|---|---|---|---|---|")
            for t in threads:
                c, r = (backing, wl, t, "c"), (backing, wl, t, "rust")
                oc, orr = vals(c, "ops_per_s"), vals(r, "ops_per_s")
                pc, pr = vals(c, "p99_us"), vals(r, "p99_us")
                ratio = med(orr) / med(oc) if oc and orr and med(oc) else float("nan")
                pratio = med(pr) / med(pc) if pc and pr and med(pc) else float("nan")
                md.append(f"| {t} | {spread(oc)} | {spread(orr)} | {ratio:.2f} | {spread(pc)} | "
                          f"{spread(pr)} | {pratio:.2f} | "
                          f"{med(vals(c, 'host_flushes_per_fsync')):.2f} / "
                          f"{med(vals(r, 'host_flushes_per_fsync')):.2f} | "
                          f"{med(vals(c, 'cpu_busy_pct')):.0f} / {med(vals(r, 'cpu_busy_pct')):.0f} |")
            md.append("")

    md.append("## Cost")
    md.append("")
    md.append("| | C | ours |")
    md.append("|---|---|---|")
    for backing in BACKINGS:
        row = []
        for d in ("c", "rust"):
            a = [(int(x["allocs"]) - int(x["idle_allocs"])) / max(int(x["flushes"]), 1)
                 for x in allocs if x["driver"] == d and x["backing"] == backing]
            row.append(spread(a, "{:.2f}") if a else "-")
        if row != ["-", "-"]:
            md.append(f"| slab allocations per flush ({backing}) | {row[0]} | {row[1]} |")
        row = []
        for d in ("c", "rust"):
            per = collections.defaultdict(list)
            for x in allocs:
                if x["driver"] == d and x["backing"] == backing and x.get("caches"):
                    for item in x["caches"].split(","):
                        name, _, count = item.rpartition(":")
                        per[name].append(int(count) / max(int(x["flushes"]), 1))
            row.append(", ".join(f"{n} {med(v):.2f}" for n, v in sorted(per.items())) or "none")
        if any(x["backing"] == backing for x in allocs):
            md.append(f"| caches allocating once a flush or more ({backing}) | {row[0]} | "
                      f"{row[1]} |")
    row = []
    for d in ("c", "rust"):
        b = [int(x["bytes"]) / 1024 for x in mem if x["driver"] == d]
        row.append(spread(b, "{:.1f}") + " KiB" if b else "-")
    md.append(f"| memory per device (slab + vmalloc + per-CPU) | {row[0]} | {row[1]} |")
    for t in [t for t in (1, 8, 16) if t in threads]:
        c = vals(("file", "dax", t, "c"), "irqs_per_fsync")
        r = vals(("file", "dax", t, "rust"), "irqs_per_fsync")
        md.append(f"| interrupts per fsync, dax, {t} threads (file) | {med(c):.2f} | {med(r):.2f} |")
    if os.path.exists(os.path.join(outdir, "modules.txt")):
        sizes = dict(line.split(None, 1) for line in open(os.path.join(outdir, "modules.txt")))
        md.append(f"| module text / data / bss (bytes) | {sizes.get('c', '-').strip()} | "
                  f"{sizes.get('rust', '-').strip()} |")
    md.append("")

    md.append("## Where the time goes (file backing, dax)")
    md.append("")
    md.append("| threads | driver | ops/s | host flushes/s | host flush us | host busy % | "
              "guest CPU busy % | p50 us | answer to waiter running, us |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for t in [t for t in (1, 8, 16) if t in threads]:
        for d in ("c", "rust"):
            k = ("file", "dax", t, d)
            if k not in by:
                continue
            ops = med(vals(k, "ops_per_s"))
            hfps = med([float(p["host_flushes_per_fsync"]) * float(p["ops_per_s"])
                        for p in by[k] if p["host_flushes_per_fsync"] != ""])
            hus = med(vals(k, "host_flush_us"))
            wake = [int(p["drv_wake_us"]) / int(p["drv_wakeups"]) for p in by[k]
                    if int(p.get("drv_wakeups", 0) or 0) > 0]
            md.append(f"| {t} | {d} | {ops:.0f} | {hfps:.0f} | {hus:.0f} | "
                      f"{hfps * hus / 1e4:.0f} | {med(vals(k, 'cpu_busy_pct')):.0f} | "
                      f"{med(vals(k, 'p50_us')):.0f} | {f'{med(wake):.0f}' if wake else '-'} |")
    md.append("")
    md.append(f"{reps} repetitions; {len(points)} points.")
    with open(os.path.join(outdir, "bench.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    plot(outdir, by, threads, ceiling)
    print("\n".join(md))


def plot(outdir, by, threads, ceiling):
    """Writes bench.png: for each workload, ops/s and p99 against threads."""
    wls = [wl for wl in WORKLOADS if any(k[1] == wl for k in by)]
    data = os.path.join(outdir, "plot.dat")
    series = []
    with open(data, "w") as f:
        for backing in BACKINGS:
            for d in ("c", "rust"):
                for wl in wls:
                    rows = []
                    for t in threads:
                        k = (backing, wl, t, d)
                        if k in by:
                            ops = [float(p["ops_per_s"]) for p in by[k]]
                            p99 = [float(p["p99_us"]) / 1000 for p in by[k]]
                            rows.append(f"{t} {med(ops)} {min(ops)} {max(ops)} "
                                        f"{med(p99)} {min(p99)} {max(p99)}")
                    if rows:
                        series.append((backing, d, wl, len(series)))
                        f.write(f"# {backing} {d} {wl}\n" + "\n".join(rows) + "\n\n\n")
    color = {"c": "#d62728", "rust": "#1f77b4"}
    dash = {"file": 1, "shm": 2}
    name = {"c": "C", "rust": "ours"}
    gp = [f"set terminal pngcairo size 1400,{380 * len(wls)} font 'sans,10'",
          f"set output '{os.path.join(outdir, 'bench.png')}'",
          f"set multiplot layout {len(wls)},2", "set logscale xy", "set grid",
          "set xtics (" + ", ".join(str(t) for t in threads) + ")", "set key outside right",
          "set xlabel 'threads'"]
    for wl in wls:
        for metric, col, ylabel in (("ops/s", 2, "ops/s"), ("p99", 5, "p99 latency (ms)")):
            gp.append(f"set title '{wl}: {metric} ({TITLES[wl]})' noenhanced")
            gp.append(f"set ylabel '{ylabel}'")
            parts = []
            for backing, d, w, idx in series:
                if w != wl:
                    continue
                parts.append(f"'{data}' index {idx} using 1:{col}:{col + 1}:{col + 2} "
                             f"with yerrorlines lc rgb '{color[d]}' dt {dash[backing]} "
                             f"title '{name[d]}, {backing}'")
            if col == 2 and "file" in ceiling and wl in ("dax", "fio-psync", "raw"):
                parts.append(f"{ceiling['file']} with lines lc rgb 'black' dt 3 "
                             "title 'host: write+fsync (file)'")
            if col == 2 and "file-per8" in ceiling and wl in ("dax", "fio-psync", "raw"):
                parts.append(f"{ceiling['file-per8']} with lines lc rgb 'gray' dt 3 "
                             "title 'host: 8 writes+fsync (file)'")
            gp.append("plot " + ", ".join(parts) if parts else "plot 0 notitle")
    gp.append("unset multiplot")
    script = os.path.join(outdir, "plot.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", script], check=True)


if __name__ == "__main__":
    main()
