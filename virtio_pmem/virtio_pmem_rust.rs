// SPDX-License-Identifier: GPL-2.0

//! Virtio pmem driver.
//!
//! Exposes the persistent memory range of a virtio-pmem device (virtio device 27) as an
//! asynchronous nvdimm region, so that `/dev/pmemN` and fsdax work while `MAP_SYNC` is refused,
//! sends the region's flushes to the host over the device's request queue, answering
//! concurrent callers with shared flushes, and turns machine-check memory errors in the range
//! into bad blocks.

use kernel::{
    driver::Registration,
    mce,
    prelude::*,
    virtio, //
};

mod commit;
mod driver;
mod flush;
mod poison;
mod range;

/// The module: the memory-error handler, then the driver.
///
/// The handler goes first when the module is unloaded, so that it never runs once the devices
/// start going away.
#[pin_data]
struct VirtioPmemModule {
    #[pin]
    _memory_errors: mce::Registration<poison::MemoryErrors>,
    #[pin]
    _driver: Registration<virtio::Adapter<driver::VirtioPmemDriver>>,
}

impl kernel::InPlaceModule for VirtioPmemModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _memory_errors <- mce::Registration::new(poison::MemoryErrors),
            _driver <- Registration::new(<Self as kernel::ModuleMetadata>::NAME, module),
        })
    }
}

module! {
    type: VirtioPmemModule,
    name: "virtio_pmem_rust",
    authors: ["Seed c02429f5 maintainers <maintainers@users.noreply.h-seed-c02429f5.example>"],
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
        group_hold_us: u32 {
            default: 10000,
            description: "Hold a flush this long at most for the callers of the last (0: never)",
        },
    },
}
