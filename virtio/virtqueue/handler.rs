// SPDX-License-Identifier: GPL-2.0

//! The driver's side of the virtqueues: [`Handler`].

use super::{
    Locked,
    Request, //
};
use crate::prelude::*;

/// What a driver does with its virtqueues' events.
///
/// The callbacks run with the queues locked (a spinlock, interrupts off). Whatever must not
/// happen under that lock, such as completing another layer's I/O, whose completion may come
/// straight back to the driver, goes into [`Handler::Finished`] instead: the bus hands it to
/// [`Handler::finish`] once the lock is released.
///
/// The callback cannot sleep, and cannot ask to: it gets a [`Locked`], which has no waiting
/// methods (only the [`Guard`](super::Guard) of [`Virtqueues::lock`](super::Virtqueues::lock)
/// has them):
///
/// ```ignore,compile_fail,E0599
/// # use kernel::{new_condvar, prelude::*, sync::CondVar, time::Delta, virtio};
/// #[pin_data]
/// struct MyHandler {
///     #[pin]
///     cond: CondVar,
/// }
///
/// impl virtio::Handler for MyHandler {
///     type State = ();
///     type Finished = ();
///
///     fn callback(&self, queues: &mut virtio::Locked<'_, Self>, _index: usize) {
///         let ten_ms = Delta::from_millis(10);
///         queues.wait_timeout(&self.cond, ten_ms); // error[E0599]: no such method
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
    /// Driver state kept under the queues' lock, beside the queues themselves, for what must
    /// change atomically with adding or taking requests.
    type State: Send + 'static;

    /// What the callbacks move out of the lock, for [`Handler::finish`] to complete after it.
    type Finished: Default + Send;

    /// Handles a used buffer notification: the device used buffers of queue `index`.
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
        req: Request,
        used: Option<u32>,
    ) {
        let _ = (state, finished, req, used);
    }

    /// Wakes up whoever waits for the queues, which have stopped.
    ///
    /// Called after the last [`Handler::reclaim`]. At unbind the queues never run again; at
    /// freeze they may run again after restore (see
    /// [`Driver::restore`](crate::virtio::Driver::restore)). Runs with the queues locked: it
    /// must not sleep.
    fn stopped(&self, state: &mut Self::State, finished: &mut Self::Finished) {
        let _ = (state, finished);
    }

    /// Prepares for a reset of the device in place, which recovers it.
    ///
    /// See [`Locked::recover`].
    ///
    /// Called after the last [`Handler::reclaim`]: what was in flight is lost, and the queues
    /// run again once [`Handler::recovered`] reports success. Runs with the queues locked: it
    /// must not sleep. The default takes it as a stop ([`Handler::stopped`]).
    fn reset(&self, state: &mut Self::State, finished: &mut Self::Finished) {
        self.stopped(state, finished);
    }

    /// Reports the end of a recovery asked for with [`Locked::recover`].
    ///
    /// With `Ok` the queues run again, empty, and the device is live; with an error they stay
    /// stopped (`EOPNOTSUPP`: the transport cannot be recovered). Runs with the queues locked,
    /// in process context: it must not sleep. The default does nothing.
    fn recovered(&self, queues: &mut Locked<'_, Self>, result: Result) {
        let _ = (queues, result);
    }

    /// Completes what a locked section left in `finished`, with the queues unlocked.
    ///
    /// Maybe in interrupt context: it must not sleep. Runs after every locked section, also
    /// when it left nothing. The default drops it.
    fn finish(&self, finished: Self::Finished) {
        drop(finished);
    }
}
