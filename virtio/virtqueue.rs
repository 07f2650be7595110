// SPDX-License-Identifier: GPL-2.0

//! Virtqueues: typed requests, completion callbacks and teardown.
//!
//! A driver finds its queues with [`Device::find_vqs`], giving a [`Handler`]. Requests are
//! [`Request`] values: heap buffers the device reads and writes, plus driver data. Adding a
//! request to a queue moves it into the queue; [`Locked::get_buf`] moves it back out when the
//! device has used it, and [`Locked::add`] hands it back if it could not be queued. A request
//! is therefore owned either by the driver or by the queue, never both, and cannot be freed
//! while the device may still access it.
//!
//! The queues belong to the device binding, not to the driver. When the device is unbound
//! (after [`Driver::unbind`](super::Driver::unbind) and after the driver's data is dropped)
//! the bus, in this order: refuses new requests and gives those in flight a short grace period
//! to complete normally; resets the device; hands every request still in a queue (used or
//! not) to [`Handler::reclaim`]; calls [`Handler::stopped`]; and deletes the queues. A driver
//! that still holds the [`Virtqueues`] afterwards finds them stopped: adding fails with
//! `ENODEV`. Nothing has to be drained by hand in `remove`, and no callback runs once the
//! handler could be gone.
//!
//! System sleep quiesces the queues the same way, without deleting the [`Virtqueues`]: if the
//! driver accepts [`Driver::freeze`](super::Driver::freeze), the bus runs the steps above (the
//! handler sees [`Handler::stopped`]) and keeps the object published; at
//! [`Driver::restore`](super::Driver::restore) it finds the queues again, empty, before the
//! driver runs. Meanwhile adding fails with `ENODEV`, as after unbind.
//!
//! A request the device had not given back by the reset keeps its buffers out of the
//! allocator for good (the driver still gets its data back): devices are seen to complete
//! requests even after a reset (QEMU finishes a virtio-pmem flush in a worker thread and then
//! writes the response), and memory the device may still write must never be reused.
//!
//! C header: [`include/linux/virtio.h`](srctree/include/linux/virtio.h)

use self::recovery::PciSnapshot;
use super::{
    Device,
    Status, //
};
use crate::{
    alloc::Flags,
    bindings,
    device::{
        Bound,
        Core,
        CoreInternal, //
    },
    error::to_result,
    ffi::c_void,
    new_spinlock_irq,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        CondVar,
        CondVarTimeoutResult,
        SpinLockIrq,
        SpinLockIrqGuard, //
    },
    time::{
        delay::fsleep,
        msecs_to_jiffies,
        Delta,
        Instant,
        Monotonic, //
    },
    workqueue::{
        new_delayed_work,
        DelayedWork, //
    }, //
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

/// A request: a device-readable buffer, a device-writable buffer and driver data.
///
/// The buffers are separate `kmalloc` allocations made once, in [`Request::new`]: they are
/// DMA-safe, never on the stack, and the device-writable one shares no cache line with memory
/// the CPU writes while the device owns the request. Reusing a request costs no allocation.
///
/// # Examples
///
/// ```
/// use kernel::virtio::Request;
///
/// let mut req = Request::new(4, 4, 7u32, GFP_KERNEL)?;
/// req.out_mut().copy_from_slice(&0u32.to_le_bytes());
/// req.input_mut().copy_from_slice(&1u32.to_le_bytes());
/// assert_eq!(*req.data(), 7);
/// assert_eq!(req.input(), &1u32.to_le_bytes());
/// # Ok::<(), Error>(())
/// ```
pub struct Request<D> {
    inner: KBox<RequestInner<D>>,
}

struct RequestInner<D> {
    out: KVec<u8>,
    input: KVec<u8>,
    data: D,
}

impl<D> Request<D> {
    /// Allocates a request with `out_len` device-readable and `in_len` device-writable bytes,
    /// all zero. At least one of them must be non-zero.
    pub fn new(out_len: usize, in_len: usize, data: D, flags: Flags) -> Result<Self> {
        if out_len == 0 && in_len == 0 {
            return Err(EINVAL);
        }
        // The lengths go into scatterlist entries.
        u32::try_from(out_len)?;
        u32::try_from(in_len)?;
        Ok(Self {
            inner: KBox::new(
                RequestInner {
                    out: KVec::from_elem(0u8, out_len, flags)?,
                    input: KVec::from_elem(0u8, in_len, flags)?,
                    data,
                },
                flags,
            )?,
        })
    }

    /// The device-readable bytes.
    pub fn out(&self) -> &[u8] {
        &self.inner.out
    }

    /// The device-readable bytes, to fill in before adding the request.
    pub fn out_mut(&mut self) -> &mut [u8] {
        &mut self.inner.out
    }

    /// The device-writable bytes, as the device left them.
    pub fn input(&self) -> &[u8] {
        &self.inner.input
    }

    /// The device-writable bytes, for instance to preset a failure status.
    pub fn input_mut(&mut self) -> &mut [u8] {
        &mut self.inner.input
    }

    /// The driver data.
    pub fn data(&self) -> &D {
        &self.inner.data
    }

    /// The driver data, mutably.
    pub fn data_mut(&mut self) -> &mut D {
        &mut self.inner.data
    }

    /// Gives up the buffers for good, for a request the device may still write (for instance
    /// one it gave back without an answer, which a host may still answer after a reset): they
    /// are never freed (nor reused); the request keeps its data and gets empty buffers.
    pub fn quarantine(&mut self) {
        core::mem::forget(core::mem::take(&mut self.inner.out));
        core::mem::forget(core::mem::take(&mut self.inner.input));
    }

    fn into_token(self) -> *mut c_void {
        KBox::into_raw(self.inner).cast()
    }

    /// # Safety
    ///
    /// `token` must come from [`Request::into_token`] on a `Request<D>`, and this must be the
    /// only call for it.
    unsafe fn from_token(token: *mut c_void) -> Self {
        Self {
            // SAFETY: By the safety requirements `token` is the pointer `KBox::into_raw`
            // returned for a `RequestInner<D>`, reclaimed only once.
            inner: unsafe { KBox::from_raw(token.cast()) },
        }
    }
}

/// What a driver does with its virtqueues' events.
///
/// The callbacks run with the queues locked (a spinlock, interrupts off). Whatever must not
/// happen under that lock, such as completing another layer's I/O, whose completion may come
/// straight back to the driver, goes into [`Handler::Finished`] instead: the bus hands it to
/// [`Handler::finish`] once the lock is released.
///
/// The callback cannot sleep, and cannot ask to: it gets a [`Locked`], which has no waiting
/// methods (only the [`Guard`] of [`Virtqueues::lock`] has them):
///
/// ```ignore,compile_fail,E0599
/// # use kernel::{new_condvar, prelude::*, sync::CondVar, virtio};
/// #[pin_data]
/// struct MyHandler {
///     #[pin]
///     cond: CondVar,
/// }
///
/// impl virtio::Handler for MyHandler {
///     type Data = ();
///     type State = ();
///     type Finished = ();
///
///     fn callback(&self, queues: &mut virtio::Locked<'_, Self>, _index: usize) {
///         queues.wait(&self.cond); // error[E0599]: no method named `wait` found
///     }
/// }
/// # fn use_it(h: &MyHandler) {}
/// # module! {
/// #     type: Module,
/// #     name: "compile_fail_callback",
/// #     authors: ["virtio-pmem-rs developers"],
/// #     description: "the queue callback cannot sleep",
/// #     license: "GPL",
/// # }
/// # struct Module;
/// # impl kernel::Module for Module {
/// #     fn init(_: &'static ThisModule) -> Result<Self> {
/// #         Ok(Module)
/// #     }
/// # }
/// ```
pub trait Handler: Send + Sync + Sized + 'static {
    /// The driver data of each [`Request`].
    type Data: Send + 'static;

    /// Driver state kept under the queues' lock, beside the queues themselves, for what must
    /// change atomically with adding or taking requests.
    type State: Send + 'static;

    /// What the callbacks move out of the lock, for [`Handler::finish`] to complete after it.
    type Finished: Default + Send;

    /// The device used buffers of queue `index` (a "used buffer notification").
    ///
    /// Runs in interrupt context, with the queues locked: it must not sleep.
    fn callback(&self, queues: &mut Locked<'_, Self>, index: usize);

    /// Takes back a request that was still in a queue when the queues were stopped.
    ///
    /// `used` is the used length if the device had completed the request, `None` if it never
    /// did. The device is reset by then. Runs with the queues locked: it must not sleep. The
    /// default drops the request.
    fn reclaim(
        &self,
        state: &mut Self::State,
        finished: &mut Self::Finished,
        req: Request<Self::Data>,
        used: Option<u32>,
    ) {
        let _ = (state, finished, req, used);
    }

    /// The queues have stopped, after the last [`Handler::reclaim`]: wake up whoever waits for
    /// them. At unbind they never run again; at freeze they may run again after restore (see
    /// [`Driver::restore`](super::Driver::restore)). Runs with the queues locked: it must not
    /// sleep.
    fn stopped(&self, state: &mut Self::State, finished: &mut Self::Finished) {
        let _ = (state, finished);
    }

    /// The device is being reset in place to recover it (see [`Virtqueues::recover`]), after
    /// the last [`Handler::reclaim`]: what was in flight is lost, and the queues run again
    /// once [`Handler::recovered`] reports success. Runs with the queues locked: it must not
    /// sleep. The default takes it as a stop ([`Handler::stopped`]).
    fn reset(&self, state: &mut Self::State, finished: &mut Self::Finished) {
        self.stopped(state, finished);
    }

    /// A recovery asked for with [`Virtqueues::recover`] ended: with `Ok` the queues run again,
    /// empty, and the device is live; with an error they stay stopped (`EOPNOTSUPP`: the
    /// transport cannot be recovered). Runs with the queues locked, in process context: it
    /// must not sleep. The default does nothing.
    fn recovered(&self, queues: &mut Locked<'_, Self>, result: Result) {
        let _ = (queues, result);
    }

    /// Completes what a locked section left in `finished`, with the queues unlocked (but maybe
    /// in interrupt context: it must not sleep). Runs after every locked section, also when it
    /// left nothing. The default drops it.
    fn finish(&self, finished: Self::Finished) {
        drop(finished);
    }
}

/// How long [`Locked::wait_timeout`] sleeps at a time while a signal is pending.
const SIGNAL_BACKOFF_MS: i64 = 10;

/// How long the teardown waits for requests in flight to complete before it resets the device.
const GRACE: Delta = Delta::from_millis(1000);

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

/// The type-erased part of [`Virtqueues`] reached through `vdev->priv`. Each operation takes
/// `vdev->priv`.
#[repr(C)]
struct Header {
    /// Stops the queues for good and releases `vdev->priv` (unbind).
    stop: unsafe fn(*const Header),
    /// Quiesces the queues and deletes them, keeping the object (system sleep).
    suspend: unsafe fn(*const Header),
    /// Finds the queues again after [`Header::suspend`].
    resume: unsafe fn(*const Header) -> Result,
}

/// The virtqueues of a device, with the driver's [`Handler`].
///
/// # Invariants
///
/// - Between [`Device::find_vqs`] and the teardown at unbind, `vdev->priv` holds one strong
///   reference to this object (an `Arc::into_raw` pointer, which is also a pointer to `header`).
///   From the start of probe (which clears it) to the end of remove, nothing else writes
///   `vdev->priv`.
/// - The raw virtqueues in `inner.queues.vqs` exist exactly while it is not empty: it is empty
///   before the queues are live, while the device sleeps and after the queues stopped.
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
    /// The transport's configuration, saved for [`Virtqueues::recover`].
    transport: Option<PciSnapshot>,
    #[pin]
    recovery: DelayedWork<Self>,
}

/// Locked virtqueues: every queue operation needs one. No sleeping while it is held.
///
/// When it is dropped, the lock is released first; then whatever the locked section left in
/// [`Locked::finished`] goes to [`Handler::finish`].
///
/// # Invariants
///
/// `guard` is dropped only in `Drop::drop`.
pub struct Locked<'a, H: Handler> {
    vqs: &'a Virtqueues<H>,
    guard: ManuallyDrop<SpinLockIrqGuard<'a, Inner<H>>>,
    finished: H::Finished,
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

    fn lock_inner(&self) -> Locked<'_, H> {
        // INVARIANT: The guard is dropped only by `Locked::drop`.
        Locked {
            vqs: self,
            guard: ManuallyDrop::new(self.inner.lock()),
            finished: H::Finished::default(),
        }
    }

    /// The driver's handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The device the queues belong to.
    pub fn device(&self) -> &Device {
        &self.vdev
    }

    /// Quiesces the queues: no new requests, a grace period for those in flight (only when
    /// stopping), reset, every request back to the handler, [`Handler::stopped`] (or
    /// [`Handler::reset`]), and the raw queues deleted. Does nothing if they are not live.
    fn quiesce(&self, why: Quiesce) {
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
        // SAFETY: `vdev` is a valid virtio device whose driver is unbinding or freezing.
        unsafe { bindings::virtio_reset_device(vdev) };

        // 3. Every request comes back to the driver, used or not.
        {
            let mut locked = self.lock_inner();
            let finished = &mut locked.finished;
            let inner = &mut **locked.guard;
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
                    // `Request<H::Data>::into_token`, and the queue returns each once.
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
                    let mut req = unsafe { Request::<H::Data>::from_token(token) };
                    // The device may have taken it before the reset and may still write it
                    // (see the module documentation): its buffers are never reused.
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

    /// Stops the queues for good. Runs at most once, at unbind.
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
        // `Virtqueues::recover`); one that runs now finds the device lock taken (unbind holds
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

    /// Finds the queues again after system sleep; they start empty.
    ///
    /// # Safety
    ///
    /// `header` must be the `vdev->priv` pointer of a device whose driver is restoring (the
    /// device lock held, features negotiated again), set by [`Device::find_vqs`] for a
    /// `Virtqueues<H>`.
    unsafe fn resume(header: *const Header) -> Result {
        // SAFETY: By the type invariant `vdev->priv` owns a reference, so the object is valid.
        let vqs = unsafe { &*header.cast::<Self>() };
        if !vqs.inner.lock().queues.vqs.is_empty() {
            return Ok(());
        }
        // SAFETY: The device has no queues (type invariant: `vqs` is empty), and the driver
        // is restoring it.
        let found = unsafe { find_raw::<H>(&vqs.vdev, &vqs.names) }?;
        let mut inner = vqs.inner.lock();
        inner.queues.vqs = found;
        inner.queues.in_flight = 0;
        inner.queues.stopping = false;
        Ok(())
    }

    /// The used-buffer callback of every queue made for `Virtqueues<H>`.
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

impl<'a, H: Handler> Locked<'a, H> {
    /// Whether the queues run: not yet inside [`Device::find_vqs`], not while the device
    /// sleeps (from freeze to restore), and never again once stopped at unbind.
    pub fn is_live(&self) -> bool {
        !self.guard.queues.vqs.is_empty()
    }

    /// Number of queues, or zero while they do not run (see [`Locked::is_live`]).
    pub fn len(&self) -> usize {
        self.guard.queues.vqs.len()
    }

    /// Whether the queues do not run (see [`Locked::is_live`]).
    pub fn is_empty(&self) -> bool {
        !self.is_live()
    }

    /// Whether the queues are being stopped, or do not run.
    fn is_stopping_or_dead(&self) -> bool {
        self.guard.queues.stopping || !self.is_live()
    }

    /// Asks for the device to be recovered, as [`Virtqueues::recover`] does. The check and the
    /// queueing happen under the lock, which orders them with the teardown (see
    /// `Virtqueues::stop`).
    pub fn recover(&self) {
        if !self.is_stopping_or_dead() {
            self.vqs.enqueue_recovery();
        }
    }

    /// The driver state kept under the lock.
    pub fn state(&mut self) -> &mut H::State {
        // Not `self.guard.state`: that is the guard's own lock state.
        &mut (**self.guard).state
    }

    /// The driver's handler.
    pub fn handler(&self) -> &'a H {
        &self.vqs.handler
    }

    /// The device the queues belong to.
    pub fn device(&self) -> &'a Device {
        &self.vqs.vdev
    }

    /// What the locked section hands to [`Handler::finish`] once the lock is released.
    pub fn finished(&mut self) -> &mut H::Finished {
        &mut self.finished
    }

    /// The device status, while the queues are live and not being stopped; `None` otherwise,
    /// and on transports whose status read may sleep (anything but virtio-pci and
    /// virtio-mmio: virtio-ccw runs a channel program, vDPA devices may take a mutex).
    ///
    /// Live queues mean the driver is still bound, so the transport is still mapped. While the
    /// bus stops them (unbind, freeze) it resets the device, whose status then reads 0.
    pub fn status(&self) -> Option<Status> {
        if self.guard.queues.stopping || !self.is_live() {
            return None;
        }
        let dev = self.vqs.vdev.as_raw().cast::<Device<Bound>>();
        // SAFETY: The queues are live, so the device is bound to the driver that made them
        // (they stop at unbind, under this lock, before the binding ends); `Device` is a
        // transparent wrapper, whatever its context.
        let dev = unsafe { &*dev };
        dev.status_never_sleeps().then(|| dev.status())
    }
}

impl<H: Handler> Guard<'_, H> {
    /// Sleeps on `cond` with the queues unlocked, relocking them before returning.
    ///
    /// The wait is not interruptible; wake-ups may be spurious, so check the condition again.
    /// [`Handler::stopped`] is the place to wake everyone at teardown.
    pub fn wait(&mut self, cond: &CondVar) {
        cond.wait(&mut *self.0.guard);
    }

    /// Whether the system is going to sleep and has asked this task to freeze (with a signal,
    /// as it asks user tasks): a caller that waits for the device in a loop should stop
    /// waiting and return, as the task cannot freeze inside the loop and would make the system
    /// sleep fail. Kernel threads are not asked with a signal, and get `false`.
    pub fn freezing(&self) -> bool {
        let task = crate::current!();
        // SAFETY: `task` is the current task, valid while it runs.
        task.signal_pending() && unsafe { bindings::freezing(task.as_ptr()) }
    }

    /// Sleeps on `cond` for at most `timeout` with the queues unlocked, relocking them before
    /// returning; returns `false` if the time ran out.
    ///
    /// The sleep is interruptible, so a long one is not reported as a hung task; while a
    /// signal is pending it becomes a short uninterruptible sleep instead, so callers that loop
    /// on it do not spin. Wake-ups may be spurious, so check the condition again.
    pub fn wait_timeout(&mut self, cond: &CondVar, timeout: Delta) -> bool {
        let ms = u32::try_from(timeout.as_millis_ceil()).unwrap_or(u32::MAX);
        match cond.wait_interruptible_timeout(&mut *self.0.guard, msecs_to_jiffies(ms)) {
            CondVarTimeoutResult::Timeout => false,
            CondVarTimeoutResult::Woken { .. } => true,
            CondVarTimeoutResult::Signal { .. } => {
                self.0
                    .guard
                    .do_unlocked(|| fsleep(Delta::from_millis(SIGNAL_BACKOFF_MS)));
                true
            }
        }
    }
}

impl<'a, H: Handler> Locked<'a, H> {
    fn vq(&self, index: usize) -> Result<*mut bindings::virtqueue> {
        self.guard.queues.vqs.get(index).copied().ok_or(ENODEV)
    }

    /// Adds `req` to queue `index`: the device reads [`Request::out`] and writes
    /// [`Request::input`]. Returns the request with the error if it was not added: `ENOSPC`
    /// when the queue is full (normal: retry once the device used buffers), `ENODEV` when the
    /// queues are stopping or stopped or `index` is out of range, `EINVAL` for a request
    /// without buffers, `EIO` when the queue is broken.
    ///
    /// The device is told only on [`Locked::kick`].
    pub fn add(
        &mut self,
        index: usize,
        req: Request<H::Data>,
    ) -> core::result::Result<(), (Request<H::Data>, Error)> {
        let vq = match self.vq(index) {
            Ok(_) if self.guard.queues.stopping => return Err((req, ENODEV)),
            Ok(_) if req.inner.out.is_empty() && req.inner.input.is_empty() => {
                return Err((req, EINVAL))
            }
            Ok(vq) => vq,
            Err(e) => return Err((req, e)),
        };
        let mut out = MaybeUninit::<bindings::scatterlist>::uninit();
        let mut input = MaybeUninit::<bindings::scatterlist>::uninit();
        let mut sgs = [ptr::null_mut::<bindings::scatterlist>(); 2];
        // Device-readable entries first, then device-writable ones: `n` counts each kind.
        let mut n = [0u32; 2];
        let mut nsg = 0;
        for (i, (sg, buf)) in [(&mut out, &req.inner.out), (&mut input, &req.inner.input)]
            .into_iter()
            .enumerate()
        {
            if buf.is_empty() {
                continue;
            }
            // SAFETY: `sg` is valid for writes; `buf` is a live `kmalloc` allocation of that
            // length (checked to fit in `u32` by `Request::new`), in the linear map.
            unsafe {
                bindings::sg_init_one(sg.as_mut_ptr(), buf.as_ptr().cast(), buf.len() as u32)
            };
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

    /// Tells the device about added requests. Returns `false` if the queue is broken, gone, or
    /// being stopped: no notification may reach a device that is being reset.
    pub fn kick(&mut self, index: usize) -> bool {
        match self.vq(index) {
            Ok(_) if self.guard.queues.stopping => false,
            // SAFETY: `vq` is live and locked.
            Ok(vq) => unsafe { bindings::virtqueue_kick(vq) },
            Err(_) => false,
        }
    }

    /// Takes the next request the device used from queue `index`, with the number of bytes the
    /// device says it wrote, capped at the length of [`Request::input`].
    pub fn get_buf(&mut self, index: usize) -> Option<(Request<H::Data>, u32)> {
        let vq = self.vq(index).ok()?;
        let mut len = 0u32;
        // SAFETY: `vq` is live and locked; `len` is valid for writes.
        let token = unsafe { bindings::virtqueue_get_buf(vq, &mut len) };
        if token.is_null() {
            return None;
        }
        // SAFETY: Only `add` puts tokens in these queues, each from `into_token` on a
        // `Request<H::Data>`, and the queue returns each token once.
        let req = unsafe { Request::<H::Data>::from_token(token) };
        self.guard.queues.in_flight = self.guard.queues.in_flight.saturating_sub(1);
        let len = len.min(req.inner.input.len() as u32);
        Some((req, len))
    }

    /// Whether queue `index` is broken (the device misbehaved or went away); a stopped queue
    /// counts as broken.
    pub fn is_broken(&self, index: usize) -> bool {
        match self.vq(index) {
            // SAFETY: `vq` is live and locked.
            Ok(vq) => unsafe { bindings::virtqueue_is_broken(vq) },
            Err(_) => true,
        }
    }

    /// Asks for used-buffer callbacks on queue `index` again. Returns `false` if buffers were
    /// used meanwhile (poll them with [`Locked::get_buf`]).
    pub fn enable_cb(&mut self, index: usize) -> bool {
        match self.vq(index) {
            // SAFETY: `vq` is live and locked.
            Ok(vq) => unsafe { bindings::virtqueue_enable_cb(vq) },
            Err(_) => true,
        }
    }

    /// Asks the device not to send used-buffer callbacks on queue `index` (a hint).
    pub fn disable_cb(&mut self, index: usize) {
        if let Ok(vq) = self.vq(index) {
            // SAFETY: `vq` is live and locked.
            unsafe { bindings::virtqueue_disable_cb(vq) };
        }
    }
}

impl<'a> Device<Core<'a>> {
    /// Finds the device's virtqueues, one per name in `names`, and publishes them with the
    /// driver's `handler` and locked `state`.
    ///
    /// A device has at most one set of queues per binding (`EBUSY` otherwise). The queues stop
    /// at unbind, as the [module documentation](self) describes.
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

        vqs.inner.lock().queues.vqs = found;
        Ok(vqs)
    }
}

/// Makes one queue per name with the transport, each calling back into `Virtqueues<H>`.
///
/// # Safety
///
/// `vdev` must have no queues, its features must be final, and its driver must be probing or
/// restoring it (the device lock held), with `vdev->priv` pointing to the `Virtqueues<H>` the
/// queues will belong to.
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

/// The `Virtqueues` header published in `vdev->priv`, if the binding has queues.
fn header(dev: &Device<CoreInternal<'_>>) -> Option<*const Header> {
    // SAFETY: `dev` is valid; `priv` is only written in Core context, as here.
    let header = unsafe { (*dev.as_raw()).priv_ }
        .cast::<Header>()
        .cast_const();
    (!header.is_null()).then_some(header)
}

/// Quiesces the queues of `dev`, if it has any, for system sleep. Called at freeze, after the
/// driver accepted it.
pub(super) fn suspend(dev: &Device<CoreInternal<'_>>) {
    if let Some(header) = header(dev) {
        // SAFETY: A non-null `priv` was set by `find_vqs` to a `Virtqueues`, whose first field
        // is its `Header` (`#[repr(C)]`); the driver is freezing, under the device lock.
        unsafe { ((*header).suspend)(header) };
    }
}

/// Finds the queues of `dev` again after system sleep, if it had any. Called at restore,
/// before the driver.
pub(super) fn resume(dev: &Device<CoreInternal<'_>>) -> Result {
    match header(dev) {
        // SAFETY: As in `suspend`; the driver is restoring, under the device lock, and the
        // virtio core negotiated the features again.
        Some(header) => unsafe { ((*header).resume)(header) },
        None => Ok(()),
    }
}

/// Takes `vdev->priv` for this binding. Called at the start of probe.
///
/// What a previous driver left there is not ours: the C virtio drivers leave it pointing to
/// memory they freed at remove.
pub(super) fn claim(dev: &Device<CoreInternal<'_>>) {
    // SAFETY: `dev` is valid; a probing driver owns `priv`, which the previous binding has
    // stopped using (its remove returned).
    unsafe { (*dev.as_raw()).priv_ = ptr::null_mut() };
}

/// Stops the queues of `dev`, if it has any. Called at unbind.
pub(super) fn teardown(dev: &Device<CoreInternal<'_>>) {
    if let Some(header) = header(dev) {
        // SAFETY: A non-null `priv` was set by `find_vqs` to a `Virtqueues`, whose first field
        // is its `Header` (`#[repr(C)]`); the driver is unbinding.
        unsafe { ((*header).stop)(header) };
    }
}

mod recovery;

#[cfg(CONFIG_RUST_VIRTIO_KUNIT_TEST)]
#[kunit_tests(rust_kernel_virtio_virtqueue)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_keeps_buffers_and_data() -> Result {
        let mut req = Request::new(4, 8, 42u64, GFP_KERNEL)?;
        req.out_mut().copy_from_slice(&[1, 2, 3, 4]);
        req.input_mut()[7] = 9;
        let (out, input) = (req.out().as_ptr(), req.input().as_ptr());

        let token = req.into_token();
        assert!(!token.is_null());
        // SAFETY: `token` comes from `into_token` on a `Request<u64>`, taken back once.
        let req = unsafe { Request::<u64>::from_token(token) };

        // The same buffers, untouched, and the same data come back.
        assert_eq!(req.out().as_ptr(), out);
        assert_eq!(req.input().as_ptr(), input);
        assert_eq!(req.out(), &[1, 2, 3, 4]);
        assert_eq!(req.input()[7], 9);
        assert_eq!(*req.data(), 42);
        Ok(())
    }

    #[test]
    fn quarantine_keeps_data_and_drops_buffers() -> Result {
        let mut req = Request::new(4, 4, 7u32, GFP_KERNEL)?;
        req.quarantine();
        assert!(req.out().is_empty());
        assert!(req.input().is_empty());
        assert_eq!(*req.data(), 7);
        Ok(())
    }

    #[test]
    fn request_needs_a_buffer() {
        assert_eq!(Request::new(0, 0, (), GFP_KERNEL).err(), Some(EINVAL));
        assert!(Request::new(0, 4, (), GFP_KERNEL).is_ok());
        assert!(Request::new(4, 0, (), GFP_KERNEL).is_ok());
    }
}
