// SPDX-License-Identifier: GPL-2.0

//! The flush engine: host flushes over the request queue, shared by concurrent callers.
//!
//! One request, allocated at probe, carries every flush: at most one flush is in flight (the
//! QEMU device handles one request per notification) and the flush path never allocates.
//! Synchronous callers sleep until their flush (see [`Commit`]) is answered; FUA bios wait on
//! lists and are completed once the queue callback has released the queue lock, without a
//! thread or work item each.
//!
//! A flush that answered several synchronous callers (or one, while others wait) holds the
//! next one back for a moment: they usually come back with their next flush within
//! microseconds, while the host's flush takes milliseconds on a disk. Sent at once, the next
//! flush would carry only the first of them and the rest would wait for the one after it, so
//! the callers split into groups that take turns. Held until the callers it answered have
//! joined again, for at most half the host's latest flush latency, the `group_hold_us` module
//! parameter and [`HOLD_MAX`], the next flush carries them all. Waiting callers send it when
//! the time is up (the [`Watchdog`], if none waits), which their timed sleep may only notice
//! a timer tick later: a hold that ran out before its callers came back is a miss, and after
//! a miss the next holds are skipped, twice as many after each miss in a row (up to
//! [`HOLD_BACKOFF_MAX`]), so a host too fast for holding to pay is rarely held for. Bios are
//! never held.
//!
//! While a flush is in flight, a [`Watchdog`] looks at it every [`HEALTH_CHECK`]. A device
//! that stopped answering is recovered in place, never given up at once (see
//! [`virtio::Virtqueues::recover`]): its queue broke, its status no longer reads `DRIVER_OK` (the
//! host lost the device's state, as QEMU does across save/restore and live update) or asks for
//! a reset, or the host sat on the flush for the `flush_timeout_ms` module parameter. The
//! recovery resets the device, sets its queue up again and sends the flush again: a flush is
//! idempotent, and its waiters get the answer to the one sent again. The flush that was lost
//! is never counted as answered. Only after `max_resets` recoveries in a row without an answer
//! (or on a transport that cannot be recovered) does the device give up, failing its waiters
//! with `EIO`. With the defaults, a waiter thus gets an answer or `EIO` within
//! `(max_resets + 1) * flush_timeout_ms` plus a second per reset; with `flush_timeout_ms=0` a
//! host that keeps `DRIVER_OK` is waited for without limit.

use crate::commit::{
    Commit,
    Join, //
};
use kernel::{
    new_condvar,
    nvdimm::{
        Flush,
        FlushBio,
        FlushBioList, //
    },
    prelude::*,
    sync::{
        Arc,
        CondVar, //
    },
    time::{
        msecs_to_jiffies,
        Delta,
        Instant,
        Monotonic, //
    },
    uapi,
    virtio::{
        self,
        Locked,
        Request,
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

/// The request queue, the only queue of the device.
const REQ_QUEUE: usize = 0;

/// The shortest hold worth a sleep (see [`hold_for`]).
const HOLD_MIN: Delta = Delta::from_micros(50);

/// The longest hold, whatever the module parameter says.
const HOLD_MAX: Delta = Delta::from_millis(100);

/// The most flushes sent without a hold after holds that missed.
const HOLD_BACKOFF_MAX: u32 = 1024;

/// How often the [`Watchdog`] checks on a flush in flight (and how long a waiting caller sleeps
/// at a time).
const HEALTH_CHECK: Delta = Delta::from_millis(1000);

/// How long a flush must have waited before the watchdog looks for its answer itself.
const POLL_AFTER: Delta = Delta::from_millis(500);

/// How long a flush may go unanswered while the device is unbound (the last flush of the pmem
/// device): unbind holds the device lock a recovery needs, so the flush fails with `EIO` then.
const UNBIND_WAIT: Delta = Delta::from_millis(5000);

/// What the response holds until the host answers: a value no host writes (they write 0, 1
/// or -1), so that a request the host gives back without writing it never reads as a success,
/// and is told apart from a failure.
const RESPONSE_UNANSWERED: u32 = 0xfffe_fffe;

/// The host's answer to a flush.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The host flushed.
    Done,
    /// The host failed, or wrote less than a whole response.
    Failed,
    /// The request came back without a response: a completion for a request made before a
    /// reset (QEMU finishes those on the new queue), or a host that skipped it. The flush is
    /// sent again.
    Unanswered,
}

/// The host's answer to a flush: `ret` of `struct virtio_pmem_resp`, which the device must
/// have written whole. Zero is success; anything else (QEMU says 1, the specification -1)
/// is a failure, except [`RESPONSE_UNANSWERED`], the value the driver put there.
pub(crate) fn host_answer(response: &[u8], used: u32) -> Answer {
    match response
        .first_chunk::<4>()
        .map(|ret| u32::from_le_bytes(*ret))
    {
        Some(RESPONSE_UNANSWERED) => Answer::Unanswered,
        Some(0) if used as usize >= RESPONSE_LEN => Answer::Done,
        _ => Answer::Failed,
    }
}

/// The recovery policy, from the module parameters.
fn flush_timeout() -> Option<Delta> {
    let ms = crate::module_parameters::flush_timeout_ms.value();
    (ms != 0).then(|| Delta::from_millis(ms.into()))
}

/// How long to hold the next flush for the callers the latest one answered, after a host
/// flush that took `latency`: half of it, at most `group_hold_us` and [`HOLD_MAX`], none
/// below [`HOLD_MIN`].
fn hold_for(latency: Delta) -> Option<Delta> {
    let param = i64::from(crate::module_parameters::group_hold_us.value());
    let max = param.min(HOLD_MAX.as_micros_ceil());
    let us = (latency.as_micros_ceil() / 2).min(max);
    (us >= HOLD_MIN.as_micros_ceil()).then(|| Delta::from_micros(us))
}

/// How many recoveries in a row may go without an answer before the device is given up.
fn max_resets() -> u32 {
    crate::module_parameters::max_resets.value()
}

/// The flush request: a `struct virtio_pmem_req` asking for a flush, and room for the
/// `struct virtio_pmem_resp`.
fn new_request(flags: kernel::alloc::Flags) -> Result<Request<()>> {
    let mut req = Request::new(
        core::mem::size_of::<uapi::virtio_pmem_req>(),
        RESPONSE_LEN,
        (),
        flags,
    )?;
    req.out_mut()
        .copy_from_slice(&uapi::VIRTIO_PMEM_REQ_TYPE_FLUSH.to_le_bytes());
    Ok(req)
}

/// The size of the host's answer.
const RESPONSE_LEN: usize = core::mem::size_of::<uapi::virtio_pmem_resp>();

/// Counters, shown in debugfs.
#[derive(Default)]
pub(crate) struct Stats {
    /// Flush requests from the block layer (synchronous and bios).
    pub(crate) requests: u64,
    /// FUA bios among the requests, completed from the queue callback.
    pub(crate) fua_bios: u64,
    /// Flushes sent to the host.
    pub(crate) host_flushes: u64,
    /// Requests answered by a flush another request already asked for.
    pub(crate) coalesced: u64,
    /// Flushes the host failed or answered malformed.
    pub(crate) host_failures: u64,
    /// Longest host flush, in microseconds.
    pub(crate) max_latency_us: i64,
    /// Latest host flush, in microseconds.
    pub(crate) last_latency_us: i64,
    /// Times the device came back from system sleep.
    pub(crate) restores: u64,
    /// Times the device was reset in place and its flush sent again.
    pub(crate) recoveries: u64,
    /// Flushes sent again: after a recovery, or when the host gave a request back unanswered.
    pub(crate) resent: u64,
    /// Requests the host gave back unanswered.
    pub(crate) unanswered: u64,
    /// Host answers the watchdog found without an interrupt.
    pub(crate) polled: u64,
    /// Callers that slept until their flush was answered.
    pub(crate) wakeups: u64,
    /// Their time from the latest host answer to running again, in microseconds, summed.
    pub(crate) wake_us_total: i64,
    /// The longest of those times, in microseconds.
    pub(crate) max_wake_us: i64,
    /// Flushes held back for the callers the one before answered.
    pub(crate) held: u64,
}

/// The next flush, held back for the synchronous callers the latest one answered.
struct Hold {
    /// When the hold began.
    since: Instant<Monotonic>,
    /// How long it may last.
    max: Delta,
    /// The synchronous callers the latest flush answered: the hold ends once as many joined.
    expected: u32,
    /// Synchronous callers that joined since the hold began.
    joined: u32,
}

impl Hold {
    /// How long the hold has left to run; zero or less once it ran out.
    fn left(&self) -> Delta {
        self.max - self.since.elapsed()
    }
}

/// Why a recovery was asked for.
#[derive(Clone, Copy)]
enum Reason {
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
struct Recovered {
    reason: Reason,
    flush: u64,
}

impl kernel::fmt::Display for Recovered {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
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

/// The flush state, under the queue lock.
pub(crate) struct FlushState {
    pub(crate) commit: Commit,
    /// The request, while the device does not hold it.
    req: Option<Request<()>>,
    /// Bios answered by the flush in flight.
    covered: FlushBioList,
    /// Bios answered by the next flush.
    waiting: FlushBioList,
    sent_at: Option<Instant<Monotonic>>,
    /// When the latest host answer was taken.
    answered_at: Option<Instant<Monotonic>>,
    pub(crate) stats: Stats,
    /// A request without its device-readable part, sent instead of the next flush when a test
    /// asks for it (debugfs `inject_malformed`): the device rejects it and asks for a reset.
    malformed: Option<Request<()>>,
    /// The next flush goes out as [`FlushState::malformed`].
    pub(crate) inject_malformed: bool,
    /// A request for when [`FlushState::req`] is lost to a reset, refilled by the watchdog.
    spare: Option<Request<()>>,
    /// A recovery is under way (since when, and why): flushes wait for it.
    recovering: Option<(Instant<Monotonic>, Reason)>,
    /// Recoveries since the host last answered.
    resets_unanswered: u32,
    /// The device is being unbound: no recovery can run any more.
    unbinding: bool,
    /// Synchronous callers waiting for the next flush, not sent yet.
    sync_next: u32,
    /// Synchronous callers of the flush in flight.
    sync_covered: u32,
    /// The next flush is held back.
    hold: Option<Hold>,
    /// Flushes to send without a hold, after a hold that missed.
    hold_skip: u32,
    /// How many flushes the latest miss skipped: doubles with each miss in a row.
    hold_backoff: u32,
}

impl FlushState {
    /// The state of a new device, with the flush request allocated once for all.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            commit: Commit::default(),
            req: Some(new_request(GFP_KERNEL)?),
            covered: FlushBioList::new(),
            waiting: FlushBioList::new(),
            sent_at: None,
            answered_at: None,
            stats: Stats::default(),
            malformed: Some(Request::new(0, RESPONSE_LEN, (), GFP_KERNEL)?),
            inject_malformed: false,
            spare: Some(new_request(GFP_KERNEL)?),
            recovering: None,
            resets_unanswered: 0,
            unbinding: false,
            sync_next: 0,
            sync_covered: 0,
            hold: None,
            hold_skip: 0,
            hold_backoff: 0,
        })
    }

    /// Nothing can be sent any more: every waiting bio fails (once the lock is released).
    /// Waiters are woken by the caller.
    fn stop(&mut self, finished: &mut Finished) {
        self.commit.stop();
        self.recovering = None;
        self.hold = None;
        finished.failed.append(&mut self.covered);
        finished.failed.append(&mut self.waiting);
    }
}

/// What a locked section answered, acted on once the queue lock is released: a bio's
/// completion may submit I/O to the same region again, which must not find the lock held, and
/// a woken caller takes the lock at once, which must not find it still held by the waker.
#[derive(Default)]
pub(crate) struct Finished {
    ok: FlushBioList,
    failed: FlushBioList,
    /// Callers sleeping on [`FlushHandler::answered`] have something to look at.
    wake: bool,
}

impl Finished {
    /// Ends the bios of `list` with `result`, after the lock is released.
    fn end(&mut self, list: &mut FlushBioList, result: Result) {
        match result {
            Ok(()) => self.ok.append(list),
            Err(_) => self.failed.append(list),
        }
    }
}

/// The queue handler: wakes callers when the host answers.
#[pin_data]
pub(crate) struct FlushHandler {
    #[pin]
    answered: CondVar,
}

impl FlushHandler {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            answered <- new_condvar!("virtio_pmem_rust::answered"),
        })
    }
}

impl virtio::Handler for FlushHandler {
    type Data = ();
    type State = FlushState;
    type Finished = Finished;

    fn callback(&self, queues: &mut Locked<'_, Self>, index: usize) {
        if !reap(queues, index) && queues.is_broken(index) {
            request_recovery(queues, Reason::Broken);
        }
        if queues.state().commit.is_broken() {
            queues.finished().wake = true;
        }
    }

    fn reclaim(
        &self,
        state: &mut FlushState,
        _finished: &mut Finished,
        req: Request<()>,
        _used: Option<u32>,
    ) {
        // A request the device never gave back lost its buffers; the spare, or a new one if the
        // device is restored, takes its place.
        if req.input().len() == RESPONSE_LEN && !req.out().is_empty() {
            state.req = Some(req);
        }
    }

    fn stopped(&self, state: &mut FlushState, finished: &mut Finished) {
        state.stop(finished);
        finished.wake = true;
    }

    fn reset(&self, state: &mut FlushState, _finished: &mut Finished) {
        // The flush in flight is lost; its bios wait for the one sent after the recovery,
        // and so do its synchronous callers (the commit keeps it in flight until then).
        let mut covered = core::mem::take(&mut state.covered);
        covered.append(&mut state.waiting);
        state.waiting = covered;
        state.sent_at = None;
        state.sync_next += core::mem::take(&mut state.sync_covered);
        state.hold = None;
    }

    fn recovered(&self, queues: &mut Locked<'_, Self>, result: Result) {
        let st = queues.state();
        let Some((since, reason)) = st.recovering.take() else {
            return;
        };
        if let Err(e) = result {
            dev_err!(
                queues.device(),
                "cannot recover the device (error {}); flushes fail until it is re-probed\n",
                e.to_errno()
            );
            stop_quietly(queues);
            queues.finished().wake = true;
            return;
        }
        st.stats.recoveries += 1;
        if st.req.is_none() {
            st.req = st.spare.take();
        }
        if st.req.is_none() {
            // The spare went to an earlier loss; the watchdog makes the next one.
            st.req = new_request(GFP_ATOMIC).ok();
        }
        let flush = st.commit.done() + 1;
        let ms = since.elapsed().as_millis();
        dev_warn!(
            queues.device(),
            "recovered in {ms} ms: {}\n",
            Recovered { reason, flush }
        );
        resend(queues);
        queues.finished().wake = true;
    }

    fn finish(&self, mut finished: Finished) {
        if finished.wake {
            self.answered.notify_all();
        }
        finished.ok.end_all(Ok(()));
        finished.failed.end_all(Err(EIO));
    }
}

/// Takes the host's answers from queue `index` and acts on them; returns whether there were
/// any. Wakes the callers they answer.
fn reap(queues: &mut Locked<'_, FlushHandler>, index: usize) -> bool {
    let mut answered = false;
    while let Some((req, used)) = queues.get_buf(index) {
        answered = true;
        let malformed = req.out().is_empty();
        let answer = host_answer(req.input(), used);
        let st = queues.state();
        if answer == Answer::Unanswered && !malformed {
            // Whatever came back, the host may still answer this request, and into
            // its buffers: they are given up, and the flush goes out in another one.
            let mut req = req;
            req.quarantine();
            st.stats.unanswered += 1;
            st.req = st.spare.take();
            if st.req.is_none() {
                st.req = new_request(GFP_ATOMIC).ok();
            }
            st.resets_unanswered += 1;
            if st.resets_unanswered > max_resets() {
                dev_err!(
                    queues.device(),
                    "host keeps flushes unanswered; flushes fail until re-probed\n"
                );
                stop_quietly(queues);
            } else {
                resend(queues);
            }
            continue;
        }
        if malformed {
            st.malformed = Some(req);
        } else {
            st.req = Some(req);
        }
        let ok = !malformed && answer == Answer::Done;
        let st = queues.state();
        st.resets_unanswered = 0;
        let now = Instant::now();
        st.answered_at = Some(now);
        let latency = st.sent_at.take().map(|sent_at| now - sent_at);
        if let Some(latency) = latency {
            let us = latency.as_micros_ceil();
            st.stats.last_latency_us = us;
            st.stats.max_latency_us = st.stats.max_latency_us.max(us);
        }
        let first_failure = !ok && !st.commit.is_failed();
        if !ok {
            st.stats.host_failures += 1;
        }
        let answered_sync = core::mem::take(&mut st.sync_covered);
        let again = st.commit.completed(ok);
        // Worth holding if the callers answered are not alone: several of them, or some
        // already waiting for the next flush.
        let company = answered_sync > 1 || (answered_sync == 1 && st.sync_next > 0);
        let mut hold = latency.and_then(hold_for).filter(|_| ok && company);
        if hold.is_some() && st.hold_skip > 0 {
            st.hold_skip -= 1;
            hold = None;
        }
        st.hold = hold.map(|max| Hold {
            since: now,
            max,
            expected: answered_sync,
            joined: 0,
        });
        if hold.is_some() {
            st.stats.held += 1;
        }
        let result = st.commit.outcome(st.commit.done()).unwrap_or(Err(EIO));
        let mut covered = core::mem::take(&mut st.covered);
        // The next flush will not be sent while a failure sticks.
        let mut waiting = if st.commit.is_failed() {
            core::mem::take(&mut st.waiting)
        } else {
            FlushBioList::new()
        };
        queues.finished().end(&mut covered, result);
        queues.finished().end(&mut waiting, Err(EIO));
        if first_failure {
            dev_err!(
                queues.device(),
                "host flush failed; flushes fail until cleared (sysfs flush_error)\n"
            );
        }
        if again && queues.state().hold.is_none() {
            // A failure to send marks the device broken; the waiters see it below.
            let _ = send(queues);
        }
    }
    if answered {
        queues.finished().wake = true;
    }
    answered
}

/// Gives up on the device: every caller and bio fails with `EIO` from now on.
fn stop(queues: &mut Locked<'_, FlushHandler>) {
    if !queues.state().commit.is_broken() {
        dev_err!(
            queues.device(),
            "device broken; flushes fail until it is re-probed\n"
        );
    }
    stop_quietly(queues);
}

/// Stops taking flushes, failing every waiting bio, without a word: the bus is stopping the
/// queue (unbind or freeze), which is no breakage.
fn stop_quietly(queues: &mut Locked<'_, FlushHandler>) {
    let mut finished = Finished::default();
    queues.state().stop(&mut finished);
    let all = queues.finished();
    all.ok.append(&mut finished.ok);
    all.failed.append(&mut finished.failed);
}

/// Asks for the device to be recovered (once per episode), unless it already went without an
/// answer through `max_resets` recoveries: then it is given up, and every waiter fails.
fn request_recovery(queues: &mut Locked<'_, FlushHandler>, reason: Reason) {
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
    if let Some(s) = status.filter(|s| !s.driver_ok() || s.needs_reset() || s.failed()) {
        request_recovery(queues, Reason::Status(s.0));
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
    fn new(vqs: Arc<Virtqueues<FlushHandler>>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                work <- new_delayed_work!("virtio_pmem_rust::watchdog"),
                vqs,
            }),
            GFP_KERNEL,
        )
    }

    /// Checks on the flush just sent in [`HEALTH_CHECK`], unless a check is already pending.
    fn arm(this: &Arc<Self>) {
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

/// Sends the next flush. On failure the device is marked broken.
///
/// The device status is not read here: a device that needs a reset says so with a
/// configuration interrupt (see [`Flusher::needs_reset`]), and a stopped queue refuses the
/// request.
fn send(queues: &mut Locked<'_, FlushHandler>) -> Result {
    let st = queues.state();
    if st.recovering.is_some() {
        // The recovery sends it.
        return Ok(());
    }
    let malformed = core::mem::take(&mut st.inject_malformed);
    let req = if malformed && st.malformed.is_some() {
        st.malformed.take()
    } else {
        st.req.take()
    };
    let Some(mut req) = req else {
        stop(queues);
        return Err(EIO);
    };
    req.input_mut()
        .copy_from_slice(&RESPONSE_UNANSWERED.to_le_bytes());
    if let Err((req, e)) = queues.add(REQ_QUEUE, req) {
        if req.out().is_empty() {
            queues.state().malformed = Some(req);
        } else {
            queues.state().req = Some(req);
        }
        if e == ENODEV {
            stop_quietly(queues);
            return Err(EIO);
        }
        // A broken queue (the device misbehaved): the recovery sends the flush.
        request_recovery(queues, Reason::Broken);
        return if queues.state().commit.is_broken() {
            Err(EIO)
        } else {
            Ok(())
        };
    }
    if !queues.kick(REQ_QUEUE) {
        // The request stays with the queue; the teardown gives it back.
        stop(queues);
        return Err(EIO);
    }
    let st = queues.state();
    st.commit.sent();
    st.hold = None;
    st.sync_covered = core::mem::take(&mut st.sync_next);
    st.stats.host_flushes += 1;
    st.sent_at = Some(Instant::now());
    let mut next = core::mem::take(&mut st.waiting);
    st.covered.append(&mut next);
    Ok(())
}

/// Sends again the flush that was lost to a reset or given back unanswered, if anyone waits
/// for it or a later one. It gets a new number: the lost one is never answered.
fn resend(queues: &mut Locked<'_, FlushHandler>) {
    let st = queues.state();
    st.commit.lost();
    st.sync_next += core::mem::take(&mut st.sync_covered);
    st.hold = None;
    if st.commit.pending() {
        st.stats.resent += 1;
        // A failure to send marks the device broken, or asks for another recovery.
        let _ = send(queues);
    }
}

/// Ends the hold on the next flush, if any, and sends it if anyone waits for it. A hold that
/// ended without all its callers (`joined` false) is a miss: the next holds are skipped.
fn end_hold(queues: &mut Locked<'_, FlushHandler>, joined: bool) -> Result {
    let st = queues.state();
    if st.hold.take().is_none() {
        return Ok(());
    }
    if joined {
        st.hold_backoff = 0;
    } else {
        st.hold_backoff = (st.hold_backoff * 2).clamp(1, HOLD_BACKOFF_MAX);
        st.hold_skip = st.hold_backoff;
    }
    if st.commit.pending() {
        // A failure to send marks the device broken.
        send(queues)?;
    }
    Ok(())
}

/// The flush callback of the device's region.
///
/// Dropping the last reference cancels the [`Watchdog`]: only the flusher arms it, so no check
/// can run after that (and with it, none after unbind).
pub(crate) struct Flusher {
    vqs: Arc<Virtqueues<FlushHandler>>,
    watchdog: Arc<Watchdog>,
}

impl Flusher {
    pub(crate) fn new(vqs: Arc<Virtqueues<FlushHandler>>) -> Result<Self> {
        Ok(Self {
            watchdog: Watchdog::new(vqs.clone())?,
            vqs,
        })
    }

    /// Joins the group commit, as a synchronous caller (`sync`) or for a bio; returns the
    /// flush that answers the caller.
    fn join(&self, queues: &mut Locked<'_, FlushHandler>, sync: bool) -> Result<u64> {
        let st = queues.state();
        st.stats.requests += 1;
        let join = st.commit.join();
        if sync && join != Join::Fail {
            st.sync_next += 1;
        }
        match join {
            Join::Fail => Err(EIO),
            Join::Wait(target) => {
                st.stats.coalesced += 1;
                Ok(target)
            }
            Join::Send(target) => {
                if let Some(hold) = st.hold.as_mut() {
                    if sync {
                        hold.joined += 1;
                    }
                    let (all, late) = (hold.joined >= hold.expected, hold.left() <= Delta::ZERO);
                    if sync && !all && !late {
                        st.stats.coalesced += 1;
                        return Ok(target);
                    }
                    // A bio ends the hold early; that is no miss.
                    end_hold(queues, !late)?;
                    Watchdog::arm(&self.watchdog);
                    return Ok(target);
                }
                send(queues)?;
                Watchdog::arm(&self.watchdog);
                Ok(target)
            }
        }
    }

    /// Locked access to the flush state.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut FlushState) -> R) -> R {
        f(self.vqs.lock().state())
    }

    /// The device asked to be reset (`NEEDS_RESET`): it will not answer what it holds, so it
    /// is recovered, and the flush sent again.
    pub(crate) fn needs_reset(&self) {
        request_recovery(&mut self.vqs.lock(), Reason::NeedsReset);
    }

    /// The device is being unbound: from now on a device that does not answer is given up
    /// (within [`UNBIND_WAIT`]) instead of recovered, and a recovery under way is abandoned,
    /// since unbind holds the lock it needs.
    pub(crate) fn unbinding(&self) {
        let mut queues = self.vqs.lock();
        let st = queues.state();
        st.unbinding = true;
        if st.recovering.is_some() {
            dev_err!(
                queues.device(),
                "unbound while recovering; the flushes waiting for it fail\n"
            );
            stop_quietly(&mut queues);
            queues.finished().wake = true;
        }
    }

    /// Takes flushes again once the device is back from system sleep, with its queue found
    /// again and ready. Flushes lost to the sleep stay failed.
    pub(crate) fn restart(&self) -> Result {
        // The request is gone if the device kept it through the reset.
        let spare = if self.with_state(|st| st.req.is_none()) {
            Some(new_request(GFP_KERNEL)?)
        } else {
            None
        };
        let mut queues = self.vqs.lock();
        if !queues.is_live() {
            return Err(ENODEV);
        }
        let st = queues.state();
        if st.req.is_none() {
            st.req = spare;
        }
        st.sent_at = None;
        st.recovering = None;
        st.resets_unanswered = 0;
        st.hold = None;
        st.sync_next = 0;
        st.sync_covered = 0;
        st.commit.restart();
        st.stats.restores += 1;
        Ok(())
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        DelayedWork::cancel_sync(&self.watchdog);
    }
}

impl Flush for Flusher {
    fn flush(&self) -> Result {
        let mut queues = self.vqs.lock();
        let target = self.join(&mut queues, true)?;
        let answered = &queues.handler().answered;
        // The watchdog answers for a device that stopped answering.
        let mut slept = false;
        loop {
            let st = queues.state();
            if let Some(result) = st.commit.outcome(target) {
                if let Some(answered_at) = st.answered_at.filter(|_| slept) {
                    let us = answered_at.elapsed().as_micros_ceil();
                    st.stats.wakeups += 1;
                    st.stats.wake_us_total += us;
                    st.stats.max_wake_us = st.stats.max_wake_us.max(us);
                }
                return result;
            }
            if queues.freezing() {
                // The system is going to sleep, and its freeze would fail this flush
                // anyway: the caller gets `EIO` now, so that its task can freeze. The flush
                // stays in flight for the others.
                return Err(EIO);
            }
            // The held flush goes out when the hold runs out, unless enough callers join
            // before.
            let left = queues.state().hold.as_ref().map(Hold::left);
            match left {
                Some(left) if left <= Delta::ZERO => {
                    // A failure to send marks the device broken; the loop sees it.
                    let _ = end_hold(&mut queues, false);
                    continue;
                }
                Some(left) => queues.wait_timeout(answered, left.min(HEALTH_CHECK)),
                None => queues.wait_timeout(answered, HEALTH_CHECK),
            };
            slept = true;
        }
    }

    fn flush_bio(&self, bio: FlushBio) {
        let mut queues = self.vqs.lock();
        let st = queues.state();
        st.stats.fua_bios += 1;
        if st.commit.is_failed() || st.commit.is_broken() {
            st.stats.requests += 1;
            drop(queues);
            bio.end(Err(EIO));
            return;
        }
        st.waiting.push(bio);
        // If sending fails, the device is stopped, which ends the bio with an error.
        let _ = self.join(&mut queues, false);
    }
}

#[cfg(CONFIG_VIRTIO_PMEM_RUST_KUNIT_TEST)]
#[kunit_tests(virtio_pmem_rust_flush)]
mod tests {
    use super::*;

    #[test]
    fn host_answers() {
        assert_eq!(host_answer(&0u32.to_le_bytes(), 4), Answer::Done);
        // QEMU, cloud-hypervisor and crosvm say 1, the specification -1.
        assert_eq!(host_answer(&1u32.to_le_bytes(), 4), Answer::Failed);
        assert_eq!(host_answer(&(-1i32).to_le_bytes(), 4), Answer::Failed);
        // A response the device did not write whole is a failure.
        assert_eq!(host_answer(&0u32.to_le_bytes(), 3), Answer::Failed);
        assert_eq!(host_answer(&0u32.to_le_bytes(), 0), Answer::Failed);
        assert_eq!(host_answer(&[], 4), Answer::Failed);
        // A request given back with what the driver put there was not answered, whatever the
        // used length says: it is neither a success nor a failure.
        let unanswered = RESPONSE_UNANSWERED.to_le_bytes();
        assert_eq!(host_answer(&unanswered, 4), Answer::Unanswered);
        assert_eq!(host_answer(&unanswered, 0), Answer::Unanswered);
    }
}
