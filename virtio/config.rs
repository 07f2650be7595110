// SPDX-License-Identifier: GPL-2.0

//! Virtio device configuration space and shared memory regions.

use super::Device;
use crate::{
    bindings,
    device::Bound,
    ffi::c_void,
    prelude::*, //
};
use core::marker::PhantomData;

/// How often [`Device::read_config`] retries a read torn by a configuration change before it
/// gives up with `EAGAIN`: a device whose generation never settles must not hang the guest.
const CONFIG_READ_TRIES: u32 = 16;

/// Returns whether a field of `len` bytes at `offset` lies inside a layout of `size` bytes.
const fn within(size: usize, offset: usize, len: usize) -> bool {
    match offset.checked_add(len) {
        Some(end) => end <= size,
        None => false,
    }
}

/// The configuration layout of a virtio device type, the `#[repr(C)]` structure of its
/// specification.
///
/// # Safety
///
/// The type must be a device-specific configuration structure of the virtio specification (as
/// the kernel's UAPI headers define it), so that its size bounds what the transports map for a
/// device of that type: a configuration read inside it stays inside the configuration window
/// of a device that offers the layout in full.
pub unsafe trait ConfigLayout {}

// SAFETY: `struct virtio_pmem_config` is the device configuration of the virtio-pmem device.
unsafe impl ConfigLayout for crate::uapi::virtio_pmem_config {}

/// Reads fields of a device's configuration space, inside [`Device::read_config`].
///
/// `C` is the device's configuration layout (see [`ConfigLayout`]): every read must lie inside
/// it, and fails with `EINVAL` otherwise. The transports do not know where the configuration
/// ends (virtio-pci `BUG()`s on a read past its window, virtio-mmio reads whatever registers
/// follow), so the layout is the bound. A device that offers less than the whole layout (an
/// older revision of its specification) is not detected: fields that depend on a feature bit
/// must only be read when the feature was negotiated, as in C. Name fields with
/// [`offset_of!`](core::mem::offset_of).
///
/// Multi-byte fields are little-endian, as in every virtio 1.0 device-specific configuration
/// layout (`le16`, `le32`, `le64` in the specification).
pub struct ConfigReader<'a, C> {
    dev: &'a Device<Bound>,
    get: unsafe extern "C" fn(*mut bindings::virtio_device, u32, *mut c_void, u32),
    _layout: PhantomData<fn() -> C>,
}

impl<C: ConfigLayout> ConfigReader<'_, C> {
    /// Reads the `N` bytes at `offset`, which must lie inside `C`.
    fn read<const N: usize>(&self, offset: usize) -> Result<[u8; N]> {
        if !within(core::mem::size_of::<C>(), offset, N) {
            return Err(EINVAL);
        }
        let offset = u32::try_from(offset)?;
        // CAST: `N` is at most the size of `C` (checked above), a configuration structure of the
        // virtio specification (see `ConfigLayout`), far smaller than `u32::MAX`.
        let len = N as u32;
        let mut buf = [0u8; N];
        // SAFETY: `self.dev` is a bound virtio device, so its configuration operations are
        // valid; `buf` is valid for writes of `N` bytes, which is the length passed; the field
        // lies inside the device's configuration layout `C` (checked above).
        unsafe { (self.get)(self.dev.as_raw(), offset, buf.as_mut_ptr().cast(), len) };
        Ok(buf)
    }

    /// Reads the `le64` field at `offset`.
    pub fn read_le64(&self, offset: usize) -> Result<u64> {
        self.read(offset).map(u64::from_le_bytes)
    }
}

/// A shared memory region of a virtio device (`struct virtio_shm_region`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmRegion {
    /// Guest-physical start address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Device<Bound> {
    /// Returns the configuration generation, 0 if the transport has none.
    fn generation(&self) -> u32 {
        let ops = self.ops();
        match ops.generation {
            // SAFETY: `self` is a valid virtio device and `generation` one of its operations.
            Some(generation) => unsafe { generation(self.as_raw()) },
            None => 0,
        }
    }

    /// Reads the configuration space, laid out as `C`, consistently.
    ///
    /// Calls `f` to read fields; if the device changed its configuration meanwhile (the
    /// configuration generation moved), reads again, so the fields `f` returns all come from one
    /// generation. Fails with `ENODEV` if the transport gives no configuration access, with
    /// `EAGAIN` if the generation does not settle. Reads outside `C` fail with `EINVAL` (see
    /// [`ConfigReader`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::mem::offset_of;
    /// use kernel::{
    ///     device::Bound,
    ///     uapi::virtio_pmem_config,
    ///     virtio, //
    /// };
    ///
    /// fn region_size(vdev: &virtio::Device<Bound>) -> Result<u64> {
    ///     vdev.read_config::<virtio_pmem_config, _>(|c| {
    ///         c.read_le64(offset_of!(virtio_pmem_config, size))
    ///     })
    /// }
    /// ```
    pub fn read_config<C: ConfigLayout, R>(
        &self,
        mut f: impl FnMut(&ConfigReader<'_, C>) -> Result<R>,
    ) -> Result<R> {
        let ops = self.ops();
        let reader = ConfigReader {
            dev: self,
            get: ops.get.ok_or(ENODEV)?,
            _layout: PhantomData,
        };
        for _ in 0..CONFIG_READ_TRIES {
            let before = self.generation();
            let value = f(&reader)?;
            if self.generation() == before {
                return Ok(value);
            }
        }
        Err(EAGAIN)
    }

    /// Looks up shared memory region `id`.
    pub fn shm_region(&self, id: u8) -> Option<ShmRegion> {
        let mut region = bindings::virtio_shm_region { addr: 0, len: 0 };
        // SAFETY: `self` is a bound virtio device; `region` is valid for writes.
        if unsafe { bindings::virtio_get_shm_region(self.as_raw(), &mut region, id) } {
            Some(ShmRegion {
                addr: region.addr,
                len: region.len,
            })
        } else {
            None
        }
    }
}

#[cfg(CONFIG_RUST_VIRTIO_KUNIT_TEST)]
#[kunit_tests(rust_kernel_virtio_config)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_inside_the_layout() {
        // A 16-byte layout such as `struct virtio_pmem_config`.
        assert!(within(16, 0, 8));
        assert!(within(16, 8, 8));
        assert!(within(16, 15, 1));
        assert!(!within(16, 9, 8));
        assert!(!within(16, 16, 1));
        assert!(!within(16, 4096, 8));
        assert!(!within(16, usize::MAX, 8));
        assert!(!within(0, 0, 1));
    }
}
