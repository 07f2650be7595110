// SPDX-License-Identifier: GPL-2.0

//! The virtio device.

use crate::{
    bindings,
    device::{
        self,
        Bound,
        Core,
        CoreInternal,
        DeviceContext, //
    },
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    types::Opaque, //
};
use core::{
    marker::PhantomData,
    mem::offset_of,
    ptr::NonNull, //
};

/// Number of feature bits a virtio device can have (`VIRTIO_FEATURES_BITS`).
const FEATURE_BITS: u32 = bindings::VIRTIO_FEATURES_U64S * 64;

/// Returns whether `bit` names a feature bit; the C bit helpers `BUG()` on others.
const fn feature_in_range(bit: u32) -> bool {
    bit < FEATURE_BITS
}

/// A virtio device (`struct virtio_device`).
///
/// The device context `Ctx` tells what the holder may do: any context can test features,
/// [`Bound`] adds the status and the configuration space, and [`Core`] (inside
/// [`Driver`](super::Driver) callbacks) adds device bring-up and virtqueue discovery.
///
/// # Invariants
///
/// `self.0` is a valid `struct virtio_device` created by the C portion of the kernel, with valid
/// configuration operations (`config`).
#[repr(transparent)]
pub struct Device<Ctx: DeviceContext = device::Normal>(
    Opaque<bindings::virtio_device>,
    PhantomData<Ctx>,
);

crate::impl_flags!(
    /// The device status byte: a set of [`StatusBit`]s (`VIRTIO_CONFIG_S_*`).
    ///
    /// Converts into the raw byte with `u8::from`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Status(u8);

    /// A bit of the device status.
    // CAST: The status bits are defined for the status byte, a `u8`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum StatusBit {
        /// The guest found the device (`ACKNOWLEDGE`).
        Acknowledge = bindings::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8,
        /// The guest has a driver for the device (`DRIVER`).
        Driver = bindings::VIRTIO_CONFIG_S_DRIVER as u8,
        /// The driver set up the device and it is live (`DRIVER_OK`).
        DriverOk = bindings::VIRTIO_CONFIG_S_DRIVER_OK as u8,
        /// The driver and the device agreed on the features (`FEATURES_OK`).
        FeaturesOk = bindings::VIRTIO_CONFIG_S_FEATURES_OK as u8,
        /// The device hit an error it cannot recover from without a reset (`NEEDS_RESET`).
        NeedsReset = bindings::VIRTIO_CONFIG_S_NEEDS_RESET as u8,
        /// The driver gave up on the device (`FAILED`).
        Failed = bindings::VIRTIO_CONFIG_S_FAILED as u8,
    }
);

impl<Ctx: DeviceContext> Device<Ctx> {
    /// Returns the raw `struct virtio_device`.
    pub(crate) fn as_raw(&self) -> *mut bindings::virtio_device {
        self.0.get()
    }

    /// Returns the configuration operations of the transport.
    pub(super) fn ops(&self) -> &bindings::virtio_config_ops {
        // SAFETY: By the type invariant `config` points to valid operations, which live at least
        // as long as the device.
        unsafe { &*(*self.as_raw()).config }
    }

    /// Returns the device type (`VIRTIO_ID_*`).
    pub fn device_id(&self) -> u32 {
        // SAFETY: By the type invariant `self.as_raw()` is valid; the id never changes.
        unsafe { (*self.as_raw()).id.device }
    }

    /// Returns the vendor id.
    pub fn vendor_id(&self) -> u32 {
        // SAFETY: By the type invariant `self.as_raw()` is valid; the id never changes.
        unsafe { (*self.as_raw()).id.vendor }
    }

    /// Returns whether feature `bit` was negotiated (or, inside [`Driver::validate`], offered by
    /// the device and understood by the driver).
    ///
    /// [`Driver::validate`]: super::Driver::validate
    pub fn has_feature(&self, bit: u32) -> bool {
        // `__virtio_test_bit()` BUGs on out-of-range bits.
        // SAFETY: By the type invariant `self.as_raw()` is valid and `bit` is in range.
        feature_in_range(bit) && unsafe { bindings::__virtio_test_bit(self.as_raw(), bit) }
    }
}

impl Device<Bound> {
    /// Returns the device status.
    ///
    /// Only for bound devices: once unbound, the transport may have unmapped the registers.
    /// The read does not sleep on PCI and MMIO; on virtio-ccw it runs a channel program and
    /// may sleep, so drivers for that transport must not call it in atomic context (such as
    /// [`Driver::config_changed`](super::Driver::config_changed)).
    pub fn status(&self) -> Status {
        match self.ops().get_status {
            // SAFETY: `self` is a valid, bound virtio device and `get_status` one of its
            // operations.
            Some(get_status) => Status(unsafe { get_status(self.as_raw()) }),
            None => Status::empty(),
        }
    }
}

impl Device<Bound> {
    /// Returns whether the transport reads the status without sleeping.
    ///
    /// Virtio-pci (a PCI parent) and virtio-mmio (a platform parent) read a register.
    pub(super) fn status_never_sleeps(&self) -> bool {
        // SAFETY: `self` is a valid device; its parent, if any, outlives it.
        let parent = unsafe { (*self.as_raw()).dev.parent };
        if parent.is_null() {
            return false;
        }
        // SAFETY: `parent` is a valid device (see above); its bus never changes.
        let bus = unsafe { (*parent).bus };
        // Only the addresses of the bus types are taken.
        #[cfg(CONFIG_PCI)]
        if core::ptr::eq(bus, &raw const bindings::pci_bus_type) {
            return true;
        }
        core::ptr::eq(bus, &raw const bindings::platform_bus_type)
    }
}

impl<'a> Device<Core<'a>> {
    /// Tells the device the driver is ready (`DRIVER_OK`).
    ///
    /// The device may now use the virtqueues and raise interrupts.
    ///
    /// The bus does this after [`Driver::probe`](super::Driver::probe) returns; call it earlier
    /// when something set up in probe can issue I/O before that. Calling it again is a no-op.
    pub fn ready(&self) {
        if !self.status().contains(StatusBit::DriverOk) {
            // SAFETY: `self` is a valid virtio device whose driver is probing (Core context),
            // and `DRIVER_OK` is not yet set, which `virtio_device_ready()` requires.
            unsafe { bindings::virtio_device_ready(self.as_raw()) };
        }
    }
}

impl<'a> Device<CoreInternal<'a>> {
    /// Tears the device down at unbind.
    ///
    /// The virtqueues go first (reset, reclaim, delete), then the device is reset in case the
    /// driver had no queues left, as the bus requires the device reset when `remove` returns.
    pub(super) fn unbind_teardown(&self) {
        super::virtqueue::teardown(self);
        if self.status() != Status::empty() {
            // SAFETY: `self` is a valid virtio device whose driver is unbinding (Core context);
            // its queues are gone, so nothing else uses the device.
            unsafe { bindings::virtio_reset_device(self.as_raw()) };
        }
    }
}

/// Feature negotiation in progress, given to [`Driver::validate`](super::Driver::validate).
pub struct Features<'a> {
    dev: &'a Device<CoreInternal<'a>>,
}

impl<'a> Features<'a> {
    /// Creates the feature negotiation of `dev`, inside its `validate` callback.
    pub(super) fn new(dev: &'a Device<CoreInternal<'a>>) -> Self {
        Self { dev }
    }

    /// Returns whether feature `bit` is on offer (offered by the device, known to the driver).
    pub fn has(&self, bit: u32) -> bool {
        self.dev.has_feature(bit)
    }

    /// Withdraws feature `bit`, for instance because the device lacks something it implies.
    pub fn clear(&mut self, bit: u32) {
        if feature_in_range(bit) {
            // SAFETY: The device is in feature validation (the only place a `Features` exists),
            // when the driver may still change the feature set; `bit` is in range.
            unsafe { bindings::__virtio_clear_bit(self.dev.as_raw(), bit) };
        }
    }
}

// SAFETY: `Device` is a transparent wrapper of `struct virtio_device`, which embeds its
// `struct device` at this offset.
unsafe impl<Ctx: DeviceContext> device::AsBusDevice<Ctx> for Device<Ctx> {
    const OFFSET: usize = offset_of!(bindings::virtio_device, dev);
}

// SAFETY: `Device` is a transparent wrapper of a type that doesn't depend on `Device`'s generic
// argument.
crate::impl_device_context_deref!(unsafe { Device });
crate::impl_device_context_into_aref!(Device);

// SAFETY: Instances of `Device` are always reference-counted.
unsafe impl AlwaysRefCounted for Device {
    fn inc_ref(&self) {
        // SAFETY: The existence of a shared reference guarantees that the refcount is non-zero.
        unsafe { bindings::get_device(self.as_ref().as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: `obj` is a valid `Device`, so its embedded `struct device` is valid, and the
        // caller guarantees the refcount is non-zero.
        unsafe { bindings::put_device(&raw mut (*obj.as_ref().as_raw()).dev) }
    }
}

impl<Ctx: DeviceContext> AsRef<device::Device<Ctx>> for Device<Ctx> {
    fn as_ref(&self) -> &device::Device<Ctx> {
        // SAFETY: By the type invariant `self.as_raw()` is valid, so its `dev` field is a valid
        // `struct device` that lives as long as `self`.
        unsafe { device::Device::from_raw(&raw mut (*self.as_raw()).dev) }
    }
}

impl Device<Bound> {
    /// Returns a counted reference to the device, in the normal context.
    pub(super) fn as_aref(&self) -> ARef<Device> {
        let dev: &Device = self;
        dev.into()
    }
}

// SAFETY: A `Device` is always reference-counted and can be released from any thread.
unsafe impl Send for Device {}

// SAFETY: The methods of `Device<Normal>` only read immutable ids or call transport operations
// that are safe from any thread.
unsafe impl Sync for Device {}

// SAFETY: As for `Device<Normal>`: `Bound` adds status and configuration reads, which
// transports serialise.
unsafe impl Sync for Device<Bound> {}

#[cfg(CONFIG_RUST_VIRTIO_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_virtio_device)]
mod tests {
    use super::*;

    #[test]
    fn feature_bits() {
        // Device-specific bits, the transport range and the extended range are all valid.
        assert!(feature_in_range(0));
        assert!(feature_in_range(bindings::VIRTIO_F_VERSION_1));
        assert!(feature_in_range(127));
        assert!(!feature_in_range(128));
        assert!(!feature_in_range(u32::MAX));
    }

    #[test]
    fn status_bits() {
        let s = StatusBit::DriverOk | StatusBit::NeedsReset;
        assert_eq!(u8::from(s), 0x44);
        assert!(s.contains(StatusBit::DriverOk) && s.contains(StatusBit::NeedsReset));
        assert!(!s.contains(StatusBit::Failed));
        assert!(!Status::empty().contains(StatusBit::DriverOk));
    }
}
