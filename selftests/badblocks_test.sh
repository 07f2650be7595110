#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Memory errors in a virtio-pmem device's range become bad blocks, and
# overwrites clear them (virtio_pmem_rust's machine-check handler and bus
# commands): errors injected as software machine checks (x86 mce-inject in
# debugfs) at the first, a middle and the last cache line of the range.  On
# the raw block device: /sys/block/pmemN/badblocks, the region's badblocks
# and ndctl list --media-errors list the page; O_DIRECT reads there fail with
# EIO, reads, writes and fsyncs elsewhere work; a 512-byte overwrite fails and
# keeps them, a page-aligned one clears them everywhere, and a later error
# elsewhere does not bring them back; errors in RAM or past every device change
# nothing; an error in a second virtio-pmem device is recorded there only
# (skipped with one device).  On ext4 -o dax: pread over the error fails with
# EIO, a mapping made after it gets SIGBUS, an unaligned pwrite fails, a
# page-aligned one clears.
#
# Skips under a driver that does not record memory errors (virtio_pmem),
# without mce-inject (CONFIG_X86_MCE_INJECT, debugfs) or without ndctl.
# Destroys the data on the device.
# Environment: VPMEM_DEV=/dev/pmemN, the device to test (default: the first
# virtio-pmem device's).

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../kselftest/ktap_helpers.sh"
. "$here/pmem_lib.sh"
io=$here/poison_io
. "$here/badblocks_lib.sh"

vpmem_need ndctl mkfs.ext4
vpmem_require
badblocks_require
p0=$VPMEM_BLK
# A second virtio-pmem device, if there is one.
p1=
for d in $(vpmem_devices); do
	[ "$d" = "$VPMEM_VDEV" ] && continue
	p1=$(vpmem_blockdev "$d") && break
done

ktap_print_header
ktap_set_plan 23
ktap_print_msg "CPU vendor $vendor: bank $bank, status $status"
[ -n "$p0" ] || ktap_exit_fail_msg "no block device on $VPMEM_VDEV"
s0=$(start_of $p0)
z0=$(size_of $p0)
ktap_print_msg "$p0 ($VPMEM_VDEV): region $(region_of $p0) at $(printf %#x "$s0")," \
	"$((z0 / MiB)) MiB; second device: ${p1:-none}"

# ---- the raw block device
inject $((s0 + MiB))
ok=0
wait_bb $p0 "2048 8" && ok=1
t "an error at region start + 1 MiB: $p0 lists sectors 2048+8" [ $ok = 1 ]
t "the region lists them too" [ "$(rbb $p0)" = "2048 8;" ]
ktap_print_msg "$(dmesg | grep 'recorded as bad blocks' | tail -1)"
t "O_DIRECT read there fails with EIO" \
	is "read rc=-1 errno=EIO" $io read /dev/$p0 $MiB 4096 direct
t "reads elsewhere work" is "read ok" $io read /dev/$p0 $((2 * MiB)) 4096 direct
t "writes and fsync elsewhere work" \
	is "write ok" $io write /dev/$p0 $((3 * MiB)) 4096 direct
me=$(media_errors)
ktap_print_msg "ndctl list --media-errors: $me"
ok=0
case $me in *'"badblocks":[{"offset":2048,"length":8'*) ok=1 ;; esac
t "ndctl list --media-errors shows it" [ $ok = 1 ]
t "a 512-byte overwrite fails with EIO (errors clear a page at a time)" \
	is "write rc=-1 errno=EIO" $io write /dev/$p0 $MiB 512 direct
t "and the bad blocks stay" [ "$(bb $p0)" = "2048 8;" ]
t "a page-aligned O_DIRECT overwrite succeeds" \
	is "write ok" $io write /dev/$p0 $MiB 4096 direct
ok=0
[ -z "$(bb $p0)" ] && [ -z "$(rbb $p0)" ] && ok=1
t "and clears the device's and the region's bad blocks" [ $ok = 1 ]
t "the block reads again" is "read ok" $io read /dev/$p0 $MiB 4096 direct
me=$(media_errors)
ok=0
case $me in *badblocks*) ;; *) ok=1 ;; esac
t "ndctl shows no media error any more" [ $ok = 1 ]
inject $((s0 + 5 * MiB))
ok=0
wait_bb $p0 "10240 8" && [ "$(bb $p0)" = "10240 8;" ] && ok=1
t "a later error elsewhere does not bring the cleared range back" [ $ok = 1 ]
$io write /dev/$p0 $((5 * MiB)) 4096 direct > /dev/null

# ---- the edges of the range, and outside every device
last=$(((z0 - 4096) / 512))
inject "$s0"
inject $((s0 + z0 - 64))
ok=0
wait_bb $p0 "0 8" && wait_bb $p0 "$last 8" && ok=1
t "the first and the last cache line of the range" [ $ok = 1 ]
$io write /dev/$p0 0 4096 direct > /dev/null
$io write /dev/$p0 $((z0 - 4096)) 4096 direct > /dev/null
t "both cleared by overwrites" [ -z "$(bb $p0)" ]
before=$(dmesg | grep -c 'recorded as bad blocks')
inject $((32 * MiB))
inject $((8 << 30))
sleep 2
ok=1
for b in /sys/block/pmem*/badblocks; do [ -n "$(cat "$b")" ] && ok=0; done
[ "$(dmesg | grep -c 'recorded as bad blocks')" = "$before" ] || ok=0
t "errors outside every device (in RAM, at 8 GiB) change nothing" [ $ok = 1 ]

# ---- two devices: the error goes to the right one
if [ -n "$p1" ]; then
	s1=$(start_of $p1)
	inject $((s1 + MiB))
	ok=0
	wait_bb $p1 "2048 8" && [ -z "$(bb $p0)" ] && ok=1
	t "an error in the second device is recorded there only" [ $ok = 1 ]
	$io write /dev/$p1 $MiB 4096 direct > /dev/null
else
	ktap_test_skip "an error in the second device is recorded there only: no second device"
fi

# ---- a file on ext4 -o dax
mkdir -p /mnt/bb
mkfs.ext4 -q -F /dev/$p0
mount -o dax /dev/$p0 /mnt/bb
f=/mnt/bb/data
dd if=/dev/zero of=$f bs=1M count=4 conv=fsync 2> /dev/null
phys=$($io phys $f $MiB)
ktap_print_msg "$f offset 1 MiB is at byte $phys of $p0"
inject $((s0 + phys))
ok=0
wait_bb $p0 "$((phys / 512)) 8" && ok=1
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
is "write ok" $io write $f $MiB 4096 && [ -z "$(bb $p0)" ] && [ -z "$(rbb $p0)" ] && ok=1
t "a page-aligned pwrite clears it everywhere" [ $ok = 1 ]

umount /mnt/bb
ktap_finished
