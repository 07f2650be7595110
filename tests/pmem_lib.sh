# SPDX-License-Identifier: GPL-2.0
# Shell helpers shared by the guest tests (sourced after ktap_helpers.sh).

# The name of the first virtio-pmem device (virtio device id 27), e.g. virtio0.
pmem_virtio_dev() {
	for d in /sys/bus/virtio/devices/*; do
		if [ "$(cat "$d/device")" = 0x001b ]; then
			echo "${d##*/}"
			return 0
		fi
	done
	return 1
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
	if ! echo scan > /sys/kernel/debug/kmemleak || ! echo scan > /sys/kernel/debug/kmemleak; then
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
