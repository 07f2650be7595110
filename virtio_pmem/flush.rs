// SPDX-License-Identifier: GPL-2.0

//! The flush engine: host flushes over the request queue, shared by concurrent callers.
//!
//! One request, allocated at probe, carries every flush: at most one flush is in flight (the
//! QEMU device handles one request per notification) and the flush path never allocates.
//! Synchronous callers sleep until their flush (see [`Commit`]) is answered; FUA bios wait on
//! lists and are completed from the queue callback, without a thread or work item each.

use crate::commit::{Commit, Join};
use kernel::{
    new_condvar,
    nvdimm::{Flush, FlushBio, FlushBioList},
    prelude::*,
    sync::{Arc, CondVar},
    time::{Delta, Instant, Monotonic},
    uapi,
    virtio::{self, Locked, Request, Virtqueues},
};

/// The request queue, the only queue of the device.
const REQ_QUEUE: usize = 0;

/// How often a waiting caller checks that the device still works.
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
        })
    }

    /// Nothing can be sent any more: fail every waiting bio. Waiters are woken by the caller.
    fn stop(&mut self) {
        self.commit.stop();
        self.covered.end_all(Err(EIO));
        self.waiting.end_all(Err(EIO));
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

    fn callback(&self, queues: &mut Locked<'_, Self>, index: usize) {
        let mut answered = false;
        while let Some((req, used)) = queues.get_buf(index) {
            answered = true;
            let ok = host_answer(req.input(), used).is_ok();
            let st = queues.state();
            st.req = Some(req);
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
            st.covered.end_all(result);
            if st.commit.is_failed() {
                // The next flush will not be sent while the failure sticks.
                st.waiting.end_all(Err(EIO));
            }
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

    fn reclaim(&self, state: &mut FlushState, req: Request<()>, _used: Option<u32>) {
        // A request the device never gave back lost its buffers; a new one is made if the
        // device is restored.
        if req.input().len() == RESPONSE_LEN {
            state.req = Some(req);
        }
    }

    fn stopped(&self, state: &mut FlushState) {
        state.stop();
        self.answered.notify_all();
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
    queues.state().stop();
}

/// Gives up on a device that can no longer answer: its queue broke (the device was
/// surprise-removed or misbehaved; no callback comes then), or the host sat on a flush for
/// [`FLUSH_TIMEOUT`]. Wakes every waiter if so.
fn check_health(queues: &mut Locked<'_, FlushHandler>) {
    let late = queues
        .state()
        .sent_at
        .is_some_and(|sent| sent.elapsed() > FLUSH_TIMEOUT);
    if !queues.state().commit.is_broken() && (late || queues.is_broken(REQ_QUEUE)) {
        if late {
            dev_err!(
                queues.device(),
                "the host has not answered a flush for {} s\n",
                FLUSH_TIMEOUT.as_millis() / 1000
            );
        }
        stop(queues);
        queues.handler().answered.notify_all();
    }
}

/// Sends the next flush. On failure the device is marked broken.
///
/// The device status is not read here: a device that needs a reset says so with a
/// configuration interrupt (see [`Flusher::needs_reset`]), and a stopped queue refuses the
/// request.
fn send(queues: &mut Locked<'_, FlushHandler>) -> Result {
    let Some(mut req) = queues.state().req.take() else {
        stop(queues);
        return Err(EIO);
    };
    req.input_mut()
        .copy_from_slice(&RESPONSE_FAILED.to_le_bytes());
    if let Err((req, e)) = queues.add(REQ_QUEUE, req) {
        queues.state().req = Some(req);
        if e == ENODEV {
            // The bus is stopping the queue (unbind or freeze), which is no breakage.
            queues.state().stop();
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
pub(crate) struct Flusher {
    vqs: Arc<Virtqueues<FlushHandler>>,
}

impl Flusher {
    pub(crate) fn new(vqs: Arc<Virtqueues<FlushHandler>>) -> Self {
        Self { vqs }
    }

    /// Joins the group commit; returns the flush that answers the caller.
    fn join(queues: &mut Locked<'_, FlushHandler>) -> Result<u64> {
        let st = queues.state();
        st.stats.requests += 1;
        match st.commit.join() {
            Join::Fail => Err(EIO),
            Join::Wait(target) => {
                st.stats.coalesced += 1;
                Ok(target)
            }
            Join::Send(target) => send(queues).map(|()| target),
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

impl Flush for Flusher {
    fn flush(&self) -> Result {
        let mut queues = self.vqs.lock();
        let target = Self::join(&mut queues)?;
        let answered = &queues.handler().answered;
        loop {
            if let Some(result) = queues.state().commit.outcome(target) {
                return result;
            }
            if !queues.wait_timeout(answered, HEALTH_CHECK) {
                check_health(&mut queues);
            }
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
        let _ = Self::join(&mut queues);
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
