// SPDX-License-Identifier: GPL-2.0

//! Virtio drivers: the [`Driver`] trait and its bus adapter.

use super::{
    Device,
    Features,
    IdTable, //
};
use crate::{
    bindings,
    device::{
        self,
        Bound,
        BoundInternal,
        CoreInternal, //
    },
    driver::{
        self,
        attribute::{
            Attribute,
            Groups, //
        }, //
    },
    error::{
        from_result,
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    prelude::*,
    types::Opaque,
    ThisModule, //
};
use core::pin::Pin;

/// The virtio driver trait.
///
/// Drivers must implement this trait in order to get a virtio driver registered. Only
/// [`Driver::probe`] is required. [`Driver::freeze`] and [`Driver::restore`] are optional
/// (`#[vtable]`): a driver without them does not stand in the way of system sleep; the bus still
/// quiesces its virtqueues at freeze and finds them again at restore, as for a driver that has
/// them, so its requests come back through [`Handler::reclaim`](super::Handler::reclaim).
/// Its handler must then take [`Handler::stopped`](super::Handler::stopped) as a pause: the
/// queues run again after the restore.
///
/// # Examples
///
/// ```
/// use kernel::{
///     device::Core,
///     prelude::*,
///     virtio, //
/// };
///
/// struct MyDriver;
///
/// kernel::virtio_device_table!(ID_TABLE, [virtio::DeviceId::new(27)]);
///
/// #[vtable]
/// impl virtio::Driver for MyDriver {
///     type Data<'bound> = ();
///     const ID_TABLE: virtio::IdTable = &ID_TABLE;
///
///     fn probe<'bound>(
///         vdev: &'bound virtio::Device<Core<'_>>,
///     ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
///         dev_info!(vdev, "bound\n");
///         Ok(())
///     }
/// }
/// ```
///
/// [`Driver::validate`] runs before the features are final, so it gets a device that can read its
/// configuration but cannot bring up queues or the device itself:
///
/// ```ignore,compile_fail,E0599
/// # use kernel::{device::{Bound, Core}, prelude::*, virtio};
/// # struct MyDriver;
/// # kernel::virtio_device_table!(ID_TABLE, [virtio::DeviceId::new(27)]);
/// #[vtable]
/// impl virtio::Driver for MyDriver {
///     type Data<'bound> = ();
///     const ID_TABLE: virtio::IdTable = &ID_TABLE;
///
///     fn validate(vdev: &virtio::Device<Bound>, _features: &mut virtio::Features<'_>) -> Result {
///         vdev.ready(); // error[E0599]: no method named `ready` found
///         Ok(())
///     }
///
///     fn probe<'bound>(
///         _vdev: &'bound virtio::Device<Core<'_>>,
///     ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
///         Ok(())
///     }
/// }
/// # kernel::module_virtio_driver! {
/// #     type: MyDriver,
/// #     name: "compile_fail_validate",
/// #     authors: ["virtio-pmem-rs developers"],
/// #     description: "validate cannot bring up the device",
/// #     license: "GPL",
/// # }
/// ```
#[vtable]
pub trait Driver: Sized + 'static {
    /// The driver's data for a bound device.
    type Data<'bound>: Send + Sync + 'bound;

    /// The devices the driver binds to.
    const ID_TABLE: IdTable;

    /// The device-specific feature bits the driver understands.
    ///
    /// Transport feature bits are negotiated by the virtio core.
    const FEATURES: &'static [u32] = &[];

    /// The sysfs attributes of each bound device.
    ///
    /// The bus hands them to the driver core as the driver's `dev_groups`, so they appear in
    /// the device's directory (`/sys/bus/virtio/devices/virtioN/`) once probe has succeeded
    /// and go away when remove begins, before the driver's data is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::fmt::Write;
    /// use kernel::{
    ///     device::{
    ///         self,
    ///         Bound,
    ///         Core, //
    ///     },
    ///     driver::attribute::{
    ///         Attribute,
    ///         AttributeOperations, //
    ///     },
    ///     prelude::*,
    ///     str::Formatter,
    ///     virtio, //
    /// };
    ///
    /// struct MyDriver;
    /// # kernel::virtio_device_table!(ID_TABLE, [virtio::DeviceId::new(27)]);
    ///
    /// /// The `answer` attribute: reads `42`, and takes nothing else.
    /// struct Answer;
    ///
    /// #[vtable]
    /// impl AttributeOperations<virtio::Adapter<MyDriver>> for Answer {
    ///     const NAME: &'static CStr = c"answer";
    ///
    ///     fn show(_: &device::Device<Bound>, _: Pin<&()>, f: &mut Formatter<'_>) -> Result {
    ///         writeln!(f, "42")?;
    ///         Ok(())
    ///     }
    ///
    ///     fn store(_: &device::Device<Bound>, _: Pin<&()>, buf: &[u8]) -> Result {
    ///         if buf.trim_ascii() == b"42" {
    ///             Ok(())
    ///         } else {
    ///             Err(EINVAL)
    ///         }
    ///     }
    /// }
    ///
    /// #[vtable]
    /// impl virtio::Driver for MyDriver {
    ///     type Data<'bound> = ();
    ///     # const ID_TABLE: virtio::IdTable = &ID_TABLE;
    ///     const ATTRIBUTES: &'static [Attribute<virtio::Adapter<Self>>] =
    ///         &[Attribute::new::<Answer>()];
    ///
    ///     // ...
    ///     # fn probe<'bound>(
    ///     #     _vdev: &'bound virtio::Device<Core<'_>>,
    ///     # ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
    ///     #     Ok(())
    ///     # }
    /// }
    /// ```
    const ATTRIBUTES: &'static [Attribute<Adapter<Self>>] = &[];

    /// Checks the features on offer before they are final, and may withdraw some.
    ///
    /// Called during probe, before [`Driver::probe`], with a device that may read its
    /// configuration but not yet find queues or become ready (the features are not final). The
    /// default accepts them all.
    fn validate(vdev: &Device<Bound>, features: &mut Features<'_>) -> Result {
        let _ = (vdev, features);
        Ok(())
    }

    /// Binds the driver to `vdev`.
    ///
    /// The device becomes live (`DRIVER_OK`) after this returns, or earlier if the driver calls
    /// [`Device::ready`].
    fn probe<'bound>(
        vdev: &'bound Device<device::Core<'_>>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound;

    /// Unbinds the driver, while the device and its virtqueues still run.
    ///
    /// This is the place for a last exchange with the device. Teardown itself belongs in `Drop`,
    /// which runs next, and then the bus stops the virtqueues (see
    /// [`Virtqueues`](super::Virtqueues)).
    fn unbind<'bound>(vdev: &'bound Device<device::Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        let _ = (vdev, this);
    }

    /// Prepares the device for system sleep (suspend or hibernation).
    ///
    /// Implementing this callback is optional. Called with the device and its virtqueues still
    /// running, like [`Driver::unbind`]. An error aborts the transition. When it returns `Ok` (or
    /// the driver has no `freeze`), the bus quiesces the virtqueues as at unbind (grace period,
    /// reset, [`Handler::reclaim`](super::Handler::reclaim),
    /// [`Handler::stopped`](super::Handler::stopped)) but keeps them for [`Driver::restore`].
    fn freeze<'bound>(
        vdev: &'bound Device<device::Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
    ) -> Result {
        let _ = (vdev, this);
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Brings the device back after system sleep.
    ///
    /// Implementing this callback is optional. The core has reset the device and negotiated the
    /// same features again; the bus has found the virtqueues again, empty. The device becomes live
    /// (`DRIVER_OK`) after this returns, or earlier if the driver calls [`Device::ready`]. On error
    /// the bus quiesces the queues again and the core marks the device failed; the driver stays
    /// bound.
    fn restore<'bound>(
        vdev: &'bound Device<device::Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
    ) -> Result {
        let _ = (vdev, this);
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles a change of the device's configuration space.
    ///
    /// Implementing this callback is optional. Called only while the driver is bound, in atomic
    /// context under the virtio core's configuration lock: it must not sleep (see
    /// [`Device::status`] for which transports allow reading the status here; nor wait on a
    /// [`Guard`](super::Guard) it takes), and should hand lasting work to a work item. What it
    /// completes under that lock (such as I/O it fails) must not need the lock again.
    fn config_changed<'bound>(vdev: &'bound Device<device::Bound>, this: Pin<&Self::Data<'bound>>) {
        let _ = (vdev, this);
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The adapter that registers a [`Driver`] on the virtio bus.
pub struct Adapter<T: Driver>(T);

// SAFETY:
// - `struct virtio_driver` is a C type, hence `repr(C)`.
// - `T::Data` is the type of the driver's device private data.
// - `struct virtio_driver` embeds a `struct device_driver` at `DEVICE_DRIVER_OFFSET`.
unsafe impl<T: Driver> driver::DriverLayout for Adapter<T> {
    type DriverType = bindings::virtio_driver;
    type DriverData<'bound> = T::Data<'bound>;
    const DEVICE_DRIVER_OFFSET: usize = core::mem::offset_of!(bindings::virtio_driver, driver);
}

// SAFETY: `unregister` is only called for a driver that `register` registered.
unsafe impl<T: Driver + 'static> driver::RegistrationOps for Adapter<T> {
    unsafe fn register(
        vdrv: &Opaque<Self::DriverType>,
        name: &'static CStr,
        module: &'static ThisModule,
    ) -> Result {
        let features = u32::try_from(T::FEATURES.len())?;
        let groups = Groups::<Self>::build(T::ATTRIBUTES)?;
        let vdrv = vdrv.get();
        // SAFETY: `vdrv` is valid and not registered yet, so its fields may be set; the tables
        // are `'static`.
        unsafe {
            (*vdrv).driver.name = name.as_char_ptr();
            (*vdrv).id_table = T::ID_TABLE.as_ptr();
            (*vdrv).feature_table = T::FEATURES.as_ptr();
            (*vdrv).feature_table_size = features;
            (*vdrv).validate = Some(Self::validate_callback);
            (*vdrv).probe = Some(Self::probe_callback);
            (*vdrv).remove = Some(Self::remove_callback);
            (*vdrv).config_changed = if T::HAS_CONFIG_CHANGED {
                Some(Self::config_changed_callback)
            } else {
                None
            };
            // Always set: without PM callbacks of its own, the driver's queues are still
            // quiesced and found again (see `Driver`).
            (*vdrv).freeze = Some(Self::freeze_callback);
            (*vdrv).restore = Some(Self::restore_callback);
            // Only for `Locked::recover`: without `reset_prepare`, the core never calls
            // `reset_done` for a reset of its own (see `reset_done_callback`).
            (*vdrv).reset_done = Some(Self::reset_done_callback);
            (*vdrv).driver.dev_groups = groups;
        }
        // SAFETY: `vdrv` is a valid `struct virtio_driver`, pinned until `unregister`.
        let ret = to_result(unsafe { bindings::__register_virtio_driver(vdrv, module.as_ptr()) });
        if ret.is_err() {
            // SAFETY: `groups` comes from `Groups::<Self>::build` and the driver is not
            // registered.
            unsafe { Groups::<Self>::release(groups) };
        }
        ret
    }

    unsafe fn unregister(vdrv: &Opaque<Self::DriverType>) {
        let vdrv = vdrv.get();
        // SAFETY: By the safety requirements `vdrv` was registered.
        unsafe { bindings::unregister_virtio_driver(vdrv) };
        // SAFETY: `register` set `dev_groups` from `Groups::<Self>::build`; the driver is gone,
        // and with it every device's attributes.
        unsafe { Groups::<Self>::release((*vdrv).driver.dev_groups) };
    }
}

impl<T: Driver + 'static> Adapter<T> {
    extern "C" fn validate_callback(vdev: *mut bindings::virtio_device) -> c_int {
        // SAFETY: The virtio core calls `validate` from its probe, with a valid device whose
        // device lock it holds.
        //
        // INVARIANT: `vdev` is valid for the duration of `validate_callback()`.
        let vdev = unsafe { &*vdev.cast::<Device<CoreInternal<'_>>>() };
        let mut features = Features::new(vdev);
        // Only the `Bound` view goes to the driver: no queues or `DRIVER_OK` before the features
        // are final.
        let bound: &Device<Bound> = vdev;
        from_result(|| {
            T::validate(bound, &mut features)?;
            Ok(0)
        })
    }

    extern "C" fn probe_callback(vdev: *mut bindings::virtio_device) -> c_int {
        // SAFETY: The virtio core calls `probe` with a valid device whose device lock it holds.
        //
        // INVARIANT: `vdev` is valid for the duration of `probe_callback()`.
        let vdev = unsafe { &*vdev.cast::<Device<CoreInternal<'_>>>() };
        super::virtqueue::claim(vdev);
        from_result(|| {
            let data = T::probe(vdev);
            if let Err(e) = vdev.as_ref().set_drvdata(data) {
                // The driver's data is gone; stop the queues it may have found, as the core
                // does not call `remove` after a failed probe.
                vdev.unbind_teardown();
                return Err(e);
            }
            Ok(0)
        })
    }

    extern "C" fn remove_callback(vdev: *mut bindings::virtio_device) {
        // SAFETY: The virtio core calls `remove` with a valid device whose device lock it holds.
        //
        // INVARIANT: `vdev` is valid for the duration of `remove_callback()`.
        let vdev = unsafe { &*vdev.cast::<Device<CoreInternal<'_>>>() };

        // SAFETY: `remove` only follows a successful `probe`, which stored a `T::Data` with
        // `set_drvdata()`.
        let data = unsafe { vdev.as_ref().drvdata_borrow::<T::Data<'_>>() };
        T::unbind(vdev, data);

        // The virtio core wants the device reset when `remove` returns, so the driver's data
        // goes now rather than after unbind: dropping it may still use the queues.
        // SAFETY: As above, the stored type is `T::Data`.
        drop(unsafe { vdev.as_ref().drvdata_obtain::<T::Data<'_>>() });

        vdev.unbind_teardown();
    }

    /// Runs `f` on the device in Core context, with its driver data, if it is still bound.
    ///
    /// # Safety
    ///
    /// `vdev` must be a valid virtio device that the virtio core found bound to this driver
    /// during a system sleep transition.
    unsafe fn locked_bound(
        vdev: *mut bindings::virtio_device,
        f: impl for<'a> FnOnce(&'a Device<CoreInternal<'a>>, Pin<&'a T::Data<'a>>) -> Result,
    ) -> c_int {
        // SAFETY: `vdev` is valid (safety requirements), and so is its `struct device` while
        // this function runs.
        let dev: &device::Device = unsafe { device::Device::from_raw(&raw mut (*vdev).dev) };
        let _lock = dev.lock();
        // SAFETY: `vdev` is valid, and its lock is held.
        if unsafe { (*vdev).dev.driver.is_null() } {
            return 0;
        }
        // SAFETY: The device lock is held, which makes this Core context. The device is still
        // bound, and to this driver: the PM core blocks probing for the whole transition
        // (`device_block_probing()` in `dpm_prepare()`), so no other driver bound since.
        //
        // INVARIANT: `vdev` is valid for the duration of `locked_bound()`.
        let vdev = unsafe { &*vdev.cast::<Device<CoreInternal<'_>>>() };
        // SAFETY: Bound to this driver (see above), whose probe stored a `T::Data`.
        let data = unsafe { vdev.as_ref().drvdata_borrow::<T::Data<'_>>() };
        from_result(|| f(vdev, data).map(|()| 0))
    }

    extern "C" fn freeze_callback(vdev: *mut bindings::virtio_device) -> c_int {
        // SAFETY: The virtio core calls `freeze` for a valid device bound to this driver, while
        // the PM core suspends its parent.
        unsafe {
            Self::locked_bound(vdev, |vdev, data| {
                if T::HAS_FREEZE {
                    T::freeze(vdev, data)?;
                }
                super::virtqueue::suspend(vdev);
                Ok(())
            })
        }
    }

    extern "C" fn restore_callback(vdev: *mut bindings::virtio_device) -> c_int {
        // SAFETY: As for `freeze`: the virtio core calls `restore` for a valid device bound to
        // this driver, while the PM core resumes its parent.
        unsafe {
            Self::locked_bound(vdev, |vdev, data| {
                super::virtqueue::resume(vdev)
                    .inspect_err(|e| dev_err!(vdev, "cannot find the virtqueues again: {e:?}\n"))?;
                if !T::HAS_RESTORE {
                    return Ok(());
                }
                T::restore(vdev, data).inspect_err(|_| super::virtqueue::suspend(vdev))
            })
        }
    }

    extern "C" fn reset_done_callback(vdev: *mut bindings::virtio_device) -> c_int {
        // SAFETY: Only `virtio_device_reset_done()` calls `reset_done`. Its one caller in the
        // transports, virtio-pci's function reset, calls it only after `reset_prepare`
        // succeeded, which this adapter never sets; so the caller is the recovery that
        // `Locked::recover` queues, with a valid device bound to this driver whose device lock
        // it holds, after it quiesced the queues.
        //
        // INVARIANT: `vdev` is valid for the duration of `reset_done_callback()`.
        let vdev = unsafe { &*vdev.cast::<Device<CoreInternal<'_>>>() };
        from_result(|| {
            super::virtqueue::resume(vdev)
                .inspect_err(|e| dev_err!(vdev, "cannot find the virtqueues again: {e:?}\n"))?;
            Ok(0)
        })
    }

    extern "C" fn config_changed_callback(vdev: *mut bindings::virtio_device) {
        // SAFETY: The virtio core only reports configuration changes between the end of a
        // successful `probe` and the start of `remove`, with a valid device.
        //
        // INVARIANT: `vdev` is valid for the duration of `config_changed_callback()`.
        let vdev = unsafe { &*vdev.cast::<Device<BoundInternal>>() };
        // SAFETY: The driver is bound (see above), so `probe` stored a `T::Data` that `remove`
        // has not taken yet.
        let data = unsafe { vdev.as_ref().drvdata_borrow::<T::Data<'_>>() };
        T::config_changed(vdev, data);
    }
}

/// Declares a kernel module that registers a single virtio driver.
///
/// # Examples
///
// Not compiled: `module!` defines the module's init and exit functions, which a doctest, built
// into the kernel with all the others, cannot.
/// ```ignore
/// kernel::module_virtio_driver! {
///     type: MyDriver,
///     name: "my_virtio",
///     authors: ["Rust for Linux"],
///     description: "My virtio driver",
///     license: "GPL v2",
/// }
/// ```
#[macro_export]
macro_rules! module_virtio_driver {
    ($($f:tt)*) => {
        $crate::module_driver!(<T>, $crate::virtio::Adapter<T>, { $($f)* });
    };
}
