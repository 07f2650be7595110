// SPDX-License-Identifier: GPL-2.0

//! Locked virtqueues: [`Locked`] for every queue operation, [`Guard`] to wait as well.

use super::{
    Handler,
    Inner,
    Request,
    Virtqueues, //
};
use crate::{
    bindings,
    device::Bound,
    prelude::*,
    sync::{
        CondVar,
        CondVarTimeoutResult,
        SpinLockIrqGuard, //
    },
    time::{
        msecs_to_jiffies,
        Delta, //
    },
    virtio::{
        Device,
        Status, //
    },
};
use core::{
    mem::{
        ManuallyDrop,
        MaybeUninit, //
    },
    ops::{
        Deref,
        DerefMut, //
    },
    ptr, //
};

/// Locked virtqueues, which every queue operation needs.
///
/// No sleeping while it is held.
///
/// When it is dropped, the lock is released first; then whatever the locked section left in
/// [`Locked::finished`] goes to [`Handler::finish`].
///
/// # Invariants
///
/// `guard` is dropped only in `Drop::drop`.
pub struct Locked<'a, H: Handler> {
    pub(super) vqs: &'a Virtqueues<H>,
    pub(super) guard: ManuallyDrop<SpinLockIrqGuard<'a, Inner<H>>>,
    pub(super) finished: H::Finished,
}

impl<H: Handler> Drop for Locked<'_, H> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `guard` has not been dropped, and it is not used again.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        self.vqs.handler.finish(core::mem::take(&mut self.finished));
    }
}

/// The virtqueues locked by a caller in process context: [`Locked`], plus waiting.
pub struct Guard<'a, H: Handler>(Locked<'a, H>);

impl<'a, H: Handler> Deref for Guard<'a, H> {
    type Target = Locked<'a, H>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<H: Handler> DerefMut for Guard<'_, H> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<H: Handler> Virtqueues<H> {
    /// Locks the queues (and the driver state beside them), disabling interrupts.
    pub fn lock(&self) -> Guard<'_, H> {
        Guard(self.lock_inner())
    }

    /// Locks the queues for a section that cannot wait (the callbacks, the teardown).
    pub(super) fn lock_inner(&self) -> Locked<'_, H> {
        // INVARIANT: The guard is dropped only by `Locked::drop`.
        Locked {
            vqs: self,
            guard: ManuallyDrop::new(self.inner.lock()),
            finished: H::Finished::default(),
        }
    }
}

impl<'a, H: Handler> Locked<'a, H> {
    /// Returns whether the queues run.
    ///
    /// They do not run yet inside [`Device::find_vqs`], nor while the device sleeps (from
    /// freeze to restore) or recovers, and never again once stopped at unbind.
    pub fn is_live(&self) -> bool {
        !self.guard.queues.vqs.is_empty()
    }

    /// Returns whether the queues are being stopped, or do not run.
    pub(super) fn is_stopping_or_dead(&self) -> bool {
        self.guard.queues.stopping || !self.is_live()
    }

    /// Asks for the device to be recovered in place.
    ///
    /// A work item writes back the PCI function's configuration saved when the queues were
    /// found, quiesces the queues (requests come back through [`Handler::reclaim`], then
    /// [`Handler::reset`]), and has the virtio core reset and re-initialise the device with the
    /// same features, the queues found again. The result reaches [`Handler::recovered`];
    /// `EOPNOTSUPP` on transports other than virtio-pci. Does nothing while the queues do not
    /// run (see [`Locked::is_live`]), and if a recovery is already pending.
    ///
    /// The check and the queueing happen under the lock, which orders them with the teardown
    /// (see `Virtqueues::stop`).
    pub fn recover(&self) {
        if !self.is_stopping_or_dead() {
            self.vqs.enqueue_recovery();
        }
    }

    /// Returns the driver state kept under the lock.
    pub fn state(&mut self) -> &mut H::State {
        // Not `self.guard.state`: that is the guard's own lock state.
        &mut (**self.guard).state
    }

    /// Returns the driver's handler.
    pub fn handler(&self) -> &'a H {
        &self.vqs.handler
    }

    /// Returns the device the queues belong to.
    pub fn device(&self) -> &'a Device {
        &self.vqs.vdev
    }

    /// Returns what the locked section hands to [`Handler::finish`] once the lock is released.
    pub fn finished(&mut self) -> &mut H::Finished {
        &mut self.finished
    }

    /// Returns the device status, while the queues are live and not being stopped.
    ///
    /// Returns `None` otherwise, and on transports whose status read may sleep (anything but
    /// virtio-pci and virtio-mmio: virtio-ccw runs a channel program, vDPA devices may take a
    /// mutex).
    ///
    /// Live queues mean the driver is still bound, so the transport is still mapped. While the
    /// bus stops them (unbind, freeze, recovery) it resets the device, whose status then reads 0.
    pub fn status(&self) -> Option<Status> {
        if self.guard.queues.stopping || !self.is_live() {
            return None;
        }
        let dev = self.vqs.vdev.as_raw().cast::<Device<Bound>>();
        // SAFETY: The queues are live, so the device is bound to the driver that made them
        // (they stop at unbind, under this lock, before the binding ends); `Device` is a
        // transparent wrapper, whatever its context.
        //
        // INVARIANT: The device is valid: the queues hold a reference to it.
        let dev = unsafe { &*dev };
        dev.status_never_sleeps().then(|| dev.status())
    }

    /// Returns raw queue `index`, if the queues run.
    fn vq(&self, index: usize) -> Result<*mut bindings::virtqueue> {
        self.guard.queues.vqs.get(index).copied().ok_or(ENODEV)
    }

    /// Adds `req` to queue `index`: the device reads [`Request::out`] and writes
    /// [`Request::input`].
    ///
    /// Returns the request with the error if it was not added: `ENOSPC` when the queue is full
    /// (normal: retry once the device used buffers), `ENODEV` when the queues are stopping or
    /// stopped or `index` is out of range, `EINVAL` for a request without buffers, `EIO` when
    /// the queue is broken.
    ///
    /// The device is told only on [`Locked::kick`].
    pub fn add(
        &mut self,
        index: usize,
        req: Request,
    ) -> core::result::Result<(), (Request, Error)> {
        let vq = match self.vq(index) {
            Ok(_) if self.guard.queues.stopping => return Err((req, ENODEV)),
            Ok(_) if req.out().is_empty() && req.input().is_empty() => return Err((req, EINVAL)),
            Ok(vq) => vq,
            Err(e) => return Err((req, e)),
        };
        let mut out = MaybeUninit::<bindings::scatterlist>::uninit();
        let mut input = MaybeUninit::<bindings::scatterlist>::uninit();
        let mut sgs = [ptr::null_mut::<bindings::scatterlist>(); 2];
        // Device-readable entries first, then device-writable ones: `n` counts each kind.
        let mut n = [0u32; 2];
        let mut nsg = 0;
        for (i, (sg, buf)) in [(&mut out, req.out()), (&mut input, req.input())]
            .into_iter()
            .enumerate()
        {
            if buf.is_empty() {
                continue;
            }
            // CAST: `Request::new` checked that the length fits in a `u32`.
            let len = buf.len() as u32;
            // SAFETY: `sg` is valid for writes; `buf` is a live `kmalloc` allocation of `len`
            // bytes, in the linear map.
            unsafe { bindings::sg_init_one(sg.as_mut_ptr(), buf.as_ptr().cast(), len) };
            sgs[nsg] = sg.as_mut_ptr();
            nsg += 1;
            n[i] = 1;
        }
        let (n_out, n_in) = (n[0], n[1]);
        let token = req.into_token();
        // SAFETY: `vq` is live and locked; `sgs` holds `n_out + n_in` initialised entries
        // describing the request's buffers, which stay allocated and untouched by the CPU until
        // the token comes back from `get_buf` or teardown; `token` is non-null.
        let ret = unsafe {
            bindings::virtqueue_add_sgs(
                vq,
                sgs.as_mut_ptr(),
                n_out,
                n_in,
                token,
                bindings::GFP_ATOMIC,
            )
        };
        if ret != 0 {
            // SAFETY: The queue did not take the token, so it is still ours, from `into_token`.
            return Err((
                unsafe { Request::from_token(token) },
                Error::from_errno(ret),
            ));
        }
        self.guard.queues.in_flight += 1;
        Ok(())
    }

    /// Tells the device about added requests.
    ///
    /// Returns `false` if the queue is broken, gone, or being stopped: no notification may
    /// reach a device that is being reset.
    pub fn kick(&mut self, index: usize) -> bool {
        match self.vq(index) {
            Ok(_) if self.guard.queues.stopping => false,
            // SAFETY: `vq` is live and locked.
            Ok(vq) => unsafe { bindings::virtqueue_kick(vq) },
            Err(_) => false,
        }
    }

    /// Takes the next request the device used from queue `index`.
    ///
    /// Returns it with the number of bytes the device says it wrote, capped at the length of
    /// [`Request::input`].
    pub fn get_buf(&mut self, index: usize) -> Option<(Request, u32)> {
        let vq = self.vq(index).ok()?;
        let mut len = 0u32;
        // SAFETY: `vq` is live and locked; `len` is valid for writes.
        let token = unsafe { bindings::virtqueue_get_buf(vq, &mut len) };
        if token.is_null() {
            return None;
        }
        // SAFETY: Only `add` puts tokens in these queues, each from `into_token` on a
        // `Request`, and the queue returns each token once.
        let req = unsafe { Request::from_token(token) };
        self.guard.queues.in_flight = self.guard.queues.in_flight.saturating_sub(1);
        // CAST: `Request::new` checked that the length fits in a `u32`.
        let len = len.min(req.input().len() as u32);
        Some((req, len))
    }

    /// Returns whether queue `index` is broken (the device misbehaved or went away).
    ///
    /// A stopped queue counts as broken.
    pub fn is_broken(&self, index: usize) -> bool {
        match self.vq(index) {
            // SAFETY: `vq` is live and locked.
            Ok(vq) => unsafe { bindings::virtqueue_is_broken(vq) },
            Err(_) => true,
        }
    }
}

impl<H: Handler> Guard<'_, H> {
    /// Returns whether the system is going to sleep and has asked this task to freeze.
    ///
    /// The system asks with a signal, as it asks user tasks: a caller that waits for the device
    /// in a loop should stop waiting and return, as the task cannot freeze inside the loop and
    /// would make the system sleep fail. Kernel threads are not asked with a signal, and get
    /// `false`.
    pub fn freezing(&self) -> bool {
        let task = crate::current!();
        // SAFETY: `task` is the current task, valid while it runs.
        task.signal_pending() && unsafe { bindings::freezing(task.as_ptr()) }
    }

    /// Sleeps on `cond` for at most `timeout` with the queues unlocked, relocking them before
    /// returning.
    ///
    /// Returns `false` if the time ran out. The sleep is uninterruptible: a pending signal
    /// does not end it, so callers that loop on it do not spin. Keep `timeout` short (a
    /// second or so) and check [`Guard::freezing`] between sleeps, so that neither the hung
    /// task detector nor the freezer waits on a long one. Wake-ups may be spurious, so check
    /// the condition again.
    pub fn wait_timeout(&mut self, cond: &CondVar, timeout: Delta) -> bool {
        let ms = u32::try_from(timeout.as_millis_ceil()).unwrap_or(u32::MAX);
        !matches!(
            cond.wait_timeout(&mut *self.0.guard, msecs_to_jiffies(ms)),
            CondVarTimeoutResult::Timeout
        )
    }
}
