// SPDX-License-Identifier: GPL-2.0

//! Recovery: bringing a device back in place when it stopped answering.
//!
//! A device can lose its state under a bound driver: the host restores the virtual machine in
//! a new process without the device's state (QEMU 10 migrates none for virtio-pmem), or it
//! sits on a request that will never be answered. The binding, and whatever sits on top of it
//! (a mounted file system), must live on, so unbinding is no way out.
//!
//! [`Locked::recover`](super::Locked::recover) brings the device back the way resume from
//! hibernation does, in a work item, with the parent PCI function's lock and the device lock
//! held:
//! 1. it writes back the PCI function's configuration (BARs, command register, MSI-X), as saved
//!    when the queues were found; a copy taken now could already be lost;
//! 2. it quiesces the queues as at unbind, without a grace period: every request comes back
//!    through [`Handler::reclaim`] (one the device still held keeps its buffers out of the
//!    allocator, as the host may still complete it), then the handler sees
//!    [`Handler::reset`];
//! 3. it runs the virtio core's re-initialisation (`virtio_device_reset_done()`): reset,
//!    features, the queues found again, `DRIVER_OK`;
//! 4. it reports the result to [`Handler::recovered`], with the queues locked: the place to send
//!    again what was lost.
//!
//! Only virtio-pci devices can be recovered this way. Elsewhere (virtio-mmio has no saved
//! configuration to write back) [`Handler::recovered`] gets `EOPNOTSUPP` at once.

use super::{
    Handler,
    Virtqueues, //
};
use crate::{
    bindings,
    container_of,
    device::{
        self,
        Bound, //
    },
    error::to_result,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        ArcBorrow, //
    },
    time::Jiffies,
    virtio::Device,
    workqueue::{
        self,
        impl_has_delayed_work,
        WorkItem, //
    }, //
};
use core::ptr::{
    self,
    NonNull, //
};

/// How long a recovery that found a lock taken waits before it tries again, in jiffies.
const RETRY_JIFFIES: Jiffies = 2;

/// The configuration of the PCI function a virtio-pci device sits on, saved while it worked.
///
/// # Invariants
///
/// `pdev` is the `struct pci_dev` that embeds `_parent`, kept alive by the reference `_parent`
/// holds; `state` was returned by `pci_store_saved_state()` for it and is owned here.
pub(super) struct PciSnapshot {
    _parent: ARef<device::Device>,
    pdev: NonNull<bindings::pci_dev>,
    state: NonNull<bindings::pci_saved_state>,
}

// SAFETY: The snapshot is a heap copy plus a counted device reference; every use of the
// function goes through `PciSnapshot::try_lock`, which takes its lock.
unsafe impl Send for PciSnapshot {}

// SAFETY: As above: shared access only reads the pointers.
unsafe impl Sync for PciSnapshot {}

impl PciSnapshot {
    /// Saves the configuration of the PCI function `vdev` sits on.
    ///
    /// Returns `None` on other transports, or if a function reset holds the configuration
    /// right now.
    pub(super) fn take(vdev: &Device<Bound>) -> Option<Self> {
        let parent = vdev.as_ref().parent()?;
        // SAFETY: `parent` is a valid device.
        if !unsafe { bindings::dev_is_pci(parent.as_raw()) } {
            return None;
        }
        // SAFETY: A device on the PCI bus is embedded in a `struct pci_dev`.
        let pdev = unsafe { container_of!(parent.as_raw(), bindings::pci_dev, dev) };
        // A function reset saves and restores the same buffers: keep out of its way.
        // SAFETY: `pdev` is valid while `vdev` (its child) is.
        if !unsafe { bindings::pci_cfg_access_trylock(pdev) } {
            dev_warn!(
                vdev,
                "PCI function busy: no configuration saved for recovery\n"
            );
            return None;
        }
        // SAFETY: `pdev` is valid, and no reset touches its saved state (locked above).
        let state = unsafe {
            bindings::pci_save_state(pdev);
            bindings::pci_store_saved_state(pdev)
        };
        // SAFETY: Locked above.
        unsafe { bindings::pci_cfg_access_unlock(pdev) };
        // INVARIANT: `parent` embeds `pdev`; `state` is a fresh copy for it.
        Some(Self {
            _parent: parent.into(),
            pdev: NonNull::new(pdev)?,
            state: NonNull::new(state)?,
        })
    }

    /// Locks the PCI function (its device lock and configuration access).
    ///
    /// Fails with `EAGAIN` if someone holds it.
    fn try_lock(&self) -> Result<PciLock<'_>> {
        // SAFETY: `pdev` is valid (type invariant).
        if unsafe { bindings::pci_dev_trylock(self.pdev.as_ptr()) } == 0 {
            return Err(EAGAIN);
        }
        // INVARIANT: The function is locked, by this caller.
        Ok(PciLock(self))
    }

    /// Writes the saved configuration back to the function.
    fn restore(&self, _lock: &PciLock<'_>) -> Result {
        // SAFETY: `pdev` is valid and locked; `state` is a saved state made for it, which
        // `pci_load_saved_state()` copies without taking it over.
        to_result(unsafe {
            bindings::pci_load_saved_state(self.pdev.as_ptr(), self.state.as_ptr())
        })?;
        // SAFETY: As above; the load marked the state saved.
        unsafe { bindings::pci_restore_state(self.pdev.as_ptr()) };
        Ok(())
    }
}

impl Drop for PciSnapshot {
    fn drop(&mut self) {
        // SAFETY: `state` is ours (type invariant); `pci_store_saved_state()` allocated it
        // with `kzalloc()`.
        unsafe { bindings::kfree(self.state.as_ptr().cast()) };
    }
}

/// The lock of a PCI function, taken by [`PciSnapshot::try_lock`].
///
/// # Invariants
///
/// The function of the snapshot is locked (`pci_dev_trylock()`) until this is dropped.
struct PciLock<'a>(&'a PciSnapshot);

impl Drop for PciLock<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this valid function is locked, by this guard.
        unsafe { bindings::pci_dev_unlock(self.0.pdev.as_ptr()) };
    }
}

impl_has_delayed_work! {
    impl{H: Handler} HasDelayedWork<Self> for Virtqueues<H> { self.recovery }
}

impl<H: Handler> WorkItem for Virtqueues<H> {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let result = match this.try_recover() {
            Err(e) if e == EAGAIN => {
                // Someone holds a lock (a reset, a sysfs access, unbind, which cancels this
                // work): try again shortly.
                let _ = workqueue::system_long().enqueue_delayed(this, RETRY_JIFFIES);
                return;
            }
            // Not bound, sleeping or stopping: nothing to recover now.
            Err(e) if e == ENODEV => return,
            result => result,
        };
        let mut queues = this.lock_inner();
        this.handler.recovered(&mut queues, result);
    }
}

impl<H: Handler> Virtqueues<H> {
    /// Queues the recovery work.
    ///
    /// Called with the queues locked and not stopping: the teardown at unbind marks them stopping
    /// under the lock before it cancels the work, so no work is queued after that cancellation.
    pub(super) fn enqueue_recovery(&self) {
        // SAFETY: Every `Virtqueues` lives in an `Arc` (only `Device::find_vqs` makes them).
        let this: Arc<Self> = unsafe { ArcBorrow::from_raw(self) }.into();
        // Already pending: that recovery will do.
        let _ = workqueue::system_long().enqueue_delayed(this, 0);
    }

    /// Runs a recovery; fails with `EAGAIN` if a lock it needs is taken.
    fn try_recover(&self) -> Result {
        let snapshot = self.transport.as_ref().ok_or(EOPNOTSUPP)?;
        let pci = snapshot.try_lock()?;
        let vdev = self.vdev.as_raw();
        let dev: &crate::device::Device = (*self.vdev).as_ref();
        let _lock = dev.try_lock().ok_or(EAGAIN)?;
        // With the device lock, nothing binds, unbinds, freezes or restores the device. Still
        // bound to these queues? (`priv` is only written under this lock.)
        // SAFETY: `vdev` is valid and locked.
        let ours = unsafe { (*vdev).priv_ } == ptr::from_ref(self).cast_mut().cast();
        if !ours || self.lock_inner().is_stopping_or_dead() {
            return Err(ENODEV);
        }
        snapshot.restore(&pci)?;
        self.quiesce(super::Quiesce::Reset);
        // SAFETY: `vdev` is bound to the driver that made these queues (checked above, under
        // the device lock): the core resets it, negotiates the same features and calls the
        // adapter's `reset_done`, which finds the queues again (`Virtqueues::resume`).
        to_result(unsafe { bindings::virtio_device_reset_done(vdev) })
    }
}
