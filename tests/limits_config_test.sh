#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Configuration reads are bounded by the driver's layout: the limits test
# module (tests/modules) reads a 64-bit field at config_offset=N at probe.
# Inside struct virtio_pmem_config (16 bytes) the read works; past it the
# abstraction must refuse it with EINVAL, both just past the end (where QEMU
# would answer all ones) and far past it (where modern virtio-pci would
# BUG()).

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

mod=rust_virtio_limits
dev=$(pmem_virtio_dev)

ktap_print_header
ktap_set_plan 3

# read_at OFFSET: load the module reading the field at OFFSET, print what it logged.
read_at() {
	modprobe $mod config_offset="$1"
	dmesg | sed -n "s/.*$mod $dev: config field at $1: //p" | tail -1
	rmmod $mod
}

r=$(read_at 8)
ktap_print_msg "offset 8: $r"
ktap_test_result "a field inside the layout reads" [ "$r" = "0x10000000" ]
r=$(read_at 16)
ktap_print_msg "offset 16: $r"
refused=0; [ "$r" = "error -22" ] && refused=1
ktap_test_result "a field just past the layout is refused" [ $refused = 1 ]
r=$(read_at 4096)
ktap_print_msg "offset 4096: $r"
refused=0; [ "$r" = "error -22" ] && refused=1
ktap_test_result "a field far past the layout is refused" [ $refused = 1 ]
ktap_finished
