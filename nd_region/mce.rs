// SPDX-License-Identifier: GPL-2.0

//! Machine-check records on the x86 decode chain.
//!
//! The kernel logs every machine-check record it finds (in the `#MC` handler, by polling, or
//! from `mce-inject`) and later passes it, in process context, to the notifiers of the decode
//! chain. A [`Registration`] puts a [`Handler`] on that chain; the handler sees each [`Record`]
//! and can mark it handled, the way the ACPI NFIT driver does for memory errors in persistent
//! memory.
//!
//! On kernels without `CONFIG_X86_MCE` a [`Registration`] succeeds and its handler never runs:
//! no record can exist there.
//!
//! C header: [`arch/x86/include/asm/mce.h`](srctree/arch/x86/include/asm/mce.h)

#[cfg(CONFIG_X86_MCE)]
use crate::ffi::{
    c_ulong,
    c_void, //
};
use crate::{
    bindings,
    prelude::*,
    types::Opaque, //
};

/// A machine-check record (`struct mce`) as the decode chain passes it.
///
/// # Invariants
///
/// The record is valid for the lifetime of the reference to it.
#[cfg(CONFIG_X86_MCE)]
#[repr(transparent)]
pub struct Record(Opaque<bindings::mce>);

/// A machine-check record; none exist on kernels without `CONFIG_X86_MCE`.
#[cfg(not(CONFIG_X86_MCE))]
pub enum Record {}

#[cfg(CONFIG_X86_MCE)]
impl Record {
    /// Creates a reference to the record at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct mce` that stays valid, and is not accessed by
    /// anything else, for the lifetime `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::mce) -> &'a Self {
        // SAFETY: `Record` is a transparent wrapper of `struct mce`; by the safety requirements
        // the record is valid for `'a`.
        //
        // INVARIANT: By the safety requirements the record is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct mce`.
    fn as_raw(&self) -> *mut bindings::mce {
        self.0.get()
    }

    /// Returns the record's fields, for reading.
    fn raw(&self) -> &bindings::mce {
        // SAFETY: By the type invariant the record is valid, and only `set_handled` writes to
        // it, through `kflags`, which no reference returned here outlives.
        unsafe { &*self.as_raw() }
    }

    /// Returns whether the record reports a memory error (`mce_is_memory_error()`).
    pub fn is_memory_error(&self) -> bool {
        // SAFETY: The record is valid (type invariant); the function only reads it.
        unsafe { bindings::mce_is_memory_error(self.as_raw()) }
    }

    /// Returns whether the hardware corrected the error (`mce_is_correctable()`).
    pub fn is_correctable(&self) -> bool {
        // SAFETY: As above.
        unsafe { bindings::mce_is_correctable(self.as_raw()) }
    }

    /// Returns whether [`Self::addr`] is a physical address the kernel can use
    /// (`mce_usable_address()`).
    pub fn has_usable_address(&self) -> bool {
        // SAFETY: As above.
        unsafe { bindings::mce_usable_address(self.as_raw()) }
    }

    /// Returns the physical address of the error, without the bits above the CPU's
    /// physical address width.
    ///
    /// Meaningful only if [`Self::has_usable_address`].
    pub fn addr(&self) -> u64 {
        // SAFETY: As above.
        unsafe { bindings::mce_physical_address(self.as_raw()) }
    }

    /// Returns the size of the memory the error covers, a power of two to which
    /// [`Self::addr`] can be aligned down: `1 << MCI_MISC_ADDR_LSB(misc)`.
    pub fn granularity(&self) -> u64 {
        granularity(self.raw().misc)
    }

    /// Marks the record handled by a persistent memory provider (`MCE_HANDLED_NFIT`), so that
    /// the kernel does not report it as unhandled.
    pub fn set_handled(&self) {
        // SAFETY: The record is valid (type invariant) and the decode chain runs its notifiers
        // one at a time, so nothing else accesses it now.
        unsafe { (*self.as_raw()).kflags |= bindings::MCE_HANDLED_NFIT };
    }
}

#[cfg(not(CONFIG_X86_MCE))]
impl Record {
    /// Returns whether the record reports a memory error.
    pub fn is_memory_error(&self) -> bool {
        match *self {}
    }

    /// Returns whether the hardware corrected the error.
    pub fn is_correctable(&self) -> bool {
        match *self {}
    }

    /// Returns whether [`Self::addr`] is a physical address the kernel can use.
    pub fn has_usable_address(&self) -> bool {
        match *self {}
    }

    /// Returns the physical address of the error.
    pub fn addr(&self) -> u64 {
        match *self {}
    }

    /// Returns the size of the memory the error covers.
    pub fn granularity(&self) -> u64 {
        match *self {}
    }

    /// Marks the record handled by a persistent memory provider.
    pub fn set_handled(&self) {
        match *self {}
    }
}

/// Returns `1 << MCI_MISC_ADDR_LSB(misc)`, the size an error's address is precise to.
#[cfg(CONFIG_X86_MCE)]
fn granularity(misc: u64) -> u64 {
    1 << (misc & 0x3f)
}

/// Code that looks at each machine-check record on the decode chain.
pub trait Handler: Send + Sync {
    /// Looks at `record`.
    ///
    /// Runs in process context and may sleep.
    fn notify(&self, record: &Record);
}

/// A [`Handler`] on the machine-check decode chain, at the priority of persistent memory
/// providers (`MCE_PRIO_NFIT`, after the kernel's own memory-failure handling).
///
/// Dropping the registration takes the handler off the chain, after any call of it in
/// progress has returned.
///
/// # Invariants
///
/// With `CONFIG_X86_MCE`, `nb` is on the decode chain, with a callback that passes records to
/// `handler`, from the end of [`Registration::new`] until `drop`.
#[pin_data(PinnedDrop)]
pub struct Registration<H: Handler> {
    #[pin]
    nb: Opaque<bindings::notifier_block>,
    handler: H,
}

// SAFETY: The notifier block is only touched by the decode chain under its own lock; the handler
// is `Send`.
unsafe impl<H: Handler> Send for Registration<H> {}

// SAFETY: `&Registration` gives no access to the notifier block; the handler is `Sync`.
unsafe impl<H: Handler> Sync for Registration<H> {}

impl<H: Handler> Registration<H> {
    /// Puts `handler` on the decode chain.
    pub fn new(handler: H) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            nb <- Opaque::ffi_init(|nb: *mut bindings::notifier_block| {
                // SAFETY: `nb` is valid for writes.
                unsafe {
                    nb.write(bindings::notifier_block {
                        notifier_call: Self::callback(),
                        next: core::ptr::null_mut(),
                        // CAST: The priorities are small positive numbers.
                        priority: bindings::mce_notifier_prios_MCE_PRIO_NFIT as c_int,
                    })
                };
            }),
            handler,
        }? Error)
        .pin_chain(|this| {
            // INVARIANT: The block goes on the chain here and off it in `drop`.
            // SAFETY: `this.nb` is initialised and pinned, and stays on the chain only until
            // `drop` takes it off, before it is freed.
            #[cfg(CONFIG_X86_MCE)]
            unsafe {
                bindings::mce_register_decode_chain(this.nb.get())
            };
            #[cfg(not(CONFIG_X86_MCE))]
            let _ = this;
            Ok(())
        })
    }

    /// Returns the notifier callback of the registration.
    #[cfg(CONFIG_X86_MCE)]
    fn callback() -> bindings::notifier_fn_t {
        Some(Self::notifier_call)
    }

    /// Returns no callback: no record can reach it.
    #[cfg(not(CONFIG_X86_MCE))]
    fn callback() -> bindings::notifier_fn_t {
        None
    }

    /// Passes a record of the decode chain to the handler.
    #[cfg(CONFIG_X86_MCE)]
    extern "C" fn notifier_call(
        nb: *mut bindings::notifier_block,
        _val: c_ulong,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: The chain calls back only blocks registered by `new`, which are the `nb`
        // field of a live `Registration<H>` (type invariant).
        let this = unsafe { &*crate::container_of!(Opaque::cast_from(nb), Self, nb) };
        if !data.is_null() {
            // SAFETY: The decode chain passes the `struct mce` it is decoding, valid and not
            // accessed by anything else during the call.
            this.handler
                .notify(unsafe { Record::from_raw(data.cast()) });
        }
        // CAST: `NOTIFY_DONE` is 0.
        bindings::NOTIFY_DONE as c_int
    }
}

#[pinned_drop]
impl<H: Handler> PinnedDrop for Registration<H> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The block is on the chain (type invariant); unregistering waits for calls in
        // progress, so none runs after this.
        #[cfg(CONFIG_X86_MCE)]
        unsafe {
            bindings::mce_unregister_decode_chain(self.nb.get())
        };
        #[cfg(not(CONFIG_X86_MCE))]
        let _ = self;
    }
}

#[cfg(CONFIG_RUST_MCE_KUNIT_TEST)]
#[kunit_tests(rust_kernel_mce)]
mod tests {
    use super::*;

    /// Status bits: valid, uncorrected, enabled, `MISC` and `ADDR` valid.
    const UC_ADDR: u64 = 0xbc00_0000_0000_0000;
    /// `MISC`: physical address mode, address precise to 4 KiB.
    const MISC_PAGE: u64 = 0x8c;

    fn record(vendor: u32, bank: u8, status: u64, misc: u64) -> bindings::mce {
        let mut m: bindings::mce = pin_init::zeroed();
        // CAST: The `X86_VENDOR_*` numbers are small.
        m.cpuvendor = vendor as u8;
        m.bank = bank;
        m.status = status;
        m.misc = misc;
        m.addr = 0x1_0010_0000;
        m
    }

    fn check(mut m: bindings::mce) -> (bool, bool, bool, u64, u64) {
        // SAFETY: `m` is a valid record, used only through `r` while `r` lives.
        let r = unsafe { Record::from_raw(&mut m) };
        let facts = (
            r.is_memory_error(),
            r.is_correctable(),
            r.has_usable_address(),
            r.addr(),
            r.granularity(),
        );
        r.set_handled();
        assert_eq!(m.kflags, bindings::MCE_HANDLED_NFIT);
        facts
    }

    #[test]
    fn intel_uncorrected_memory_error() {
        let m = record(bindings::X86_VENDOR_INTEL, 1, UC_ADDR | 0x9f, MISC_PAGE);
        assert_eq!(check(m), (true, false, true, 0x1_0010_0000, 4096));
    }

    #[test]
    fn intel_corrected_and_bus_errors() {
        // Without UC the hardware corrected it.
        let m = record(
            bindings::X86_VENDOR_INTEL,
            1,
            (UC_ADDR & !(1 << 61)) | 0x9f,
            MISC_PAGE,
        );
        assert!(check(m).1);
        // MCACOD bit 11: a bus or interconnect error, not a memory error.
        let m = record(bindings::X86_VENDOR_INTEL, 1, UC_ADDR | 0x89f, MISC_PAGE);
        assert!(!check(m).0);
    }

    #[test]
    fn addresses_that_cannot_be_used() {
        // No ADDRV.
        let m = record(
            bindings::X86_VENDOR_INTEL,
            1,
            (UC_ADDR & !(1 << 58)) | 0x9f,
            MISC_PAGE,
        );
        assert!(!check(m).2);
        // Precise to 2 MiB only: more than a page, which the kernel refuses.
        let m = record(bindings::X86_VENDOR_INTEL, 1, UC_ADDR | 0x9f, 0x95);
        assert_eq!(check(m).4, 2 << 20);
        assert!(!check(m).2);
    }

    #[test]
    fn granularity_follows_misc() {
        assert_eq!(granularity(0x86), 64);
        assert_eq!(granularity(0x8c), 4096);
        assert_eq!(granularity(0), 1);
    }
}
