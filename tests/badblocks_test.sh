#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Memory errors in a device's range become bad blocks, and overwrites clear
# them (the Rust driver's machine-check handler and bus commands).
#
# Errors are injected as software machine checks (x86 mce-inject in debugfs,
# flags=sw: the record goes through mce_log and the decode chain, whatever the
# CPU vendor) of an uncorrected memory error precise to a page:
#   Intel: bank 1, MCACOD 0x9f;  AMD: bank 4, extended error code 8.
# VPMEM_ARG:
#   sw    software injections only: raw device, DAX file, clearing, two
#         devices, addresses outside every device;
#   full  (default) also a machine check raised by QEMU (monitor "mce", needs
#         vpmem.host_ctl=1 and an Intel-vendor CPU) on a page a process maps,
#         ndctl, and unbind/bind and rmmod/modprobe while errors are injected.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mode=${VPMEM_ARG:-full}
io=/tests/poison_io
mce=/sys/kernel/debug/mce-inject
drv=/sys/bus/virtio/drivers/virtio_pmem_rust
MiB=1048576
vendor=$(sed -n 's/^vendor_id[[:space:]]*: //p' /proc/cpuinfo | head -1)
case $vendor in
GenuineIntel) bank=1 status=0xbc0000000000009f ;;
*) bank=4 status=0xbc00000000080000 ;;
esac

region_of() { dirname "$(readlink -f "/sys/block/$1/device")"; }
start_of() { echo $(($(cat "$(region_of "$1")/resource"))); }
size_of() { echo $(($(cat "$(region_of "$1")/size"))); }
# Bad blocks as one line, "SECTOR COUNT" pairs separated by ";".
bb() { tr '\n' ';' < "/sys/block/$1/badblocks"; }
rbb() { tr '\n' ';' < "$(region_of "$1")/badblocks"; }
media_errors() { ndctl list --media-errors 2>/dev/null | tr -d ' \n'; }

# inject ADDR: a software machine check of a memory error at ADDR.
inject() {
	echo sw > $mce/flags
	echo $status > $mce/status
	echo 0x8c > $mce/misc
	printf '%#x\n' "$1" > $mce/addr
	echo $bank > $mce/bank
}

# wait_bb DEV "SECTOR COUNT" [TENTHS]: wait until DEV lists exactly that bad range.
wait_bb() {
	i=0
	while [ $i -lt "${3:-50}" ]; do
		case ";$(bb "$1")" in *";$2;"*) return 0 ;; esac
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# is EXPECTED CMD...: CMD prints EXPECTED (one line).
is() {
	want=$1
	shift
	got=$("$@" 2>&1)
	[ "$got" = "$want" ] && return 0
	ktap_print_msg "$*: got '$got', want '$want'"
	return 1
}

n=23
[ "$mode" = full ] && n=$((n + 10))
ktap_print_header
ktap_set_plan $n
modprobe mce-inject
ktap_print_msg "CPU vendor $vendor: bank $bank, status $status"
wait_pmem
s0=$(start_of pmem0)
z0=$(size_of pmem0)
ktap_print_msg "pmem0: region $(region_of pmem0) at $(printf %#x "$s0"), $((z0 / MiB)) MiB"

# ---- the raw block device
inject $((s0 + MiB))
ok=0
wait_bb pmem0 "2048 8" && ok=1
t "an error at region start + 1 MiB: pmem0 lists sectors 2048+8" [ $ok = 1 ]
t "the region lists them too" [ "$(rbb pmem0)" = "2048 8;" ]
ktap_print_msg "$(dmesg | grep 'recorded as bad blocks' | tail -1)"
t "O_DIRECT read there fails with EIO" \
	is "read rc=-1 errno=EIO" $io read /dev/pmem0 $MiB 4096 direct
t "reads elsewhere work" is "read ok" $io read /dev/pmem0 $((2 * MiB)) 4096 direct
t "writes and fsync elsewhere work" \
	is "write ok" $io write /dev/pmem0 $((3 * MiB)) 4096 direct
me=$(media_errors)
ktap_print_msg "ndctl list --media-errors: $me"
ok=0
case $me in *'"badblocks":[{"offset":2048,"length":8'*) ok=1 ;; esac
t "ndctl list --media-errors shows it" [ $ok = 1 ]
t "a 512-byte overwrite fails with EIO (errors clear a page at a time)" \
	is "write rc=-1 errno=EIO" $io write /dev/pmem0 $MiB 512 direct
t "and the bad blocks stay" [ "$(bb pmem0)" = "2048 8;" ]
t "a page-aligned O_DIRECT overwrite succeeds" \
	is "write ok" $io write /dev/pmem0 $MiB 4096 direct
ok=0
[ -z "$(bb pmem0)" ] && [ -z "$(rbb pmem0)" ] && ok=1
t "and clears the device's and the region's bad blocks" [ $ok = 1 ]
t "the block reads again" is "read ok" $io read /dev/pmem0 $MiB 4096 direct
me=$(media_errors)
ok=0
case $me in *badblocks*) ;; *) ok=1 ;; esac
t "ndctl shows no media error any more" [ $ok = 1 ]
inject $((s0 + 5 * MiB))
ok=0
wait_bb pmem0 "10240 8" && [ "$(bb pmem0)" = "10240 8;" ] && ok=1
t "a later error elsewhere does not bring the cleared range back" [ $ok = 1 ]
$io write /dev/pmem0 $((5 * MiB)) 4096 direct > /dev/null

# ---- the edges of the range, and outside every device
last=$(((z0 - 4096) / 512))
inject "$s0"
inject $((s0 + z0 - 64))
ok=0
wait_bb pmem0 "0 8" && wait_bb pmem0 "$last 8" && ok=1
t "the first and the last cache line of the range" [ $ok = 1 ]
$io write /dev/pmem0 0 4096 direct > /dev/null
$io write /dev/pmem0 $((z0 - 4096)) 4096 direct > /dev/null
t "both cleared by overwrites" [ -z "$(bb pmem0)" ]
before=$(dmesg | grep -c 'recorded as bad blocks')
inject $((32 * MiB))
inject $((8 << 30))
sleep 2
ok=1
for b in /sys/block/pmem*/badblocks; do [ -n "$(cat "$b")" ] && ok=0; done
[ "$(dmesg | grep -c 'recorded as bad blocks')" = "$before" ] || ok=0
t "errors outside every device (in RAM, at 8 GiB) change nothing" [ $ok = 1 ]

# ---- two devices: the error goes to the right one
if [ -b /dev/pmem1 ]; then
	s1=$(start_of pmem1)
	inject $((s1 + MiB))
	ok=0
	wait_bb pmem1 "2048 8" && [ -z "$(bb pmem0)" ] && ok=1
	t "an error in the second device is recorded there only" [ $ok = 1 ]
	$io write /dev/pmem1 $MiB 4096 direct > /dev/null
else
	ktap_test_fail "an error in the second device is recorded there only (no /dev/pmem1)"
fi

# ---- a file on ext4 -o dax
mkdir -p /mnt/bb
mkfs.ext4 -q -F /dev/pmem0
mount -o dax /dev/pmem0 /mnt/bb
f=/mnt/bb/data
dd if=/dev/zero of=$f bs=1M count=4 conv=fsync 2> /dev/null
phys=$($io phys $f $MiB)
ktap_print_msg "$f offset 1 MiB is at byte $phys of pmem0"
inject $((s0 + phys))
ok=0
wait_bb pmem0 "$((phys / 512)) 8" && ok=1
t "an error under a DAX file is listed" [ $ok = 1 ]
t "pread of the file there fails with EIO" is "read rc=-1 errno=EIO" $io read $f $MiB 4096
ok=0
is "read ok" $io read $f $((2 * MiB)) 4096 && is "write ok" $io write $f $((3 * MiB)) 4096 && ok=1
t "the rest of the file reads, writes and fsyncs" [ $ok = 1 ]
out=$($io map $f $MiB 0 | tail -1)
ktap_print_msg "mapped after the error: $out"
ok=0
case $out in "first=sigbus:"*) ok=1 ;; esac
t "a load through a mapping made after the error gets SIGBUS" [ $ok = 1 ]
# fs/dax.c: a write over poison must cover whole pages (the pmem driver's
# recovery write); otherwise it copies nothing and the write fails, EFAULT.
t "an overwrite not aligned to a page fails (EFAULT), the bad blocks stay" \
	is "write rc=-1 errno=EFAULT" $io write $f $((MiB + 512)) 512
ok=0
is "write ok" $io write $f $MiB 4096 && [ -z "$(bb pmem0)" ] && [ -z "$(rbb pmem0)" ] && ok=1
t "a page-aligned pwrite clears it everywhere" [ $ok = 1 ]

if [ "$mode" = full ]; then
	# ---- a machine check raised by the host (QEMU) on a page a process maps
	phys=$($io phys $f $((2 * MiB)))
	addr=$(printf %#x $((s0 + phys)))
	$io map $f $((2 * MiB)) 8000 > /tmp/map.out &
	pid=$!
	i=0
	while ! grep -q mapped /tmp/map.out && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	# Action optional (S=1, AR=0), memory scrubbing (MCACOD 0xc0), as QEMU
	# raises it for a host memory error the guest did not touch; MCG_STATUS
	# MCIP|RIPV.  The mapping process asked for early kills (PR_MCE_KILL_EARLY):
	# memory_failure signals and unmaps only such processes at once; the others
	# would get SIGBUS at their next load of the poisoned memory, which under
	# TCG holds no poison the CPU could trip on.
	echo "VPMEM-HOST mce 0 1 0xbd000000000000c0 0x5 $addr 0x8c"
	ok=0
	wait_bb pmem0 "$((phys / 512)) 8" 200 && ok=1
	ktap_print_msg "after QEMU's machine check at $addr: /sys/block/pmem0/badblocks: $(bb pmem0)"
	t "a machine check from QEMU: the page is a bad block" [ $ok = 1 ]
	dmesg | grep -i 'machine check\|hardware error\|memory failure\|recorded as bad' | tail -8 |
		sed 's/^/# /'
	ok=0
	dmesg | grep -q "Memory failure: $(printf %#x $(((s0 + phys) / 4096)))" && ok=1
	t "memory_failure ran for the pmem page" [ $ok = 1 ]
	wait $pid
	out=$(cat /tmp/map.out)
	ktap_print_msg "mapped before the error: $out"
	ok=0
	case $out in *"async=sigbus:"*"second=sigbus:"*) ok=1 ;; esac
	t "the process that maps it gets SIGBUS, and again on a later load" [ $ok = 1 ]
	ktap_print_msg "read() of $f at 2 MiB: $($io read $f $((2 * MiB)) 4096)"
	t "read() there fails with EIO" is "read rc=-1 errno=EIO" $io read $f $((2 * MiB)) 4096
	ok=0
	is "write ok" $io write $f $((2 * MiB)) 4096 && [ -z "$(bb pmem0)" ] && ok=1
	ktap_print_msg "page-aligned pwrite of $f at 2 MiB; badblocks now: '$(bb pmem0)'"
	t "a page-aligned pwrite clears it" [ $ok = 1 ]
	out=$($io map $f $((2 * MiB)) 0 | tail -1)
	t "the page reads and maps again" [ "$out" = "first=ok async=none second=ok" ]
	umount /mnt/bb

	# ---- ndctl
	ndctl list -BRN 2>&1 | sed 's/^/# /'
	ok=0
	ndctl list -B | grep -q '"provider":"virtio-pmem"' && ok=1
	t "ndctl list shows our bus" [ $ok = 1 ]
	ok=1
	ndctl clear-errors all > /tmp/ndctl.out 2>&1 && ok=0
	grep -q 'not supported' /tmp/ndctl.out || ok=0
	ktap_print_msg "ndctl clear-errors all: $(cat /tmp/ndctl.out)"
	t "ndctl clear-errors stays unsupported (no ACPI.NFIT bus): overwrite instead" [ $ok = 1 ]

	# ---- unbind/bind and rmmod/modprobe while errors are injected
	dev=$(pmem_virtio_dev)
	(
		i=0
		while [ $i -lt 300 ]; do
			inject $((s0 + (i % 64) * MiB))
			sleep 0.02
			i=$((i + 1))
		done
	) &
	inj=$!
	for i in 1 2 3 4 5; do
		echo "$dev" > $drv/unbind
		echo "$dev" > $drv/bind
	done
	for i in 1 2 3; do
		rmmod virtio_pmem_rust
		modprobe virtio_pmem_rust
	done
	wait $inj
	wait_pmem
	sleep 1
	# A new binding starts with no bad ranges: record one and read around it.
	inject $((s0 + 100 * MiB))
	ok=0
	wait_bb pmem0 "204800 8" && ok=1
	t "after rebinding under injections, errors are still recorded" [ $ok = 1 ]
	ok=0
	is "read rc=-1 errno=EIO" $io read /dev/pmem0 $((100 * MiB)) 4096 direct &&
		is "read ok" $io read /dev/pmem0 $((101 * MiB)) 4096 direct && ok=1
	t "and the device works around them" [ $ok = 1 ]
else
	umount /mnt/bb
fi
ktap_finished
