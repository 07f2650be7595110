// SPDX-License-Identifier: GPL-2.0

//! Virtio device configuration space and shared memory regions.

use super::Device;
use crate::{bindings, device::Bound, ffi::c_void, prelude::*};

/// How often [`Device::read_config`] retries a read torn by a configuration change before it
/// gives up with `EAGAIN`: a device whose generation never settles must not hang the guest.
const CONFIG_READ_TRIES: u32 = 16;

/// Reads fields of a device's configuration space, inside [`Device::read_config`].
///
/// Multi-byte fields are little-endian, as in every virtio 1.0 device-specific configuration
/// layout (`le16`, `le32`, `le64` in the specification).
pub struct ConfigReader<'a> {
    dev: &'a Device<Bound>,
    get: unsafe extern "C" fn(*mut bindings::virtio_device, u32, *mut c_void, u32),
}

impl ConfigReader<'_> {
    fn read<const N: usize>(&self, offset: usize) -> Result<[u8; N]> {
        let offset = u32::try_from(offset)?;
        offset.checked_add(N as u32).ok_or(EINVAL)?;
        let mut buf = [0u8; N];
        // SAFETY: `self.dev` is a bound virtio device, so its configuration operations are
        // valid; `buf` is valid for writes of `N` bytes, which is the length passed.
        unsafe { (self.get)(self.dev.as_raw(), offset, buf.as_mut_ptr().cast(), N as u32) };
        Ok(buf)
    }

    /// Reads the byte at `offset`.
    pub fn read_u8(&self, offset: usize) -> Result<u8> {
        Ok(self.read::<1>(offset)?[0])
    }

    /// Reads the `le16` field at `offset`.
    pub fn read_le16(&self, offset: usize) -> Result<u16> {
        self.read(offset).map(u16::from_le_bytes)
    }

    /// Reads the `le32` field at `offset`.
    pub fn read_le32(&self, offset: usize) -> Result<u32> {
        self.read(offset).map(u32::from_le_bytes)
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
    fn generation(&self) -> u32 {
        // SAFETY: A bound device has valid configuration operations.
        let ops = unsafe { &*(*self.as_raw()).config };
        match ops.generation {
            // SAFETY: `self` is a valid virtio device and `generation` one of its operations.
            Some(generation) => unsafe { generation(self.as_raw()) },
            None => 0,
        }
    }

    /// Reads the configuration space consistently.
    ///
    /// Calls `f` to read fields; if the device changed its configuration meanwhile (the
    /// configuration generation moved), reads again, so the fields `f` returns all come from one
    /// generation. Fails with `ENODEV` if the transport gives no configuration access, with
    /// `EAGAIN` if the generation does not settle.
    ///
    /// Offsets must lie inside the device's configuration layout, which `f` knows and the
    /// transports do not tell: virtio-pci `BUG()`s on a read past the end of what the device
    /// offers (the C accessors share this limit).
    pub fn read_config<R>(&self, mut f: impl FnMut(&ConfigReader<'_>) -> Result<R>) -> Result<R> {
        // SAFETY: A bound device has valid configuration operations.
        let ops = unsafe { &*(*self.as_raw()).config };
        let reader = ConfigReader {
            dev: self,
            get: ops.get.ok_or(ENODEV)?,
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
