// SPDX-License-Identifier: GPL-2.0

//! Finding the virtqueues, their interrupt callback, and stopping them at unbind and system
//! sleep.

use super::{
    recovery::PciSnapshot,
    Handler,
    Header,
    Inner,
    Queues,
    Quiesce,
    Request,
    Virtqueues, //
};
use crate::{
    bindings,
    device::{
        Bound,
        Core,
        CoreInternal, //
    },
    error::to_result,
    new_spinlock_irq,
    prelude::*,
    sync::Arc,
    time::{
        delay::fsleep,
        Delta,
        Instant,
        Monotonic, //
    },
    virtio::Device,
    workqueue::{
        new_delayed_work,
        DelayedWork, //
    }, //
};
use core::ptr;

/// How long the teardown waits for requests in flight to complete before it resets the device.
const GRACE: Delta = Delta::from_millis(1000);

impl<H: Handler> Virtqueues<H> {
    /// Quiesces the queues.
    ///
    /// In order: no new requests, a grace period for those in flight (only when stopping),
    /// reset, every request back to the handler, [`Handler::stopped`] (or [`Handler::reset`]),
    /// and the raw queues deleted. Does nothing if they are not live.
    pub(super) fn quiesce(&self, why: Quiesce) {
        let vdev = self.vdev.as_raw();

        // 1. No new requests; those in flight get a grace period to complete normally,
        //    through the callback.
        {
            let mut inner = self.inner.lock();
            inner.queues.stopping = true;
            if inner.queues.vqs.is_empty() {
                return;
            }
        }
        let start = Instant::<Monotonic>::now();
        while why == Quiesce::Stop
            && self.inner.lock().queues.in_flight > 0
            && start.elapsed() < GRACE
        {
            fsleep(Delta::from_millis(1));
        }

        // 2. The device lets go of every buffer; its callbacks are done and no more will run.
        // SAFETY: `vdev` is a valid virtio device being unbound, frozen or recovered.
        unsafe { bindings::virtio_reset_device(vdev) };

        // 3. Every request comes back to the driver, used or not.
        {
            let mut locked = self.lock_inner();
            let finished = &mut locked.finished;
            let inner = &mut **locked.guard;
            // INVARIANT: The raw queues are deleted in step 4, after the lock is released;
            // in between nothing reaches them: `vqs` is empty and the device is reset.
            let queues = core::mem::take(&mut inner.queues.vqs);
            for vq in queues.iter().copied() {
                loop {
                    let mut len = 0u32;
                    // SAFETY: `vq` is a live queue of `vdev`, accessed under the lock.
                    let token = unsafe { bindings::virtqueue_get_buf(vq, &mut len) };
                    if token.is_null() {
                        break;
                    }
                    inner.queues.in_flight = inner.queues.in_flight.saturating_sub(1);
                    // SAFETY: Only `Locked::add` puts tokens in these queues, each from
                    // `Request::into_token`, and the queue returns each once.
                    let req = unsafe { Request::from_token(token) };
                    self.handler
                        .reclaim(&mut inner.state, finished, req, Some(len));
                }
                loop {
                    // SAFETY: As above; the device is reset, so unused buffers can be detached.
                    let token = unsafe { bindings::virtqueue_detach_unused_buf(vq) };
                    if token.is_null() {
                        break;
                    }
                    // SAFETY: As above.
                    let mut req = unsafe { Request::from_token(token) };
                    // The device may have taken it before the reset and may still write it
                    // (see `Virtqueues`): its buffers are never reused.
                    inner.queues.in_flight = inner.queues.in_flight.saturating_sub(1);
                    req.quarantine();
                    dev_warn!(
                        self.device(),
                        "request not given back at reset, buffers kept\n"
                    );
                    self.handler.reclaim(&mut inner.state, finished, req, None);
                }
            }
            inner.queues.in_flight = 0;
            match why {
                Quiesce::Stop => self.handler.stopped(&mut inner.state, finished),
                Quiesce::Reset => self.handler.reset(&mut inner.state, finished),
            }
        }

        // 4. The queues go away, and with them their interrupts.
        if let Some(del_vqs) = self.vdev.ops().del_vqs {
            // SAFETY: The queues were made by `find_vqs` on `vdev`, hold no buffers, and
            // `self.inner` no longer refers to them (type invariant: they existed until now).
            unsafe { del_vqs(vdev) };
        }
    }

    /// Stops the queues for good.
    ///
    /// Runs at most once, at unbind.
    ///
    /// # Safety
    ///
    /// `header` must be the `vdev->priv` pointer of a device whose driver is unbinding, set by
    /// [`Device::find_vqs`] for a `Virtqueues<H>`.
    unsafe fn stop(header: *const Header) {
        let this = header.cast::<Self>();
        // SAFETY: By the type invariant `vdev->priv` owns a reference, so `this` is valid.
        let vqs = unsafe { &*this };
        vqs.quiesce(Quiesce::Stop);

        // Give up the reference `vdev->priv` held; no callback can reach it any more.
        // SAFETY: `vdev` is valid; `priv` is ours (type invariant).
        unsafe { (*vqs.vdev.as_raw()).priv_ = ptr::null_mut() };
        // SAFETY: `this` came from `Arc::into_raw` in `find_vqs`; it is released once, here.
        let vqs = unsafe { Arc::from_raw(this) };
        // INVARIANT: The queues are stopping for good, so nothing queues a recovery again (see
        // `Locked::recover`); one that runs now finds the device lock taken (unbind holds
        // it) and gives up to the cancellation.
        DelayedWork::cancel_sync(&vqs);
    }

    /// Quiesces the queues for system sleep, keeping them published for [`Self::resume`].
    ///
    /// # Safety
    ///
    /// `header` must be the `vdev->priv` pointer of a device whose driver is freezing (the
    /// device lock held), set by [`Device::find_vqs`] for a `Virtqueues<H>`.
    unsafe fn suspend(header: *const Header) {
        // SAFETY: By the type invariant `vdev->priv` owns a reference, so the object is valid.
        unsafe { &*header.cast::<Self>() }.quiesce(Quiesce::Stop);
    }

    /// Finds the queues again after system sleep or a recovery's reset.
    ///
    /// They start empty.
    ///
    /// # Safety
    ///
    /// `header` must be the `vdev->priv` pointer of a device being restored or recovered (the
    /// device lock held, features negotiated again), set by [`Device::find_vqs`] for a
    /// `Virtqueues<H>`.
    unsafe fn resume(header: *const Header) -> Result {
        // SAFETY: By the type invariant `vdev->priv` owns a reference, so the object is valid.
        let vqs = unsafe { &*header.cast::<Self>() };
        if !vqs.inner.lock().queues.vqs.is_empty() {
            return Ok(());
        }
        // SAFETY: The device has no queues (type invariant: `vqs` is empty), and it is being
        // restored or recovered.
        let found = unsafe { find_raw::<H>(&vqs.vdev, &vqs.names) }?;
        let mut inner = vqs.inner.lock();
        // INVARIANT: The queues exist again, and `vqs` lists them.
        inner.queues.vqs = found;
        inner.queues.in_flight = 0;
        inner.queues.stopping = false;
        Ok(())
    }

    /// Handles the used buffer notifications of every queue made for `Virtqueues<H>`.
    extern "C" fn callback(vq: *mut bindings::virtqueue) {
        // SAFETY: The transport calls back with a valid queue of a valid device.
        let (vdev, index) = unsafe { ((*vq).vdev, (*vq).index as usize) };
        // SAFETY: The queue exists, so by the type invariant `vdev->priv` holds a reference to
        // the `Virtqueues<H>` that made it; `stop` deletes the queues, which waits for running
        // callbacks, before releasing that reference.
        let vqs = unsafe { &*(*vdev).priv_.cast::<Self>() };
        let mut locked = vqs.lock_inner();
        // The queues may not be published yet (inside `find_vqs` or `resume`) or already
        // quiesced.
        if index < locked.guard.queues.vqs.len() {
            vqs.handler.callback(&mut locked, index);
        }
    }
}

impl<'a> Device<Core<'a>> {
    /// Finds the device's virtqueues, one per name in `names`, and publishes them with the
    /// driver's `handler` and locked `state`.
    ///
    /// A device has at most one set of queues per binding (`EBUSY` otherwise). The queues stop
    /// at unbind, as [`Virtqueues`] describes.
    pub fn find_vqs<H: Handler, E>(
        &self,
        names: &[&'static CStr],
        handler: impl PinInit<H, E>,
        state: H::State,
    ) -> Result<Arc<Virtqueues<H>>>
    where
        Error: From<E>,
    {
        let vdev = self.as_raw();
        // SAFETY: `vdev` is valid; `priv` is only written in Core context (here and at unbind),
        // under the device lock the caller holds.
        if unsafe { !(*vdev).priv_.is_null() } {
            return Err(EBUSY);
        }
        if names.is_empty() {
            return Err(EINVAL);
        }
        let mut owned_names = KVec::with_capacity(names.len(), GFP_KERNEL)?;
        owned_names.extend_from_slice(names, GFP_KERNEL)?;

        let dev: &Device<Bound> = self;
        let transport = PciSnapshot::take(dev);
        // INVARIANT: No queue exists yet and `inner.queues.vqs` is empty; `names` are the names
        // the queues are found with; `recovery` is idle. `vdev->priv` is set just below.
        let vqs = Arc::pin_init::<Error>(
            try_pin_init!(Virtqueues {
                header: Header {
                    stop: Virtqueues::<H>::stop,
                    suspend: Virtqueues::<H>::suspend,
                    resume: Virtqueues::<H>::resume,
                },
                vdev: dev.as_aref(),
                names: owned_names,
                inner <- new_spinlock_irq!(Inner {
                    queues: Queues {
                        vqs: KVec::new(),
                        in_flight: 0,
                        stopping: false,
                    },
                    state,
                }),
                handler <- handler,
                transport,
                recovery <- new_delayed_work!("virtio::Virtqueues::recovery"),
            }),
            GFP_KERNEL,
        )?;

        // Publish before the queues exist: their callbacks look the handler up here.
        // INVARIANT: `vdev->priv` owns the reference `Arc::into_raw` gives up, until `stop`
        // (or the error path below) takes it back.
        // SAFETY: `priv` is ours (checked null above, Core context).
        unsafe { (*vdev).priv_ = Arc::into_raw(vqs.clone()).cast_mut().cast() };

        // SAFETY: The device has no queues (`priv` was null) and its driver is probing.
        let found = unsafe { find_raw::<H>(self, names) };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                // SAFETY: Set just above from `Arc::into_raw`; no queue exists to call back.
                unsafe {
                    let this = (*vdev).priv_;
                    (*vdev).priv_ = ptr::null_mut();
                    drop(Arc::from_raw(this.cast::<Virtqueues<H>>()));
                }
                return Err(e);
            }
        };

        // INVARIANT: The queues exist now, and `vqs` lists them.
        vqs.inner.lock().queues.vqs = found;
        Ok(vqs)
    }
}

/// Makes one queue per name with the transport, each calling back into `Virtqueues<H>`.
///
/// # Safety
///
/// `vdev` must have no queues, its features must be final, and its driver must be probing,
/// restoring or recovering it (the device lock held), with `vdev->priv` pointing to the
/// `Virtqueues<H>` the queues will belong to.
unsafe fn find_raw<H: Handler>(
    vdev: &Device,
    names: &[&'static CStr],
) -> Result<KVec<*mut bindings::virtqueue>> {
    let find_vqs = vdev.ops().find_vqs.ok_or(ENODEV)?;
    let n = names.len();
    let mut infos = KVec::with_capacity(n, GFP_KERNEL)?;
    for name in names {
        infos.push(
            bindings::virtqueue_info {
                name: name.as_char_ptr(),
                callback: Some(Virtqueues::<H>::callback),
                ctx: false,
            },
            GFP_KERNEL,
        )?;
    }
    let mut found = KVec::from_elem(ptr::null_mut(), n, GFP_KERNEL)?;
    // SAFETY: `vdev` is valid and has no queues (safety requirements); `found` and `infos` hold
    // `n` entries; no interrupt affinity descriptor is passed.
    to_result(unsafe {
        find_vqs(
            vdev.as_raw(),
            u32::try_from(n)?,
            found.as_mut_ptr(),
            infos.as_mut_ptr(),
            ptr::null_mut(),
        )
    })?;
    Ok(found)
}

/// Returns the `Virtqueues` header published in `vdev->priv`, if the binding has queues.
fn header(dev: &Device<CoreInternal<'_>>) -> Option<*const Header> {
    // SAFETY: `dev` is valid; `priv` is only written in Core context, as here.
    let header = unsafe { (*dev.as_raw()).priv_ }
        .cast::<Header>()
        .cast_const();
    (!header.is_null()).then_some(header)
}

/// Quiesces the queues of `dev`, if it has any, for system sleep.
///
/// Called at freeze, after the driver accepted it.
pub(in crate::virtio) fn suspend(dev: &Device<CoreInternal<'_>>) {
    if let Some(header) = header(dev) {
        // SAFETY: A non-null `priv` was set by `find_vqs` to a `Virtqueues`, whose first field
        // is its `Header` (`#[repr(C)]`); the driver is freezing, under the device lock.
        unsafe { ((*header).suspend)(header) };
    }
}

/// Finds the queues of `dev` again after system sleep or a recovery's reset, if it had any.
///
/// Called at restore, before the driver, and when a recovery's reset is done.
pub(in crate::virtio) fn resume(dev: &Device<CoreInternal<'_>>) -> Result {
    match header(dev) {
        // SAFETY: A non-null `priv` was set by `find_vqs` to a `Virtqueues`, whose first field
        // is its `Header` (`#[repr(C)]`); the device is being restored or recovered, under the
        // device lock, and the virtio core negotiated the features again.
        Some(header) => unsafe { ((*header).resume)(header) },
        None => Ok(()),
    }
}

/// Takes `vdev->priv` for this binding.
///
/// Called at the start of probe. What a previous driver left there is not ours: the C virtio
/// drivers leave it pointing to memory they freed at remove.
pub(in crate::virtio) fn claim(dev: &Device<CoreInternal<'_>>) {
    // SAFETY: `dev` is valid; a probing driver owns `priv`, which the previous binding has
    // stopped using (its remove returned).
    unsafe { (*dev.as_raw()).priv_ = ptr::null_mut() };
}

/// Stops the queues of `dev`, if it has any.
///
/// Called at unbind.
pub(in crate::virtio) fn teardown(dev: &Device<CoreInternal<'_>>) {
    if let Some(header) = header(dev) {
        // SAFETY: A non-null `priv` was set by `find_vqs` to a `Virtqueues`, whose first field
        // is its `Header` (`#[repr(C)]`); the driver is unbinding.
        unsafe { ((*header).stop)(header) };
    }
}
