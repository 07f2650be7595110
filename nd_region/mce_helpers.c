// SPDX-License-Identifier: GPL-2.0

#ifdef CONFIG_X86_MCE
#include <asm/mce.h>

/* MCI_ADDR_PHYSADDR depends on the CPU's physical address width. */
__rust_helper u64 rust_helper_mce_physical_address(struct mce *m)
{
	return m->addr & MCI_ADDR_PHYSADDR;
}
#endif
