// SPDX-License-Identifier: GPL-2.0

//! Memory errors in the devices' ranges, recorded as bad blocks, and cleared by overwrites.
//!
//! The host reports a memory error in guest memory as a machine check, like hardware does; the
//! kernel passes the record to the decode chain. One handler for the module turns uncorrected
//! memory errors inside a bound device's range into bad ranges of that device's bus: reads of
//! them then fail with `EIO` and DAX faults on them with `SIGBUS`, while the rest of the
//! device keeps working.
//!
//! An overwrite clears them. The host file holds no poison the guest could clear: a software
//! report leaves the data readable, and a real host memory error makes the host report it
//! again when the memory is touched again. So clearing is only bookkeeping, done a page at a
//! time (the unit of the kernel's own poison tracking): libnvdimm then writes the new data.

use kernel::{
    mce,
    nvdimm,
    page::PAGE_SIZE,
    prelude::*, //
};

/// The smallest bad range: one sector, the unit of bad blocks.
const SECTOR_SIZE: u64 = 512;

/// The decode-chain handler of the module.
pub(crate) struct MemoryErrors;

impl mce::Handler for MemoryErrors {
    fn notify(&self, record: &mce::Record) {
        if !record.is_memory_error() || record.is_correctable() || !record.has_usable_address() {
            return;
        }
        let (addr, len) = bad_range(record.addr(), record.granularity());
        if nvdimm::record_memory_error(addr, len) {
            pr_notice!("memory error at {addr:#x}: {len} bytes recorded as bad blocks\n");
            record.set_handled();
        }
    }
}

/// Returns the bad range for an error at `addr` precise to `granularity` bytes: at least one
/// sector, aligned down.
fn bad_range(addr: u64, granularity: u64) -> (u64, u64) {
    let len = granularity.max(SECTOR_SIZE);
    (addr & !(len - 1), len)
}

/// Clears bad ranges a page at a time: the write that asked for it follows.
pub(crate) struct ClearOnWrite;

/// The bus commands of every device's bus.
pub(crate) static CONTROL: ClearOnWrite = ClearOnWrite;

impl nvdimm::Control for ClearOnWrite {
    fn clear_error_unit(&self, _addr: u64, _len: u64) -> Result<u32> {
        // CAST: A page is much smaller than 4 GiB.
        Ok(PAGE_SIZE as u32)
    }

    fn clear_error(&self, _addr: u64, len: u64) -> Result<u64> {
        Ok(len)
    }
}

#[cfg(CONFIG_VIRTIO_PMEM_RUST_KUNIT_TEST)]
#[kunit_tests(virtio_pmem_rust_poison)]
mod tests {
    use super::*;

    #[test]
    fn bad_range_is_at_least_a_sector_and_aligned() {
        // A cache line becomes its sector.
        assert_eq!(bad_range(0x1_0010_0040, 64), (0x1_0010_0000, 512));
        // A page stays a page.
        assert_eq!(bad_range(0x1_0010_0fc0, 4096), (0x1_0010_0000, 4096));
        assert_eq!(bad_range(0x1_0010_0000, 4096), (0x1_0010_0000, 4096));
        // An exact byte address, as AMD may report it.
        assert_eq!(bad_range(0x1_0010_03ff, 1), (0x1_0010_0200, 512));
    }
}
