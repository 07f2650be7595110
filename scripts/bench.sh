#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench: the benchmark of both drivers (README, "Benchmark").
#
#   1. build the bench kernel (VPMEM_VARIANT=bench: the guest without its
#      debugging options; both drivers are modules of it);
#   2. measure the host's ceiling: fio's 4 KiB write + fsync rate, one job, on
#      a file of the devices' size on the file system that holds the backing
#      files ($TMPDIR, default /tmp), and on /dev/shm; once with an fsync
#      after every write (one host flush per guest fsync), once after every
#      8 writes (8 guest fsyncs sharing each host flush);
#   3. boot tests/bench.plan (tests/bench_test.sh): the backing file on the
#      host's disk, then on /dev/shm; each boot runs every workload at every
#      thread count, both drivers alternating over the repetitions, with a
#      progress line per point;
#   4. write $OUT/bench.csv, bench.md and bench.png (scripts/bench_report.py).
#
# Environment: VPMEM_BENCH_OUT (default $VPMEM_CACHE/bench), VPMEM_BENCH_REPS
# (3), VPMEM_BENCH_SECS (seconds per point, 3), VPMEM_BENCH_THREADS
# (1,2,4,8,16), VPMEM_BENCH_WORKLOADS (dax,fio-psync,fio-mmap,msync,raw,journal),
# VPMEM_BENCH_BACKINGS (bench-file bench-shm).

set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

out=${VPMEM_BENCH_OUT:-$VPMEM_CACHE/bench}
reps=${VPMEM_BENCH_REPS:-3}
secs=${VPMEM_BENCH_SECS:-3}
threads=${VPMEM_BENCH_THREADS:-1,2,4,8,16}
workloads=${VPMEM_BENCH_WORKLOADS:-dax,fio-psync,fio-mmap,msync,raw,journal}
boots=${VPMEM_BENCH_BACKINGS:-bench-file bench-shm}
command -v fio >/dev/null || die "fio is missing: run make setup"
command -v gnuplot >/dev/null || die "gnuplot is missing: run make setup"

rm -rf "$out"
mkdir -p "$out/logs"
nsteps=$((3 + $(echo $boots | wc -w)))
step=0
progress() {
	step=$((step + 1))
	log "bench [$step/$nsteps] $*"
}

progress "bench kernel (VPMEM_VARIANT=bench scripts/build.sh)"
VPMEM_VARIANT=bench "$here/build.sh"
kout=$VPMEM_CACHE/build-bench
for m in c:virtio_pmem rust:virtio_pmem_rust; do
	ko=$(find "$kout/mods" -name "${m#*:}.ko" | head -1)
	[ -n "$ko" ] || die "no ${m#*:}.ko in $kout/mods"
	echo "${m%%:*} $(size "$ko" | awk 'NR == 2 { print $1 " / " $2 " / " $3 }')" >> "$out/modules.txt"
done

progress "host ceiling: fio 4 KiB writes + fsync, one job, 3 x 5 s on ${TMPDIR:-/tmp} and /dev/shm"
for b in file:${TMPDIR:-/tmp} shm:/dev/shm; do
	f=$(mktemp "${b#*:}/vpmem-ceiling.XXXXXX")
	for every in 1 8; do
		rates=()
		for r in 1 2 3; do
			rates+=("$(fio --name=ceiling --filename="$f" --size=512M --bs=4k --rw=randwrite \
				--ioengine=psync --fsync="$every" --time_based --runtime=5 --output-format=json |
				python3 -c 'import json, sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')")
		done
		name=${b%%:*}
		[ "$every" = 1 ] || name=$name-per$every
		echo "$name $(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p) ${rates[*]}" >> "$out/ceiling.txt"
		log "host ceiling ($name): ${rates[*]} writes per second, an fsync every $every"
	done
	rm -f "$f"
done

for boot in $boots; do
	progress "$boot: $workloads at $threads threads, $reps repetitions of $secs s"
	VPMEM_VARIANT=bench VPMEM_PLAN="$REPO/tests/bench.plan" VPMEM_LOGDIR="$out/logs" \
	VPMEM_CMDLINE="vpmem.bench_reps=$reps vpmem.bench_secs=$secs vpmem.bench_threads=$threads vpmem.bench_workloads=$workloads${VPMEM_CMDLINE:+ $VPMEM_CMDLINE}" \
		"$here/run-tests.sh" --keep-logs --timeout 7200 "$boot"
done

progress "report: $out/bench.csv, bench.md, bench.png"
python3 "$here/bench_report.py" "$out"
log "bench: done; results in $out"
