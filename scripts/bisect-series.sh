#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the kernel after every patch of the series (make patches first): the
# series is bisectable if each step builds, with CLIPPY=1 and no warning from
# the code the series adds, and its rustdoc has no warning in the series' files. By hand: a first build of the base takes as long as
# a kernel build, each patch after it a few minutes.
#
#   scripts/bisect-series.sh [FIRST [LAST]]    patch numbers, default: all
#
# The guest configuration (kernel/*.config) is used at every step; options of
# patches not applied yet drop out. Output: $VPMEM_CACHE/bisect/{tree,build},
# a line per patch, and a summary.

set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

base=$VPMEM_CACHE/series/base
patches=$VPMEM_CACHE/patches
tree=$VPMEM_CACHE/bisect/tree
out=$VPMEM_CACHE/bisect/build
first=${1:-1} last=${2:-999}

[ -d "$base/.git" ] || die "no series base: run make patches"
mapfile -t series < <(ls "$patches"/[0-9]*.patch | grep -v '/0000-')
[ ${#series[@]} -gt 0 ] || die "no series in $patches: run make patches"

if [ ! -d "$tree/.git" ] && [ ! -f "$tree/.git" ]; then
	log "bisect: a worktree of the base in $tree"
	git -C "$base" worktree add -q --detach "$tree" base
fi
git -C "$tree" am --abort >/dev/null 2>&1 || true
git -C "$tree" checkout -q --detach base
git -C "$tree" clean -q -fdx

configure() {
	mkdir -p "$out"
	kmake -s -C "$tree" O="$out" tinyconfig >/dev/null
	(cd "$out" && KCONFIG_CONFIG=.config \
		"$tree/scripts/kconfig/merge_config.sh" -m -O "$out" .config "$REPO"/kernel/*.config >/dev/null 2>&1)
	kmake -s -C "$tree" O="$out" olddefconfig >/dev/null
}

# rustdoc warnings in the series' files (broken links to items a later patch adds).
doc_paths='rust/kernel/(virtio|nvdimm|mce|driver/attribute|device\.rs|workqueue|sync/condvar)'

declare -a result
n=0
for p in "${series[@]}"; do
	n=$((n + 1))
	git -C "$tree" -c user.name=bisect -c user.email=bisect@localhost am -q "$p" ||
		die "$(basename "$p") does not apply"
	[ "$n" -lt "$first" ] && continue
	[ "$n" -gt "$last" ] && break
	t0=$SECONDS
	configure
	logf=$out/build-$n.log
	docf=$out/rustdoc-$n.log
	if kmake -C "$tree" O="$out" -j"$JOBS" CLIPPY=1 bzImage modules >"$logf" 2>&1; then
		if grep -qE '^(warning|error)(\[|:)' "$logf"; then
			r="builds, with warnings (see $logf)"
		elif ! kmake -C "$tree" O="$out" -j"$JOBS" rustdoc >"$docf" 2>&1; then
			r="builds, rustdoc FAILS (see $docf)"
		elif grep -E -A8 '^(warning|error)(\[|:)' "$docf" | grep -qE "$doc_paths"; then
			r="builds, with rustdoc warnings (see $docf)"
		else
			r="builds, rustdoc clean"
		fi
	else
		r="FAILS (see $logf)"
	fi
	result+=("$(printf '%2d %-70s %s (%d s)' "$n" "$(basename "$p")" "$r" $((SECONDS - t0)))")
	log "bisect: ${result[-1]}"
done
printf '%s\n' "${result[@]}"
printf '%s\n' "${result[@]}" | grep -q 'FAILS\|warnings' && exit 1
exit 0
