// SPDX-License-Identifier: GPL-2.0

//! Sysfs attributes of bound devices.
//!
//! A driver lists its attributes in [`Driver::ATTRIBUTES`]. The bus hands them to the driver
//! core as the driver's `dev_groups`, so they appear in the device's directory
//! (`/sys/bus/virtio/devices/virtioN/`) once probe has succeeded and go away when remove begins,
//! before the driver's data is dropped. Their callbacks therefore always see the driver's data.
//!
//! C header: [`include/linux/sysfs.h`](srctree/include/linux/sysfs.h)

use super::{
    Device,
    Driver, //
};
use crate::{
    bindings,
    container_of,
    device::{
        Bound,
        BoundInternal, //
    },
    ffi::c_char,
    page::PAGE_SIZE,
    prelude::*,
    str::Formatter, //
};
use core::{
    pin::Pin,
    ptr, //
};

/// Writes the value of an attribute into `f`, at most a page.
pub type Show<T> =
    for<'b> fn(&Device<Bound>, Pin<&<T as Driver>::Data<'b>>, &mut Formatter<'_>) -> Result;

/// Takes a value written to an attribute: the bytes as written, trailing newline included.
pub type Store<T> = for<'b> fn(&Device<Bound>, Pin<&<T as Driver>::Data<'b>>, &[u8]) -> Result;

/// A sysfs attribute of every device bound to driver `T`.
///
/// The callbacks are given as closures: a function item naming the driver's data type does not
/// coerce to [`Show`] or [`Store`], whose data type is a projection under a higher-ranked
/// lifetime (clippy's `redundant_closure` must be silenced for them).
///
/// # Examples
///
/// ```
/// use core::fmt::Write;
/// use kernel::{
///     device::{
///         Bound,
///         Core, //
///     },
///     prelude::*,
///     str::Formatter,
///     virtio, //
/// };
///
/// fn show_answer(_: &virtio::Device<Bound>, _: Pin<&()>, f: &mut Formatter<'_>) -> Result {
///     writeln!(f, "42")?;
///     Ok(())
/// }
///
/// fn store_answer(_: &virtio::Device<Bound>, _: Pin<&()>, buf: &[u8]) -> Result {
///     if buf.trim_ascii() == b"42" {
///         Ok(())
///     } else {
///         Err(EINVAL)
///     }
/// }
///
/// struct MyDriver;
/// # kernel::virtio_device_table!(ID_TABLE, [virtio::DeviceId::new(27)]);
///
/// #[vtable]
/// impl virtio::Driver for MyDriver {
///     type Data<'bound> = ();
///     # const ID_TABLE: virtio::IdTable = &ID_TABLE;
///     #[expect(clippy::redundant_closure)]
///     const ATTRIBUTES: &'static [virtio::Attribute<Self>] = &[virtio::Attribute::read_write(
///         c"answer",
///         |vdev, this, f| show_answer(vdev, this, f),
///         |vdev, this, buf| store_answer(vdev, this, buf),
///     )];
///
///     // ...
///     # fn probe<'bound>(
///     #     _vdev: &'bound virtio::Device<Core<'_>>,
///     # ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
///     #     Ok(())
///     # }
/// }
/// ```
pub struct Attribute<T: Driver + ?Sized> {
    name: &'static CStr,
    show: Show<T>,
    store: Store<T>,
}

impl<T: Driver + ?Sized> Attribute<T> {
    /// Creates an attribute anyone may read and only the administrator write (mode 0644).
    pub const fn read_write(name: &'static CStr, show: Show<T>, store: Store<T>) -> Self {
        Self { name, show, store }
    }
}

/// One attribute as sysfs sees it, with the Rust description it came from.
#[repr(C)]
struct DevAttr<T: Driver + 'static> {
    /// First, so that the pointer sysfs passes back is also a pointer to the `DevAttr`.
    attr: bindings::device_attribute,
    desc: &'static Attribute<T>,
}

/// The attribute group of a driver, which `driver.dev_groups` points into while the driver is
/// registered.
///
/// # Invariants
///
/// - `_ptrs` holds a pointer to the `attr` of each element of `_attrs`, then a null pointer;
///   `group.attrs` points to `_ptrs`; `groups` holds a pointer to `group`, then a null pointer.
/// - Neither vector is resized after that, and the object does not move (it lives in a
///   [`KBox`] from [`Groups::build`] until [`Groups::release`]).
pub(super) struct Groups<T: Driver + 'static> {
    _attrs: KVec<DevAttr<T>>,
    _ptrs: KVec<*mut bindings::attribute>,
    group: bindings::attribute_group,
    groups: [*const bindings::attribute_group; 2],
}

impl<T: Driver + 'static> Groups<T> {
    /// Builds the group of [`Driver::ATTRIBUTES`].
    ///
    /// Returns the value for `driver.dev_groups`, null when there are no attributes. A non-null
    /// value must be given back to [`Groups::release`].
    pub(super) fn build() -> Result<*const *const bindings::attribute_group> {
        let descs = T::ATTRIBUTES;
        if descs.is_empty() {
            return Ok(ptr::null());
        }
        let mut attrs = KVec::with_capacity(descs.len(), GFP_KERNEL)?;
        for desc in descs {
            // SAFETY: `struct device_attribute` is plain data, for which all zeroes is valid
            // (null name and callbacks, no lockdep key).
            let mut attr: bindings::device_attribute = unsafe { core::mem::zeroed() };
            attr.attr.name = desc.name.as_char_ptr();
            attr.attr.mode = 0o644;
            #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
            {
                // What `sysfs_attr_init()` does for an attribute outside static memory.
                attr.attr.key = crate::static_lock_class!().as_ptr();
            }
            attr.__bindgen_anon_1.show = Some(Self::show_callback);
            attr.__bindgen_anon_2.store = Some(Self::store_callback);
            attrs.push(DevAttr { attr, desc }, GFP_KERNEL)?;
        }
        let mut ptrs = KVec::with_capacity(attrs.len() + 1, GFP_KERNEL)?;
        let base = attrs.as_mut_ptr();
        for i in 0..attrs.len() {
            // SAFETY: `i` is in bounds. The pointer keeps the provenance of the whole element,
            // which `Groups::context` reads beyond the `struct attribute`.
            ptrs.push(unsafe { &raw mut (*base.add(i)).attr.attr }, GFP_KERNEL)?;
        }
        ptrs.push(ptr::null_mut(), GFP_KERNEL)?;

        // SAFETY: As above, all zeroes is a valid `struct attribute_group`: no name, no
        // visibility callbacks, no attributes yet.
        let mut group: bindings::attribute_group = unsafe { core::mem::zeroed() };
        group.__bindgen_anon_2.attrs = ptrs.as_mut_ptr();
        // INVARIANT: `ptrs` points to the `attr` of each element of `attrs`, then null, and
        // `group.attrs` to `ptrs`; moving the vectors into the box moves no element. `groups`
        // is filled in below, once the box no longer moves.
        let this = KBox::new(
            Self {
                _attrs: attrs,
                _ptrs: ptrs,
                group,
                groups: [ptr::null(); 2],
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
    /// `groups` must come from [`Groups::build`] for the same `T`, and sysfs must no longer use
    /// it: the driver is unregistered or was never registered.
    pub(super) unsafe fn release(groups: *const *const bindings::attribute_group) {
        if groups.is_null() {
            return;
        }
        let groups = groups
            .cast_mut()
            .cast::<[*const bindings::attribute_group; 2]>();
        // SAFETY: `groups` points to the `groups` field of a `Groups<T>` that `build` leaked
        // from a `KBox`; it is released once.
        drop(unsafe { KBox::from_raw(container_of!(groups, Self, groups)) });
    }

    /// Returns the attribute description of `attr` and the bound device of `dev`.
    ///
    /// # Safety
    ///
    /// `dev` and `attr` must be what sysfs passes to a callback of an attribute in the
    /// `dev_groups` built by [`Groups::build`] for `T`.
    unsafe fn context<'a>(
        dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
    ) -> (&'a Attribute<T>, &'a Device<BoundInternal>) {
        // SAFETY: `attr` is the first field of a `DevAttr<T>` (`#[repr(C)]`), alive as long as
        // the driver is registered, which it is while sysfs calls back.
        let desc = unsafe { (*attr.cast::<DevAttr<T>>()).desc };
        // SAFETY: The driver's `dev_groups` are only created on devices of the virtio bus, so
        // `dev` is embedded in a `struct virtio_device`; the attributes exist only while the
        // device is bound to the driver, and removing them waits for running callbacks.
        let vdev = unsafe { container_of!(dev, bindings::virtio_device, dev) };
        // SAFETY: `Device` is a transparent wrapper of `struct virtio_device`; the device is
        // bound (see above).
        (desc, unsafe { &*vdev.cast::<Device<BoundInternal>>() })
    }

    /// Shows an attribute: the `show` callback of every attribute of the group.
    extern "C" fn show_callback(
        dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: sysfs calls `show` of an attribute in our `dev_groups`.
        let (desc, vdev) = unsafe { Self::context(dev, attr) };
        // SAFETY: The attribute exists only from the end of a successful probe, which stored
        // a `T::Data`, to the start of remove, which takes it.
        let data = unsafe { vdev.as_ref().drvdata_borrow::<T::Data<'_>>() };
        // SAFETY: sysfs gives `show` a buffer of a page. A full page would trip sysfs's
        // `count >= PAGE_SIZE` warning, so one byte is left out; `Formatter` fails rather
        // than write past its end.
        let mut f = unsafe { Formatter::from_buffer(buf.cast(), PAGE_SIZE - 1) };
        match (desc.show)(vdev, data, &mut f) {
            // CAST: At most a page was written, which fits in an `isize`.
            Ok(()) => f.bytes_written() as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// Stores into an attribute: the `store` callback of every attribute of the group.
    extern "C" fn store_callback(
        dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
        buf: *const c_char,
        count: usize,
    ) -> isize {
        // SAFETY: sysfs calls `store` of an attribute in our `dev_groups`.
        let (desc, vdev) = unsafe { Self::context(dev, attr) };
        // SAFETY: As in `show_callback`.
        let data = unsafe { vdev.as_ref().drvdata_borrow::<T::Data<'_>>() };
        // SAFETY: sysfs passes `count` readable bytes at `buf`.
        let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
        match (desc.store)(vdev, data, input) {
            // CAST: sysfs passes at most a page, which fits in an `isize`.
            Ok(()) => count as isize,
            Err(e) => e.to_errno() as isize,
        }
    }
}
