/*
 * agent/memtrim.h — trims the agent's resident set once start-up is over.
 *
 * Owns: when and how the agent gives back pages it no longer uses. An
 * agent executes most of its code only while starting (flag and config
 * parsing, library initialisation, the first join and push-pull), and
 * Linux maps file pages around every page fault (fault-around, 64 KiB), so
 * a fresh agent shows nearly all of its program text resident although its
 * steady state runs a few dozen pages of it. memtrim_run() asks the kernel
 * to unmap the program's read-only segments (MADV_DONTNEED: the pages stay
 * in the page cache, shared, and fault back in when touched) and to map
 * less around later faults (MADV_RANDOM turns fault-around off; a kernel
 * that caches the file in large folios still maps a whole folio per
 * fault, so what comes back is the folios the agent runs, about 0.8 MiB
 * of a static build's 1.4 MiB of text), then returns the malloc heap's
 * free pages (malloc_trim), and drops the main stack's pages below the
 * current frame (a deep call made once keeps them otherwise). Run once a
 * minute, since rare paths (a push-pull, an HTTP request) fault pages back
 * in. The agent also drops its mapping of the KV store's file
 * (kv_store_trim) on the same tick.
 * Correct for any build: read-only segments are never written, so nothing
 * is lost; only RSS and a few minor faults change.
 */
#ifndef RUMOR_AGENT_MEMTRIM_H
#define RUMOR_AGENT_MEMTRIM_H

#include <stddef.h>

/* Trims as above; returns the bytes of program segments and stack advised
 * (0 when the platform offers none of this). Cheap: a few system calls and
 * one read of /proc/self/maps. */
size_t memtrim_run(void);

#endif
