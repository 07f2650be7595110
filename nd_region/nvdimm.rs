// SPDX-License-Identifier: GPL-2.0

//! Abstractions for libnvdimm providers.
//!
//! A provider (a bus driver that found persistent memory) registers an nvdimm [`Bus`] under its
//! device and creates regions on it; libnvdimm then creates namespaces and the `pmem` block
//! devices. A region with an asynchronous flush ([`RegionFlag::Async`]) has a [`Flush`]
//! callback that makes prior writes durable; the block layer's flushes (fsync, msync) end up
//! there.
//!
//! Memory errors found by the platform are reported with [`record_memory_error`], which turns
//! them into bad blocks of the `pmem` devices; a bus with a [`Control`] lets writes clear them.
//!
//! C headers: [`include/linux/libnvdimm.h`](srctree/include/linux/libnvdimm.h),
//! [`include/linux/nd.h`](srctree/include/linux/nd.h)

mod bus;
mod control;
mod flush;
mod poison;
mod region;

pub use self::bus::Bus;
pub use self::control::Control;
pub use self::flush::{
    Flush,
    FlushBio,
    FlushBioList, //
};
pub use self::poison::record_memory_error;
pub use self::region::{
    RangeError,
    RegionDesc,
    RegionFlag,
    RegionFlags,
    PAGEMAP_ALIGN, //
};
