// SPDX-License-Identifier: GPL-2.0

//! Sending flushes to the host, and giving up on the device.

use super::{
    recovery::{
        request_recovery,
        Reason, //
    },
    Finished,
    FlushHandler,
    HOLD_BACKOFF_MAX,
    REQ_QUEUE,
    RESPONSE_UNANSWERED, //
};
use kernel::{
    prelude::*,
    time::Instant,
    virtio::Locked, //
};

/// Gives up on the device: every caller and bio fails with `EIO` from now on.
pub(super) fn stop(queues: &mut Locked<'_, FlushHandler>) {
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
pub(super) fn stop_quietly(queues: &mut Locked<'_, FlushHandler>) {
    let mut finished = Finished::default();
    queues.state().stop(&mut finished);
    let all = queues.finished();
    all.ok.append(&mut finished.ok);
    all.failed.append(&mut finished.failed);
}

/// Sends the next flush.
///
/// On failure the device is marked broken.
///
/// The device status is not read here: a device that needs a reset says so with a configuration
/// interrupt (see [`Flusher::needs_reset`](super::Flusher::needs_reset)), and a stopped queue
/// refuses the request.
pub(super) fn send(queues: &mut Locked<'_, FlushHandler>) -> Result {
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

/// Sends again the flush that was lost to a reset or given back unanswered.
///
/// Only if anyone waits for it or a later one. It gets a new number: the lost one is never
/// answered.
pub(super) fn resend(queues: &mut Locked<'_, FlushHandler>) {
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

/// Ends the hold on the next flush, if any, and sends it if anyone waits for it.
///
/// A hold that ended without all its callers (`joined` false) is a miss: the next holds are
/// skipped.
pub(super) fn end_hold(queues: &mut Locked<'_, FlushHandler>, joined: bool) -> Result {
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
