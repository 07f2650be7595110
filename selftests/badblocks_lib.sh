# SPDX-License-Identifier: GPL-2.0
# Helpers of the bad-block tests (sourced after ktap_helpers.sh and pmem_lib.sh):
# software machine checks (x86 mce-inject in debugfs) of uncorrected memory
# errors precise to a page, and the bad blocks they become.
#
# flags=sw: the record goes through mce_log and the decode chain, whatever the
# CPU vendor:  Intel: bank 1, MCACOD 0x9f;  AMD: bank 4, extended error code 8.

io=${io:-$(cd "$(dirname "$0")" && pwd)/poison_io}
mce=/sys/kernel/debug/mce-inject
MiB=1048576
vendor=$(sed -n 's/^vendor_id[[:space:]]*: //p' /proc/cpuinfo | head -1)
case $vendor in
GenuineIntel) bank=1 status=0xbc0000000000009f ;;
*) bank=4 status=0xbc00000000080000 ;;
esac

region_of() { dirname "$(readlink -f "/sys/block/$1/device")"; }
start_of() { echo $(($(cat "$(region_of "$1")/resource"))); }
size_of() { echo $(($(cat "$(region_of "$1")/size"))); }
# Bad blocks as one line, "SECTOR COUNT" pairs separated by ";".
bb() { tr '\n' ';' < "/sys/block/$1/badblocks"; }
rbb() { tr '\n' ';' < "$(region_of "$1")/badblocks"; }
media_errors() { ndctl list --media-errors 2>/dev/null | tr -d ' \n'; }

# inject ADDR: a software machine check of a memory error at ADDR.
inject() {
	echo sw > $mce/flags
	echo $status > $mce/status
	echo 0x8c > $mce/misc
	printf '%#x\n' "$1" > $mce/addr
	echo $bank > $mce/bank
}

# wait_bb DEV "SECTOR COUNT" [TENTHS]: wait until DEV lists exactly that bad range.
wait_bb() {
	i=0
	while [ $i -lt "${3:-50}" ]; do
		case ";$(bb "$1")" in *";$2;"*) return 0 ;; esac
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# is EXPECTED CMD...: CMD prints EXPECTED (one line).
is() {
	want=$1
	shift
	got=$("$@" 2>&1)
	[ "$got" = "$want" ] && return 0
	ktap_print_msg "$*: got '$got', want '$want'"
	return 1
}

# badblocks_require: exit with KSFT_SKIP unless memory errors can be injected
# (x86 mce-inject, debugfs) and the bound driver records them (virtio_pmem_rust).
badblocks_require() {
	why=
	if [ "$VPMEM_DRV" != virtio_pmem_rust ]; then
		why="$VPMEM_DRV does not record memory errors as bad blocks (virtio_pmem_rust does)"
	else
		modprobe mce-inject 2> /dev/null
		[ -d $mce ] || why="no $mce (CONFIG_X86_MCE_INJECT, debugfs)"
	fi
	[ -z "$why" ] && return 0
	ktap_print_header
	ktap_skip_all "$why"
	exit "$KSFT_SKIP"
}
