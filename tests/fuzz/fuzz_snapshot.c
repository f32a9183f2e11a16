/*
 * tests/fuzz/fuzz_snapshot.c — the snapshot file decoder
 * (agent/api_snapshot.h snapshot_decode), which reads whatever a client
 * PUTs to /v1/snapshot and whatever `rumor snapshot inspect|restore` is
 * given.
 *
 * Each input is read whole as a file; then, so the fuzzer reaches past the
 * checksum, the input is also wrapped as a file's body with a correct
 * header and checksum (snapshot_encode) and decoded again. A file that
 * decodes must have its body inside the input and the header's numbers
 * back; a refusal must say why. Any crash or sanitizer report aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/api_snapshot.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_snapshot: %s:%d: %s\n", __FILE__, __LINE__, #c);     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void one(const uint8_t *p, size_t n)
{
	struct snapshot_info si;
	char err[300] = "";
	uint8_t *copy = malloc(n ? n : 1);
	ASSERT(copy != NULL);
	if (n)
		memcpy(copy, p, n);
	if (snapshot_decode(copy, n, &si, err, sizeof(err)) == 0) {
		ASSERT(si.body == copy + SNAPSHOT_HEADER_LEN);
		ASSERT(si.body_len + SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN == n);
	} else {
		ASSERT(err[0] != '\0');
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size);
	size_t n;
	uint8_t *f = snapshot_encode(7, 1234, data, size, &n);
	one(f, n);
	struct snapshot_info si;
	char err[300];
	if (snapshot_decode(f, n, &si, err, sizeof(err)) == 0)
		ASSERT(si.index == 7 && si.saved_ms == 1234 && si.body_len == size);
	free(f);
	return 0;
}
