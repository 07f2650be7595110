// SPDX-License-Identifier: GPL-2.0

#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/freezer.h>
#include <linux/kmemleak.h>

__rust_helper bool rust_helper___virtio_test_bit(const struct virtio_device *vdev,
						 unsigned int fbit)
{
	return __virtio_test_bit(vdev, fbit);
}

__rust_helper void rust_helper___virtio_clear_bit(struct virtio_device *vdev,
						  unsigned int fbit)
{
	__virtio_clear_bit(vdev, fbit);
}

__rust_helper void rust_helper_virtio_device_ready(struct virtio_device *vdev)
{
	virtio_device_ready(vdev);
}

__rust_helper bool rust_helper_virtio_get_shm_region(struct virtio_device *vdev,
						     struct virtio_shm_region *region,
						     u8 id)
{
	return virtio_get_shm_region(vdev, region, id);
}

/* For `Guard::freezing`: whether the current task is asked to freeze. */
__rust_helper bool rust_helper_freezing(struct task_struct *p)
{
	return freezing(p);
}

/* For `Request::quarantine`: buffers given up for good on purpose are no leak. */
__rust_helper void rust_helper_kmemleak_not_leak(const void *ptr)
{
	kmemleak_not_leak(ptr);
}
