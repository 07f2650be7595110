#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Static checks of the project's code, in the configured kernel tree:
#   rustfmtcheck, a CLIPPY=1 rebuild of the project's Rust code with no warnings,
#   rustdoc with no warnings, the Kconfig rule that the C and Rust drivers are never
#   both built in, checkpatch on the project's C and Rust files, and the patch
#   series (scripts/series.py: it applies to the base, gives the tree the build
#   uses, and passes checkpatch --strict).
# Needs a prepared tree (scripts/build.sh prepare, or a full build).

set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

fail=0
step() { log "check: $*"; }
bad() { echo "check FAILED: $*" >&2; fail=1; }

# Project Rust files, by their in-tree paths.
mapfile -t rs_tree < <(awk '$1 ~ /\.rs$/ {print $2}' "$REPO/kernel/files.map")
mapfile -t rs_repo < <(awk '$1 ~ /\.rs$/ {print $1}' "$REPO/kernel/files.map")
# The test modules (tests/modules: built out of tree, not part of the series).
mapfile -t rs_test < <(cd "$REPO" && ls tests/modules/*.rs)

step "rustfmt"
if ! out=$(cd "$REPO" && /usr/bin/rustfmt --edition 2021 --check \
		--config-path "$KERNEL_SRC/.rustfmt.toml" "${rs_repo[@]}" "${rs_test[@]}" 2>&1); then
	echo "$out" | head -40 >&2
	bad "rustfmt: run 'make fmt'"
fi

step "CLIPPY=1 build of the project's Rust code"
# Force the project's Rust objects to be rebuilt, so their warnings show again.
rm -f "$KBUILD_OUT"/rust/kernel.o "$KBUILD_OUT"/drivers/nvdimm/virtio_pmem_rust/*.o \
	"$KBUILD_OUT"/samples/rust/rust_driver_virtio.o
log_file=$KBUILD_OUT/check-clippy.log
if ! kmake -C "$KERNEL_SRC" O="$KBUILD_OUT" -j"$JOBS" CLIPPY=1 bzImage modules >"$log_file" 2>&1; then
	tail -40 "$log_file" >&2
	bad "CLIPPY=1 build failed"
fi
if grep -qE '^(warning|error)(\[|:)' "$log_file"; then
	grep -E -A8 '^(warning|error)(\[|:)' "$log_file" | head -80 >&2
	bad "clippy/rustc warnings (full log: $log_file)"
fi
log_file=$KBUILD_OUT/check-clippy-tests.log
rm -f "$KBUILD_OUT"/tests-modules/*.o
if ! kmake -C "$KERNEL_SRC" O="$KBUILD_OUT" M="$REPO/tests/modules" MO="$KBUILD_OUT/tests-modules" \
		-j"$JOBS" CLIPPY=1 modules >"$log_file" 2>&1; then
	tail -40 "$log_file" >&2
	bad "CLIPPY=1 build of the test modules failed"
elif grep -qE '^(warning|error)(\[|:)' "$log_file"; then
	grep -E -A8 '^(warning|error)(\[|:)' "$log_file" | head -80 >&2
	bad "clippy/rustc warnings in the test modules (full log: $log_file)"
fi

step "rustdoc"
log_file=$KBUILD_OUT/check-rustdoc.log
if ! kmake -C "$KERNEL_SRC" O="$KBUILD_OUT" -j"$JOBS" rustdoc >"$log_file" 2>&1; then
	tail -40 "$log_file" >&2
	bad "rustdoc failed"
elif grep -E -A8 '^(warning|error)(\[|:)' "$log_file" | grep -E 'virtio|nvdimm' >/dev/null; then
	grep -E -A8 '^(warning|error)(\[|:)' "$log_file" | head -60 >&2
	bad "rustdoc warnings in the project's code (full log: $log_file)"
fi

step "compile_fail examples"
# Each must fail to build with its error code, and build without the marked line.
cf=$(mktemp -d "${TMPDIR:-/tmp}/vpmem-cf.XXXXXX")
n=$(cd "$REPO" && python3 "$here/compile_fail.py" "$cf" "${rs_repo[@]}") || bad "compile_fail: extraction failed"
for d in "$cf"/*/; do
	[ -f "$d/expect" ] || continue
	code=$(sed -n 1p "$d/expect") where=$(sed -n 2p "$d/expect")
	if kmake -C "$KERNEL_SRC" O="$KBUILD_OUT" M="$d" modules >"$d/log" 2>&1; then
		bad "compile_fail: $where compiles"
	elif ! grep -q "error\[$code\]" "$d/log"; then
		grep -E -A6 '^error' "$d/log" | head -30 >&2
		bad "compile_fail: $where fails, but not with $code"
	elif ! kmake -C "$KERNEL_SRC" O="$KBUILD_OUT" M="$d/ok" modules >"$d/ok/log" 2>&1; then
		grep -E -A6 '^error' "$d/ok/log" | head -30 >&2
		bad "compile_fail: $where does not build without its marked line"
	else
		log "check: $where fails with $code, and builds without the marked line"
	fi
done
log "check: $n compile_fail examples"
rm -rf "$cf"

step "Kconfig: the two drivers are never built in together"
# From the configured tree, ask for both built in, then only ours: olddefconfig must keep
# ours a module in the first case and built in in the second.
kc=$(mktemp -d "${TMPDIR:-/tmp}/vpmem-kconfig.XXXXXX")
for want in "y y m" "m y y"; do
	set -- $want
	cp "$KBUILD_OUT/.config" "$kc/.config"
	"$KERNEL_SRC/scripts/config" --file "$kc/.config" --set-val VIRTIO_PMEM "$1" \
		--set-val VIRTIO_PMEM_RUST "$2"
	kmake -s -C "$KERNEL_SRC" O="$kc" olddefconfig >/dev/null 2>&1 || bad "Kconfig: olddefconfig failed"
	got=$(sed -n 's/^CONFIG_VIRTIO_PMEM_RUST=//p' "$kc/.config")
	if [ "$got" = "$3" ]; then
		log "check: VIRTIO_PMEM=$1, VIRTIO_PMEM_RUST=$2 requested: VIRTIO_PMEM_RUST=$got"
	else
		bad "Kconfig: VIRTIO_PMEM=$1 with VIRTIO_PMEM_RUST=$2 gave VIRTIO_PMEM_RUST=${got:-n}, not $3"
	fi
done
rm -rf "$kc"

step "checkpatch"
cp_opts=(--no-tree --quiet --strict --show-types --ignore SPDX_LICENSE_TAG,FILE_PATH_CHANGES,COMMIT_MESSAGE,GIT_COMMIT_ID,FROM_SIGN_OFF_MISMATCH,MISSING_SIGN_OFF,EMAIL_SUBJECT)
mapfile -t c_files < <(cd "$REPO" && ls virtio/*.c nd_region/*.c 2>/dev/null)
for f in "${c_files[@]}" "${rs_repo[@]}" "${rs_test[@]}" Kconfig virtio_pmem/Makefile; do
	out=$(perl "$KERNEL_SRC/scripts/checkpatch.pl" "${cp_opts[@]}" -f "$REPO/$f" 2>&1) ||
		{ echo "$out" >&2; bad "checkpatch: $f"; }
done
# Userspace test programs use the C library's types, as kselftests do.
for f in "$REPO"/tests/*.c "$REPO"/tests/*.h "$REPO"/tests/host/*.c; do
	out=$(perl "$KERNEL_SRC/scripts/checkpatch.pl" --no-tree --quiet --show-types \
		--ignore SPDX_LICENSE_TAG,PREFER_KERNEL_TYPES -f "$f" 2>&1) ||
		{ echo "$out" >&2; bad "checkpatch: ${f#"$REPO"/}"; }
done

step "KUnit suites: each one behind its Kconfig option"
# Documentation/rust/testing.rst: a #[kunit_tests] module is guarded by a
# CONFIG_*_KUNIT_TEST option.
for f in "${rs_repo[@]}"; do
	if grep -B1 -n 'kunit_tests(' "$REPO/$f" | grep -v '///' | grep -E '^[0-9]+-' |
	   grep -vE '^[0-9]+-#\[cfg\(CONFIG_[A-Z0-9_]+_KUNIT_TEST\)\]$' | grep -q .; then
		bad "kunit: a suite of $f is not behind a CONFIG_*_KUNIT_TEST option"
	fi
done

step "patch series: generate, git am onto the base, compare with the build tree, checkpatch --strict"
# The patches of kernel/patches are checked there, as the commits they become.
python3 "$here/series.py" generate || bad "series: cannot generate it"
python3 "$here/series.py" check || bad "series: see above"

[ $fail = 0 ] || die "static checks failed"
log "check: all clean"
