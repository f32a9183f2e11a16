/*
 * lib/xalloc.h — allocation that cannot fail: abort with a message on OOM.
 *
 * The allocation policy (docs/ARCHITECTURE.md): the agent cannot do
 * anything useful once malloc fails (Linux overcommits; a failure there
 * means the process is being starved), so allocations whose failure would
 * only be turned into a generic error use these (Tarantool's xmalloc,
 * Redis's zmalloc). Code that must survive a hostile size — a length read
 * from the network, a value from a request — checks the size against its
 * stated bound first and may still use plain malloc where a refusal is a
 * meaningful answer (413, a closed connection).
 */
#ifndef RUMOR_LIB_XALLOC_H
#define RUMOR_LIB_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* A copy of s (NULL gives NULL). */
char *xstrdup(const char *s);
/* A NUL-terminated copy of the first n bytes of s. */
char *xstrndup(const char *s, size_t n);

#endif
