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
            description: "Reset the device, send again a flush unanswered this long (0: never)",
        },
        max_resets: u32 {
            default: 5,
            description: "Fail flushes with EIO after this many unanswered resets in a row",
        },
    },
}
