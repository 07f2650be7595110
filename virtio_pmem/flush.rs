// SPDX-License-Identifier: GPL-2.0

//! The flush engine: host flushes over the request queue, shared by concurrent callers.
//!
//! One request, allocated at probe, carries every flush: at most one flush is in flight (the
//! QEMU device handles one request per notification) and the flush path never allocates.
//! Synchronous callers sleep until their flush (see [`Commit`]) is answered; FUA bios wait on
//! lists and are completed once the queue callback has released the queue lock, without a
//! thread or work item each.
//!
//! While a flush is in flight, a [`Watchdog`] looks at it every [`HEALTH_CHECK`]: it gives the
//! device up if its queue broke, if it no longer reports `DRIVER_OK` or asks for a reset (a
//! configuration interrupt may not come: they are off during unbind), or if the host sat on
//! the flush for [`FLUSH_TIMEOUT`]. Synchronous callers and bios are answered alike then.

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

/// How often the [`Watchdog`] checks on a flush in flight (and how long a waiting caller sleeps
/// at a time).
const HEALTH_CHECK: Delta = Delta::from_millis(1000);

/// How long the host may take to answer a flush before the device is given up for broken.
const FLUSH_TIMEOUT: Delta = Delta::from_millis(60_000);

/// What the response holds until the host answers: failure, so that a request the host
/// dropped or truncated never reads as a success.
const RESPONSE_FAILED: u32 = 1;

/// The host's answer to a flush: `ret` of `struct virtio_pmem_resp`, which the device must
/// have written whole. Zero is success; anything else (QEMU says 1, the specification -1)
/// is a failure.
pub(crate) fn host_answer(response: &[u8], used: u32) -> Result {
    match response.first_chunk::<4>() {
        Some(ret) if used as usize >= RESPONSE_LEN && u32::from_le_bytes(*ret) == 0 => Ok(()),
        _ => Err(EIO),
    }
}

/// The flush request: a `struct virtio_pmem_req` asking for a flush, and room for the
/// `struct virtio_pmem_resp`.
fn new_request() -> Result<Request<()>> {
    let mut req = Request::new(
        core::mem::size_of::<uapi::virtio_pmem_req>(),
        RESPONSE_LEN,
        (),
        GFP_KERNEL,
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
    pub(crate) stats: Stats,
    /// A request without its device-readable part, sent instead of the next flush when a test
    /// asks for it (debugfs `inject_malformed`): the device rejects it and asks for a reset.
    malformed: Option<Request<()>>,
    /// The next flush goes out as [`FlushState::malformed`].
    pub(crate) inject_malformed: bool,
}

impl FlushState {
    /// The state of a new device, with the flush request allocated once for all.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            commit: Commit::default(),
            req: Some(new_request()?),
            covered: FlushBioList::new(),
            waiting: FlushBioList::new(),
            sent_at: None,
            stats: Stats::default(),
            malformed: Some(Request::new(0, RESPONSE_LEN, (), GFP_KERNEL)?),
            inject_malformed: false,
        })
    }

    /// Nothing can be sent any more: every waiting bio fails (once the lock is released).
    /// Waiters are woken by the caller.
    fn stop(&mut self, finished: &mut Finished) {
        self.commit.stop();
        finished.failed.append(&mut self.covered);
        finished.failed.append(&mut self.waiting);
    }
}

/// Bios answered under the queue lock, ended once it is released: a bio's completion may
/// submit I/O to the same region again, which must not find the lock held.
#[derive(Default)]
pub(crate) struct Finished {
    ok: FlushBioList,
    failed: FlushBioList,
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
        let mut answered = false;
        while let Some((req, used)) = queues.get_buf(index) {
            answered = true;
            let malformed = req.out().is_empty();
            let ok = !malformed && host_answer(req.input(), used).is_ok();
            let st = queues.state();
            if malformed {
                st.malformed = Some(req);
            } else {
                st.req = Some(req);
            }
            if let Some(sent_at) = st.sent_at.take() {
                let us = sent_at.elapsed().as_micros_ceil();
                st.stats.last_latency_us = us;
                st.stats.max_latency_us = st.stats.max_latency_us.max(us);
            }
            let first_failure = !ok && !st.commit.is_failed();
            if !ok {
                st.stats.host_failures += 1;
            }
            let again = st.commit.completed(ok);
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
            if again {
                // A failure to send marks the device broken; the waiters see it below.
                let _ = send(queues);
            }
        }
        if !answered && queues.is_broken(index) {
            stop(queues);
        }
        if answered || queues.state().commit.is_broken() {
            self.answered.notify_all();
        }
    }

    fn reclaim(
        &self,
        state: &mut FlushState,
        _finished: &mut Finished,
        req: Request<()>,
        _used: Option<u32>,
    ) {
        // A request the device never gave back lost its buffers; a new one is made if the
        // device is restored.
        if req.input().len() == RESPONSE_LEN && !req.out().is_empty() {
            state.req = Some(req);
        }
    }

    fn stopped(&self, state: &mut FlushState, finished: &mut Finished) {
        state.stop(finished);
        self.answered.notify_all();
    }

    fn finish(&self, mut finished: Finished) {
        finished.ok.end_all(Ok(()));
        finished.failed.end_all(Err(EIO));
    }
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

/// Checks on the flush in flight, if any; returns whether one still is.
///
/// Gives up on a device that can no longer answer: its queue broke (the device was
/// surprise-removed or misbehaved; no callback comes then), it lost its state or asks for a
/// reset (its status no longer reads `DRIVER_OK`, or reads `NEEDS_RESET` or `FAILED`; all
/// ones, a device gone from the bus, reads as all three), or the host sat on the flush for
/// [`FLUSH_TIMEOUT`]. Wakes every waiter if so.
fn check_health(queues: &mut Locked<'_, FlushHandler>) -> bool {
    let st = queues.state();
    if st.commit.is_broken() || !st.commit.in_flight() {
        return false;
    }
    let late = st
        .sent_at
        .is_some_and(|sent| sent.elapsed() > FLUSH_TIMEOUT);
    let status = queues.status();
    let lost = status.is_some_and(|s| !s.driver_ok() || s.needs_reset() || s.failed());
    let broken = queues.is_broken(REQ_QUEUE);
    if !(late || lost || broken) {
        return true;
    }
    if late {
        dev_err!(
            queues.device(),
            "the host has not answered a flush for {} s\n",
            FLUSH_TIMEOUT.as_millis() / 1000
        );
    } else if let Some(status) = status.filter(|_| lost) {
        dev_err!(
            queues.device(),
            "a flush is in flight and the device status reads {:#04x}\n",
            status.0
        );
    }
    stop(queues);
    queues.handler().answered.notify_all();
    false
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
        let _ = workqueue::system().enqueue_delayed(this.clone(), delay);
    }
}

impl WorkItem for Watchdog {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        // A flush sent while a check is pending or running is seen by that check: the
        // watchdog runs again as long as any flush is in flight (the queue callback sends the
        // next flush in the same locked section that completes the previous one).
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
        .copy_from_slice(&RESPONSE_FAILED.to_le_bytes());
    if let Err((req, e)) = queues.add(REQ_QUEUE, req) {
        if req.out().is_empty() {
            queues.state().malformed = Some(req);
        } else {
            queues.state().req = Some(req);
        }
        if e == ENODEV {
            stop_quietly(queues);
        } else {
            stop(queues);
        }
        return Err(EIO);
    }
    if !queues.kick(REQ_QUEUE) {
        // The request stays with the queue; the teardown gives it back.
        stop(queues);
        return Err(EIO);
    }
    let st = queues.state();
    st.commit.sent();
    st.stats.host_flushes += 1;
    st.sent_at = Some(Instant::now());
    let mut next = core::mem::take(&mut st.waiting);
    st.covered.append(&mut next);
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

    /// Joins the group commit; returns the flush that answers the caller.
    fn join(&self, queues: &mut Locked<'_, FlushHandler>) -> Result<u64> {
        let st = queues.state();
        st.stats.requests += 1;
        match st.commit.join() {
            Join::Fail => Err(EIO),
            Join::Wait(target) => {
                st.stats.coalesced += 1;
                Ok(target)
            }
            Join::Send(target) => {
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

    /// The device asked to be reset (`NEEDS_RESET`): it will not answer, so every caller and
    /// bio fails with `EIO` now, and from now on.
    pub(crate) fn needs_reset(&self) {
        let mut queues = self.vqs.lock();
        if !queues.state().commit.is_broken() {
            dev_err!(queues.device(), "the device needs a reset\n");
        }
        stop(&mut queues);
        queues.handler().answered.notify_all();
    }

    /// Takes flushes again once the device is back from system sleep, with its queue found
    /// again and ready. Flushes lost to the sleep stay failed.
    pub(crate) fn restart(&self) -> Result {
        // The request is gone if the device kept it through the reset.
        let spare = if self.with_state(|st| st.req.is_none()) {
            Some(new_request()?)
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
        let target = self.join(&mut queues)?;
        let answered = &queues.handler().answered;
        // The watchdog answers for a device that stopped answering.
        loop {
            if let Some(result) = queues.state().commit.outcome(target) {
                return result;
            }
            queues.wait_timeout(answered, HEALTH_CHECK);
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
        let _ = self.join(&mut queues);
    }
}

#[kunit_tests(virtio_pmem_rust_flush)]
mod tests {
    use super::*;

    #[test]
    fn host_answers() {
        assert_eq!(host_answer(&0u32.to_le_bytes(), 4), Ok(()));
        // QEMU, cloud-hypervisor and crosvm say 1, the specification -1.
        assert_eq!(host_answer(&1u32.to_le_bytes(), 4), Err(EIO));
        assert_eq!(host_answer(&(-1i32).to_le_bytes(), 4), Err(EIO));
        // A response the device did not write whole is a failure.
        assert_eq!(host_answer(&0u32.to_le_bytes(), 3), Err(EIO));
        assert_eq!(host_answer(&0u32.to_le_bytes(), 0), Err(EIO));
        assert_eq!(host_answer(&[], 4), Err(EIO));
    }
}
