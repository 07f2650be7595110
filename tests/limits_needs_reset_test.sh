#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A device that asks for a reset: the limits test module (tests/modules),
# loaded with malformed=1, sends a request without its device-readable part;
# QEMU rejects it (virtio_error), sets NEEDS_RESET and raises a configuration
# interrupt. The bus must deliver it to Driver::config_changed, where the
# status reads NEEDS_RESET; unbinding must still be clean, and the reset at
# unbind must bring the device back for the next binding.
#
# The rejected request is never given back, so the bus keeps its buffers
# (quarantine) on purpose: kmemleak must not count them as a leak.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mod=rust_virtio_limits
dev=$(pmem_virtio_dev)

# count PATTERN: the kernel log's lines matching PATTERN (earlier tests of the
# boot may have logged some: the checks count the difference).
count() { dmesg -s 4194304 | grep -c "$1"; }
kept0=$(count "$dev: request not given back at reset, buffers kept")
answered0=$(count 'flush answered: 4 bytes used, ret Some(0)')

ktap_print_header
ktap_set_plan 5
leak_mark

modprobe $mod malformed=1
sleep 1
n=$(dmesg | grep -c "$mod $dev: configuration changed; needs reset: true")
ktap_test_result "config_changed runs and reads NEEDS_RESET ($n)" [ "$n" -ge 1 ]
rmmod $mod
gone=0
grep -q "^$mod " /proc/modules || gone=1
ktap_test_result "the driver unbinds and unloads" [ $gone = 1 ]
kept=$(($(count "$dev: request not given back at reset, buffers kept") - kept0))
ktap_test_result "the rejected request was quarantined, not freed ($kept)" [ "$kept" = 1 ]

modprobe $mod
sleep 1
answered=$(($(count 'flush answered: 4 bytes used, ret Some(0)') - answered0))
ktap_test_result "after the reset the device answers a flush again ($answered)" [ "$answered" = 1 ]
rmmod $mod
leaks=$(leak_count | tail -1)
ktap_test_result "no memory leaked (kmemleak: $leaks suspects)" [ "$leaks" = 0 ]
ktap_finished
