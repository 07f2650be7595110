# SPDX-License-Identifier: GPL-2.0
#
# virtio-pmem in Rust: developer entry points (see README.md).
#
#   make setup           install the toolchain, QEMU and the Linux 7.3 source
#   make test            build the guest kernel, run the static checks and all tests
#   make kernel          build the guest kernels only (incremental): the default one,
#                        and the builtin variant (our driver built in)
#   make check           static checks only (rustfmt, clippy, rustdoc, checkpatch)
#   make bench           benchmark both drivers: CSV, table and plot (scripts/bench.sh)
#   make patches         write the patch series with a cover letter (scripts/series.py)
#   make run BOOT=name   run one boot of tests/plan
#   make shell [BOOT=..] boot a guest with a shell on the console
#   make fmt             format the project's Rust code

BOOT ?=

.PHONY: setup test kernel check bench patches run shell fmt

setup:
	scripts/setup.sh

kernel:
	scripts/build.sh
	VPMEM_VARIANT=builtin scripts/build.sh

check: kernel
	scripts/check.sh

test: check
	scripts/run-tests.sh

bench:
	scripts/bench.sh

patches:
	python3 scripts/series.py generate

run: kernel
	scripts/run-tests.sh $(BOOT)

shell: kernel
	scripts/run-tests.sh --shell $(BOOT)

fmt:
	/usr/bin/rustfmt --edition 2021 --config-path $${KERNEL_SRC:-$${XDG_CACHE_HOME:-$$HOME/.cache}/virtio-pmem-rs/linux-7.3}/.rustfmt.toml \
		$$(awk '$$1 ~ /\.rs$$/ {print $$1}' kernel/files.map) tests/modules/*.rs
