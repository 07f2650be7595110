// SPDX-License-Identifier: GPL-2.0

//! Virtqueues: typed requests, completion callbacks and teardown.
//!
//! - [`Virtqueues`] (here): the queues of a binding and how they go away;
//! - [`Request`] (`request.rs`): the buffers of a request and its driver data;
//! - [`Handler`] (`handler.rs`): the driver's callbacks;
//! - [`Locked`] and [`Guard`] (`locked.rs`): the queue operations, under the lock;
//! - `lifecycle.rs`: finding the queues, their interrupt callback, and stopping them at
//!   unbind and system sleep;
//! - `recovery.rs`: resetting a device that stopped answering, in place.
//!
//! C header: [`include/linux/virtio.h`](srctree/include/linux/virtio.h)

use self::recovery::PciSnapshot;
use super::Device;
use crate::{
    bindings,
    prelude::*,
    sync::{
        aref::ARef,
        SpinLockIrq, //
    },
    workqueue::DelayedWork, //
};

mod handler;
mod lifecycle;
mod locked;
mod recovery;
mod request;

pub use self::handler::Handler;
pub use self::locked::{
    Guard,
    Locked, //
};
pub use self::request::Request;

pub(super) use self::lifecycle::{
    claim,
    resume,
    suspend,
    teardown, //
};

/// The raw queues, only reachable under the lock.
struct Queues {
    /// The queues `find_vqs` made; emptied when the queues are stopped.
    vqs: KVec<*mut bindings::virtqueue>,
    /// Requests added and not yet taken back with `get_buf`.
    in_flight: usize,
    /// The teardown began: no new request may be added.
    stopping: bool,
}

// SAFETY: The raw queue pointers are only used under the `SpinLockIrq` that contains them, which
// serialises every virtqueue operation, from whichever thread holds it.
unsafe impl Send for Queues {}

/// What the lock of [`Virtqueues`] protects: the raw queues and the driver's state.
struct Inner<H: Handler> {
    queues: Queues,
    state: H::State,
}

// The state is handed over by value and only ever reached through `&mut`: nothing in `Inner`
// relies on staying pinned, so the lock guard can give mutable access to it.
impl<H: Handler> Unpin for Inner<H> {}

/// Why the queues are quiesced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quiesce {
    /// Unbind or freeze: requests in flight get a grace period, then [`Handler::stopped`].
    Stop,
    /// Recovery of a device that does not answer: no grace period, then [`Handler::reset`].
    Reset,
}

/// The type-erased part of [`Virtqueues`] reached through `vdev->priv`.
///
/// Each operation takes `vdev->priv`.
#[repr(C)]
struct Header {
    /// Stops the queues for good and releases `vdev->priv` (unbind).
    stop: unsafe fn(*const Header),
    /// Quiesces the queues and deletes them, keeping the object (system sleep).
    suspend: unsafe fn(*const Header),
    /// Finds the queues again after they were quiesced, empty.
    resume: unsafe fn(*const Header) -> Result,
}

/// The virtqueues of a device, with the driver's [`Handler`].
///
/// A driver finds its queues with [`Device::find_vqs`], giving a [`Handler`]. Requests are
/// [`Request`] values: heap buffers the device reads and writes, plus driver data. Adding a
/// request to a queue moves it into the queue; [`Locked::get_buf`] moves it back out when the
/// device has used it, and [`Locked::add`] hands it back if it could not be queued. A request
/// is therefore owned either by the driver or by the queue, never both, and cannot be freed
/// while the device may still access it.
///
/// The queues belong to the device binding, not to the driver. When the device is unbound
/// (after [`Driver::unbind`](super::Driver::unbind) and after the driver's data is dropped)
/// the bus, in this order: refuses new requests and gives those in flight a short grace period
/// to complete normally; resets the device; hands every request still in a queue (used or
/// not) to [`Handler::reclaim`]; calls [`Handler::stopped`]; and deletes the queues. A driver
/// that still holds the [`Virtqueues`] afterwards finds them stopped: adding fails with
/// `ENODEV`. Nothing has to be drained by hand in `remove`, and no callback runs once the
/// handler could be gone.
///
/// System sleep quiesces the queues the same way, without deleting the [`Virtqueues`]: if the
/// driver accepts [`Driver::freeze`](super::Driver::freeze), the bus runs the steps above (the
/// handler sees [`Handler::stopped`]) and keeps the object published; at
/// [`Driver::restore`](super::Driver::restore) it finds the queues again, empty, before the
/// driver runs. Meanwhile adding fails with `ENODEV`, as after unbind.
///
/// A request the device had not given back by the reset keeps its buffers out of the
/// allocator for good (the driver still gets its data back): devices are seen to complete
/// requests even after a reset (QEMU finishes a virtio-pmem flush in a worker thread and then
/// writes the response), and memory the device may still write must never be reused.
///
/// # Invariants
///
/// - Between [`Device::find_vqs`] and the teardown at unbind, `vdev->priv` holds one strong
///   reference to this object (an `Arc::into_raw` pointer, which is also a pointer to `header`).
///   From the start of probe (which clears it) to the end of remove, nothing else writes
///   `vdev->priv`.
/// - The raw virtqueues in `inner.queues.vqs` exist exactly while it is not empty: it is empty
///   before the queues are live, while the device sleeps or recovers, and after the queues
///   stopped.
/// - `names` has one name per queue, as given to [`Device::find_vqs`].
/// - `recovery` is neither pending nor running once the queues stopped at unbind.
#[repr(C)]
#[pin_data]
pub struct Virtqueues<H: Handler> {
    header: Header,
    vdev: ARef<Device>,
    names: KVec<&'static CStr>,
    #[pin]
    inner: SpinLockIrq<Inner<H>>,
    #[pin]
    handler: H,
    /// The transport's configuration, saved for [`Locked::recover`].
    transport: Option<PciSnapshot>,
    #[pin]
    recovery: DelayedWork<Self>,
}

impl<H: Handler> Virtqueues<H> {
    /// Returns the device the queues belong to.
    fn device(&self) -> &Device {
        &self.vdev
    }
}
