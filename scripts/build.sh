#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the guest kernel with the project's in-tree code.
#
#   1. apply kernel/patches/*.patch to $KERNEL_SRC (idempotent),
#   2. link the project's files to their in-tree homes (kernel/files.map),
#   3. configure $KBUILD_OUT from tinyconfig + kernel/*.config and check that
#      every requested option survived,
#   4. make bzImage modules, install modules into $KBUILD_OUT/mods,
#   5. build the project's test modules (tests/modules, not part of the series) out
#      of tree against it and install them there too (default variant only).
#
# Environment: KERNEL_SRC (a 7.3 tree; default: the one setup unpacked),
# KBUILD_OUT (output dir), JOBS, EXTRA_MAKEFLAGS (e.g. CLIPPY=1), VPMEM_VARIANT
# (adds kernel/variants/$VPMEM_VARIANT.config; default output dir build-$VPMEM_VARIANT).

set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ -f "$KERNEL_SRC/Makefile" ] || die "no kernel tree at $KERNEL_SRC (run scripts/setup.sh or set KERNEL_SRC)"
command -v "$TOOLS/bin/bindgen" >/dev/null || die "bindgen missing: run scripts/setup.sh"

# The hunks of a patch on files of the base tree. Its hunks on the files the
# series adds are left out: those files are linked in whole from
# kernel/files.map, and patching them through the links would change the
# repository.
base_hunks() { python3 "$here/series.py" base-hunks "$1"; }

# The series applied last is kept in $KERNEL_SRC/.vpmem-applied: when the
# repository's series changes, the old one is reverted first.
apply_patches() {
	local applied=$KERNEL_SRC/.vpmem-applied p hunks
	if [ -d "$applied" ] && ! diff -rq "$applied" "$REPO/kernel/patches" >/dev/null 2>&1; then
		log "patch: series changed, reverting the old one"
		for p in $(ls -r "$applied"/*.patch 2>/dev/null); do
			hunks=$(base_hunks "$p")
			[ -n "$hunks" ] || continue
			patch -d "$KERNEL_SRC" -p1 -R -s -f <<<"$hunks" >/dev/null ||
				die "cannot revert $(basename "$p") from $KERNEL_SRC"
		done
		rm -rf "$applied"
	fi
	[ -d "$applied" ] && return
	for p in "$REPO"/kernel/patches/*.patch; do
		[ -e "$p" ] || continue
		hunks=$(base_hunks "$p")
		[ -n "$hunks" ] || continue
		log "patch: $(basename "$p")"
		patch -d "$KERNEL_SRC" -p1 -N -s <<<"$hunks" ||
			die "patch $(basename "$p") does not apply to $KERNEL_SRC"
	done
	mkdir -p "$applied"
	cp "$REPO"/kernel/patches/*.patch "$applied/"
}

# kernel/files.map: "<repo path> <in-tree path>" per line.
link_files() {
	local src dst links=$KERNEL_SRC/.vpmem-links
	# Links of files no longer in the map go away.
	if [ -f "$links" ]; then
		while read -r dst; do
			grep -q "[[:space:]]$dst\$" "$REPO/kernel/files.map" || rm -f "$KERNEL_SRC/$dst"
		done < "$links"
	fi
	: > "$links"
	while read -r src dst; do
		case "$src" in ''|'#'*) continue ;; esac
		[ -e "$REPO/$src" ] || die "files.map: $src does not exist"
		mkdir -p "$KERNEL_SRC/$(dirname "$dst")"
		if [ "$(readlink "$KERNEL_SRC/$dst" 2>/dev/null)" != "$REPO/$src" ]; then
			ln -sfn "$REPO/$src" "$KERNEL_SRC/$dst"
		fi
		echo "$dst" >> "$links"
	done < "$REPO/kernel/files.map"
}

configure() {
	local frags=("$REPO"/kernel/*.config)
	if [ -n "$VPMEM_VARIANT" ]; then
		[ -f "$REPO/kernel/variants/$VPMEM_VARIANT.config" ] || die "no variant $VPMEM_VARIANT"
		frags+=("$REPO/kernel/variants/$VPMEM_VARIANT.config")
	fi
	local sum
	sum=$(cat "${frags[@]}" | sha1sum | cut -d' ' -f1)
	mkdir -p "$KBUILD_OUT"
	if [ -f "$KBUILD_OUT/.config" ] && [ "$(cat "$KBUILD_OUT/.vpmem-config" 2>/dev/null)" = "$sum" ]; then
		return
	fi
	log "config: tinyconfig + ${frags[*]##*/}"
	kmake -s -C "$KERNEL_SRC" O="$KBUILD_OUT" tinyconfig >/dev/null
	(cd "$KBUILD_OUT" && KCONFIG_CONFIG=.config \
		"$KERNEL_SRC/scripts/kconfig/merge_config.sh" -m -O "$KBUILD_OUT" .config "${frags[@]}" >/dev/null)
	kmake -s -C "$KERNEL_SRC" O="$KBUILD_OUT" olddefconfig >/dev/null
	# Options drop out silently when a dependency is missing: check them all (the last
	# fragment that sets or unsets an option wins, as in merge_config.sh).
	local line bad=0
	declare -A want=()
	while read -r line; do
		case "$line" in
		CONFIG_*=[ym]|CONFIG_*=[0-9]*) want[${line%%=*}]=$line ;;
		"# CONFIG_"*" is not set") line=${line#\# }; unset "want[${line%% *}]" ;;
		esac
	done < <(cat "${frags[@]}")
	for line in "${want[@]}"; do
		if ! grep -qx "$line" "$KBUILD_OUT/.config"; then
			echo "config: requested $line, got: $(grep "^${line%%=*}=" "$KBUILD_OUT/.config" || echo 'not set')" >&2
			bad=1
		fi
	done
	[ $bad = 0 ] || die "kernel configuration lost requested options (see above)"
	echo "$sum" > "$KBUILD_OUT/.vpmem-config"
}

build() {
	local t0=$SECONDS
	log "make: bzImage modules (-j$JOBS)"
	kmake -s -C "$KERNEL_SRC" O="$KBUILD_OUT" -j"$JOBS" CLIPPY=1 ${EXTRA_MAKEFLAGS:-} bzImage modules 2>&1 | tee "$KBUILD_OUT/build.log"
	rm -rf "$KBUILD_OUT/mods"
	kmake -s -C "$KERNEL_SRC" O="$KBUILD_OUT" INSTALL_MOD_PATH="$KBUILD_OUT/mods" \
		INSTALL_MOD_STRIP=1 modules_install >/dev/null
	log "make: done in $((SECONDS - t0)) s"
}

# tests/modules: out of tree (M=), with its objects in $KBUILD_OUT/tests-modules (MO=),
# installed beside the kernel's modules (lib/modules/*/updates).
build_test_modules() {
	[ -z "$VPMEM_VARIANT" ] || return 0
	local ext=(M="$REPO/tests/modules" MO="$KBUILD_OUT/tests-modules")
	log "make: test modules"
	mkdir -p "$KBUILD_OUT/tests-modules"
	kmake -s -C "$KERNEL_SRC" O="$KBUILD_OUT" "${ext[@]}" -j"$JOBS" CLIPPY=1 ${EXTRA_MAKEFLAGS:-} \
		modules 2>&1 | tee "$KBUILD_OUT/tests-modules/build.log"
	kmake -s -C "$KERNEL_SRC" O="$KBUILD_OUT" "${ext[@]}" INSTALL_MOD_PATH="$KBUILD_OUT/mods" \
		INSTALL_MOD_STRIP=1 INSTALL_MOD_DIR=updates modules_install >/dev/null
}

case "${1:-all}" in
prepare) apply_patches; link_files; configure ;;
all) apply_patches; link_files; configure; build; build_test_modules ;;
*) die "usage: $0 [prepare|all]" ;;
esac
