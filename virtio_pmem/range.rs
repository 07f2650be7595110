// SPDX-License-Identifier: GPL-2.0

//! The device's persistent memory range.

use kernel::{
    device::{Bound, Core},
    nvdimm::{RegionDesc, RegionFlags},
    prelude::*,
    uapi,
    virtio::{self, Features},
};

/// Where `struct virtio_pmem_config` keeps the range.
const CONFIG_START: usize = core::mem::offset_of!(uapi::virtio_pmem_config, start);
const CONFIG_SIZE: usize = core::mem::offset_of!(uapi::virtio_pmem_config, size);

/// The shared memory region that holds the range with `VIRTIO_PMEM_F_SHMEM_REGION`.
const SHMEM_REGION: u8 = uapi::VIRTIO_PMEM_SHMEM_REGION_ID as u8;

/// The region: mapped with pages (fsdax without a pfn device), durable only after a flush.
const FLAGS: RegionFlags = RegionFlags::PAGEMAP.union(RegionFlags::ASYNC);

/// Withdraws `VIRTIO_PMEM_F_SHMEM_REGION` if the device offers it without region 0: the range
/// then comes from the configuration space.
pub(crate) fn validate(vdev: &virtio::Device<Core<'_>>, features: &mut Features<'_>) {
    if features.has(uapi::VIRTIO_PMEM_F_SHMEM_REGION) && vdev.shm_region(SHMEM_REGION).is_none() {
        dev_notice!(
            vdev,
            "no shared memory region {SHMEM_REGION}: using the configuration space\n"
        );
        features.clear(uapi::VIRTIO_PMEM_F_SHMEM_REGION);
    }
}

/// Reads the range and checks that libnvdimm can map it.
pub(crate) fn read(vdev: &virtio::Device<Bound>) -> Result<RegionDesc> {
    let (start, size, source) = if vdev.has_feature(uapi::VIRTIO_PMEM_F_SHMEM_REGION) {
        let Some(region) = vdev.shm_region(SHMEM_REGION) else {
            dev_err!(vdev, "shared memory region {SHMEM_REGION} is gone\n");
            return Err(ENODEV);
        };
        (region.addr, region.len, "shared memory region")
    } else {
        let range = vdev.read_config(|config| {
            Ok((
                config.read_le64(CONFIG_START)?,
                config.read_le64(CONFIG_SIZE)?,
            ))
        });
        let (start, size) = range.inspect_err(|e| {
            dev_err!(vdev, "cannot read the configuration space: {e:?}\n");
        })?;
        (start, size, "configuration space")
    };
    RegionDesc::new(start, size, FLAGS).map_err(|e| {
        dev_err!(
            vdev,
            "refusing range {start:#x}+{size:#x} from the {source}: {e}\n"
        );
        Error::from(e)
    })
}
