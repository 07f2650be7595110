# SPDX-License-Identifier: GPL-2.0
# Common settings for the project's scripts.  Sourced, not executed.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VPMEM_CACHE=${VPMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/virtio-pmem-rs}
TOOLS=$VPMEM_CACHE/tools
KSRC_PRISTINE=$VPMEM_CACHE/linux-7.3
# The tree we build in: the unpacked source by default, or the user's own.
KERNEL_SRC=${KERNEL_SRC:-$KSRC_PRISTINE}
# A variant adds kernel/variants/$VPMEM_VARIANT.config and builds in its own directory.
VPMEM_VARIANT=${VPMEM_VARIANT:-}
KBUILD_OUT=${KBUILD_OUT:-$VPMEM_CACHE/build${VPMEM_VARIANT:+-$VPMEM_VARIANT}}
LLVM_DIR=${LLVM_DIR:-/usr/lib/llvm-19}
RUSTC=${RUSTC:-/usr/bin/rustc}
RUSTDOC=${RUSTDOC:-/usr/bin/rustdoc}
RUST_LIB_SRC=${RUST_LIB_SRC:-/usr/lib/rustlib/src/rust/library}
JOBS=${JOBS:-$(nproc)}

export PATH=$LLVM_DIR/bin:$TOOLS/bin:/usr/bin:$PATH
export LIBCLANG_PATH=$LLVM_DIR/lib

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# make in the kernel tree with the project's toolchain.
kmake() {
	make LLVM=1 RUSTC="$RUSTC" RUSTDOC="$RUSTDOC" BINDGEN="$TOOLS/bin/bindgen" \
		RUSTFMT=/usr/bin/rustfmt CLIPPY_DRIVER=/usr/bin/clippy-driver \
		RUST_LIB_SRC="$RUST_LIB_SRC" "$@"
}
