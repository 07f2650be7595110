// SPDX-License-Identifier: GPL-2.0

//! The bus commands libnvdimm sends to a provider on its own (the bus descriptor's `ndctl`).
//!
//! libnvdimm clears a memory error when a write covers it (`nvdimm_clear_poison()`): it asks
//! the bus for the unit in which errors can be cleared (`ND_CMD_ARS_CAP`), then to clear them
//! (`ND_CMD_CLEAR_ERROR`). Only what the provider reports as cleared is taken off the bus's bad
//! ranges and the regions' bad blocks. A bus without these commands gets the write through but
//! keeps the bad range, which comes back at the next revalidation.
//!
//! User space cannot send these commands: the bus offers none in its command mask.

use crate::{
    bindings,
    ffi::{
        c_int,
        c_uint,
        c_void, //
    },
    prelude::*, //
};

/// The memory-error commands of a bus.
pub trait Control: Send + Sync {
    /// Returns the unit, a power of two, in which errors at `addr..addr + len` can be
    /// cleared: [`Control::clear_error`] is called only for ranges aligned to it.
    fn clear_error_unit(&self, addr: u64, len: u64) -> Result<u32>;

    /// Clears the memory errors in `addr..addr + len`, which a write is about to overwrite, and
    /// returns how many bytes from `addr` on are clear now.
    fn clear_error(&self, addr: u64, len: u64) -> Result<u64>;
}

/// A bus command with its payload, as libnvdimm passes it to the descriptor's `ndctl`.
enum Command {
    ArsCap(bindings::nd_cmd_ars_cap),
    ClearError(bindings::nd_cmd_clear_error),
}

impl Command {
    /// Reads command `cmd` from `buf`, or returns `None` for one this module does not answer.
    ///
    /// # Safety
    ///
    /// `buf` must be valid for reads of `len` bytes.
    unsafe fn read(cmd: c_uint, buf: *const c_void, len: usize) -> Option<Self> {
        match cmd {
            bindings::ND_CMD_ARS_CAP if len >= size_of::<bindings::nd_cmd_ars_cap>() => {
                // SAFETY: `buf` holds at least one (packed, so unaligned) payload.
                Some(Self::ArsCap(unsafe {
                    buf.cast::<bindings::nd_cmd_ars_cap>().read_unaligned()
                }))
            }
            bindings::ND_CMD_CLEAR_ERROR if len >= size_of::<bindings::nd_cmd_clear_error>() => {
                // SAFETY: As above.
                Some(Self::ClearError(unsafe {
                    buf.cast::<bindings::nd_cmd_clear_error>().read_unaligned()
                }))
            }
            _ => None,
        }
    }

    /// Answers the command with `control`; the payload carries the answer.
    fn answer(&mut self, control: &dyn Control) -> Result {
        match self {
            Self::ArsCap(cap) => {
                let unit = control.clear_error_unit(cap.address, cap.length)?;
                if !unit.is_power_of_two() {
                    return Err(EINVAL);
                }
                cap.clear_err_unit = unit;
                cap.status = 0;
            }
            Self::ClearError(clear) => {
                let cleared = control.clear_error(clear.address, clear.length)?;
                clear.cleared = cleared.min(clear.length);
                clear.status = 0;
            }
        }
        Ok(())
    }

    /// Writes the payload back to `buf`.
    ///
    /// # Safety
    ///
    /// `buf` must be valid for writes of the payload [`Self::read`] read from it.
    unsafe fn write(&self, buf: *mut c_void) {
        match self {
            // SAFETY: By the safety requirements `buf` holds the payload.
            Self::ArsCap(cap) => unsafe {
                buf.cast::<bindings::nd_cmd_ars_cap>().write_unaligned(*cap)
            },
            // SAFETY: As above.
            Self::ClearError(clear) => unsafe {
                buf.cast::<bindings::nd_cmd_clear_error>()
                    .write_unaligned(*clear)
            },
        }
    }
}

/// Answers a bus command: the body of the descriptor's `ndctl` callback.
///
/// Returns `-ENOTTY` for commands to a DIMM and commands other than the two above; a command
/// that fails sets `*cmd_rc` to its error.
///
/// # Safety
///
/// `buf` must be valid for reads and writes of `len` bytes, and `cmd_rc` valid for writes (or
/// null).
pub(super) unsafe fn ndctl(
    control: &dyn Control,
    nvdimm: *mut bindings::nvdimm,
    cmd: c_uint,
    buf: *mut c_void,
    len: c_uint,
    cmd_rc: *mut c_int,
) -> c_int {
    if !nvdimm.is_null() || buf.is_null() {
        return ENOTTY.to_errno();
    }
    // SAFETY: By the safety requirements `buf` is valid for `len` bytes.
    let Some(mut command) = (unsafe { Command::read(cmd, buf, len as usize) }) else {
        return ENOTTY.to_errno();
    };
    let rc = match command.answer(control) {
        Ok(()) => {
            // SAFETY: `command` was read from `buf`, which is valid for writes of it.
            unsafe { command.write(buf) };
            0
        }
        Err(e) => e.to_errno(),
    };
    if !cmd_rc.is_null() {
        // SAFETY: By the safety requirements a non-null `cmd_rc` is valid for writes.
        unsafe { cmd_rc.write(rc) };
    }
    0
}

#[cfg(CONFIG_RUST_NVDIMM_KUNIT_TEST)]
#[kunit_tests(rust_kernel_nvdimm_control)]
mod tests {
    use super::*;

    /// Clears in `unit` bytes, at most `limit` bytes at a time.
    struct Stub {
        unit: u32,
        limit: u64,
    }

    impl Control for Stub {
        fn clear_error_unit(&self, _addr: u64, _len: u64) -> Result<u32> {
            Ok(self.unit)
        }

        fn clear_error(&self, _addr: u64, len: u64) -> Result<u64> {
            Ok(len.min(self.limit))
        }
    }

    /// Sends `cmd` with `payload` to `stub`; returns the callback's and the command's status.
    fn send<T>(stub: &Stub, cmd: u32, payload: &mut T, len: usize) -> (c_int, c_int) {
        let mut cmd_rc = 1;
        // SAFETY: `payload` is valid for `len` bytes (at most its size) and `cmd_rc` for
        // writes.
        let rc = unsafe {
            ndctl(
                stub,
                core::ptr::null_mut(),
                cmd,
                core::ptr::from_mut(payload).cast(),
                // CAST: `len` is at most the size of a command payload.
                len as c_uint,
                &mut cmd_rc,
            )
        };
        (rc, cmd_rc)
    }

    #[test]
    fn ars_cap_answers_the_unit() {
        let stub = Stub {
            unit: 4096,
            limit: u64::MAX,
        };
        let mut cap: bindings::nd_cmd_ars_cap = pin_init::zeroed();
        cap.address = 0x1_0000_0000;
        cap.length = 4096;
        let len = size_of_val(&cap);
        assert_eq!(send(&stub, bindings::ND_CMD_ARS_CAP, &mut cap, len), (0, 0));
        assert_eq!({ cap.clear_err_unit }, 4096);
    }

    #[test]
    fn clear_error_answers_what_was_cleared() {
        let stub = Stub {
            unit: 4096,
            limit: 8192,
        };
        let mut clear: bindings::nd_cmd_clear_error = pin_init::zeroed();
        clear.address = 0x1_0000_0000;
        clear.length = 16384;
        let len = size_of_val(&clear);
        assert_eq!(
            send(&stub, bindings::ND_CMD_CLEAR_ERROR, &mut clear, len),
            (0, 0)
        );
        assert_eq!({ clear.cleared }, 8192);
    }

    #[test]
    fn bad_units_and_other_commands_are_refused() {
        let stub = Stub {
            unit: 3000,
            limit: u64::MAX,
        };
        let mut cap: bindings::nd_cmd_ars_cap = pin_init::zeroed();
        let len = size_of_val(&cap);
        assert_eq!(
            send(&stub, bindings::ND_CMD_ARS_CAP, &mut cap, len),
            (0, EINVAL.to_errno())
        );
        assert_eq!(
            send(&stub, bindings::ND_CMD_ARS_START, &mut cap, len).0,
            ENOTTY.to_errno()
        );
        // A payload too short for the command.
        assert_eq!(
            send(&stub, bindings::ND_CMD_ARS_CAP, &mut cap, len - 1).0,
            ENOTTY.to_errno()
        );
    }
}
