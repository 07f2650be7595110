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
