// SPDX-License-Identifier: GPL-2.0

//! Memory errors routed by address to the regions created with [`Bus`](super::Bus).
//!
//! A provider learns of a memory error from the platform (for example a machine-check record)
//! with only its physical address. [`record_memory_error`] finds the region that holds it,
//! records a bad range on that region's bus and has the region revalidate its poison, which
//! turns the range into bad blocks of its `pmem` devices. Every region is listed here from
//! its creation until its bus starts going away, and the lookup and the recording happen
//! under one lock, so a memory error never reaches a bus that is being unregistered.

use crate::{
    bindings,
    new_mutex,
    prelude::*,
    sync::{
        Mutex,
        SetOnce, //
    }, //
};
use core::ptr::NonNull;

/// A region of a registered bus.
///
/// # Invariants
///
/// `bus` is registered and `region` is one of its regions, covering `start..=end`, for as long
/// as the entry is in [`REGIONS`].
struct Entry {
    start: u64,
    end: u64,
    bus: NonNull<bindings::nvdimm_bus>,
    region: NonNull<bindings::nd_region>,
}

// SAFETY: The pointers are only passed to libnvdimm functions that may be called from any
// thread.
unsafe impl Send for Entry {}

/// The list of regions, under its lock.
type Regions = Mutex<KVec<Entry>>;

/// The regions of all buses, created on first use and never freed.
static REGIONS: SetOnce<Pin<KBox<Regions>>> = SetOnce::new();

/// Returns the list of regions, creating it on first use.
fn regions() -> Result<&'static Regions> {
    loop {
        if let Some(regions) = REGIONS.as_ref() {
            return Ok(regions);
        }
        let new = KBox::pin_init(new_mutex!(KVec::new(), "nvdimm_regions"), GFP_KERNEL)?;
        if !REGIONS.populate(new) {
            // Another thread is storing its list; it is done in a few instructions.
            while REGIONS.as_ref().is_none() {
                core::hint::spin_loop();
            }
        }
    }
}

/// Lists `region` of `bus`, covering `start..=end`.
///
/// # Safety
///
/// `bus` must be registered and `region` one of its regions until [`remove`] is called for
/// `bus`, which must happen before the bus is unregistered.
pub(super) unsafe fn add(
    start: u64,
    end: u64,
    bus: NonNull<bindings::nvdimm_bus>,
    region: NonNull<bindings::nd_region>,
) -> Result {
    // INVARIANT: By the safety requirements the bus and region stay registered while listed.
    regions()?
        .lock()
        .push(
            Entry {
                start,
                end,
                bus,
                region,
            },
            GFP_KERNEL,
        )
        .map_err(|_| ENOMEM)
}

/// Takes the regions of `bus` off the list.
///
/// No memory error reaches them once this returns.
pub(super) fn remove(bus: NonNull<bindings::nvdimm_bus>) {
    if let Some(regions) = REGIONS.as_ref() {
        regions.lock().retain(|entry| entry.bus != bus);
    }
}

/// Records a memory error at `addr..addr + len` on the region that holds `addr`.
///
/// Returns whether it was recorded, which needs a region created with [`Bus`](super::Bus)
/// that holds `addr`.
///
/// The range becomes a bad range of the region's bus, and the region revalidates its poison:
/// reads of the range from its `pmem` devices then fail, until a write clears it (see
/// [`Control`](super::Control)). Sleeps.
pub fn record_memory_error(addr: u64, len: u64) -> bool {
    let Some(regions) = REGIONS.as_ref() else {
        return false;
    };
    let regions = regions.lock();
    let Some(entry) = regions.iter().find(|e| e.start <= addr && addr <= e.end) else {
        return false;
    };
    // SAFETY: The bus is registered while its entry is listed (type invariant of `Entry`), and
    // the list is locked.
    let rc = unsafe { bindings::nvdimm_bus_add_badrange(entry.bus.as_ptr(), addr, len) };
    if rc != 0 {
        // Without memory for the range there is nothing to revalidate.
        return false;
    }
    // SAFETY: The region is registered while its entry is listed (type invariant of `Entry`),
    // which keeps a reference on it.
    unsafe {
        bindings::nvdimm_region_notify(
            entry.region.as_ptr(),
            bindings::nvdimm_event_NVDIMM_REVALIDATE_POISON,
        )
    };
    true
}
