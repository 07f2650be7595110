#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Take the driver of a virtio-pmem device away and back VPMEM_CYCLES times
# (default 50) while 8 threads fsync its /dev/pmemN: sysfs unbind/bind, or
# with VPMEM_REBIND=rmmod, rmmod/modprobe of the driver's module.  Every fsync
# must return 0 or EIO, none may hang, the driver must really be gone each
# time, the device must work afterwards, and kmemleak must find nothing leaked
# (skipped without kmemleak in debugfs).  Works with either driver bound
# (virtio_pmem or virtio_pmem_rust; virtio_pmem cannot be unloaded while its
# device is bound: libnvdimm pins it, so rmmod fails there).
#
# Overwrites blocks 1-8 of the device.
# Environment: VPMEM_REBIND=unbind (default) or rmmod; VPMEM_CYCLES (default
# 50); VPMEM_DEV=/dev/pmemN, the device to test (default: the first
# virtio-pmem device's).

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../kselftest/ktap_helpers.sh"
. "$here/pmem_lib.sh"

hammer=$here/fsync_hammer
mode=${VPMEM_REBIND:-unbind}
cycles=${VPMEM_CYCLES:-50}
kmemleak=/sys/kernel/debug/kmemleak

vpmem_require
dev=$VPMEM_VDEV
drv=/sys/bus/virtio/drivers/$VPMEM_DRV
mod=
[ -e "$drv/module" ] && mod=$(basename "$(readlink "$drv/module")")
if [ "$mode" = rmmod ] && [ -z "$mod" ]; then
	ktap_print_header
	ktap_skip_all "$VPMEM_DRV is built in: nothing to unload"
	exit "$KSFT_SKIP"
fi

ktap_print_header
ktap_set_plan 5
ktap_print_msg "$dev, driver $VPMEM_DRV (module ${mod:-none}), /dev/$VPMEM_BLK, $mode x $cycles"

[ -e $kmemleak ] && leak_mark
done_cycles=0 hammer_bad=0 gone_bad=0 ok=0 eio=0
for c in $(seq "$cycles"); do
	blk=$(vpmem_wait_blockdev "$dev") || {
		ktap_print_msg "cycle $c: the block device did not come back"
		break
	}
	"$hammer" "/dev/$blk" 8 300 > /tmp/hammer.out 2>&1 &
	pid=$!
	sleep 0.1
	if [ "$mode" = rmmod ]; then
		rmmod "$mod" || ktap_print_msg "cycle $c: rmmod failed"
		grep -q "^$mod " /proc/modules && gone_bad=$((gone_bad + 1))
	else
		echo "$dev" > "$drv/unbind" || ktap_print_msg "cycle $c: unbind failed"
		[ -e "$drv/$dev" ] && gone_bad=$((gone_bad + 1))
	fi
	if ! wait $pid; then
		hammer_bad=$((hammer_bad + 1))
		ktap_print_msg "cycle $c: $(cat /tmp/hammer.out)"
	fi
	set -- $(sed -n 's/^fsync ok=\([0-9]*\) eio=\([0-9]*\).*/\1 \2/p' /tmp/hammer.out)
	ok=$((ok + ${1:-0})) eio=$((eio + ${2:-0}))
	if [ "$mode" = rmmod ]; then
		modprobe "$mod" || ktap_print_msg "cycle $c: modprobe failed"
	else
		echo "$dev" > "$drv/bind" || ktap_print_msg "cycle $c: bind failed"
	fi
	done_cycles=$c
done
ktap_print_msg "$mode: $done_cycles cycles, fsync ok=$ok eio=$eio"

ktap_test_result "$mode: $cycles cycles completed" [ "$done_cycles" = "$cycles" ]
ktap_test_result "$mode: the driver was gone every time" [ "$gone_bad" = 0 ]
ktap_test_result "$mode: every fsync returned 0 or EIO, none hung" [ "$hammer_bad" = 0 ]
: > /tmp/hammer.out
blk=$(vpmem_wait_blockdev "$dev") && "$hammer" "/dev/$blk" 2 200 > /tmp/hammer.out 2>&1
ktap_print_msg "after: $(cat /tmp/hammer.out)"
# (ktap_test_result splits its command on spaces: the pattern uses '.' for them.)
ktap_test_result "$mode: the device works afterwards" \
	grep -q '^fsync.ok=[1-9][0-9]*.eio=0.other=0' /tmp/hammer.out
if [ -e $kmemleak ]; then
	leaks=$(leak_count | tail -1)
	ktap_test_result "$mode: no memory leaked (kmemleak: $leaks suspects)" [ "$leaks" = 0 ]
else
	ktap_test_skip "$mode: no memory leaked: no $kmemleak (CONFIG_DEBUG_KMEMLEAK, debugfs)"
fi
ktap_finished
