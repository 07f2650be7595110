// SPDX-License-Identifier: GPL-2.0

//! Abstractions for the virtio bus.
//!
//! A virtio driver implements [`Driver`] and registers with
//! [`module_virtio_driver!`](crate::module_virtio_driver). The bus negotiates the features in
//! [`Driver::FEATURES`], lets [`Driver::validate`] withdraw some, then calls [`Driver::probe`].
//! [`Driver::ATTRIBUTES`] adds sysfs attributes to bound devices.
//!
//! The driver reads its configuration with [`Device::read_config`].
//!
//! It finds its queues with [`Device::find_vqs`]; the queues belong to the binding and are
//! stopped by the bus at unbind (see [`Virtqueues`]).
//!
//! Drivers that implement [`Driver::freeze`] and [`Driver::restore`] support system sleep.
//!
//! C headers: [`include/linux/virtio.h`](srctree/include/linux/virtio.h),
//! [`include/linux/virtio_config.h`](srctree/include/linux/virtio_config.h)

mod config;
mod device;
mod driver;
mod id;
mod virtqueue;

pub use self::config::{
    ConfigLayout,
    ConfigReader,
    ShmRegion, //
};
pub use self::device::{
    Device,
    Features,
    Status,
    StatusBit, //
};
pub use self::driver::{
    Adapter,
    Driver, //
};
pub use self::id::{
    DeviceId,
    IdTable, //
};
pub use self::virtqueue::{
    Guard,
    Handler,
    Locked,
    Request,
    Virtqueues, //
};
