#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# ndctl and daxctl on a virtio-pmem bus, as a user would run them, under
# either driver (the plan runs it under both: their output can be compared in
# the guest logs).  The region has no labels: its one namespace is reconfigured
# with create-namespace -f -e, which writes an info block (a pfn device) in
# front of the data.  The scrub commands are unsupported on any bus that is not
# ACPI.NFIT (libndctl looks for the scrub attribute only there).  Then the
# namespace becomes device-dax (dax_pmem, device_dax), listed by daxctl.

. /tests/ktap_helpers.sh
. /tests/pmem_lib.sh

show() { "$@" 2>&1 | tr -d ' \n' | sed 's/^/# /'; echo; }

ktap_print_header
ktap_set_plan 8
wait_pmem
echo "# ndctl list -BRN:"
show ndctl list -BRN
ok=0
ndctl list -B | grep -q '"provider":"virtio-pmem"' && ok=1
t "ndctl list shows the virtio-pmem bus" [ $ok = 1 ]
ok=0
ndctl list -R -r region0 | grep -q '"type":"pmem"' && ok=1
t "and a pmem region" [ $ok = 1 ]
ok=1
for cmd in "start-scrub" "wait-scrub" "clear-errors all"; do
	ndctl $cmd > /tmp/ndctl.err 2>&1 && ok=0
	grep -q 'not supported' /tmp/ndctl.err || ok=0
	echo "# ndctl $cmd: $(tr '\n' ' ' < /tmp/ndctl.err)"
done
t "start-scrub, wait-scrub and clear-errors: not supported (not an ACPI.NFIT bus)" [ $ok = 1 ]
ok=0
ndctl create-namespace -f -e namespace0.0 -m fsdax > /tmp/ns.json 2>&1 && ok=1
show cat /tmp/ns.json
t "create-namespace -f -e namespace0.0 -m fsdax" [ $ok = 1 ]
wait_pmem
ok=0
mkfs.ext4 -q -F /dev/pmem0 && mount -o dax /dev/pmem0 /mnt && ok=1
t "the new fsdax namespace takes ext4 -o dax" [ $ok = 1 ]
ok=0
/tests/fsync_hammer /mnt 2 50 > /tmp/hammer.out 2>&1 && grep -q '^fsync.ok=[1-9][0-9]*.eio=0.other=0' /tmp/hammer.out && ok=1
sed 's/^/# /' /tmp/hammer.out
umount /mnt
t "and fsync works on it" [ $ok = 1 ]
modprobe dax_pmem
modprobe device_dax
ok=0
ndctl create-namespace -f -e namespace0.0 -m devdax > /tmp/ns.json 2>&1 && ok=1
show cat /tmp/ns.json
t "create-namespace -f -e namespace0.0 -m devdax" [ $ok = 1 ]
echo "# daxctl list:"
show daxctl list
ok=0
daxctl list | grep -q '"chardev":"dax0.0"' && [ -c /dev/dax0.0 ] && ok=1
t "daxctl list shows the device-dax instance, /dev/dax0.0 exists" [ $ok = 1 ]
ktap_finished
