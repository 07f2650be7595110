// SPDX-License-Identifier: GPL-2.0

//! Virtio pmem driver.
//!
//! Exposes the persistent memory range of a virtio-pmem device (virtio device 27) as an
//! asynchronous nvdimm region, so that `/dev/pmemN` and fsdax work while `MAP_SYNC` is refused,
//! and sends the region's flushes to the host over the device's request queue, answering
//! concurrent callers with shared flushes.

mod commit;
mod driver;
mod flush;
mod range;

kernel::module_virtio_driver! {
    type: driver::VirtioPmemDriver,
    name: "virtio_pmem_rust",
    authors: ["virtio-pmem-rs developers"],
    description: "Virtio pmem driver (Rust)",
    license: "GPL",
    params: {
        flush_timeout_ms: u32 {
            default: 60000,
            description: "Reset the device and send a flush again when the host has not answered it for this long (0: wait forever)",
        },
        max_resets: u32 {
            default: 5,
            description: "Give the device up (flushes fail with EIO) after this many resets in a row without an answer",
        },
    },
}
