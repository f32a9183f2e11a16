/*
 * tests/fuzz/fuzz_coord.c — the coordinate decoder (gossip/coord.h), which
 * reads the payload of every ack a peer (a rumor agent or Serf) sends.
 *
 * Each input is read as an ack payload and as a bare coordinate map. What
 * decodes must be finite, must re-encode to a map that decodes to the same
 * coordinate, and must be usable: an update with it keeps our coordinate
 * valid, and its distance to a new coordinate non-negative (not to the
 * peer's: Serf takes negative heights, so that estimate may be negative). Any crash, sanitizer
 * report or broken invariant aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/coord.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_coord: %s:%d: %s\n", __FILE__, __LINE__, #c);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void check(const struct coord *c)
{
	ASSERT(coord_valid(c));
	uint8_t buf[COORD_WIRE_MAX];
	int n = coord_encode(c, buf, sizeof buf);
	ASSERT(n > 0);
	struct coord d;
	size_t used = 0;
	ASSERT(coord_decode(buf, (size_t)n, &d, &used) == 0);
	ASSERT(used == (size_t)n);
	ASSERT(memcmp(c, &d, sizeof d) == 0);
	struct coord_client cl;
	coord_client_init(&cl, NULL, 1);
	for (int i = 0; i < 4; i++)
		coord_client_update(&cl, "peer", c, 1000000LL * (i + 1));
	ASSERT(coord_valid(&cl.c));
	struct coord fresh; /* ours keeps height >= min, so this is >= 0 */
	coord_new(&cl.cfg, &fresh);
	ASSERT(coord_distance_ns(&cl.c, &fresh) >= 0);
	(void)coord_distance_ns(&cl.c, c); /* any sign: a peer may send negative heights */
	coord_client_free(&cl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct coord c;
	if (coord_payload_decode(data, size, &c) == 0)
		check(&c);
	size_t used = 0;
	if (coord_decode(data, size, &c, &used) == 0) {
		ASSERT(used <= size);
		check(&c);
	}
	return 0;
}
