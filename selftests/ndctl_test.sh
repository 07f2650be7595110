#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# ndctl and daxctl on a virtio-pmem bus, as a user would run them, under
# either driver (virtio_pmem or virtio_pmem_rust: their output can be compared
# in the logs).  The region has no labels: its one namespace is reconfigured
# with create-namespace -f -e, which writes an info block (a pfn device) in
# front of the data.  The scrub commands are unsupported on any bus that is not
# ACPI.NFIT (libndctl looks for the scrub attribute only there).  Then the
# namespace becomes device-dax (dax_pmem, device_dax), listed by daxctl; at the
# end it is made a raw namespace again.  Skips without ndctl and daxctl.
#
# Destroys the data on the device.
# Environment: VPMEM_DEV=/dev/pmemN, the device to test (default: the first
# virtio-pmem device's).

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../kselftest/ktap_helpers.sh"
. "$here/pmem_lib.sh"

show() { "$@" 2>&1 | tr -d ' \n' | sed 's/^/# /'; echo; }
# json KEY FILE: the string value of KEY in FILE (ndctl's JSON output).
json() { tr -d ' \n' < "$2" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

vpmem_need ndctl daxctl mkfs.ext4
vpmem_require
region=$(ls -d /sys/bus/virtio/devices/"$VPMEM_VDEV"/ndbus*/region* 2>/dev/null | head -1)
region=${region##*/}
ns=namespace${region#region}.0
mnt=/mnt/ndctl

ktap_print_header
ktap_set_plan 8
ktap_print_msg "$VPMEM_VDEV, driver $VPMEM_DRV, ${region:-no region}, $ns, /dev/$VPMEM_BLK"
echo "# ndctl list -BRN:"
show ndctl list -BRN
ok=0
ndctl list -B | grep -q '"provider":"virtio-pmem"' && ok=1
t "ndctl list shows the virtio-pmem bus" [ $ok = 1 ]
ok=0
[ -n "$region" ] && ndctl list -R -r "$region" | grep -q '"type":"pmem"' && ok=1
t "and a pmem region" [ $ok = 1 ]
ok=1
for cmd in "start-scrub" "wait-scrub" "clear-errors all"; do
	ndctl $cmd > /tmp/ndctl.err 2>&1 && ok=0
	grep -q 'not supported' /tmp/ndctl.err || ok=0
	echo "# ndctl $cmd: $(tr '\n' ' ' < /tmp/ndctl.err)"
done
t "start-scrub, wait-scrub and clear-errors: not supported (not an ACPI.NFIT bus)" [ $ok = 1 ]
ok=0
ndctl create-namespace -f -e "$ns" -m fsdax > /tmp/ns.json 2>&1 && ok=1
show cat /tmp/ns.json
t "create-namespace -f -e $ns -m fsdax" [ $ok = 1 ]
blk=$(json blockdev /tmp/ns.json)
ok=0
mkdir -p $mnt
[ -n "$blk" ] && vpmem_wait_blockdev "$VPMEM_VDEV" > /dev/null &&
	mkfs.ext4 -q -F "/dev/$blk" && mount -o dax "/dev/$blk" $mnt && ok=1
t "the new fsdax namespace takes ext4 -o dax" [ $ok = 1 ]
ok=0
"$here/fsync_hammer" $mnt 2 50 > /tmp/hammer.out 2>&1 &&
	grep -q '^fsync.ok=[1-9][0-9]*.eio=0.other=0' /tmp/hammer.out && ok=1
sed 's/^/# /' /tmp/hammer.out
umount $mnt
t "and fsync works on it" [ $ok = 1 ]
modprobe dax_pmem 2> /dev/null
modprobe device_dax 2> /dev/null
ok=0
ndctl create-namespace -f -e "$ns" -m devdax > /tmp/ns.json 2>&1 && ok=1
show cat /tmp/ns.json
t "create-namespace -f -e $ns -m devdax" [ $ok = 1 ]
chardev=$(json chardev /tmp/ns.json)
echo "# daxctl list:"
show daxctl list
ok=0
[ -n "$chardev" ] && daxctl list | grep -q "\"chardev\":\"$chardev\"" &&
	[ -c "/dev/$chardev" ] && ok=1
t "daxctl list shows the device-dax instance, /dev/${chardev:-daxN.0} exists" [ $ok = 1 ]
# Leave the device as it was found: a raw namespace.
ndctl create-namespace -f -e "$ns" -m raw > /tmp/ns.json 2>&1 ||
	ktap_print_msg "could not make $ns raw again: $(tr '\n' ' ' < /tmp/ns.json)"
ktap_finished
