// SPDX-License-Identifier: GPL-2.0

//! The region's flush callback: callers join the group commit and wait for its answer.

use super::{
    new_request,
    recovery::{
        request_recovery,
        Reason,
        Watchdog, //
    },
    send::{
        end_hold,
        send,
        stop_quietly, //
    },
    FlushHandler,
    FlushState,
    Hold,
    HEALTH_CHECK, //
};
use crate::commit::Join;
use kernel::{
    nvdimm::{
        Flush,
        FlushBio, //
    },
    prelude::*,
    sync::Arc,
    time::Delta,
    virtio::{
        Locked,
        Virtqueues, //
    },
    workqueue::DelayedWork, //
};

/// The flush callback of the device's region.
///
/// Dropping the last reference cancels the [`Watchdog`]: only the flusher arms it, so no check
/// can run after that (and with it, none after unbind).
pub(crate) struct Flusher {
    vqs: Arc<Virtqueues<FlushHandler>>,
    watchdog: Arc<Watchdog>,
}

impl Flusher {
    /// Creates the flush callback of the queues `vqs`, with its watchdog.
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

    /// Runs `f` on the flush state, locked.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut FlushState) -> R) -> R {
        f(self.vqs.lock().state())
    }

    /// Recovers the device, which asked to be reset (`NEEDS_RESET`).
    ///
    /// It will not answer what it holds, so it is recovered, and the flush sent again.
    pub(crate) fn needs_reset(&self) {
        request_recovery(&mut self.vqs.lock(), Reason::NeedsReset);
    }

    /// Prepares for the unbinding of the device.
    ///
    /// From now on a device that does not answer is given up (within
    /// [`UNBIND_WAIT`](super::UNBIND_WAIT)) instead of recovered, and a recovery under way is
    /// abandoned, since unbind holds the lock it needs.
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

    /// Takes flushes again once the device is back from system sleep.
    ///
    /// The device's queue is found again and ready. Flushes lost to the sleep stay failed.
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
