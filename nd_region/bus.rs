// SPDX-License-Identifier: GPL-2.0

//! The nvdimm bus of a provider and its regions.

use super::{Flush, FlushRequest, RegionDesc};
use crate::{
    bindings,
    device::{self, Bound},
    error::to_result,
    ffi::{c_ulong, c_void},
    prelude::*,
    sync::Arc,
    types::Opaque,
    ThisModule,
};
use core::ptr::NonNull;

/// A region created on a [`Bus`], with the flush callback its provider data points to.
struct Region<F: Flush> {
    raw: NonNull<bindings::nd_region>,
    /// `Arc::into_raw` of the region's flush callback; released after the bus is gone.
    flush: *const F,
}

/// A registered nvdimm bus (`struct nvdimm_bus`) and the regions created on it.
///
/// Dropping the bus unregisters it, which removes its regions, namespaces and `pmem` devices;
/// their last flushes run during that, so the [`Flush`] callbacks are released only after it.
///
/// # Invariants
///
/// - `bus` is a bus registered with `_desc` (which it points to) and not unregistered yet.
/// - Each `regions[i].raw` is a region of `bus` whose provider data is `regions[i].flush`, an
///   `Arc<F>` reference owned by this object.
pub struct Bus<F: Flush> {
    bus: NonNull<bindings::nvdimm_bus>,
    regions: KVec<Region<F>>,
    /// Kept alive until the bus is unregistered (it points to it); freed after `drop`.
    _desc: Pin<KBox<Opaque<bindings::nvdimm_bus_descriptor>>>,
}

// SAFETY: The bus and region pointers are only passed to libnvdimm functions that may be called
// from any thread; the flush callbacks are `Send + Sync`.
unsafe impl<F: Flush> Send for Bus<F> {}

// SAFETY: `&Bus` methods only call libnvdimm functions that do their own locking.
unsafe impl<F: Flush> Sync for Bus<F> {}

impl<F: Flush> Bus<F> {
    /// Registers a bus under `parent`, named by `provider` (shown in sysfs and by ndctl).
    ///
    /// With `module`, libnvdimm pins that module while a namespace of the bus is bound, so
    /// unloading it fails while the `pmem` device exists. Without, the module can be unloaded
    /// at any time: unloading unbinds the parent, which drops the bus, which removes the
    /// regions before any of the module's code can go away.
    pub fn register(
        parent: &device::Device<Bound>,
        provider: &'static CStr,
        module: Option<&'static ThisModule>,
    ) -> Result<Self> {
        let desc = KBox::pin(
            Opaque::<bindings::nvdimm_bus_descriptor>::zeroed(),
            GFP_KERNEL,
        )?;
        // SAFETY: `desc` is a valid, zeroed descriptor not yet shared with C.
        unsafe {
            let d = desc.get();
            (*d).provider_name = provider.as_char_ptr().cast_mut();
            (*d).module = module.map_or(core::ptr::null_mut(), |m| m.as_ptr());
        }
        // SAFETY: `parent` is a bound device; `desc` is valid and pinned, and outlives the bus
        // (dropped after `nvdimm_bus_unregister()` in `drop`).
        let bus = unsafe { bindings::nvdimm_bus_register(parent.as_raw(), desc.get()) };
        Ok(Self {
            bus: NonNull::new(bus).ok_or(ENXIO)?,
            regions: KVec::new(),
            _desc: desc,
        })
    }

    /// Creates a persistent memory region for `desc` whose flushes go to `flush`.
    ///
    /// The region can issue I/O (and so flushes) before this returns.
    pub fn create_pmem_region(&mut self, desc: &RegionDesc, flush: Arc<F>) -> Result {
        self.regions.reserve(1, GFP_KERNEL)?;
        let mut res: bindings::resource = pin_init::zeroed();
        res.start = desc.start();
        res.end = desc.end();
        let provider = Arc::into_raw(flush);
        let mut ndr: bindings::nd_region_desc = pin_init::zeroed();
        ndr.res = &mut res;
        ndr.provider_data = provider.cast_mut().cast::<c_void>();
        ndr.numa_node = desc.numa_node();
        ndr.target_node = desc.target_node();
        ndr.flags = desc.flags().bits() as c_ulong;
        ndr.flush = Some(Self::flush_callback);
        // SAFETY: `self.bus` is registered (type invariant); `ndr` and `res` are valid for the
        // call, which copies what it keeps; `provider` stays valid until after the bus is
        // unregistered.
        let raw = unsafe { bindings::nvdimm_pmem_region_create(self.bus.as_ptr(), &mut ndr) };
        let Some(raw) = NonNull::new(raw) else {
            // SAFETY: The region was not created, so nothing else refers to `provider`.
            drop(unsafe { Arc::from_raw(provider) });
            return Err(ENXIO);
        };
        // Cannot fail: space was reserved above.
        self.regions
            .push(
                Region {
                    raw,
                    flush: provider,
                },
                GFP_KERNEL,
            )
            .map_err(|_| ENOMEM)?;
        Ok(())
    }

    /// Records a memory error at `addr..addr + len` (a bad range of the bus).
    ///
    /// The `pmem` devices see it after [`Bus::revalidate_poison`].
    pub fn add_badrange(&self, addr: u64, len: u64) -> Result {
        // SAFETY: `self.bus` is registered (type invariant).
        to_result(unsafe { bindings::nvdimm_bus_add_badrange(self.bus.as_ptr(), addr, len) })
    }

    /// Makes every region re-read the bus's bad ranges into its devices' bad blocks.
    ///
    /// Sleeps (takes the regions' device locks).
    pub fn revalidate_poison(&self) {
        for region in self.regions.iter() {
            // SAFETY: `region.raw` is a region of the registered bus (type invariant).
            unsafe {
                bindings::nvdimm_region_notify(
                    region.raw.as_ptr(),
                    bindings::nvdimm_event_NVDIMM_REVALIDATE_POISON,
                )
            };
        }
    }

    /// Number of regions created on the bus.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    extern "C" fn flush_callback(
        region: *mut bindings::nd_region,
        bio: *mut bindings::bio,
    ) -> c_int {
        // SAFETY: libnvdimm calls the flush callback of a live region of this bus, so its
        // provider data is the `F` that `create_pmem_region` leaked and that is released only
        // after the bus (and with it the region) is unregistered.
        let flush = unsafe { &*bindings::nd_region_provider_data(region).cast::<F>() };
        // SAFETY: The callback gets a null bio or a bio it is to complete if it returns
        // `NVDIMM_FLUSH_ASYNC`, which it does for every bio.
        match unsafe { FlushRequest::from_raw(bio) } {
            FlushRequest::Sync => match flush.flush() {
                Ok(()) => 0,
                Err(e) => e.to_errno(),
            },
            FlushRequest::Bio(bio) => {
                flush.flush_bio(bio);
                bindings::NVDIMM_FLUSH_ASYNC as c_int
            }
        }
    }
}

impl<F: Flush> Drop for Bus<F> {
    fn drop(&mut self) {
        // Removes the regions; their last flushes run now, through the callbacks.
        // SAFETY: `self.bus` is registered (type invariant) and unregistered only here.
        unsafe { bindings::nvdimm_bus_unregister(self.bus.as_ptr()) };
        for region in self.regions.drain_all() {
            // SAFETY: The region is gone, so nothing uses its provider data any more; it came
            // from `Arc::into_raw` and is released once, here.
            drop(unsafe { Arc::from_raw(region.flush) });
        }
        // `self._desc` is freed after this, once the bus no longer refers to it.
    }
}
