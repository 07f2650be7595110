// SPDX-License-Identifier: GPL-2.0

//! Recovery of a device that stopped answering: why, and the [`Watchdog`] that notices.

use super::{
    flush_timeout,
    handler::reap,
    max_resets,
    new_request,
    send::{
        end_hold,
        stop_quietly, //
    },
    FlushHandler,
    HEALTH_CHECK,
    POLL_AFTER,
    REQ_QUEUE,
    UNBIND_WAIT, //
};
use kernel::{
    fmt,
    prelude::*,
    sync::Arc,
    time::{
        msecs_to_jiffies,
        Delta,
        Instant, //
    },
    virtio::{
        Locked,
        StatusBit,
        Virtqueues, //
    },
    workqueue::{
        self,
        impl_has_delayed_work,
        new_delayed_work,
        DelayedWork,
        WorkItem, //
    }, //
};

/// Why a recovery was asked for.
#[derive(Clone, Copy)]
pub(super) enum Reason {
    /// The device status read this while a flush was in flight.
    Status(u8),
    /// The queue broke.
    Broken,
    /// The host sat on a flush for this long, in milliseconds.
    Timeout(i64),
    /// The device asked for a reset (`NEEDS_RESET`, from the configuration interrupt).
    NeedsReset,
    /// The host answered a flush without an interrupt.
    LostInterrupt,
}

/// The log line of a recovery, after its duration: why, and which flush was sent again.
pub(super) struct Recovered {
    pub(super) reason: Reason,
    pub(super) flush: u64,
}

impl fmt::Display for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flush = self.flush;
        match self.reason {
            Reason::Status(s) => write!(
                f,
                concat!(
                    "flush {} was unanswered and the device status read {:#04x} ",
                    "(state lost); device reset, flush sent again"
                ),
                flush, s
            ),
            Reason::Broken => write!(
                f,
                "the request queue broke; device reset, flush {flush} sent again"
            ),
            Reason::Timeout(t) => write!(
                f,
                "the host sat on flush {flush} for {t} ms; device reset, flush sent again"
            ),
            Reason::LostInterrupt => write!(
                f,
                "the host answered a flush without an interrupt; device reset"
            ),
            Reason::NeedsReset => {
                write!(f, "the device asked for a reset; flush {flush} sent again")
            }
        }
    }
}

/// Asks for the device to be recovered (once per episode), unless it already went without an
/// answer through `max_resets` recoveries: then it is given up, and every waiter fails.
pub(super) fn request_recovery(queues: &mut Locked<'_, FlushHandler>, reason: Reason) {
    let st = queues.state();
    if st.recovering.is_some() || st.commit.is_broken() {
        return;
    }
    if st.unbinding {
        dev_err!(
            queues.device(),
            "the device does not answer while unbinding; its last flushes fail\n"
        );
        stop_quietly(queues);
        queues.finished().wake = true;
        return;
    }
    if st.resets_unanswered >= max_resets() {
        let resets = st.resets_unanswered;
        dev_err!(
            queues.device(),
            "no answer after {resets} resets; flushes fail until the device is re-probed\n"
        );
        stop_quietly(queues);
        queues.finished().wake = true;
        return;
    }
    st.resets_unanswered += 1;
    st.recovering = Some((Instant::now(), reason));
    queues.recover();
}

/// Checks on the flush in flight, if any; returns whether to check again.
///
/// Asks for a recovery of a device that does not answer: its queue broke (no callback comes
/// then), it lost its state or asks for a reset (its status no longer reads `DRIVER_OK`, or
/// reads `NEEDS_RESET` or `FAILED`; all ones, a device gone from the bus, reads as all three),
/// or the host sat on the flush for `flush_timeout_ms`.
fn check_health(queues: &mut Locked<'_, FlushHandler>) -> bool {
    let st = queues.state();
    if st.commit.is_broken() {
        return false;
    }
    if st.recovering.is_some() {
        return true;
    }
    if let Some(hold) = &st.hold {
        // No caller waits to send the held flush any more.
        if hold.left() <= Delta::ZERO {
            // A failure to send marks the device broken; the waiters see it.
            let _ = end_hold(queues, false);
        }
        return true;
    }
    if !st.commit.in_flight() {
        return false;
    }
    // An answer whose interrupt went missing (seen after a host completed a request from
    // before a reset: QEMU's interrupt suppression state goes stale) is taken here, and the
    // device is reset to bring its interrupts back. Only for a flush that has waited a while,
    // so that an interrupt on its way is not taken for a lost one.
    let waited = st.sent_at.map(|sent| sent.elapsed());
    if waited.is_some_and(|w| w > POLL_AFTER) && reap(queues, REQ_QUEUE) {
        queues.state().stats.polled += 1;
        request_recovery(queues, Reason::LostInterrupt);
        return true;
    }
    let st = queues.state();
    let waited = st.sent_at.map(|sent| sent.elapsed());
    let timeout = if st.unbinding {
        Some(flush_timeout().map_or(
            UNBIND_WAIT,
            |t| if t < UNBIND_WAIT { t } else { UNBIND_WAIT },
        ))
    } else {
        flush_timeout()
    };
    let late = waited.zip(timeout).is_some_and(|(w, t)| w > t);
    let status = queues.status();
    let broken = StatusBit::NeedsReset | StatusBit::Failed;
    if let Some(s) = status.filter(|s| !s.contains(StatusBit::DriverOk) || s.contains_any(broken)) {
        request_recovery(queues, Reason::Status(u8::from(s)));
    } else if queues.is_broken(REQ_QUEUE) {
        request_recovery(queues, Reason::Broken);
    } else if late {
        let ms = waited.map_or(0, |w| w.as_millis());
        request_recovery(queues, Reason::Timeout(ms));
    }
    true
}

/// Checks on flushes the host has not answered yet, whoever waits for them (a synchronous
/// caller or only bios), every [`HEALTH_CHECK`] while one is in flight.
#[pin_data]
pub(crate) struct Watchdog {
    #[pin]
    work: DelayedWork<Watchdog>,
    vqs: Arc<Virtqueues<FlushHandler>>,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for Watchdog { self.work }
}

impl Watchdog {
    /// Creates the watchdog of the queues `vqs`.
    pub(super) fn new(vqs: Arc<Virtqueues<FlushHandler>>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                work <- new_delayed_work!("virtio_pmem_rust::watchdog"),
                vqs,
            }),
            GFP_KERNEL,
        )
    }

    /// Checks on the flush just sent in [`HEALTH_CHECK`], unless a check is already pending.
    pub(super) fn arm(this: &Arc<Self>) {
        // CAST: `HEALTH_CHECK` is 1000 ms.
        let delay = msecs_to_jiffies(HEALTH_CHECK.as_millis() as u32);
        // Already pending: that check will see this flush.
        let _ = workqueue::system_long().enqueue_delayed(this.clone(), delay);
    }
}

impl WorkItem for Watchdog {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        // A recovery may have used the spare request: make a new one while sleeping is fine.
        if this.vqs.lock().state().spare.is_none() {
            if let Ok(req) = new_request(GFP_KERNEL) {
                this.vqs.lock().state().spare = Some(req);
            }
        }
        // A flush sent while a check is pending or running is seen by that check: the
        // watchdog runs again as long as any flush is in flight or a recovery is under way
        // (the queue callback and the recovery send the next flush in the same locked section
        // that completes the previous one).
        if check_health(&mut this.vqs.lock()) {
            Self::arm(&this);
        }
    }
}
