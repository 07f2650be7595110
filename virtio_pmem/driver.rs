// SPDX-License-Identifier: GPL-2.0

//! Probe and teardown of a virtio-pmem device.

use crate::{
    flush::{
        FlushHandler,
        FlushState,
        Flusher, //
    },
    poison,
    range, //
};
use core::{
    fmt::Write,
    pin::Pin, //
};
use kernel::{
    debugfs::{
        Dir,
        File, //
    },
    device::{
        self,
        Bound,
        Core, //
    },
    driver::attribute::{
        Attribute,
        AttributeOperations, //
    },
    fmt,
    nvdimm,
    prelude::*,
    str::{
        CString,
        Formatter, //
    },
    sync::Arc,
    uaccess::UserSliceReader,
    uapi,
    virtio::{
        self,
        Features,
        StatusBit, //
    }, //
};

kernel::virtio_device_table!(VIRTIO_TABLE, [virtio::DeviceId::new(uapi::VIRTIO_ID_PMEM)]);

/// The virtio-pmem driver.
pub(crate) struct VirtioPmemDriver;

/// A bound virtio-pmem device.
///
/// The nvdimm bus goes first when the device is unbound: unregistering it removes the region
/// and its `pmem` device, whose last flush still reaches the host. Then the debugfs files go,
/// then the flusher (which cancels its watchdog), and the bus stops the request queue.
#[pin_data]
pub(crate) struct VirtioPmem<'bound> {
    bus: nvdimm::Bus<'bound, Flusher>,
    #[pin]
    _stats: File<Arc<Flusher>>,
    #[pin]
    _inject: File<Arc<Flusher>>,
    _debugfs: Dir,
    flusher: Arc<Flusher>,
    /// The range the region covers, which must not change across system sleep.
    desc: nvdimm::RegionDesc,
}

impl VirtioPmem<'_> {
    /// Shows debugfs `stats`: the flush counters and state.
    fn show_stats(flusher: &Arc<Flusher>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        flusher.with_state(|st| {
            let s = &st.stats;
            writeln!(f, "requests: {}", s.requests)?;
            writeln!(f, "fua_bios: {}", s.fua_bios)?;
            writeln!(f, "host_flushes: {}", s.host_flushes)?;
            writeln!(f, "coalesced: {}", s.coalesced)?;
            writeln!(f, "host_failures: {}", s.host_failures)?;
            writeln!(f, "in_flight: {}", u8::from(st.commit.in_flight()))?;
            writeln!(f, "sticky_error: {}", u8::from(st.commit.is_failed()))?;
            writeln!(f, "broken: {}", u8::from(st.commit.is_broken()))?;
            writeln!(f, "max_latency_us: {}", s.max_latency_us)?;
            writeln!(f, "last_latency_us: {}", s.last_latency_us)?;
            writeln!(f, "restores: {}", s.restores)?;
            writeln!(f, "recoveries: {}", s.recoveries)?;
            writeln!(f, "resent: {}", s.resent)?;
            writeln!(f, "unanswered: {}", s.unanswered)?;
            writeln!(f, "polled: {}", s.polled)?;
            writeln!(f, "wakeups: {}", s.wakeups)?;
            writeln!(f, "wake_us_total: {}", s.wake_us_total)?;
            writeln!(f, "max_wake_us: {}", s.max_wake_us)?;
            writeln!(f, "held: {}", s.held)
        })
    }

    /// Stores into debugfs `inject_malformed`: `1` sends the next flush malformed, for tests.
    fn store_inject(flusher: &Arc<Flusher>, reader: &mut UserSliceReader) -> Result {
        let mut buf = [0u8; 4];
        let len = reader.len().min(buf.len());
        reader.read_slice(&mut buf[..len])?;
        if buf[..len].trim_ascii() != b"1" {
            return Err(EINVAL);
        }
        flusher.with_state(|st| st.inject_malformed = true);
        Ok(())
    }
}

/// The sysfs attribute `flush_error`: whether a host flush failure sticks; `0` ends it.
struct FlushError;

#[vtable]
impl AttributeOperations<virtio::Adapter<VirtioPmemDriver>> for FlushError {
    const NAME: &'static CStr = c"flush_error";

    fn show(
        _dev: &device::Device<Bound>,
        this: Pin<&VirtioPmem<'_>>,
        f: &mut Formatter<'_>,
    ) -> Result {
        let failed = this.flusher.with_state(|st| st.commit.is_failed());
        writeln!(f, "{}", u8::from(failed))?;
        Ok(())
    }

    fn store(dev: &device::Device<Bound>, this: Pin<&VirtioPmem<'_>>, buf: &[u8]) -> Result {
        if buf.trim_ascii() != b"0" {
            return Err(EINVAL);
        }
        if this.flusher.with_state(|st| st.commit.clear_error()) {
            dev_notice!(dev, "flush error cleared by the administrator\n");
        }
        Ok(())
    }
}

#[vtable]
impl virtio::Driver for VirtioPmemDriver {
    type Data<'bound> = VirtioPmem<'bound>;

    const ID_TABLE: virtio::IdTable = &VIRTIO_TABLE;
    const FEATURES: &'static [u32] = &[uapi::VIRTIO_PMEM_F_SHMEM_REGION];
    const ATTRIBUTES: &'static [Attribute<virtio::Adapter<Self>>] =
        &[Attribute::new::<FlushError>()];

    fn validate(vdev: &virtio::Device<Bound>, features: &mut Features<'_>) -> Result {
        range::validate(vdev, features);
        Ok(())
    }

    fn probe<'bound>(
        vdev: &'bound virtio::Device<Core<'_>>,
    ) -> impl PinInit<VirtioPmem<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            let desc = range::read(vdev)?;

            let vqs = vdev
                .find_vqs(&[c"flush_queue"], FlushHandler::new(), FlushState::new()?)
                .inspect_err(|e| dev_err!(vdev, "cannot set up the request queue: {e:?}\n"))?;
            let flusher = Arc::new(Flusher::new(vqs)?, GFP_KERNEL)?;

            // The module is not pinned by its namespaces: unloading it unbinds the device,
            // which tears the bus down synchronously, last flush included.
            let parent: &'bound device::Device<Bound> = vdev.as_ref();
            let mut bus = nvdimm::Bus::register(parent, c"virtio-pmem", Some(&poison::CONTROL))
                .inspect_err(|_| dev_err!(vdev, "cannot register the nvdimm bus\n"))?;
            // The region can flush as soon as it exists.
            vdev.ready();
            bus.create_pmem_region(&desc, flusher.clone())
                .inspect_err(|_| dev_err!(vdev, "cannot create the nvdimm region\n"))?;
            dev_info!(
                vdev,
                "pmem range {:#x}-{:#x} ({} MiB)\n",
                desc.start(),
                desc.end(),
                desc.size() >> 20
            );

            let name = CString::try_from_fmt(fmt!("virtio_pmem_rust-{}", vdev.as_ref().name()))?;
            let debugfs = Dir::new(&name);
            Ok(try_pin_init!(VirtioPmem {
                bus,
                _stats <- debugfs.read_callback_file(
                    c"stats",
                    flusher.clone(),
                    &VirtioPmem::show_stats
                ),
                _inject <- debugfs.write_callback_file(
                    c"inject_malformed",
                    flusher.clone(),
                    &VirtioPmem::store_inject
                ),
                _debugfs: debugfs,
                flusher,
                desc,
            }))
        })
    }

    fn unbind(_vdev: &virtio::Device<Core<'_>>, this: Pin<&VirtioPmem<'_>>) {
        this.flusher.unbinding();
    }

    /// Accepts the freeze; the bus quiesces the queue next.
    ///
    /// In-flight flushes get a grace period, then every waiter and bio fails with `EIO` until
    /// [`Self::restore`].
    fn freeze(_vdev: &virtio::Device<Core<'_>>, _this: Pin<&VirtioPmem<'_>>) -> Result {
        Ok(())
    }

    fn restore(vdev: &virtio::Device<Core<'_>>, this: Pin<&VirtioPmem<'_>>) -> Result {
        let desc = range::read(vdev)?;
        if (desc.start(), desc.size()) != (this.desc.start(), this.desc.size()) {
            dev_err!(
                vdev,
                "range changed across sleep: {:#x}+{:#x}, was {:#x}+{:#x}\n",
                desc.start(),
                desc.size(),
                this.desc.start(),
                this.desc.size()
            );
            return Err(EIO);
        }
        vdev.ready();
        this.flusher.restart()
    }

    fn config_changed(vdev: &virtio::Device<Bound>, this: Pin<&VirtioPmem<'_>>) {
        if vdev.status().contains(StatusBit::NeedsReset) {
            this.flusher.needs_reset();
        }
    }
}
