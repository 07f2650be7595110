// SPDX-License-Identifier: GPL-2.0

//! Sysfs attributes of the devices bound to a driver.
//!
//! A driver describes each attribute with a type that implements [`AttributeOperations`], and
//! its bus abstraction hands the list of [`Attribute`]s to the driver core as the driver's
//! `dev_groups` (see [`Groups`]). The attributes then appear in the directory of every device
//! bound to the driver once probe has succeeded, and go away when remove begins, before the
//! driver's data is dropped: their callbacks always see the driver's data.
//!
//! C header: [`include/linux/device.h`](srctree/include/linux/device.h)

use crate::{
    bindings,
    container_of,
    device::{
        self,
        Bound,
        BoundInternal, //
    },
    driver::DriverLayout,
    error::VTABLE_DEFAULT_ERROR,
    ffi::c_char,
    page::PAGE_SIZE,
    prelude::*,
    str::Formatter, //
};
use core::{
    marker::PhantomData,
    pin::Pin,
    ptr, //
};

/// The callbacks of a sysfs attribute of the devices bound to the driver of layout `L`.
///
/// An attribute without [`AttributeOperations::store`] is read-only (mode 0444); with it, the
/// administrator may write it (mode 0644). Both callbacks get the device and the driver's data.
#[vtable]
pub trait AttributeOperations<L: DriverLayout> {
    /// The file name of the attribute.
    const NAME: &'static CStr;

    /// Writes the value of the attribute into `f`, at most a page.
    fn show(
        dev: &device::Device<Bound>,
        data: Pin<&L::DriverData<'_>>,
        f: &mut Formatter<'_>,
    ) -> Result;

    /// Takes a value written to the attribute: the bytes as written, trailing newline included.
    fn store(dev: &device::Device<Bound>, data: Pin<&L::DriverData<'_>>, buf: &[u8]) -> Result {
        let _ = (dev, data, buf);
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The `show` callback of a `struct device_attribute`.
type ShowCallback = unsafe extern "C" fn(
    *mut bindings::device,
    *mut bindings::device_attribute,
    *mut c_char,
) -> isize;

/// The `store` callback of a `struct device_attribute`.
type StoreCallback = unsafe extern "C" fn(
    *mut bindings::device,
    *mut bindings::device_attribute,
    *const c_char,
    usize,
) -> isize;

/// A sysfs attribute of the devices bound to the driver of layout `L`.
///
/// # Invariants
///
/// `show` and `store` are the callbacks of an [`AttributeOperations<L>`] implementation, which
/// sysfs may call for an attribute in the `dev_groups` of a driver of layout `L`.
pub struct Attribute<L: DriverLayout> {
    name: &'static CStr,
    show: ShowCallback,
    store: Option<StoreCallback>,
    _layout: PhantomData<fn(&L)>,
}

impl<L: DriverLayout> Attribute<L> {
    /// Creates the attribute that `A` describes.
    pub const fn new<A: AttributeOperations<L>>() -> Self {
        // INVARIANT: The callbacks are those of `A`.
        Self {
            name: A::NAME,
            show: show_callback::<L, A>,
            store: if A::HAS_STORE {
                Some(store_callback::<L, A>)
            } else {
                None
            },
            _layout: PhantomData,
        }
    }
}

/// Returns the device and the driver's data that sysfs calls an attribute for.
///
/// # Safety
///
/// `dev` must be what sysfs passes to a callback of an attribute in the `dev_groups` of a
/// registered driver of layout `L`.
unsafe fn context<'a, L: DriverLayout>(
    dev: *mut bindings::device,
) -> (&'a device::Device<Bound>, Pin<&'a L::DriverData<'a>>) {
    // SAFETY: The driver's attributes exist only on the devices bound to it, and removing them
    // waits for running callbacks, so `dev` is valid and bound while this runs.
    let dev = unsafe { device::Device::<BoundInternal>::from_raw(dev) };
    // SAFETY: The attributes exist from the end of a successful probe, where the bus stored the
    // driver's data, to the start of remove, which takes it; its type is `L::DriverData`
    // (safety requirements of `DriverLayout`).
    let data = unsafe { dev.drvdata_borrow::<L::DriverData<'a>>() };
    (dev, data)
}

/// Shows an attribute: the `show` callback of attribute `A`.
///
/// # Safety
///
/// Only sysfs may call it, for attribute `A` in the `dev_groups` of a registered driver of
/// layout `L`.
unsafe extern "C" fn show_callback<L: DriverLayout, A: AttributeOperations<L>>(
    dev: *mut bindings::device,
    _attr: *mut bindings::device_attribute,
    buf: *mut c_char,
) -> isize {
    // SAFETY: sysfs calls this for an attribute of a driver of layout `L` (safety requirements).
    let (dev, data) = unsafe { context::<L>(dev) };
    // SAFETY: sysfs gives `show` a buffer of a page. A full page would trip sysfs's
    // `count >= PAGE_SIZE` warning, so one byte is left out; `Formatter` fails rather than
    // write past its end.
    let mut f = unsafe { Formatter::from_buffer(buf.cast(), PAGE_SIZE - 1) };
    match A::show(dev, data, &mut f) {
        // CAST: At most a page was written, which fits in an `isize`.
        Ok(()) => f.bytes_written() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Stores into an attribute: the `store` callback of attribute `A`.
///
/// # Safety
///
/// As for [`show_callback`].
unsafe extern "C" fn store_callback<L: DriverLayout, A: AttributeOperations<L>>(
    dev: *mut bindings::device,
    _attr: *mut bindings::device_attribute,
    buf: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: As in `show_callback`.
    let (dev, data) = unsafe { context::<L>(dev) };
    // SAFETY: sysfs passes `count` readable bytes at `buf`.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
    match A::store(dev, data, input) {
        // CAST: sysfs passes at most a page, which fits in an `isize`.
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// The attribute group of a driver, which its `dev_groups` points into while it is registered.
///
/// # Invariants
///
/// - `_ptrs` holds a pointer to each element of `_attrs`, then a null pointer; `group.attrs`
///   points to `_ptrs`; `groups` holds a pointer to `group`, then a null pointer.
/// - Neither vector is resized after that, and the object does not move (it lives in a
///   [`KBox`] from [`Groups::build`] until [`Groups::release`]).
pub struct Groups<L: DriverLayout> {
    _attrs: KVec<bindings::device_attribute>,
    _ptrs: KVec<*mut bindings::attribute>,
    group: bindings::attribute_group,
    groups: [*const bindings::attribute_group; 2],
    _layout: PhantomData<fn(&L)>,
}

impl<L: DriverLayout> Groups<L> {
    /// Builds the group of `attrs`, for the `dev_groups` of a driver of layout `L`.
    ///
    /// Returns the value for `dev_groups`, null when there are no attributes. A non-null value
    /// must be given back to [`Groups::release`].
    pub fn build(
        attrs: &'static [Attribute<L>],
    ) -> Result<*const *const bindings::attribute_group> {
        if attrs.is_empty() {
            return Ok(ptr::null());
        }
        let mut raw = KVec::with_capacity(attrs.len(), GFP_KERNEL)?;
        for desc in attrs {
            // SAFETY: `struct device_attribute` is plain data, for which all zeroes is valid
            // (null name and callbacks, no lockdep key).
            let mut attr: bindings::device_attribute = unsafe { core::mem::zeroed() };
            attr.attr.name = desc.name.as_char_ptr();
            attr.attr.mode = if desc.store.is_some() { 0o644 } else { 0o444 };
            #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
            {
                // What `sysfs_attr_init()` does for an attribute outside static memory.
                attr.attr.key = crate::static_lock_class!().as_ptr();
            }
            attr.__bindgen_anon_1.show = Some(desc.show);
            attr.__bindgen_anon_2.store = desc.store;
            raw.push(attr, GFP_KERNEL)?;
        }
        let mut ptrs = KVec::with_capacity(raw.len() + 1, GFP_KERNEL)?;
        for attr in raw.iter_mut() {
            ptrs.push(&raw mut attr.attr, GFP_KERNEL)?;
        }
        ptrs.push(ptr::null_mut(), GFP_KERNEL)?;

        // SAFETY: As above, all zeroes is a valid `struct attribute_group`: no name, no
        // visibility callbacks, no attributes yet.
        let mut group: bindings::attribute_group = unsafe { core::mem::zeroed() };
        group.__bindgen_anon_2.attrs = ptrs.as_mut_ptr();
        // INVARIANT: `ptrs` points to each element of `raw`, then null, and `group.attrs` to
        // `ptrs`; moving the vectors into the box moves no element. `groups` is filled in
        // below, once the box no longer moves.
        let this = KBox::new(
            Self {
                _attrs: raw,
                _ptrs: ptrs,
                group,
                groups: [ptr::null(); 2],
                _layout: PhantomData,
            },
            GFP_KERNEL,
        )?;
        let this = KBox::into_raw(this);
        // SAFETY: `this` is valid and owned here; the group will not move (type invariant).
        unsafe {
            (*this).groups[0] = &raw const (*this).group;
            // A raw pointer to the field, not a borrow of it: `release` frees the whole box
            // through it.
            Ok((&raw const (*this).groups).cast())
        }
    }

    /// Frees what [`Groups::build`] built.
    ///
    /// # Safety
    ///
    /// `groups` must come from [`Groups::build`] for the same `L`, and sysfs must no longer use
    /// it: the driver is unregistered or was never registered.
    pub unsafe fn release(groups: *const *const bindings::attribute_group) {
        if groups.is_null() {
            return;
        }
        let groups = groups
            .cast_mut()
            .cast::<[*const bindings::attribute_group; 2]>();
        // SAFETY: `groups` points to the `groups` field of a `Groups<L>` that `build` leaked
        // from a `KBox`; it is released once.
        drop(unsafe { KBox::from_raw(container_of!(groups, Self, groups)) });
    }
}
