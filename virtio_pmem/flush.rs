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
//! [`Locked::recover`](kernel::virtio::Locked::recover)): its queue broke, its status
//! no longer reads `DRIVER_OK` (the host lost the device's state, as QEMU does across
//! save/restore and live update) or asks for a reset, or the host sat on the flush for the
//! `flush_timeout_ms` module parameter. The recovery resets the device, sets its queue up again
//! and sends the flush again: a flush is idempotent, and its waiters get the answer to the one
//! sent again. The flush that was lost is never counted as answered. Only after `max_resets`
//! recoveries in a row without an answer (or on a transport that cannot be recovered) does the
//! device give up, failing its waiters with `EIO`. With the defaults, a waiter thus gets an
//! answer or `EIO` within `(max_resets + 1) * flush_timeout_ms` plus a second per reset; with
//! `flush_timeout_ms=0` a host that keeps `DRIVER_OK` is waited for without limit.
//!
//! [`Watchdog`]: recovery::Watchdog

use self::recovery::Reason;
use crate::commit::Commit;
use kernel::{
    nvdimm::FlushBioList,
    prelude::*,
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
    uapi,
    virtio::Request, //
};

mod flusher;
mod handler;
mod recovery;
mod send;

pub(crate) use self::flusher::Flusher;
pub(crate) use self::handler::FlushHandler;

/// The request queue, the only queue of the device.
const REQ_QUEUE: usize = 0;

/// The shortest hold worth a sleep (see [`hold_for`]).
const HOLD_MIN: Delta = Delta::from_micros(50);

/// The longest hold, whatever the module parameter says.
const HOLD_MAX: Delta = Delta::from_millis(100);

/// The most flushes sent without a hold after holds that missed.
const HOLD_BACKOFF_MAX: u32 = 1024;

/// How often the [`Watchdog`](recovery::Watchdog) checks on a flush in flight (and how long a
/// waiting caller sleeps at a time).
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
    /// The request came back without a response.
    ///
    /// A completion for a request made before a reset (QEMU finishes those on the new queue),
    /// or a host that skipped it. The flush is sent again.
    Unanswered,
}

/// Returns the host's answer to a flush, from `ret` of `struct virtio_pmem_resp`.
///
/// The device must have written the response whole. Zero is success; anything else (QEMU says 1,
/// the specification -1) is a failure, except [`RESPONSE_UNANSWERED`], the value the driver put
/// there.
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

/// Returns how long the host may sit on a flush before the device is recovered, if at all.
///
/// The recovery policy, from the module parameter `flush_timeout_ms`.
fn flush_timeout() -> Option<Delta> {
    let ms = crate::module_parameters::flush_timeout_ms.value();
    (ms != 0).then(|| Delta::from_millis(ms.into()))
}

/// Returns how long to hold the next flush for the callers the latest one answered.
///
/// After a host flush that took `latency`: half of it, at most `group_hold_us` and [`HOLD_MAX`],
/// none below [`HOLD_MIN`].
fn hold_for(latency: Delta) -> Option<Delta> {
    let param = i64::from(crate::module_parameters::group_hold_us.value());
    let max = param.min(HOLD_MAX.as_micros_ceil());
    let us = (latency.as_micros_ceil() / 2).min(max);
    (us >= HOLD_MIN.as_micros_ceil()).then(|| Delta::from_micros(us))
}

/// Returns how many recoveries in a row may go without an answer before the device is given
/// up.
fn max_resets() -> u32 {
    crate::module_parameters::max_resets.value()
}

/// Allocates a flush request.
///
/// The request holds a `struct virtio_pmem_req` asking for a flush, and room for the
/// `struct virtio_pmem_resp`.
fn new_request(flags: kernel::alloc::Flags) -> Result<Request> {
    let mut req = Request::new(
        core::mem::size_of::<uapi::virtio_pmem_req>(),
        RESPONSE_LEN,
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
    /// Returns how long the hold has left to run; zero or less once it ran out.
    fn left(&self) -> Delta {
        self.max - self.since.elapsed()
    }
}

/// The flush state, under the queue lock.
pub(crate) struct FlushState {
    pub(crate) commit: Commit,
    /// The request, while the device does not hold it.
    req: Option<Request>,
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
    malformed: Option<Request>,
    /// The next flush goes out as [`FlushState::malformed`].
    pub(crate) inject_malformed: bool,
    /// A request for when [`FlushState::req`] is lost to a reset, refilled by the watchdog.
    spare: Option<Request>,
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
    /// Creates the state of a new device, with the flush request allocated once for all.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            commit: Commit::default(),
            req: Some(new_request(GFP_KERNEL)?),
            covered: FlushBioList::new(),
            waiting: FlushBioList::new(),
            sent_at: None,
            answered_at: None,
            stats: Stats::default(),
            malformed: Some(Request::new(0, RESPONSE_LEN, GFP_KERNEL)?),
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

    /// Stops sending: every waiting bio fails (once the lock is released).
    ///
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
