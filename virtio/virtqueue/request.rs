// SPDX-License-Identifier: GPL-2.0

//! Requests: the heap buffers a device reads and writes.

use crate::{
    alloc::Flags,
    bindings,
    ffi::c_void,
    prelude::*, //
};

/// A request: a device-readable buffer and a device-writable buffer.
///
/// The buffers are separate `kmalloc` allocations made once, in [`Request::new`]: they are
/// DMA-safe, never on the stack, and the device-writable one shares no cache line with memory
/// the CPU writes while the device owns the request. Reusing a request costs no allocation.
///
/// # Examples
///
/// ```
/// use kernel::virtio::Request;
///
/// let mut req = Request::new(4, 4, GFP_KERNEL)?;
/// req.out_mut().copy_from_slice(&0u32.to_le_bytes());
/// req.input_mut().copy_from_slice(&1u32.to_le_bytes());
/// assert_eq!(req.input(), &1u32.to_le_bytes());
/// # Ok::<(), Error>(())
/// ```
pub struct Request {
    inner: KBox<RequestInner>,
}

struct RequestInner {
    out: KVec<u8>,
    input: KVec<u8>,
}

impl Request {
    /// Allocates a request with `out_len` device-readable and `in_len` device-writable bytes.
    ///
    /// The bytes are all zero. At least one of the lengths must be non-zero (`EINVAL`
    /// otherwise), and both must fit in a `u32`.
    pub fn new(out_len: usize, in_len: usize, flags: Flags) -> Result<Self> {
        if out_len == 0 && in_len == 0 {
            return Err(EINVAL);
        }
        // The lengths go into scatterlist entries.
        u32::try_from(out_len)?;
        u32::try_from(in_len)?;
        Ok(Self {
            inner: KBox::new(
                RequestInner {
                    out: KVec::from_elem(0u8, out_len, flags)?,
                    input: KVec::from_elem(0u8, in_len, flags)?,
                },
                flags,
            )?,
        })
    }

    /// Returns the device-readable bytes.
    pub fn out(&self) -> &[u8] {
        &self.inner.out
    }

    /// Returns the device-readable bytes, to fill in before adding the request.
    pub fn out_mut(&mut self) -> &mut [u8] {
        &mut self.inner.out
    }

    /// Returns the device-writable bytes, as the device left them.
    pub fn input(&self) -> &[u8] {
        &self.inner.input
    }

    /// Returns the device-writable bytes, for instance to preset a failure status.
    pub fn input_mut(&mut self) -> &mut [u8] {
        &mut self.inner.input
    }

    /// Gives up the buffers for good, for a request the device may still write.
    ///
    /// For instance one the device gave back without an answer, which a host may still answer
    /// after a reset: the buffers are never freed (nor reused), and the request gets empty
    /// buffers. The buffers are kept on purpose, so kmemleak is told they are no
    /// leak.
    pub fn quarantine(&mut self) {
        let inner = &mut *self.inner;
        for buf in [&mut inner.out, &mut inner.input] {
            let buf = core::mem::take(buf);
            if buf.capacity() != 0 {
                // SAFETY: `buf` owns a live `kmalloc` allocation that starts at `buf.as_ptr()`;
                // it is never freed, as `buf` is forgotten below.
                unsafe { bindings::kmemleak_not_leak(buf.as_ptr().cast()) };
            }
            core::mem::forget(buf);
        }
    }

    /// Converts the request into the token a virtqueue carries for it.
    pub(super) fn into_token(self) -> *mut c_void {
        KBox::into_raw(self.inner).cast()
    }

    /// Converts a token back into the request it was made from.
    ///
    /// # Safety
    ///
    /// `token` must come from [`Request::into_token`] on a `Request`, and this must be the
    /// only call for it.
    pub(super) unsafe fn from_token(token: *mut c_void) -> Self {
        Self {
            // SAFETY: By the safety requirements `token` is the pointer `KBox::into_raw`
            // returned for a `RequestInner`, reclaimed only once.
            inner: unsafe { KBox::from_raw(token.cast()) },
        }
    }
}

#[cfg(CONFIG_RUST_VIRTIO_KUNIT_TEST)]
#[kunit_tests(rust_kernel_virtio_virtqueue)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_keeps_buffers() -> Result {
        let mut req = Request::new(4, 8, GFP_KERNEL)?;
        req.out_mut().copy_from_slice(&[1, 2, 3, 4]);
        req.input_mut()[7] = 9;
        let (out, input) = (req.out().as_ptr(), req.input().as_ptr());

        let token = req.into_token();
        assert!(!token.is_null());
        // SAFETY: `token` comes from `into_token` on a `Request`, taken back once.
        let req = unsafe { Request::from_token(token) };

        // The same buffers come back, untouched.
        assert_eq!(req.out().as_ptr(), out);
        assert_eq!(req.input().as_ptr(), input);
        assert_eq!(req.out(), &[1, 2, 3, 4]);
        assert_eq!(req.input()[7], 9);
        Ok(())
    }

    #[test]
    fn quarantine_drops_buffers() -> Result {
        let mut req = Request::new(4, 4, GFP_KERNEL)?;
        req.quarantine();
        assert!(req.out().is_empty());
        assert!(req.input().is_empty());
        Ok(())
    }

    #[test]
    fn request_needs_a_buffer() {
        assert_eq!(Request::new(0, 0, GFP_KERNEL).err(), Some(EINVAL));
        assert!(Request::new(0, 4, GFP_KERNEL).is_ok());
        assert!(Request::new(4, 0, GFP_KERNEL).is_ok());
    }
}
