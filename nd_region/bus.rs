// SPDX-License-Identifier: GPL-2.0

//! The nvdimm bus of a provider and its regions.

use super::{
    control,
    flush::FlushRequest,
    poison,
    Control,
    Flush,
    RegionDesc, //
};
use crate::{
    bindings,
    device::{
        self,
        Bound, //
    },
    error::to_result,
    ffi::{
        c_int,
        c_uint,
        c_ulong,
        c_void, //
    },
    prelude::*,
    sync::Arc,
    types::Opaque, //
};
use core::ptr::NonNull;

/// What a registered bus owns; freed by [`release`], the device-managed action of the bus.
///
/// # Invariants
///
/// - `bus` is a bus registered with `desc` and not unregistered yet.
/// - Each `flushes[i]` is the provider data of a region of `bus`: an `Arc<F>` reference
///   (`Arc::into_raw`) owned by this object, released after the bus is gone.
struct BusInner<F: Flush> {
    bus: NonNull<bindings::nvdimm_bus>,
    flushes: KVec<*const F>,
    /// The bus descriptor, which the bus points to until it is unregistered.
    desc: Opaque<bindings::nvdimm_bus_descriptor>,
    /// What answers the descriptor's `ndctl`, if it has one.
    control: Option<&'static dyn Control>,
}

/// Unregisters the bus, which removes its regions, namespaces and `pmem` devices (their last
/// flushes run during that), then releases the flush callbacks and frees `inner`.
///
/// # Safety
///
/// `inner` must come from `KBox::into_raw` of a `BusInner<F>` in [`Bus::register`], and this
/// must be the only call for it.
unsafe extern "C" fn release<F: Flush>(inner: *mut c_void) {
    // SAFETY: By the safety requirements `inner` is a `KBox<BusInner<F>>` released once, here.
    let mut inner = unsafe { KBox::from_raw(inner.cast::<BusInner<F>>()) };
    // No memory error is recorded on the bus from now on.
    poison::remove(inner.bus);
    // SAFETY: `inner.bus` is registered (type invariant) and unregistered only here.
    unsafe { bindings::nvdimm_bus_unregister(inner.bus.as_ptr()) };
    for flush in inner.flushes.drain_all() {
        // SAFETY: The region is gone, so nothing uses its provider data any more; it came
        // from `Arc::into_raw` and is released once, here.
        drop(unsafe { Arc::from_raw(flush) });
    }
    // `inner.desc` is freed with `inner`, after the bus no longer refers to it.
}

/// A registered nvdimm bus (`struct nvdimm_bus`) and the regions created on it, for as long as
/// its parent device is bound (`'bound`).
///
/// Dropping the bus unregisters it, which removes its regions, namespaces and `pmem` devices;
/// their last flushes run during that, so the [`Flush`] callbacks are released only after it.
///
/// The bus is device-managed: if the handle is leaked (`mem::forget`), the bus is still
/// unregistered when the parent is unbound, so no region's flush callback can outlive the
/// binding (and with it the driver's module). The lifetime keeps the handle itself from
/// outliving the binding. A leaked bus goes only after the parent's driver has finished its
/// unbind, so whatever the flush callback needs may be gone by then: its last flushes should
/// fail rather than succeed.
///
/// # Invariants
///
/// `inner` is the `BusInner<F>` of a device-managed action `release::<F>` registered on
/// `parent`, which has not run yet.
pub struct Bus<'bound, F: Flush> {
    inner: NonNull<BusInner<F>>,
    parent: &'bound device::Device<Bound>,
}

// SAFETY: The bus and region pointers are only passed to libnvdimm functions that may be called
// from any thread; the flush callbacks are `Send + Sync`.
unsafe impl<F: Flush> Send for Bus<'_, F> {}

// SAFETY: `Bus` has no `&self` method: a shared reference gives access to nothing.
unsafe impl<F: Flush> Sync for Bus<'_, F> {}

impl<'bound, F: Flush> Bus<'bound, F> {
    /// Registers a bus under `parent`, named by `provider` (shown in sysfs and by ndctl).
    ///
    /// The provider's module can be unloaded at any time: unloading unbinds the parent, which
    /// drops the bus, which removes the regions before any of the module's code can go away.
    ///
    /// With `control`, libnvdimm asks it to clear memory errors that writes overwrite (see
    /// [`Control`]); without, such writes succeed but the errors stay recorded on the bus.
    pub fn register(
        parent: &'bound device::Device<Bound>,
        provider: &'static CStr,
        control: Option<&'static dyn Control>,
    ) -> Result<Self> {
        let inner = KBox::new(
            BusInner::<F> {
                bus: NonNull::dangling(),
                flushes: KVec::new(),
                desc: Opaque::zeroed(),
                control,
            },
            GFP_KERNEL,
        )?;
        let inner = KBox::into_raw(inner);
        // SAFETY: `inner` is valid and not shared with C yet.
        let desc = unsafe { (*inner).desc.get() };
        // SAFETY: `desc` is a valid, zeroed descriptor not yet shared with C.
        unsafe {
            (*desc).provider_name = provider.as_char_ptr().cast_mut();
            if control.is_some() {
                (*desc).ndctl = Some(Self::ndctl_callback);
            }
        }
        // SAFETY: `parent` is a bound device; `desc` is valid, and stays so (and in place) until
        // `release` frees it after `nvdimm_bus_unregister()`.
        let bus = unsafe { bindings::nvdimm_bus_register(parent.as_raw(), desc) };
        let Some(bus) = NonNull::new(bus) else {
            // SAFETY: `inner` came from `KBox::into_raw` above and nothing else refers to it.
            drop(unsafe { KBox::from_raw(inner) });
            return Err(ENXIO);
        };
        // SAFETY: As above.
        unsafe { (*inner).bus = bus };
        // INVARIANT: `inner.bus` is registered with `inner.desc`, with no regions yet.
        // SAFETY: `parent` is bound; `release::<F>` takes `inner` as its safety requirements
        // ask, and runs once: at unbind, or in `drop` (`devm_release_action`), or right now
        // if the action cannot be added (`devm_add_action_or_reset`).
        to_result(unsafe {
            bindings::devm_add_action_or_reset(parent.as_raw(), Some(release::<F>), inner.cast())
        })?;
        // INVARIANT: `inner` belongs to the action `release::<F>` just registered on `parent`,
        // which runs at unbind or in `drop` at the earliest.
        Ok(Self {
            // SAFETY: `inner` came from `KBox::into_raw`, so it is not null.
            inner: unsafe { NonNull::new_unchecked(inner) },
            parent,
        })
    }

    /// Creates a persistent memory region for `desc` whose flushes go to `flush`.
    ///
    /// The region can issue I/O (and so flushes) before this returns. If the region cannot be
    /// listed for memory errors (`ENOMEM`), it stays on the bus, without bad-block tracking,
    /// until the bus is dropped; the caller should drop the bus.
    pub fn create_pmem_region(&mut self, desc: &RegionDesc, flush: Arc<F>) -> Result {
        // SAFETY: By the type invariant `inner` is valid; `&mut self` makes this the only access.
        let inner = unsafe { self.inner.as_mut() };
        inner.flushes.reserve(1, GFP_KERNEL)?;
        let mut res: bindings::resource = pin_init::zeroed();
        res.start = desc.start();
        res.end = desc.end();
        let provider = Arc::into_raw(flush);
        let mut ndr: bindings::nd_region_desc = pin_init::zeroed();
        ndr.res = &mut res;
        ndr.provider_data = provider.cast_mut().cast::<c_void>();
        ndr.numa_node = desc.numa_node();
        ndr.target_node = desc.target_node();
        // CAST: The flags are `ND_REGION_*` bits, all below bit 32: they fit in a `c_ulong`.
        ndr.flags = u64::from(desc.flags()) as c_ulong;
        ndr.flush = Some(Self::flush_callback);
        // SAFETY: `inner.bus` is registered (type invariant); `ndr` and `res` are valid for the
        // call, which copies what it keeps; `provider` stays valid until after the bus is
        // unregistered.
        let raw = unsafe { bindings::nvdimm_pmem_region_create(inner.bus.as_ptr(), &mut ndr) };
        let Some(raw) = NonNull::new(raw) else {
            // SAFETY: The region was not created, so nothing else refers to `provider`.
            drop(unsafe { Arc::from_raw(provider) });
            return Err(ENXIO);
        };
        // INVARIANT: The region is on the bus, with `provider` as its provider data.
        inner
            .flushes
            .push_within_capacity(provider)
            .map_err(|_| ENOMEM)?;
        // SAFETY: The bus is registered with `raw` on it until `release` unregisters it, after
        // taking the bus's regions off the list.
        unsafe { poison::add(desc.start(), desc.end(), inner.bus, raw) }
    }

    /// Answers a bus command: the `ndctl` callback of the bus descriptor.
    extern "C" fn ndctl_callback(
        nd_desc: *mut bindings::nvdimm_bus_descriptor,
        nvdimm: *mut bindings::nvdimm,
        cmd: c_uint,
        buf: *mut c_void,
        len: c_uint,
        cmd_rc: *mut c_int,
    ) -> c_int {
        // SAFETY: libnvdimm calls `ndctl` with the descriptor of a registered bus, which is the
        // `desc` field of a live `BusInner<F>` (it is freed only after the bus is unregistered).
        let inner =
            unsafe { &*crate::container_of!(Opaque::cast_from(nd_desc), BusInner<F>, desc) };
        let Some(control) = inner.control else {
            return ENOTTY.to_errno();
        };
        // SAFETY: libnvdimm passes a payload buffer of `len` bytes and a command status to
        // write.
        unsafe { control::ndctl(control, nvdimm, cmd, buf, len, cmd_rc) }
    }

    /// Flushes a region of the bus: the flush callback of its regions.
    extern "C" fn flush_callback(
        region: *mut bindings::nd_region,
        bio: *mut bindings::bio,
    ) -> c_int {
        // SAFETY: libnvdimm calls the flush callback of a live region of this bus, so its
        // provider data is the `F` that `create_pmem_region` leaked and that `release` frees
        // only after the bus (and with it the region) is unregistered.
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
                // CAST: `NVDIMM_FLUSH_ASYNC` is 1.
                bindings::NVDIMM_FLUSH_ASYNC as c_int
            }
        }
    }
}

impl<F: Flush> Drop for Bus<'_, F> {
    fn drop(&mut self) {
        // Runs `release` now, which removes the regions (their last flushes run now, through
        // the callbacks), and forgets the action.
        // SAFETY: By the type invariant the action `release::<F>` with `inner` is registered on
        // the bound `parent` and has not run; this runs it, once.
        unsafe {
            bindings::devm_release_action(
                self.parent.as_raw(),
                Some(release::<F>),
                self.inner.as_ptr().cast(),
            )
        };
    }
}
