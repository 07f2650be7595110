// SPDX-License-Identifier: GPL-2.0

#include <linux/numa.h>

/* Static inlines when !CONFIG_NUMA, out-of-line functions otherwise. */
__rust_helper int rust_helper_memory_add_physaddr_to_nid(u64 start)
{
	return memory_add_physaddr_to_nid(start);
}

__rust_helper int rust_helper_phys_to_target_node(u64 start)
{
	return phys_to_target_node(start);
}
