// SPDX-License-Identifier: GPL-2.0

//! Probes the limits of the virtio and nvdimm abstractions, for the project's tests.
//!
//! This test module is not part of the patch series: it is built out of tree against the guest
//! kernel (`tests/modules`, by `scripts/build.sh`) and loaded by the `limits_*_test.sh`
//! programs. It binds to a virtio-pmem device, as the driver does, and sends the device one
//! flush request, whose answer the virtqueue callback logs. Its parameters drive each limit:
//!
//! - `malformed=1`: the request lacks its device-readable part, so the device rejects it and
//!   asks for a reset (`NEEDS_RESET`), which [`virtio::Driver::config_changed`] must report;
//! - `config_offset=N`: reads a 64-bit configuration field at byte `N`, which the abstraction
//!   must refuse past `struct virtio_pmem_config`;
//! - `stop_probe=1`: keeps flushes going at unbind and tries to notify the device once the bus
//!   is stopping the queue, which the abstraction must refuse;
//! - `leak_bus=1`: registers an nvdimm bus with a region over the device's memory and leaks
//!   the handle, which must still go away at unbind.

use core::mem::offset_of;
use kernel::{
    device::{
        self,
        Bound,
        Core, //
    },
    nvdimm::{
        self,
        RegionDesc,
        RegionFlag, //
    },
    prelude::*,
    sync::Arc,
    uapi::{
        self,
        virtio_pmem_config, //
    },
    virtio::{
        self,
        Request,
        Virtqueues, //
    }, //
};

/// The queue's handler.
struct LimitsHandler;

/// The handler's locked state.
#[derive(Default)]
struct LimitsState {
    /// The request, whenever the device does not hold it.
    req: Option<Request>,
    /// With `stop_probe`: the driver is unbinding, keep the request going.
    unbinding: bool,
}

impl virtio::Handler for LimitsHandler {
    type State = LimitsState;
    type Finished = ();

    fn callback(&self, queues: &mut virtio::Locked<'_, Self>, index: usize) {
        while let Some((req, used)) = queues.get_buf(index) {
            let ret = req
                .input()
                .first_chunk::<4>()
                .copied()
                .map(u32::from_le_bytes);
            if !queues.state().unbinding {
                pr_info!("flush answered: {used} bytes used, ret {ret:?}\n");
                queues.state().req = Some(req);
                continue;
            }
            // Send it again until the bus refuses it, then try to notify the device.
            match queues.add(index, req) {
                Ok(()) => {
                    queues.kick(index);
                }
                Err((req, e)) => {
                    let notified = queues.kick(index);
                    let verdict = if notified { "allowed" } else { "refused" };
                    let errno = e.to_errno();
                    pr_info!("notify while stopping (add: {errno}): {verdict}\n");
                    queues.state().req = Some(req);
                }
            }
        }
    }

    fn reclaim(&self, state: &mut Self::State, (): &mut (), req: Request, used: Option<u32>) {
        if !state.unbinding {
            pr_info!("request reclaimed at unbind (used: {used:?})\n");
        }
        state.req = Some(req);
    }
}

struct LimitsDriver {
    vqs: Arc<Virtqueues<LimitsHandler>>,
}

kernel::virtio_device_table!(VIRTIO_TABLE, [virtio::DeviceId::new(uapi::VIRTIO_ID_PMEM)]);

/// The flush callback of the region that `leak_bus=1` registers.
///
/// This module does not flush the device, so nothing written to the region is ever durable:
/// every flush fails.
struct LimitsFlush;

impl nvdimm::Flush for LimitsFlush {
    fn flush(&self) -> Result {
        pr_info!("limits region flush refused: this module makes nothing durable\n");
        Err(EIO)
    }
}

#[vtable]
impl virtio::Driver for LimitsDriver {
    type Data<'bound> = Self;

    const ID_TABLE: virtio::IdTable = &VIRTIO_TABLE;
    const FEATURES: &'static [u32] = &[uapi::VIRTIO_PMEM_F_SHMEM_REGION];

    fn probe<'bound>(vdev: &'bound virtio::Device<Core<'_>>) -> impl PinInit<Self, Error> + 'bound {
        let (start, size) = vdev.read_config::<virtio_pmem_config, _>(|c| {
            Ok((
                c.read_le64(offset_of!(virtio_pmem_config, start))?,
                c.read_le64(offset_of!(virtio_pmem_config, size))?,
            ))
        })?;
        if let Ok(offset) = usize::try_from(module_parameters::config_offset.value()) {
            match vdev.read_config::<virtio_pmem_config, _>(|c| c.read_le64(offset)) {
                Ok(value) => dev_info!(vdev, "config field at {offset}: {value:#x}\n"),
                Err(e) => dev_info!(vdev, "config field at {offset}: error {}\n", e.to_errno()),
            }
        }
        if module_parameters::leak_bus.value() {
            let parent: &'bound device::Device<Bound> = vdev.as_ref();
            let mut bus = nvdimm::Bus::register(parent, c"rust-limits", None)?;
            let desc = RegionDesc::new(start, size, RegionFlag::Async)?;
            bus.create_pmem_region(&desc, Arc::new(LimitsFlush, GFP_KERNEL)?)?;
            dev_info!(vdev, "nvdimm bus registered, handle leaked\n");
            core::mem::forget(bus);
        }
        let shm = vdev.has_feature(uapi::VIRTIO_PMEM_F_SHMEM_REGION);
        dev_info!(
            vdev,
            "virtio device {} (vendor {:#x}): start {start:#x}, size {size:#x}, shm region {shm}\n",
            vdev.device_id(),
            vdev.vendor_id()
        );

        let malformed = module_parameters::malformed.value();
        let mut req = Request::new(if malformed { 0 } else { 4 }, 4, GFP_KERNEL)?;
        if !malformed {
            req.out_mut()
                .copy_from_slice(&uapi::VIRTIO_PMEM_REQ_TYPE_FLUSH.to_le_bytes());
        }
        req.input_mut().copy_from_slice(&1u32.to_le_bytes());

        let vqs = vdev.find_vqs(&[c"flush_queue"], LimitsHandler, LimitsState::default())?;
        vdev.ready();
        {
            let mut queues = vqs.lock();
            match queues.add(0, req) {
                Ok(()) => {
                    queues.kick(0);
                }
                Err((req, e)) => {
                    dev_warn!(vdev, "cannot queue the flush: {e:?}\n");
                    queues.state().req = Some(req);
                }
            }
        }
        Ok(Self { vqs })
    }

    fn unbind<'bound>(vdev: &'bound virtio::Device<Core<'_>>, this: Pin<&Self>) {
        let mut queues = this.vqs.lock();
        let idle = queues.state().req.is_some();
        if !module_parameters::stop_probe.value() {
            dev_info!(vdev, "unbinding; request idle: {idle}\n");
            return;
        }
        queues.state().unbinding = true;
        if let Some(req) = queues.state().req.take() {
            match queues.add(0, req) {
                Ok(()) => {
                    queues.kick(0);
                }
                Err((req, _)) => queues.state().req = Some(req),
            }
        }
    }

    fn config_changed<'bound>(vdev: &'bound virtio::Device<Bound>, _this: Pin<&Self>) {
        let needs_reset = vdev.status().contains(virtio::StatusBit::NeedsReset);
        dev_info!(vdev, "configuration changed; needs reset: {needs_reset}\n");
    }
}

kernel::module_virtio_driver! {
    type: LimitsDriver,
    name: "rust_virtio_limits",
    authors: ["Seed c02429f5 maintainers <maintainers@users.noreply.h-seed-c02429f5.example>"],
    description: "Limits of the Rust virtio and nvdimm abstractions (tests)",
    license: "GPL v2",
    params: {
        malformed: bool {
            default: false,
            description: "Send a request the device must reject, so that it asks for a reset",
        },
        config_offset: i64 {
            default: -1,
            description: "Read a 64-bit configuration field at this byte offset at probe",
        },
        stop_probe: bool {
            default: false,
            description: "At unbind, keep flushing and try to notify the device while stopping",
        },
        leak_bus: bool {
            default: false,
            description: "Register an nvdimm bus and region over the device, and leak the handle",
        },
    },
}
