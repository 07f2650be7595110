// SPDX-License-Identifier: GPL-2.0

//! The flush callback of asynchronous regions.

use crate::{
    bindings,
    prelude::*, //
};
use core::{
    mem::ManuallyDrop,
    ptr::NonNull, //
};

/// Makes writes to a region durable.
///
/// libnvdimm calls the region's callback in two ways: with no bio, for a `REQ_PREFLUSH` or a
/// region's `deep_flush`, where the caller waits for the answer; or with a write bio that asked
/// for `REQ_FUA`, whose data is already in place: the bio is handed over and completed when the
/// flush is done, without blocking its submitter.
pub trait Flush: Send + Sync + 'static {
    /// Makes every write that completed before this call durable, sleeping until it is.
    fn flush(&self) -> Result;

    /// Completes `bio` once every write that completed before this call is durable.
    ///
    /// `bio` must be ended exactly once; its ownership makes sure of it (dropping it ends it
    /// with an error). The default flushes synchronously and ends it.
    fn flush_bio(&self, bio: FlushBio) {
        let result = self.flush();
        bio.end(result);
    }
}

/// What a region asks of its [`Flush`] callback.
pub(super) enum FlushRequest {
    /// Flush now; the caller sleeps until [`Flush::flush`] returns.
    Sync,
    /// Flush, then complete this bio (`NVDIMM_FLUSH_ASYNC`).
    Bio(FlushBio),
}

impl FlushRequest {
    /// Classifies the `bio` argument of the C flush callback.
    ///
    /// # Safety
    ///
    /// `bio` must be null or a bio handed over to the callback, not completed yet, that nobody
    /// else completes.
    pub(super) unsafe fn from_raw(bio: *mut bindings::bio) -> Self {
        match NonNull::new(bio) {
            // INVARIANT: By the safety requirements the bio is ours to complete.
            Some(bio) => Self::Bio(FlushBio(bio)),
            None => Self::Sync,
        }
    }
}

/// A bio to complete after a flush.
///
/// # Invariants
///
/// `self.0` is a valid bio that this value owns the completion of: it has not been ended and
/// nothing else ends it.
pub struct FlushBio(NonNull<bindings::bio>);

// SAFETY: A bio may be completed from any context and thread.
unsafe impl Send for FlushBio {}

impl FlushBio {
    /// Ends the bio with `result` (an error becomes the matching block status).
    pub fn end(self, result: Result) {
        let this = ManuallyDrop::new(self);
        // SAFETY: By the type invariant we own the completion; `this` is never used again.
        unsafe { complete(this.0, result) };
    }
}

impl Drop for FlushBio {
    fn drop(&mut self) {
        // A bio dropped unanswered failed: it was not made durable.
        // SAFETY: By the type invariant we own the completion; this is the last use.
        unsafe { complete(self.0, Err(EIO)) };
    }
}

/// Ends `bio` with `result`.
///
/// # Safety
///
/// The caller must own the completion of `bio` and give it up.
unsafe fn complete(bio: NonNull<bindings::bio>, result: Result) {
    let bio = bio.as_ptr();
    if let Err(e) = result {
        // SAFETY: `bio` is valid and ours until `bio_endio()`.
        unsafe { (*bio).bi_status = bindings::errno_to_blk_status(e.to_errno()) };
    }
    // SAFETY: `bio` is valid and its completion ours.
    unsafe { bindings::bio_endio(bio) };
}

/// A FIFO list of [`FlushBio`]s: a `struct bio_list`, linked through the bios themselves, so
/// that adding one never allocates.
///
/// Dropping the list ends the bios still on it with an error.
///
/// # Invariants
///
/// `self.0` is a valid `struct bio_list` whose bios are owned [`FlushBio`] bios: their
/// completion belongs to the list. A `bio_list` holds no pointer to itself, so the list may
/// move.
pub struct FlushBioList(bindings::bio_list);

// SAFETY: The list owns its bios, which may be completed from any thread.
unsafe impl Send for FlushBioList {}

impl Default for FlushBioList {
    fn default() -> Self {
        Self::new()
    }
}

impl FlushBioList {
    /// Creates an empty list.
    pub const fn new() -> Self {
        // INVARIANT: An empty `bio_list` (what `bio_list_init()` makes) owns no bio.
        Self(bindings::bio_list {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
        })
    }

    /// Adds `bio` at the end.
    pub fn push(&mut self, bio: FlushBio) {
        let bio = ManuallyDrop::new(bio).0.as_ptr();
        // SAFETY: `self.0` is a valid list (type invariant); `bio` is a valid bio whose
        // completion we own (taken from a `FlushBio`), so its `bi_next` is ours to use.
        // INVARIANT: The list owns the bio's completion now.
        unsafe { bindings::bio_list_add(&mut self.0, bio) };
    }

    /// Takes the first bio.
    fn pop(&mut self) -> Option<FlushBio> {
        // SAFETY: `self.0` is a valid list (type invariant).
        let bio = NonNull::new(unsafe { bindings::bio_list_pop(&mut self.0) })?;
        // INVARIANT: The bio left the list, so its completion moves to the new `FlushBio`.
        Some(FlushBio(bio))
    }

    /// Moves all of `other` to the end of `self`, in constant time.
    pub fn append(&mut self, other: &mut Self) {
        // SAFETY: Both lists are valid (type invariant) and distinct (two `&mut`).
        unsafe { bindings::bio_list_merge_init(&mut self.0, &mut other.0) };
        // INVARIANT: The bios of `other` moved to `self`; `other` is left empty.
    }

    /// Ends every bio on the list with `result`.
    pub fn end_all(&mut self, result: Result) {
        while let Some(bio) = self.pop() {
            bio.end(result);
        }
    }
}

impl Drop for FlushBioList {
    fn drop(&mut self) {
        self.end_all(Err(EIO));
    }
}

#[cfg(CONFIG_RUST_NVDIMM_KUNIT_TEST)]
#[kunit_tests(rust_kernel_nvdimm_flush)]
mod tests {
    use super::*;

    #[test]
    fn null_bio_is_a_sync_flush() {
        // SAFETY: A null bio is always allowed.
        let req = unsafe { FlushRequest::from_raw(core::ptr::null_mut()) };
        assert!(matches!(req, FlushRequest::Sync));
    }

    #[test]
    fn empty_bio_list() {
        let mut list = FlushBioList::new();
        assert!(list.pop().is_none());
        let mut other = FlushBioList::new();
        list.append(&mut other);
        assert!(list.pop().is_none() && other.pop().is_none());
        list.end_all(Ok(()));
    }
}
