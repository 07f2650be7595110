// SPDX-License-Identifier: GPL-2.0

//! The device's persistent memory range.

use kernel::{
    device::Bound,
    nvdimm::{
        RangeError,
        RegionDesc,
        RegionFlag,
        RegionFlags, //
    },
    prelude::*,
    uapi,
    virtio::{
        self,
        Features, //
    }, //
};

/// Where `struct virtio_pmem_config` keeps the range.
const CONFIG_START: usize = core::mem::offset_of!(uapi::virtio_pmem_config, start);
const CONFIG_SIZE: usize = core::mem::offset_of!(uapi::virtio_pmem_config, size);

/// The shared memory region that holds the range with `VIRTIO_PMEM_F_SHMEM_REGION`.
// CAST: The region id is 0.
const SHMEM_REGION: u8 = uapi::VIRTIO_PMEM_SHMEM_REGION_ID as u8;

/// Returns the region's flags: mapped with pages (fsdax without a pfn device), durable only
/// after a flush.
fn flags() -> RegionFlags {
    RegionFlag::Pagemap | RegionFlag::Async
}

/// Withdraws `VIRTIO_PMEM_F_SHMEM_REGION` if the device offers it without region 0: the range
/// then comes from the configuration space.
pub(crate) fn validate(vdev: &virtio::Device<Bound>, features: &mut Features<'_>) {
    if features.has(uapi::VIRTIO_PMEM_F_SHMEM_REGION) && vdev.shm_region(SHMEM_REGION).is_none() {
        dev_notice!(
            vdev,
            "no shared memory region {SHMEM_REGION}: using the configuration space\n"
        );
        features.clear(uapi::VIRTIO_PMEM_F_SHMEM_REGION);
    }
}

/// Why a device's range is refused.
#[derive(Debug, PartialEq)]
pub(crate) enum Refusal {
    /// The range could not be read from the device.
    Unreadable(Error),
    /// libnvdimm cannot map it.
    Bad(RangeError),
}

/// Returns the region for a range as read from the device (`Err` if it could not be read).
pub(crate) fn region(range: Result<(u64, u64)>) -> Result<RegionDesc, Refusal> {
    let (start, size) = range.map_err(Refusal::Unreadable)?;
    RegionDesc::new(start, size, flags()).map_err(Refusal::Bad)
}

/// Reads the range and checks that libnvdimm can map it.
pub(crate) fn read(vdev: &virtio::Device<Bound>) -> Result<RegionDesc> {
    let shm = vdev.has_feature(uapi::VIRTIO_PMEM_F_SHMEM_REGION);
    let (range, source) = if shm {
        let range = vdev
            .shm_region(SHMEM_REGION)
            .map(|region| (region.addr, region.len))
            .ok_or(ENODEV);
        (range, "shared memory region 0")
    } else {
        let range = vdev.read_config::<uapi::virtio_pmem_config, _>(|config| {
            Ok((
                config.read_le64(CONFIG_START)?,
                config.read_le64(CONFIG_SIZE)?,
            ))
        });
        (range, "configuration space")
    };
    let (start, size) = *range.as_ref().unwrap_or(&(0, 0));
    region(range).map_err(|refusal| match refusal {
        Refusal::Unreadable(e) => {
            dev_err!(vdev, "cannot read the range from the {source}: {e:?}\n");
            e
        }
        Refusal::Bad(e) => {
            dev_err!(
                vdev,
                "refusing range {start:#x}+{size:#x} from the {source}: {e}\n"
            );
            Error::from(e)
        }
    })
}

#[cfg(CONFIG_VIRTIO_PMEM_RUST_KUNIT_TEST)]
#[kunit_tests(virtio_pmem_rust_range)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn good_range_is_an_async_pagemap_region() {
        let desc = region(Ok((4 * GIB, GIB))).expect("a 1 GiB range at 4 GiB is good");
        assert_eq!((desc.start(), desc.size()), (4 * GIB, GIB));
        assert!(desc.flags().contains(RegionFlag::Pagemap));
        assert!(desc.flags().contains(RegionFlag::Async));
    }

    #[test]
    fn unreadable_range_is_refused() {
        // What the generation counter gives when the configuration never settles, and what a
        // transport without configuration access gives.
        assert_eq!(region(Err(EAGAIN)).err(), Some(Refusal::Unreadable(EAGAIN)));
        assert_eq!(region(Err(ENODEV)).err(), Some(Refusal::Unreadable(ENODEV)));
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(
            region(Ok((4 * GIB, 0))).err(),
            Some(Refusal::Bad(RangeError::Empty))
        );
        assert_eq!(
            region(Ok((u64::MAX - GIB + 1, 2 * GIB))).err(),
            Some(Refusal::Bad(RangeError::Wraps))
        );
        assert_eq!(
            region(Ok((4 * GIB, 3 << 20))).err(),
            Some(Refusal::Bad(RangeError::Unaligned))
        );
        assert_eq!(
            region(Ok((4 * GIB + (1 << 20), GIB))).err(),
            Some(Refusal::Bad(RangeError::Unaligned))
        );
    }
}
