#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Take the driver away and back VPMEM_CYCLES times (default 50) while 8
# threads fsync /dev/pmem0: VPMEM_ARG=unbind (sysfs unbind/bind) or rmmod
# (rmmod/modprobe).  Every fsync must return 0 or EIO, none may hang, and the
# device must work afterwards, and kmemleak must find nothing leaked.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mode=${VPMEM_ARG:-unbind}
cycles=${VPMEM_CYCLES:-50}
case "$VPMEM_DRIVER" in
c) mod=virtio_pmem ;;
*) mod=virtio_pmem_rust ;;
esac
drv=/sys/bus/virtio/drivers/$mod

dev=$(pmem_virtio_dev)

ktap_print_header
ktap_set_plan 5

leak_mark
done_cycles=0 hammer_bad=0 gone_bad=0 ok=0 eio=0
for c in $(seq "$cycles"); do
	wait_pmem || { ktap_print_msg "cycle $c: /dev/pmem0 did not come back"; break; }
	/tests/fsync_hammer /dev/pmem0 8 300 > /tmp/hammer.out 2>&1 &
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
wait_pmem && /tests/fsync_hammer /dev/pmem0 2 200 > /tmp/hammer.out 2>&1
ktap_print_msg "after: $(cat /tmp/hammer.out)"
# (ktap_test_result splits its command on spaces: the pattern uses '.' for them.)
ktap_test_result "$mode: the device works afterwards" \
	grep -q '^fsync.ok=[1-9][0-9]*.eio=0.other=0' /tmp/hammer.out
leaks=$(leak_count | tail -1)
ktap_test_result "$mode: no memory leaked (kmemleak: $leaks suspects)" [ "$leaks" = 0 ]
ktap_finished
