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
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define STACK_KEEP (16u << 10) /* bytes below this frame left alone */

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
 * The main thread's stack keeps every page it ever touched: a deep call made
 * once (start-up, a push-pull's decoding, an HTTP request) leaves its pages
 * resident for good. Nothing below the stack pointer is live (the ABI lets a
 * leaf function use 128 bytes below it, the red zone, and this function is
 * not a leaf), so the pages more than STACK_KEEP below this frame are
 * dropped; they come back as zero pages when the stack grows again. Only the
 * main thread's stack ([stack] in /proc/self/maps), and only when this frame
 * is on it.
 */
static __attribute__((noinline)) size_t trim_stack(void)
{
	volatile char here = 0;
	uintptr_t sp = (uintptr_t)&here;
	uintptr_t lo = 0, hi = 0;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long a, b;
		if (strstr(line, "[stack]") != NULL && sscanf(line, "%lx-%lx", &a, &b) == 2) {
			lo = a;
			hi = b;
			break;
		}
	}
	fclose(f);
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	if (sp < lo || sp >= hi || sp - lo < STACK_KEEP + page)
		return 0;
	uintptr_t top = (sp - STACK_KEEP) & ~(page - 1);
	if (top <= lo || madvise((void *)lo, top - lo, MADV_DONTNEED) != 0)
		return 0;
	return top - lo;
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
	advised += trim_stack();
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	return advised;
}
