// SPDX-License-Identifier: GPL-2.0

//! The queue handler: the host's answers, and what the bus reports.

use super::{
    hold_for,
    host_answer,
    max_resets,
    new_request,
    recovery::{
        request_recovery,
        Reason,
        Recovered, //
    },
    send::{
        resend,
        send,
        stop_quietly, //
    },
    Answer,
    Finished,
    FlushState,
    Hold,
    RESPONSE_LEN, //
};
use kernel::{
    new_condvar,
    nvdimm::FlushBioList,
    prelude::*,
    sync::CondVar,
    time::Instant,
    virtio::{
        self,
        Locked,
        Request, //
    }, //
};

/// The queue handler: wakes callers when the host answers.
#[pin_data]
pub(crate) struct FlushHandler {
    /// Callers sleep here until the host answers their flush.
    #[pin]
    pub(super) answered: CondVar,
}

impl FlushHandler {
    /// Creates the handler.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            answered <- new_condvar!("virtio_pmem_rust::answered"),
        })
    }
}

impl virtio::Handler for FlushHandler {
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
        req: Request,
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

/// Takes the host's answers from queue `index` and acts on them.
///
/// Returns whether there were any. Wakes the callers they answer.
pub(super) fn reap(queues: &mut Locked<'_, FlushHandler>, index: usize) -> bool {
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
