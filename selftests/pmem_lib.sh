# SPDX-License-Identifier: GPL-2.0
# Shell helpers shared by the virtio-pmem tests (sourced after ktap_helpers.sh).
#
# The devices are found in sysfs: virtio devices of device id 27 (0x001b), the
# driver bound to each, the nvdimm bus that driver registered under it, and the
# bus's /dev/pmemN.

# The virtio-pmem devices (virtio device id 27), one a line, e.g. virtio0.
vpmem_devices() {
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device" 2>/dev/null)" = 0x001b ] && echo "${d##*/}"
	done
	return 0
}

# The name of the first virtio-pmem device, e.g. virtio0.
pmem_virtio_dev() {
	d=$(vpmem_devices | head -1)
	[ -n "$d" ] && echo "$d"
}

# vpmem_driver DEV: the driver bound to virtio device DEV (virtio_pmem,
# virtio_pmem_rust), or nothing (status 1).
vpmem_driver() {
	[ -e "/sys/bus/virtio/devices/$1/driver" ] || return 1
	basename "$(readlink "/sys/bus/virtio/devices/$1/driver")"
}

# vpmem_blockdev DEV: the block device on virtio device DEV, e.g. pmem0, or
# nothing (status 1).
vpmem_blockdev() {
	for b in /sys/block/pmem*; do
		case "$(readlink -f "$b")" in
		*/"$1"/ndbus*) echo "${b##*/}"; return 0 ;;
		esac
	done
	return 1
}

# vpmem_of_blockdev NAME: the virtio device that block device NAME (pmemN) is on.
vpmem_of_blockdev() {
	p=$(readlink -f "/sys/block/$1" 2>/dev/null) || return 1
	case "$p" in */virtio*/ndbus*) ;; *) return 1 ;; esac
	p=${p%%/ndbus*}
	echo "${p##*/}"
}

# vpmem_wait_blockdev DEV: wait up to 10 s for the block device of virtio
# device DEV and its /dev node; prints its name.
vpmem_wait_blockdev() {
	i=0
	while [ $i -lt 200 ]; do
		b=$(vpmem_blockdev "$1") && [ -b "/dev/$b" ] && { echo "$b"; return 0; }
		sleep 0.05
		i=$((i + 1))
	done
	return 1
}

# vpmem_require: pick the device under test, or exit with KSFT_SKIP when there
# is no virtio-pmem device or no driver bound to it (after printing the KTAP
# header and a "1..0 # SKIP" plan).  VPMEM_DEV=/dev/pmemN picks that block
# device's virtio-pmem device; by default the first virtio-pmem device.
# Sets VPMEM_VDEV (e.g. virtio0), VPMEM_DRV (the bound driver), VPMEM_BLK
# (e.g. pmem0, after waiting for it; empty if it did not come).
vpmem_require() {
	if [ -n "${VPMEM_DEV:-}" ]; then
		VPMEM_VDEV=$(vpmem_of_blockdev "${VPMEM_DEV#/dev/}") || {
			ktap_print_header
			ktap_exit_fail_msg "VPMEM_DEV=$VPMEM_DEV is not on a virtio-pmem device"
		}
	else
		VPMEM_VDEV=$(pmem_virtio_dev)
	fi
	if [ -z "$VPMEM_VDEV" ]; then
		ktap_print_header
		ktap_skip_all "no virtio-pmem device (virtio device 0x001b)"
		exit "$KSFT_SKIP"
	fi
	VPMEM_DRV=$(vpmem_driver "$VPMEM_VDEV") || {
		ktap_print_header
		ktap_skip_all "no driver bound to $VPMEM_VDEV" \
			"(load virtio_pmem or virtio_pmem_rust)"
		exit "$KSFT_SKIP"
	}
	VPMEM_BLK=$(vpmem_wait_blockdev "$VPMEM_VDEV") || VPMEM_BLK=
}

# vpmem_need CMD...: exit with KSFT_SKIP unless every CMD is in $PATH.
vpmem_need() {
	for c in "$@"; do
		command -v "$c" > /dev/null && continue
		ktap_print_header
		ktap_skip_all "$c is not installed"
		exit "$KSFT_SKIP"
	done
}

# Wait up to 10 s for /dev/pmem0.
wait_pmem() {
	i=0
	while [ ! -b /dev/pmem0 ] && [ $i -lt 200 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	[ -b /dev/pmem0 ]
}

# kmemleak: forget the objects suspected so far (call before the work under test).
leak_mark() {
	echo clear > /sys/kernel/debug/kmemleak
}

# kmemleak: count objects leaked since leak_mark (prints their reports); waits for
# the minimum object age and scans twice, as kmemleak advises against transient
# false positives.
leak_count() {
	sleep 6
	# A kmemleak that is missing or turned itself off must not pass for "no leaks".
	if ! echo scan > /sys/kernel/debug/kmemleak ||
	   ! echo scan > /sys/kernel/debug/kmemleak; then
		echo "# kmemleak is not available" >&2
		echo unavailable
		return
	fi
	n=$(grep -c '^unreferenced object' /sys/kernel/debug/kmemleak)
	[ "$n" = 0 ] || head -60 /sys/kernel/debug/kmemleak | sed 's/^/# /' >&2
	echo "$n"
}

# t DESC CMD...: CMD's exit status is the result of test DESC (its arguments
# are passed as they are, unlike ktap_test_result's).
t() {
	desc=$1
	shift
	if "$@"; then
		ktap_test_pass "$desc"
	else
		ktap_test_fail "$desc"
	fi
}
