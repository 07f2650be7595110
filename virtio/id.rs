// SPDX-License-Identifier: GPL-2.0

//! Virtio device ids and id tables.

use crate::{
    bindings,
    device_id::RawDeviceId, //
};

/// A virtio device id, made of the device type and the vendor.
///
/// Wraps `struct virtio_device_id`. Virtio ids carry no driver data, so tables are built with
/// the `@none` form of [`module_device_table!`](crate::module_device_table), which
/// [`virtio_device_table!`](crate::virtio_device_table) does.
///
/// # Examples
///
/// ```
/// use kernel::virtio::DeviceId;
///
/// // Matches virtio entropy devices (virtio-rng) from any vendor.
/// const RNG: DeviceId = DeviceId::new(kernel::uapi::VIRTIO_ID_RNG);
/// ```
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct DeviceId(bindings::virtio_device_id);

impl DeviceId {
    /// Creates an id matching device type `device` from any vendor.
    pub const fn new(device: u32) -> Self {
        Self(bindings::virtio_device_id {
            device,
            vendor: bindings::VIRTIO_DEV_ANY_ID,
        })
    }
}

// SAFETY: `DeviceId` is a `#[repr(transparent)]` wrapper of `struct virtio_device_id` and adds no
// invariant, so it can be transmuted to `RawType`.
unsafe impl RawDeviceId for DeviceId {
    type RawType = bindings::virtio_device_id;
}

/// The id table of a virtio driver.
pub type IdTable = &'static dyn crate::device_id::IdTable<DeviceId, ()>;

/// Creates a virtio id table and exports it to modpost.
///
/// Modpost turns each entry into a `virtio:dNNNNNNNNvNNNNNNNN` module alias.
///
/// # Examples
///
/// ```
/// kernel::virtio_device_table!(ID_TABLE, [kernel::virtio::DeviceId::new(27)]);
/// ```
#[macro_export]
macro_rules! virtio_device_table {
    ($table_name:ident, [$($id:expr),* $(,)?]) => {
        $crate::module_device_table!("virtio", $crate::virtio::DeviceId, $table_name, @none,
                                     [$($id),*]);
    };
}

#[cfg(CONFIG_RUST_VIRTIO_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_virtio_id)]
mod tests {
    use super::*;
    use core::mem::{
        offset_of,
        size_of, //
    };

    #[test]
    fn id_matches_the_c_layout() {
        // modpost reads the table as `struct virtio_device_id` entries.
        assert_eq!(
            size_of::<DeviceId>(),
            size_of::<bindings::virtio_device_id>()
        );
        assert_eq!(offset_of!(bindings::virtio_device_id, device), 0);
        assert_eq!(offset_of!(bindings::virtio_device_id, vendor), 4);
        let id = DeviceId::new(27);
        assert_eq!((id.0.device, id.0.vendor), (27, 0xffff_ffff));
    }
}
