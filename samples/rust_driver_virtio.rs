// SPDX-License-Identifier: GPL-2.0

//! Rust virtio driver sample.
//!
//! Binds to a virtio-pmem device, logs its configuration, and sends it one flush request,
//! whose answer the virtqueue callback logs. Unbinding with the request still queued is fine:
//! the bus hands it back to [`Handler::reclaim`](virtio::Handler::reclaim).
//!
//! With `malformed=1` the request lacks its device-readable part: the device rejects it and
//! asks for a reset (`NEEDS_RESET`), which [`virtio::Driver::config_changed`] reports.

use kernel::{
    device::{Bound, Core},
    prelude::*,
    sync::Arc,
    uapi,
    virtio::{self, Request, Virtqueues},
};

/// The queue's handler; its locked state holds the request whenever the device does not.
struct SampleHandler;

impl virtio::Handler for SampleHandler {
    type Data = ();
    type State = Option<Request<()>>;

    fn callback(&self, queues: &mut virtio::Locked<'_, Self>, index: usize) {
        while let Some((req, used)) = queues.get_buf(index) {
            let ret = req
                .input()
                .first_chunk::<4>()
                .copied()
                .map(u32::from_le_bytes);
            pr_info!("flush answered: {used} bytes used, ret {ret:?}\n");
            *queues.state() = Some(req);
        }
    }

    fn reclaim(&self, state: &mut Self::State, req: Request<()>, used: Option<u32>) {
        pr_info!("request reclaimed at unbind (used: {used:?})\n");
        *state = Some(req);
    }
}

struct SampleDriver {
    vqs: Arc<Virtqueues<SampleHandler>>,
}

kernel::virtio_device_table!(VIRTIO_TABLE, [virtio::DeviceId::new(uapi::VIRTIO_ID_PMEM)]);

impl virtio::Driver for SampleDriver {
    type Data<'bound> = Self;

    const ID_TABLE: virtio::IdTable = &VIRTIO_TABLE;
    const FEATURES: &'static [u32] = &[uapi::VIRTIO_PMEM_F_SHMEM_REGION];

    fn probe<'bound>(vdev: &'bound virtio::Device<Core<'_>>) -> impl PinInit<Self, Error> + 'bound {
        let (start, size) = vdev.read_config(|c| Ok((c.read_le64(0)?, c.read_le64(8)?)))?;
        let shm = vdev.has_feature(uapi::VIRTIO_PMEM_F_SHMEM_REGION);
        dev_info!(
            vdev,
            "virtio device {} (vendor {:#x}): start {start:#x}, size {size:#x}, shm region {shm}\n",
            vdev.device_id(),
            vdev.vendor_id()
        );

        let malformed = module_parameters::malformed.value();
        let mut req = Request::new(if malformed { 0 } else { 4 }, 4, (), GFP_KERNEL)?;
        if !malformed {
            req.out_mut()
                .copy_from_slice(&uapi::VIRTIO_PMEM_REQ_TYPE_FLUSH.to_le_bytes());
        }
        req.input_mut().copy_from_slice(&1u32.to_le_bytes());

        let vqs = vdev.find_vqs(&[c"flush_queue"], SampleHandler, None)?;
        vdev.ready();
        {
            let mut queues = vqs.lock();
            match queues.add(0, req) {
                Ok(()) => {
                    queues.kick(0);
                }
                Err((req, e)) => {
                    dev_warn!(vdev, "cannot queue the flush: {e:?}\n");
                    *queues.state() = Some(req);
                }
            }
        }
        Ok(Self { vqs })
    }

    fn unbind<'bound>(vdev: &'bound virtio::Device<Core<'_>>, this: Pin<&Self>) {
        let idle = this.vqs.lock().state().is_some();
        dev_info!(vdev, "unbinding; request idle: {idle}\n");
    }

    fn config_changed<'bound>(vdev: &'bound virtio::Device<Bound>, _this: Pin<&Self>) {
        let needs_reset = vdev.status().needs_reset();
        dev_info!(vdev, "configuration changed; needs reset: {needs_reset}\n");
    }
}

kernel::module_virtio_driver! {
    type: SampleDriver,
    name: "rust_driver_virtio",
    authors: ["virtio-pmem-rs developers"],
    description: "Rust virtio driver sample",
    license: "GPL v2",
    params: {
        malformed: bool {
            default: false,
            description: "Send a request the device must reject, so that it asks for a reset",
        },
    },
}
