#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A virtio-pmem device with a range libnvdimm cannot map is refused: the
# driver logs why, and no region or pmem device appears.

. /tests/ktap_helpers.sh

ktap_print_header
ktap_set_plan 3
sleep 0.5
msg=$(dmesg -s 4194304 | grep 'virtio_pmem_rust.*refusing range')
ktap_print_msg "${msg:-no refusal logged}"
logged=0
[ -n "$msg" ] && logged=1
ktap_test_result "the refusal is logged with its reason" [ $logged = 1 ]
pmems=$(ls /dev/pmem* 2>/dev/null | wc -l)
buses=$(ls /sys/bus/nd/devices 2>/dev/null | grep -c ndbus)
ktap_test_result "no pmem block device" [ "$pmems" = 0 ]
ktap_test_result "no nvdimm bus left behind" [ "$buses" = 0 ]
ktap_finished
