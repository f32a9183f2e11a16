/*
 * tests/fuzz/fuzz_raft.c — the Raft message and configuration decoders
 * (server/raft_wire.h).
 *
 * Each input is read as:
 *  1. one whole message (raft_wire_decode); one that decodes must encode to
 *     exactly the input again (the encoding is canonical: minimal varints,
 *     no trailing bytes), and its memory is released as libraft would;
 *  2. a configuration (raft_wire_conf_get) at the start of the input; one
 *     that decodes re-encodes to the bytes it consumed.
 * Any crash, sanitizer report or broken invariant aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/raft_wire.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_raft: %s:%d: %s\n", __FILE__, __LINE__, #c);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct raft_message m;
	if (raft_wire_decode(data, size, &m, err, sizeof(err)) == 0) {
		size_t n = raft_wire_size(&m);
		ASSERT(n == size);
		uint8_t *out = malloc(n);
		ASSERT(out != NULL);
		ASSERT(raft_wire_encode(&m, out, n) == n);
		ASSERT(memcmp(out, data, n) == 0);
		free(out);
		raft_wire_message_release(&m);
	} else {
		ASSERT(err[0] != '\0');
	}

	struct raft_configuration c;
	raft_configuration_init(&c);
	const uint8_t *p = data;
	if (raft_wire_conf_get(&p, data + size, &c, err, sizeof(err)) == 0) {
		size_t used = (size_t)(p - data), n = raft_wire_conf_size(&c);
		ASSERT(used <= size && n == used);
		uint8_t *out = malloc(n);
		ASSERT(out != NULL);
		ASSERT(raft_wire_conf_put(out, &c) == out + n);
		ASSERT(memcmp(out, data, n) == 0);
		free(out);
	} else {
		ASSERT(c.n == 0);
	}
	raft_configuration_close(&c);
	return 0;
}
