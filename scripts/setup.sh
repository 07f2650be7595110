#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything the project needs on a Debian 12 (bookworm) machine:
# LLVM 19, Debian's rustc-web with its library source, bindgen-cli, kernel
# build dependencies, QEMU 10 (bookworm-backports), busybox-static and the
# Linux 7.3 source (trixie-backports).  The machine's apt sources are left
# untouched: extra suites are read through a private apt state directory.
#
# Idempotent: a second run checks what is there and changes nothing.

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

apt_pkgs=(rustc-web rust-web-src rust-web-clippy rustfmt-web clang-19 lld-19 llvm-19 libclang-19-dev
	  flex bison bc libelf-dev libssl-dev cpio busybox-static e2fsprogs
	  make gcc libc6-dev xz-utils python3 fiu-utils kmod file patch ndctl daxctl
	  fio gnuplot-nox rsync python3-ply python3-git)
bpo_pkgs=(qemu-system-x86)

need_root() {
	[ "$(id -u)" = 0 ] || die "setup must run as root (apt-get install)"
}

# Private apt state: extra suites without touching /etc/apt.
priv_apt() {
	local dir=$VPMEM_CACHE/apt
	mkdir -p "$dir/lists/partial"
	# Reuse the mirror the machine is already configured for.
	local mirror
	mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' \
		/etc/apt/sources.list 2>/dev/null || true)
	[ -n "$mirror" ] || die "cannot find a Debian mirror in /etc/apt sources"
	cat > "$dir/sources.list" <<EOT
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-backports main
EOT
	local sec
	sec=$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$sec" ] && echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sec bookworm-security main" >> "$dir/sources.list"
	cat > "$dir/prefs" <<EOT
Package: *
Pin: release n=trixie-backports
Pin-Priority: 1
EOT
	mkdir -p "$dir/empty.d"
	PRIV_APT=(-o "Dir::Etc::sourcelist=$dir/sources.list"
		  -o "Dir::Etc::sourceparts=$dir/empty.d"
		  -o "Dir::State::Lists=$dir/lists"
		  -o "Dir::Etc::preferences=$dir/prefs"
		  -o "Dir::Etc::preferencesparts=$dir/empty.d"
		  -o "APT::Sandbox::User=root")
	if [ ! -e "$dir/lists/.stamp" ] || [ -n "$(find "$dir/lists/.stamp" -mtime +7)" ]; then
		log "apt: updating private package lists"
		apt-get -q "${PRIV_APT[@]}" update >/dev/null
		touch "$dir/lists/.stamp"
	fi
}

# apt on these machines may delete downloaded .debs between dpkg runs; retry once.
apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get -qq -y --no-install-recommends "$@" >/dev/null ||
		DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends "$@"
}

missing_pkgs() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
			echo "$p"
	done
}

install_apt() {
	local miss
	miss=$(missing_pkgs "${apt_pkgs[@]}" "${bpo_pkgs[@]}")
	local qv
	qv=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
	case "$qv" in 1:10.*) ;; *) miss="$miss qemu-system-x86" ;; esac
	[ -z "${miss// /}" ] && { log "apt: all packages present"; return; }
	need_root
	priv_apt
	log "apt: installing $(echo $miss | tr '\n' ' ')"
	apt_install "${PRIV_APT[@]}" install "${apt_pkgs[@]}"
	apt_install "${PRIV_APT[@]}" -t bookworm-backports install "${bpo_pkgs[@]}"
}

install_bindgen() {
	if [ -x "$TOOLS/bin/bindgen" ] &&
	   "$TOOLS/bin/bindgen" --version | grep -q '^bindgen 0\.72\.'; then
		log "bindgen: $("$TOOLS/bin/bindgen" --version) present"
		return
	fi
	log "bindgen: cargo install bindgen-cli ^0.72 into $TOOLS"
	command -v cargo >/dev/null || die "cargo not found (rustup toolchain expected)"
	LIBCLANG_PATH=$LLVM_DIR/lib cargo install -q --locked bindgen-cli \
		--version '^0.72' --root "$TOOLS"
}

fetch_kernel() {
	if [ -f "$KSRC_PRISTINE/Makefile" ] && [ -f "$KSRC_PRISTINE/.vpmem-unpacked" ]; then
		log "kernel: $(make -s -C "$KSRC_PRISTINE" kernelversion) source present"
		return
	fi
	need_root
	priv_apt
	local dl=$VPMEM_CACHE/dl
	mkdir -p "$dl"
	if ! ls "$dl"/linux-source-7.3_*.deb >/dev/null 2>&1; then
		log "kernel: downloading linux-source-7.3 (trixie-backports)"
		(cd "$dl" && apt-get -q "${PRIV_APT[@]}" download linux-source-7.3)
	fi
	log "kernel: unpacking"
	rm -rf "$dl/x" "$KSRC_PRISTINE"
	dpkg -x "$dl"/linux-source-7.3_*.deb "$dl/x"
	mkdir -p "$KSRC_PRISTINE"
	tar -xaf "$dl"/x/usr/src/linux-source-7.3.tar.* -C "$KSRC_PRISTINE" --strip-components=1
	rm -rf "$dl/x"
	touch "$KSRC_PRISTINE/.vpmem-unpacked"
}

check_tools() {
	local t
	for t in "$RUSTC" "$RUSTDOC" "$LLVM_DIR/bin/clang" "$LLVM_DIR/bin/ld.lld" \
		 "$TOOLS/bin/bindgen" qemu-system-x86_64 busybox mke2fs flex bison bc cpio; do
		command -v "$t" >/dev/null || die "missing after setup: $t"
	done
	[ -d "$RUST_LIB_SRC" ] || die "missing Rust library source at $RUST_LIB_SRC (rust-web-src)"
	"$RUSTC" --version | grep -qE '^rustc 1\.(8[5-9]|9[0-9])' ||
		die "rustc too old: $("$RUSTC" --version)"
}

main() {
	mkdir -p "$VPMEM_CACHE" "$TOOLS"
	install_apt
	install_bindgen
	fetch_kernel
	check_tools
	:
	kmake -s -C "$KSRC_PRISTINE" rustavailable >/dev/null 2>&1 ||
		die "make LLVM=1 rustavailable failed in $KSRC_PRISTINE"
	log "setup complete (cache: $VPMEM_CACHE)"
}

main "$@"
