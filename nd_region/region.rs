// SPDX-License-Identifier: GPL-2.0

//! Region descriptions.

use crate::{
    bindings,
    fmt,
    prelude::*, //
};

/// The alignment libnvdimm needs for a [`RegionFlag::Pagemap`] region (the memory hotplug
/// subsection size), so that its pages can be mapped for DAX.
pub const PAGEMAP_ALIGN: u64 = 1 << bindings::SUBSECTION_SHIFT;

crate::impl_flags!(
    /// Region flags: a set of [`RegionFlag`]s (`ND_REGION_*` bits of `nd_region_desc.flags`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct RegionFlags(u64);

    /// A region flag.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum RegionFlag {
        /// Maps the memory with `struct page`s by default (`ND_REGION_PAGEMAP`), so that fsdax
        /// works without a pfn device.
        Pagemap = 1 << bindings::ND_REGION_PAGEMAP,
        /// Makes writes durable only after the region's [`Flush`](super::Flush) callback ran
        /// (`ND_REGION_ASYNC`), so DAX mappings cannot be synchronous (no `MAP_SYNC`).
        Async = 1 << bindings::ND_REGION_ASYNC,
    }
);

/// Why a range cannot become a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The range is empty.
    Empty,
    /// The range wraps around the end of the physical address space.
    Wraps,
    /// A [`RegionFlag::Pagemap`] range is not aligned to [`PAGEMAP_ALIGN`].
    Unaligned,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "the range is empty",
            Self::Wraps => "the range wraps around the address space",
            Self::Unaligned => "the range is not aligned to the memory hotplug subsection size",
        })
    }
}

impl From<RangeError> for Error {
    fn from(e: RangeError) -> Self {
        match e {
            RangeError::Empty | RangeError::Unaligned => EINVAL,
            RangeError::Wraps => ERANGE,
        }
    }
}

/// A persistent memory range to become a region.
///
/// # Examples
///
/// ```
/// use kernel::nvdimm::{
///     RangeError,
///     RegionDesc,
///     RegionFlag,
///     RegionFlags,
///     PAGEMAP_ALIGN, //
/// };
///
/// let desc = RegionDesc::new(1 << 32, 1 << 30, RegionFlag::Pagemap | RegionFlag::Async)?;
/// assert_eq!(desc.end(), (1 << 32) + (1 << 30) - 1);
/// assert_eq!(RegionDesc::new(0, 0, RegionFlags::empty()).err(), Some(RangeError::Empty));
/// assert_eq!(RegionDesc::new(u64::MAX, 2, RegionFlags::empty()).err(), Some(RangeError::Wraps));
/// let odd = RegionDesc::new(PAGEMAP_ALIGN, 4096, RegionFlag::Pagemap);
/// assert_eq!(odd.err(), Some(RangeError::Unaligned));
/// assert!(RegionDesc::new(PAGEMAP_ALIGN + 4096, 4096, RegionFlags::empty()).is_ok());
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RegionDesc {
    start: u64,
    size: u64,
    flags: RegionFlags,
    numa_node: i32,
    target_node: i32,
}

impl RegionDesc {
    /// Describes `size` bytes at guest-physical `start`.
    ///
    /// The description holds the NUMA node of the memory and its target node (the node the memory
    /// would join if onlined). Fails for an empty range, one that wraps around the address space,
    /// or a [`RegionFlag::Pagemap`] one not aligned to [`PAGEMAP_ALIGN`].
    pub fn new(start: u64, size: u64, flags: impl Into<RegionFlags>) -> Result<Self, RangeError> {
        let flags = flags.into();
        if size == 0 {
            return Err(RangeError::Empty);
        }
        start.checked_add(size - 1).ok_or(RangeError::Wraps)?;
        if flags.contains(RegionFlag::Pagemap)
            && (start % PAGEMAP_ALIGN != 0 || size % PAGEMAP_ALIGN != 0)
        {
            return Err(RangeError::Unaligned);
        }
        // SAFETY: Both only look the address up in the NUMA tables.
        let numa_node = unsafe { bindings::memory_add_physaddr_to_nid(start) };
        // SAFETY: As above.
        let target_node = match unsafe { bindings::phys_to_target_node(start) } {
            bindings::NUMA_NO_NODE => numa_node,
            node => node,
        };
        Ok(Self {
            start,
            size,
            flags,
            numa_node,
            target_node,
        })
    }

    /// Returns the first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Returns the size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the last byte.
    pub fn end(&self) -> u64 {
        self.start + (self.size - 1)
    }

    /// Returns the flags.
    pub fn flags(&self) -> RegionFlags {
        self.flags
    }

    /// Returns the NUMA node of the memory.
    pub(super) fn numa_node(&self) -> i32 {
        self.numa_node
    }

    /// Returns the node the memory would join if onlined as system RAM.
    pub(super) fn target_node(&self) -> i32 {
        self.target_node
    }
}
