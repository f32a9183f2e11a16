/*
 * tests/unit/test_ident.c — gossip/ident.c, the interned member identities
 * that the simulator's views share: equal content gives the same identity,
 * any differing field a different one; references are counted; and the
 * table stays correct (checked against a plain array model) through
 * thousands of random gets and puts, which exercises growth and the
 * backward-shift deletion.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/ident.h"
#include "tests/unit/check.h"

static struct ml_addr addr4(uint8_t last, uint16_t port)
{
	struct ml_addr a;
	memset(&a, 0, sizeof(a));
	a.len = 4;
	a.ip[0] = 10;
	a.ip[3] = last;
	a.port = port;
	return a;
}

static const uint8_t VSN[6] = {1, 5, 2, 2, 5, 4};

static void test_same_content_same_identity(void)
{
	struct swim_idents *t = swim_idents_new();
	struct ml_addr a = addr4(1, 7946);
	const uint8_t meta[] = {0xff, 0x80};
	const struct swim_ident *x = swim_ident_get(t, "n1", &a, VSN, meta, sizeof(meta));
	const struct swim_ident *y = swim_ident_get(t, "n1", &a, VSN, meta, sizeof(meta));
	CHECK(x == y, "two gets of one tuple gave %p and %p", (void *)x, (void *)y);
	CHECK(x->refs == 2, "refs %u, expected 2", x->refs);
	CHECK(strcmp(x->name, "n1") == 0 && x->meta_len == 2 && memcmp(x->meta, meta, 2) == 0 &&
	              ml_addr_equal(&x->addr, &a) && memcmp(x->vsn, VSN, 6) == 0,
	      "identity content differs from what was given");

	struct ml_addr b = addr4(2, 7946);
	uint8_t vsn2[6];
	memcpy(vsn2, VSN, 6);
	vsn2[1] = 4;
	const struct swim_ident *d[5] = {
	        swim_ident_get(t, "n2", &a, VSN, meta, sizeof(meta)),  /* name */
	        swim_ident_get(t, "n1", &b, VSN, meta, sizeof(meta)),  /* address */
	        swim_ident_get(t, "n1", &a, vsn2, meta, sizeof(meta)), /* versions */
	        swim_ident_get(t, "n1", &a, VSN, meta, 1),             /* meta length */
	        swim_ident_get(t, "n1", &a, VSN, NULL, 0),             /* no meta */
	};
	for (int i = 0; i < 5; i++)
		CHECK(d[i] != x, "variant %d shares the identity of the original", i);
	CHECK(d[4]->meta == NULL && d[4]->meta_len == 0, "empty meta not NULL/0");
	CHECK(swim_idents_count(t) == 6, "count %zu, expected 6", swim_idents_count(t));

	swim_ident_put(t, x);
	CHECK(swim_idents_count(t) == 6, "first put freed a referenced identity");
	swim_ident_put(t, y);
	CHECK(swim_idents_count(t) == 5, "last put left the identity: count %zu",
	      swim_idents_count(t));
	for (int i = 0; i < 5; i++)
		swim_ident_put(t, d[i]);
	CHECK(swim_idents_count(t) == 0, "count %zu after all puts", swim_idents_count(t));
	swim_ident_put(t, NULL);
	swim_idents_free(t);
}

/* Random gets and puts against a model: every live identity keeps its
 * content and is found again by content; the count matches. */
static void test_random_against_model(void)
{
	enum { NAMES = 600, STEPS = 20000, MAXREF = 4 };
	struct swim_idents *t = swim_idents_new();
	static const struct swim_ident *held[NAMES][MAXREF];
	static int nheld[NAMES];
	uint64_t x = 88172645463325252ull;
	for (int step = 0; step < STEPS; step++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		int k = (int)(x % NAMES);
		char name[16];
		snprintf(name, sizeof(name), "node-%d", k);
		struct ml_addr a = addr4((uint8_t)k, (uint16_t)(7000 + k));
		bool get = nheld[k] == 0 || (nheld[k] < MAXREF && (x >> 32) % 2 == 0);
		if (get) {
			const struct swim_ident *id = swim_ident_get(t, name, &a, VSN, NULL, 0);
			if (nheld[k] > 0)
				CHECK(id == held[k][0], "step %d: %s interned twice", step, name);
			CHECK(strcmp(id->name, name) == 0 && id->addr.port == 7000 + k,
			      "step %d: wrong identity for %s: %s", step, name, id->name);
			held[k][nheld[k]++] = id;
		} else {
			swim_ident_put(t, held[k][--nheld[k]]);
		}
	}
	size_t live = 0;
	for (int k = 0; k < NAMES; k++) {
		live += nheld[k] > 0;
		for (int i = 0; i < nheld[k]; i++) {
			char name[16];
			snprintf(name, sizeof(name), "node-%d", k);
			CHECK(strcmp(held[k][i]->name, name) == 0 &&
			              held[k][i]->refs == (uint32_t)nheld[k],
			      "%s: name %s refs %u, expected %d", name, held[k][i]->name,
			      held[k][i]->refs, nheld[k]);
		}
	}
	CHECK(swim_idents_count(t) == live, "count %zu, model %zu", swim_idents_count(t), live);
	swim_idents_free(t); /* frees what is still held: ASan checks for leaks */
}

int main(void)
{
	RUN(test_same_content_same_identity);
	RUN(test_random_against_model);
	return check_exit_code();
}
