// SPDX-License-Identifier: GPL-2.0

//! Rust virtio driver sample.
//!
//! Binds to a virtio entropy device (virtio-rng), asks it for random bytes once, and logs how
//! many came back from the virtqueue callback. Unbinding with the request still queued is fine:
//! the bus resets the device and hands the request back to
//! [`Handler::reclaim`](virtio::Handler::reclaim).

use kernel::{
    device::{
        Bound,
        Core, //
    },
    prelude::*,
    sync::Arc,
    uapi,
    virtio::{
        self,
        Request,
        Virtqueues, //
    }, //
};

/// How many random bytes the sample asks for.
const ENTROPY_BYTES: usize = 32;

/// The queue's handler.
struct SampleHandler;

/// The handler's locked state.
#[derive(Default)]
struct SampleState {
    /// The request, whenever the device does not hold it.
    req: Option<Request>,
}

impl virtio::Handler for SampleHandler {
    type State = SampleState;
    type Finished = ();

    fn callback(&self, queues: &mut virtio::Locked<'_, Self>, index: usize) {
        while let Some((req, used)) = queues.get_buf(index) {
            let dev = queues.device();
            dev_info!(dev, "received {used} random bytes\n");
            queues.state().req = Some(req);
        }
    }

    fn reclaim(&self, state: &mut Self::State, (): &mut (), req: Request, used: Option<u32>) {
        pr_info!("request reclaimed at unbind (used: {used:?})\n");
        state.req = Some(req);
    }
}

struct SampleDriver {
    vqs: Arc<Virtqueues<SampleHandler>>,
}

kernel::virtio_device_table!(VIRTIO_TABLE, [virtio::DeviceId::new(uapi::VIRTIO_ID_RNG)]);

#[vtable]
impl virtio::Driver for SampleDriver {
    type Data<'bound> = Self;

    const ID_TABLE: virtio::IdTable = &VIRTIO_TABLE;

    fn probe<'bound>(vdev: &'bound virtio::Device<Core<'_>>) -> impl PinInit<Self, Error> + 'bound {
        dev_info!(
            vdev,
            "probing virtio device {} (vendor {:#x})\n",
            vdev.device_id(),
            vdev.vendor_id()
        );

        // The entropy device only writes: the request has no device-readable part.
        let req = Request::new(0, ENTROPY_BYTES, GFP_KERNEL)?;
        let vqs = vdev.find_vqs(&[c"input"], SampleHandler, SampleState::default())?;
        vdev.ready();

        let mut queues = vqs.lock();
        match queues.add(0, req) {
            Ok(()) => {
                queues.kick(0);
            }
            Err((req, e)) => {
                dev_warn!(vdev, "cannot queue the request: {e:?}\n");
                queues.state().req = Some(req);
            }
        }
        drop(queues);
        Ok(Self { vqs })
    }

    fn unbind<'bound>(vdev: &'bound virtio::Device<Core<'_>>, this: Pin<&Self>) {
        let idle = this.vqs.lock().state().req.is_some();
        dev_info!(vdev, "unbinding; request idle: {idle}\n");
    }

    fn config_changed<'bound>(vdev: &'bound virtio::Device<Bound>, _this: Pin<&Self>) {
        let needs_reset = vdev.status().contains(virtio::StatusBit::NeedsReset);
        dev_info!(vdev, "configuration changed; needs reset: {needs_reset}\n");
    }
}

kernel::module_virtio_driver! {
    type: SampleDriver,
    name: "rust_driver_virtio",
    authors: ["Seed c02429f5 maintainers <maintainers@users.noreply.h-seed-c02429f5.example>"],
    description: "Rust virtio driver sample",
    license: "GPL v2",
}
