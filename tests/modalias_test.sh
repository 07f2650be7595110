#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The id tables made with virtio_device_table! give modpost the aliases that
# let udev/modprobe load the Rust modules: the driver for a virtio-pmem device
# (27), the sample for a virtio-rng device (4).

. /tests/ktap_helpers.sh

aliases=/lib/modules/$(uname -r)/modules.alias
ktap_print_header
ktap_set_plan 3
ktap_print_msg "$(grep -c . "$aliases") aliases; $(grep -i 'virtio:d0000001B' "$aliases" | tr '\n' ';')"
ktap_test_result "virtio_pmem_rust: alias virtio:d0000001Bv*" \
	grep -qx 'alias.virtio:d0000001Bv\*.virtio_pmem_rust' "$aliases"
ktap_test_result "rust_driver_virtio: alias virtio:d00000004v*" \
	grep -qx 'alias.virtio:d00000004v\*.rust_driver_virtio' "$aliases"
ktap_test_result "the C driver has the same alias" \
	grep -qx 'alias.virtio:d0000001Bv\*.virtio_pmem' "$aliases"
ktap_finished
