#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Memory errors the host raises: a machine check raised by QEMU (monitor
# "mce", as QEMU does for a host memory error in guest memory) on a page of a
# DAX file a process maps, ndctl, and unbind/bind and rmmod/modprobe of
# virtio_pmem_rust while errors are injected.  Stays here, not with the
# kselftests: it needs the runner's host channel (vpmem.host_ctl=1: the guest
# prints "VPMEM-HOST mce ..." and the runner sends it to QEMU's monitor) and an
# Intel-vendor CPU (vpmem.cpu=intel).  The software injections (mce-inject) are
# the kselftest badblocks_test.sh ("ksft:badblocks_test.sh" in tests/plan),
# which this boot runs first; the helpers are the kselftests' badblocks_lib.sh.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh
io=/tests/poison_io
. /tests/badblocks_lib.sh

drv=/sys/bus/virtio/drivers/virtio_pmem_rust

ktap_print_header
ktap_set_plan 10
modprobe mce-inject
ktap_print_msg "CPU vendor $vendor: bank $bank, status $status"
wait_pmem
s0=$(start_of pmem0)

# A file on ext4 -o dax, as the software part leaves one.
mkdir -p /mnt/bb
mkfs.ext4 -q -F /dev/pmem0
mount -o dax /dev/pmem0 /mnt/bb
f=/mnt/bb/data
dd if=/dev/zero of=$f bs=1M count=4 conv=fsync 2> /dev/null

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
ktap_finished
