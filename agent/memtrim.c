/*
 * agent/memtrim.c — see memtrim.h. The program's segments are found with
 * dl_iterate_phdr (the first object reported is the executable, static or
 * not); shared libraries are left alone.
 */
#define _GNU_SOURCE
#include "agent/memtrim.h"

#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * Only read-only PT_LOAD segments: they are file-backed, so DONTNEED drops our
 * mapping of clean pages that stay in the page cache and fault back on use. A
 * writable segment would lose its data, so it is never touched.
 */
static int phdr_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
	size_t *advised = ud;
	(void)size;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) != 0)
			continue;
		uintptr_t lo = (uintptr_t)(info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
		uintptr_t hi = (uintptr_t)(info->dlpi_addr + ph->p_vaddr + ph->p_memsz + page - 1) &
		               ~(page - 1);
		if (hi <= lo)
			continue;
		/* order matters: with MADV_RANDOM set first, the pages faulted
		 * back right after the DONTNEED come one at a time */
		if (madvise((void *)lo, hi - lo, MADV_RANDOM) == 0 &&
		    madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
			*advised += hi - lo;
	}
	return 1; /* the executable only */
}

/*
 * Safe to call at any time and any number of times: it only advises the kernel
 * and hands free heap pages back; nothing in the program sees a difference but
 * RSS.
 */
size_t memtrim_run(void)
{
	size_t advised = 0;
	dl_iterate_phdr(phdr_cb, &advised);
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	return advised;
}
