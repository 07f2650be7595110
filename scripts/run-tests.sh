#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the guest kernel in QEMU against virtio-pmem devices and run the tests.
#
#   scripts/run-tests.sh [options] [BOOT...]
#
#   BOOT            boots from tests/plan to run (default: all)
#   --list          list the boots and exit
#   --shell         boot one guest with a shell on the console (driver: c, or
#                   the driver of the first BOOT given)
#   --kvm           use KVM (only if a probe boot shows it works here)
#   --timeout S     hard limit per boot (default 300 s)
#   --keep-logs     keep guest logs even when everything passed
#
# Environment: VPMEM_CMDLINE adds to every boot's kernel command line;
# VPMEM_POWERCUT_CUTS and VPMEM_POWERCUT_SEED override the cuts and the seed
# of power-cut boots (scripts/powercut.py); VPMEM_PLAN replaces tests/plan (make
# bench: tests/bench.plan); VPMEM_LOGDIR is where the guest logs go.
#
# Prints one line per test, then "N passed, N failed, N skipped"; exits
# non-zero on any failure, timeout or kernel splat in a guest log.

set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

timeout_s=${BOOT_TIMEOUT:-300}
accel=tcg
shell=0 keep=0 list=0
want=()
while [ $# -gt 0 ]; do
	case "$1" in
	--shell) shell=1 ;;
	--kvm) accel=kvm ;;
	--timeout) timeout_s=$2; shift ;;
	--keep-logs) keep=1 ;;
	--list) list=1 ;;
	-h|--help) sed -n '3,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) want+=("$1") ;;
	esac
	shift
done

plan=${VPMEM_PLAN:-$REPO/tests/plan}

# The kernel a boot runs: boots with driver "builtin" run the builtin variant
# (VPMEM_VARIANT=builtin scripts/build.sh), the others the default build.
kout_for() {
	case "$1" in
	builtin) echo "$VPMEM_CACHE/build-builtin" ;;
	*) echo "$KBUILD_OUT" ;;
	esac
}

if [ $list = 1 ]; then
	grep -v '^#' "$plan" | awk 'NF {print $1 "\t" $2 "\t" $4}'
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vpmem-run.XXXXXX")
logdir=${VPMEM_LOGDIR:-$VPMEM_CACHE/logs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$logdir"
# Power-cut boots keep their backing files and the host's copies of them in memory: the
# copies are the durable state there, and copying from and to tmpfs keeps cuts cheap.
shm=$(mktemp -d /dev/shm/vpmem-run.XXXXXX)
cleanup() { rm -rf "$work" "$shm"; }
trap cleanup EXIT

# ---------------------------------------------------------------- initramfs
build_initramfs() {
	local root=$work/root
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,tmp,mnt,tests,etc}
	cp /bin/busybox "$root/bin/busybox"
	file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' ||
		die "/bin/busybox is not static (install busybox-static)"
	install -m 0755 "$REPO/tests/guest/init" "$root/init"
	# mke2fs, e2fsck, ndctl and daxctl are dynamic: bring their libraries.
	local bin lib
	for bin in /sbin/mke2fs /sbin/e2fsck /usr/bin/ndctl /usr/bin/daxctl; do
		[ -x "$bin" ] || die "$bin is missing (run make setup)"
		cp "$bin" "$root/sbin/"
		for lib in $(ldd "$bin" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}'); do
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
	done
	ln -sf mke2fs "$root/sbin/mkfs.ext4"
	printf '[defaults]\n\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\tblocksize = 4096\n\tinode_size = 256\n[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\t}\n' > "$root/etc/mke2fs.conf"
	# Test programs.
	make -s -C "$REPO/tests" O="$work/tests" KERNEL_SRC="$KERNEL_SRC" >/dev/null
	# The host side of slow-host boots (vpmem.host_ctl=1), preloaded into QEMU.
	gcc -O2 -Wall -shared -fPIC -o "$work/slow_sync.so" "$REPO/tests/host/slow_sync.c" -ldl
	# The host side of power-cut boots (vpmem.powercut=N).
	gcc -O2 -Wall -shared -fPIC -o "$work/flush_snapshot.so" "$REPO/tests/host/flush_snapshot.c" \
		-ldl -pthread
	# The host side of benchmark boots (vpmem.bench_backing=...): counts host flushes.
	gcc -O2 -Wall -shared -fPIC -o "$work/flush_count.so" "$REPO/tests/host/flush_count.c" -ldl
	cp "$work"/tests/bin/* "$root/tests/"
	install -m 0755 "$REPO"/tests/*.sh "$root/tests/"
	cp "$KERNEL_SRC/tools/testing/selftests/kselftest/ktap_helpers.sh" "$root/tests/"
	# The kselftests (selftests/, linked into the tree as
	# tools/testing/selftests/drivers/nvdimm/virtio_pmem by scripts/build.sh), built
	# static against the build's exported headers and installed in /kselftest with the
	# kernel's run_kselftest.sh; the guest runs them through it ("ksft:" in tests/plan).
	local ksft=$KERNEL_SRC/tools/testing/selftests
	[ -e "$ksft/drivers/nvdimm/virtio_pmem/Makefile" ] ||
		die "no kselftests in $ksft/drivers/nvdimm/virtio_pmem: run scripts/build.sh prepare"
	command -v rsync >/dev/null || die "rsync is missing (run make setup)"
	kmake -s -C "$KERNEL_SRC" O="$KBUILD_OUT" headers >/dev/null
	if ! LDFLAGS=-static make -C "$ksft" O="$KBUILD_OUT" TARGETS=drivers/nvdimm/virtio_pmem \
		install INSTALL_PATH="$root/kselftest" > "$work/kselftest.log" 2>&1; then
		cat "$work/kselftest.log" >&2
		die "kselftest build failed"
	fi
	file -L "$root/kselftest/drivers/nvdimm/virtio_pmem/pmem_fsync_test" | grep -q 'statically linked' ||
		die "the kselftests are not static"
	# run_kselftest.sh calls GNU timeout: busybox's, adapted (tests/guest/timeout).
	install -m 0755 "$REPO/tests/guest/timeout" "$root/usr/bin/timeout"
	# Tests here use the kselftests' helper and shell library too.
	local f
	for f in fsync_hammer poison_io pmem_lib.sh badblocks_lib.sh; do
		cp "$root/kselftest/drivers/nvdimm/virtio_pmem/$f" "$root/tests/"
	done
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/base.cpio.gz"
}

# Debian's fio with its libraries, for benchmark boots only (about 30 MB).
fio_layer() {
	local root=$work/fio-root out=$work/fio.cpio.gz lib
	[ -f "$out" ] && { echo "$out"; return; }
	command -v fio >/dev/null || die "fio is missing (run make setup)"
	mkdir -p "$root/usr/bin"
	cp "$(command -v fio)" "$root/usr/bin/fio"
	for lib in $(ldd "$(command -v fio)" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
	echo "$out"
}

# The initramfs for the kernel built in $1: the common part, then that kernel's modules
# (the kernel unpacks concatenated archives in order). Prints its path.
initramfs_for() {
	local kout=$1 out
	out=$work/initramfs-$(basename "$kout").gz
	if [ ! -f "$out" ]; then
		local mods=$work/mods-$(basename "$kout")
		mkdir -p "$mods/lib"
		[ -d "$kout/mods/lib/modules" ] && cp -a "$kout/mods/lib/modules" "$mods/lib/"
		(cd "$mods" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.mods"
		cat "$work/base.cpio.gz" "$out.mods" > "$out"
	fi
	echo "$out"
}

# ---------------------------------------------------------------- one boot
# boot NAME DRIVER DEVICES TESTS [EXTRA_CMDLINE]
boot() {
	local name=$1 driver=$2 devs=$3 tests=$4 extra=${5:-}
	local log=$logdir/$name.log
	local qargs=() n=0 d key size img sizes= imgs= imgdir=$work
	case " $extra " in *" vpmem.powercut="*|*" vpmem.bench_backing=shm "*) imgdir=$shm ;; esac
	for d in ${devs//,/ }; do
		[ "$d" = - ] && continue
		# "rng": a virtio entropy device (for the virtio sample driver), limited to
		# 32 bytes every 2 s, so that requests wait in the queue.
		if [ "$d" = rng ]; then
			qargs+=(-device virtio-rng-pci,max-bytes=32,period=2000)
			continue
		fi
		key=${d%%:*} size=${d#*:}
		img=$imgdir/pmem-$key-$size.img
		[ -f "$img" ] || truncate -s "$size" "$img"
		qargs+=(-object "memory-backend-file,id=mem$n,share=on,mem-path=$img,size=$size"
			-device "virtio-pmem-pci,memdev=mem$n,id=nv$n")
		sizes=$sizes${sizes:+,}$(numfmt --from=iec "$size")
		imgs=$imgs${imgs:+,}$img
		n=$((n + 1))
	done
	# KUnit: only the project's suites (the driver's, and the abstractions' doctests in
	# boots that ask for them with kunit.filter_glob in "extra").
	local kunit="kunit.filter_glob=virtio_pmem_rust*"
	case "$extra" in *kunit.filter_glob=*) kunit= ;; esac
	local kout bzimage initrd
	kout=$(kout_for "$driver")
	bzimage=$kout/arch/x86/boot/bzImage
	if [ ! -f "$bzimage" ]; then
		[ "$driver" = builtin ] && die "no kernel at $bzimage: run VPMEM_VARIANT=builtin scripts/build.sh"
		die "no kernel at $bzimage: run scripts/build.sh"
	fi
	initrd=$(initramfs_for "$kout")
	case " $extra " in
	*" vpmem.bench_backing="*)
		cat "$initrd" "$(fio_layer)" > "$work/initramfs-fio.gz"
		initrd=$work/initramfs-fio.gz ;;
	esac
	local cmdline="console=ttyS0 panic=-1 oops=panic loglevel=7 $kunit vpmem.driver=$driver vpmem.sizes=$sizes vpmem.tests=$tests $extra${VPMEM_CMDLINE:+ $VPMEM_CMDLINE}"
	# vpmem.cpu=intel: an Intel-vendor CPU (QEMU's "max" is AuthenticAMD under TCG).
	local cpu=max
	case " $extra " in *" vpmem.cpu=intel "*) cpu=max,vendor=GenuineIntel ;; esac
	local q=(qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp 2
		 -m 1G,slots=4,maxmem=8G -kernel "$bzimage" -initrd "$initrd"
		 -nographic -no-reboot -nic none "${qargs[@]}"
		 -global PIIX4_PM.acpi-root-pci-hotplug=off
		 -global PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off)
	if [ $shell = 1 ]; then
		exec "${q[@]}" -append "$cmdline vpmem.shell=1"
	fi
	local t0=$SECONDS rc=0
	case " $extra " in
	*" vpmem.powercut="*)
		# Power cuts (scripts/powercut.py): a chain of QEMU processes, each but the
		# last killed during the guest's workload; the next one boots on the copy
		# of the backing files made at the last host flush before the cut.
		# VPMEM_POWERCUT_CUTS overrides the number of cuts (by hand: 200).
		local cuts
		cuts=$(echo " $extra " | sed -n 's/.* vpmem\.powercut=\([0-9]*\) .*/\1/p')
		python3 "$here/powercut.py" --cuts "${VPMEM_POWERCUT_CUTS:-$cuts}" --log "$log" \
			--snapdir "$shm/snap-$name" --images "$imgs" --preload "$work/flush_snapshot.so" \
			--timeout "$timeout_s" --cmdline "$cmdline" ${VPMEM_POWERCUT_SEED:+--seed "$VPMEM_POWERCUT_SEED"} \
			-- "${q[@]}" >"$log.qemu" 2>&1 || rc=$?
		;;
	*" vpmem.bench_backing="*)
		# Benchmarks (scripts/bench_host.py): host flushes counted at the guest's
		# marks; a progress line per measured point.
		python3 "$here/bench_host.py" --log "$log" --marks "$log.marks" --images "$imgs" \
			--preload "$work/flush_count.so" --timeout "$timeout_s" -- "${q[@]}" \
			-append "$cmdline" 2>>"$log.qemu" || rc=$?
		;;
	*" vpmem.host_ctl=1 "*)
		# Host control: the guest asks on its console, and the runner acts on each
		# request once, in order:
		#   "VPMEM-HOST saverestore"  stop the VM, migrate it to a file, quit, and
		#       restore it in a new QEMU process on the same backing files, as a
		#       user would with the monitor (QEMU 10 keeps no virtio-pmem state, so
		#       the device comes back reset under the guest);
		#   "VPMEM-HOST cpr"          live update (boots with vpmem.cpr=1, whose guest
		#       RAM is a shared file): start a new QEMU with -incoming on a main and
		#       a cpr channel, migrate to it over QMP in cpr-transfer mode, and let
		#       the old one quit (QEMU 10 loses the virtio-pmem state here too);
		#   "VPMEM-HOST mce ARGS"     the monitor command "mce ARGS": a machine check
		#       raised on a vCPU, as QEMU does when the host finds a memory error
		#       in guest memory;
		#   "VPMEM-HOST slow ARGS"    write ARGS ("delay MS", "once MS", "hang" or
		#       "off") to the control file of tests/host/slow_sync.c, preloaded into
		#       QEMU: the host's fsync of the backing files is delayed or blocked;
		#   "VPMEM-HOST fiu enable|disable NAME"  with vpmem.host_fiu=1 as well:
		#       libfiu's preload libraries are loaded into QEMU too (as fiu-run -x
		#       loads them), and the failure point is switched with fiu-ctrl.
		# The serial log is appended to across QEMU processes.
		local gen=0 state=$work/vm.state ctl=$work/slow.ctl stopped=
		local deadline=$((SECONDS + timeout_s)) qpid total line done_lines=0
		local qenv=(env LD_PRELOAD="$work/slow_sync.so" VPMEM_SLOW_PATH="$work/pmem-"
			    VPMEM_SLOW_CTL="$ctl")
		case " $extra " in
		*" vpmem.host_fiu=1 "*)
			local fiulib
			fiulib=$(sed -n 's/^PLIBPATH="\(.*\)"$/\1/p' "$(command -v fiu-run)")
			qenv=(env LD_PRELOAD="$fiulib/fiu_run_preload.so $fiulib/fiu_posix_preload.so $work/slow_sync.so"
			      FIU_CTRL_FIFO="$work/fiu" FIU_ENABLE= VPMEM_SLOW_PATH="$work/pmem-"
			      VPMEM_SLOW_CTL="$ctl") ;;
		esac
		case " $extra " in
		*" vpmem.cpr=1 "*)
			q+=(-object "memory-backend-file,id=ram0,size=1G,mem-path=$work/ram,share=on"
			    -machine memory-backend=ram0,aux-ram-share=on) ;;
		esac
		# The monitor sockets of QEMU process number $gen.
		mon() { echo "$work/mon.$gen.sock"; }
		qmp() { echo "$work/qmp.$gen.sock"; }
		serial() {
			echo -chardev "file,id=con,path=$log,append=on" -serial chardev:con \
			     -monitor "unix:$(mon),server=on,wait=off" \
			     -qmp "unix:$(qmp),server=on,wait=off" -display none
		}
		: > "$log"
		echo off > "$ctl"
		"${qenv[@]}" "${q[@]}" -append "$cmdline" $(serial) </dev/null >>"$log.qemu" 2>&1 &
		qpid=$!
		while kill -0 $qpid 2>/dev/null; do
			if [ $SECONDS -ge $deadline ]; then
				echo off > "$ctl"; kill -9 $qpid; rc=124; break
			fi
			sleep 0.1
			total=$(grep -a -c 'VPMEM-HOST ' "$log" || true)
			while [ "$done_lines" -lt "$total" ] && [ $rc = 0 ]; do
				done_lines=$((done_lines + 1))
				line=$(grep -a 'VPMEM-HOST ' "$log" | sed -n "${done_lines}p" | tr -d '\r')
				line=${line#*VPMEM-HOST }
				echo "host: $line" >> "$log.qemu"
				case "$line" in
				saverestore)
					if ! python3 "$here/qemu_monitor.py" "$(mon)" save "$state" >> "$log.qemu" 2>&1; then
						kill -9 $qpid; rc=1; break
					fi
					wait $qpid || true
					gen=$((gen + 1))
					"${qenv[@]}" "${q[@]}" -append "$cmdline" $(serial) \
						-incoming defer </dev/null >>"$log.qemu" 2>&1 &
					qpid=$!
					python3 "$here/qemu_monitor.py" "$(mon)" resume "$state" >> "$log.qemu" 2>&1 || {
						kill -9 $qpid; rc=1; break
					}
					;;
				cpr)
					local old=$qpid oldqmp
					oldqmp=$(qmp)
					gen=$((gen + 1))
					rm -f "$work/main.sock" "$work/cpr.sock"
					"${qenv[@]}" "${q[@]}" -append "$cmdline" $(serial) \
						-incoming "unix:$work/main.sock" \
						-incoming "{\"channel-type\":\"cpr\",\"addr\":{\"transport\":\"socket\",\"type\":\"unix\",\"path\":\"$work/cpr.sock\"}}" \
						</dev/null >>"$log.qemu" 2>&1 &
					qpid=$!
					if ! python3 "$here/qemu_monitor.py" "$oldqmp" cpr "$work/main.sock" \
						"$work/cpr.sock" >> "$log.qemu" 2>&1; then
						kill -9 $old $qpid; rc=1; break
					fi
					wait $old || true
					python3 "$here/qemu_monitor.py" "$(mon)" resume >> "$log.qemu" 2>&1 || {
						kill -9 $qpid; rc=1; break
					}
					;;
				slow\ *)
					echo "${line#slow }" > "$ctl"
					;;
				fiu\ *)
					set -- ${line#fiu }
					fiu-ctrl -f "$work/fiu" -c "$1 name=$2" "$qpid" >> "$log.qemu" 2>&1 || {
						kill -9 $qpid; rc=1; break
					}
					;;
				mce\ *)
					python3 "$here/qemu_monitor.py" "$(mon)" hmp "$line" >> "$log.qemu" 2>&1 || {
						kill -9 $qpid; rc=1; break
					}
					;;
				esac
			done
			[ $rc = 0 ] || break
			# A guest that powers off with the host's flush blocked: release it, as
			# the host's storage would come back, so that QEMU can exit.
			grep -aq 'reboot: Power down' "$log" && echo off > "$ctl"
			# A guest that cannot power off (vpmem.stop_at_done=1: the C driver after
			# a restore, whose device shutdown waits on the lost device) is stopped
			# once it has reached its clean end.
			if [[ " $extra " == *" vpmem.stop_at_done=1 "* ]] && grep -aq '^VPMEM-DONE' "$log"; then
				sleep 1
				kill -9 $qpid
				wait $qpid || true
				echo "host: stopped QEMU after VPMEM-DONE (vpmem.stop_at_done=1)" >> "$log.qemu"
				stopped=1
				break
			fi
		done
		[ $rc != 0 ] || [ -n "$stopped" ] || wait $qpid || rc=$?
		;;
	*" vpmem.host_fiu=1 "*)
		# Host fault injection: QEMU runs under libfiu; the guest asks for failure
		# points on its console ("VPMEM-HOST fiu enable|disable NAME").
		timeout -k 5 "$timeout_s" fiu-run -x -f "$work/fiu" "${q[@]}" -append "$cmdline" \
			-serial "file:$log" -monitor none -display none </dev/null >"$log.qemu" 2>&1 &
		local qpid=$! done_lines=0 line pid
		while kill -0 $qpid 2>/dev/null; do
			sleep 0.1
			pid=$(ls "$work"/fiu-*.in 2>/dev/null | head -1 | sed 's/.*fiu-\([0-9]*\)\.in/\1/')
			[ -n "$pid" ] || continue
			while IFS= read -r line; do
				done_lines=$((done_lines + 1))
				line=${line%$'\r'}
				set -- ${line#*VPMEM-HOST fiu }
				fiu-ctrl -f "$work/fiu" -c "$1 name=$2" "$pid" &&
					echo "host: fiu $1 $2" >> "$log.qemu"
			done < <(grep -a 'VPMEM-HOST fiu ' "$log" 2>/dev/null | tail -n +$((done_lines + 1)))
		done
		wait $qpid || rc=$?
		;;
	*)
		timeout -k 5 "$timeout_s" "${q[@]}" -append "$cmdline" \
			-serial "file:$log" -monitor none -display none </dev/null >"$log.qemu" 2>&1 || rc=$?
		;;
	esac
	BOOT_SECS=$((SECONDS - t0))
	return $rc
}

# Judge a guest log (scripts/judge.py): one result line per test case.
judge() {
	python3 "$here/judge.py" "$1" "$2" "$3" "$BOOT_SECS"
}

# ---------------------------------------------------------------- main
build_initramfs

if [ $shell = 1 ]; then
	line=$(grep -v '^#' "$plan" | awk 'NF' | { if [ ${#want[@]} -gt 0 ]; then grep -E "^${want[0]}\s" ; else head -1; fi } | head -1)
	read -r _ drv devs _ extra <<<"$line"
	boot shell "$drv" "$devs" "" "${extra:-}"
fi

results=$work/results
: > "$results"
# The boots to run, read whole before any runs, so that nothing a boot runs can take
# lines of the plan from the loop.
selected=()
while read -r name _; do
	case "$name" in ''|'#'*) continue ;; esac
	if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx "$name"; then
		continue
	fi
	selected+=("$name")
done < "$plan"
for name in "${want[@]}"; do
	printf '%s\n' "${selected[@]}" | grep -qx "$name" || die "no boot $name in tests/plan"
done
[ ${#selected[@]} -gt 0 ] || die "no boot to run"
ran=0
for name in "${selected[@]}"; do
	read -r name drv devs tests extra < <(grep -E "^$name\s" "$plan")
	[ "$extra" = - ] && extra=
	[ "$tests" = - ] && tests=
	qrc=0
	boot "$name" "$drv" "$devs" "$tests" "${extra:-}" || qrc=$?
	judge "$name" "$logdir/$name.log" "$qrc" | tee -a "$results"
	# Benchmark results, if the boot had any (kept in $VPMEM_CACHE/bench.txt).
	if grep -aq '^BENCH' "$logdir/$name.log" 2>/dev/null; then
		grep -a '^BENCH' "$logdir/$name.log" | grep -av '^BENCHFIO' | sed "s/^/$name: /" | tee -a "$VPMEM_CACHE/bench.txt"
	fi
	ran=$((ran + 1))
done
[ $ran = ${#selected[@]} ] || die "ran $ran boots of ${#selected[@]}"

st=0
python3 "$here/judge.py" --summary "$results" || st=$?
if [ $st = 0 ] && [ $keep = 0 ]; then rm -rf "$logdir"; else log "guest logs: $logdir"; fi
exit $st
