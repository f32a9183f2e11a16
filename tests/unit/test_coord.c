/*
 * tests/unit/test_coord.c — gossip/coord.c, Serf's Vivaldi coordinates.
 *
 * The update vectors: a client at (0.01, 0, ...) probing a peer at
 * (0, 0.02, ...) (error 0.5, height 1 ms) five times with RTTs of 10, 30,
 * 12, 25 and 5 ms. The expected values were computed by a run of Serf's
 * own coordinate package (Debian's golang-github-hashicorp-serf-dev, Go
 * 1.19, DefaultConfig, SetCoordinate then Update): they check the latency
 * filter (median of three), the error and force updates, the height, the
 * adjustment window and gravity, to 1e-15. The first update from two
 * coincident coordinates is worked out by hand from Serf's formulas. The
 * wire bytes are what go-msgpack's MsgpackHandle wrote for the peer.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gossip/coord.h"
#include "lib/mp.h"
#include "tests/unit/check.h"

#define CLOSE(exp, act)                                                                            \
	CHECK(fabs((exp) - (act)) <= 1e-15 + 1e-12 * fabs(exp), "%.17g != %.17g", (double)(exp),   \
	      (double)(act))

static void peer(struct coord *o)
{
	struct coord_config cfg;
	coord_config_default(&cfg);
	coord_new(&cfg, o);
	o->vec[1] = 0.02;
	o->error = 0.5;
	o->height = 0.001;
}

static void test_update_matches_serf(void)
{
	static const struct {
		double v0, v1, err, adj, h;
	} want[5] = {
	        {0.0088788310640090136, 0.0022423301730184228, 1.46945023125,
	         -0.00027159193656244745, 1.0000000000000001e-05},
	        {0.0096636253749458455, 0.00067273222438941406, 1.2538483748142426,
	         -8.9287282210497851e-05, 9.927369474390292e-05},
	        {0.0088148875710967883, 0.0023702017163847225, 1.1879027997423932,
	         -0.00030730501257892484, 1.0000000000000001e-05},
	        {0.0091757770209074541, 0.0016484138648316131, 1.0111781973075973,
	         -0.00022153105394226552, 5.1350707428579469e-05},
	        {0.0084764758863732255, 0.0030470112695197256, 0.97233186775704805,
	         -0.00042063129736769224, 1.0000000000000001e-05},
	};
	static const int64_t rtt_ms[5] = {10, 30, 12, 25, 5};
	struct coord_client cl;
	coord_client_init(&cl, NULL, 1);
	cl.c.vec[0] = 0.01;
	struct coord other;
	peer(&other);
	for (int i = 0; i < 5; i++) {
		REQUIRE(coord_client_update(&cl, "b", &other, rtt_ms[i] * 1000000) == 0, "step %d",
		        i);
		CLOSE(want[i].v0, cl.c.vec[0]);
		CLOSE(want[i].v1, cl.c.vec[1]);
		for (int d = 2; d < COORD_DIM; d++)
			CHECK_NUM(0.0, cl.c.vec[d]);
		CLOSE(want[i].err, cl.c.error);
		CLOSE(want[i].adj, cl.c.adjustment);
		CLOSE(want[i].h, cl.c.height);
	}
	CHECK_INT(19543378, coord_distance_ns(&cl.c, &other));
	CHECK_INT(1, (long long)cl.npeers);
	coord_client_forget(&cl, "b");
	CHECK_INT(0, (long long)cl.npeers);
	coord_client_free(&cl);
}

/* Both at the origin, errors 1.5, heights 10 us, RTT 10 ms: distance
 * 20 us, wrongness 0.998, weight 0.5, error 0.25*0.5*0.998 + 1.5*0.875 =
 * 1.43725, force 0.125*(0.01 - 0.00002) = 0.0012475 in a random direction
 * (height unchanged: the points coincide). Adjustment: (0.01 - (0.0012475
 * + 0.00002)) / 40. Gravity then moves it by ~1e-10 toward the origin. */
static void test_first_update_by_hand(void)
{
	struct coord_client cl;
	coord_client_init(&cl, NULL, 42);
	struct coord other;
	coord_new(&cl.cfg, &other);
	REQUIRE(coord_client_update(&cl, "x", &other, 10000000) == 0, "update");
	double mag = 0;
	for (int d = 0; d < COORD_DIM; d++)
		mag += cl.c.vec[d] * cl.c.vec[d];
	CHECK(fabs(sqrt(mag) - 0.0012475) < 1e-9, "|vec| %.12g", sqrt(mag));
	CLOSE(1.43725, cl.c.error);
	CLOSE((0.01 - 0.0012675) / 40.0, cl.c.adjustment);
	CLOSE(10.0e-6, cl.c.height);
	coord_client_free(&cl);
}

static void test_rejects(void)
{
	struct coord_client cl;
	coord_client_init(&cl, NULL, 7);
	struct coord other, before = cl.c;
	coord_new(&cl.cfg, &other);
	CHECK_INT(-1, coord_client_update(&cl, "x", &other, -1));
	CHECK_INT(-1, coord_client_update(&cl, "x", &other, COORD_MAX_RTT_NS + 1));
	other.vec[3] = NAN;
	CHECK_INT(-1, coord_client_update(&cl, "x", &other, 1000000));
	CHECK(memcmp(&before, &cl.c, sizeof before) == 0, "unchanged");
	CHECK_INT(3, (long long)cl.rejected);
	CHECK_INT(0, (long long)cl.npeers);
	coord_client_free(&cl);
}

/* The latency filter is a per-node median of three. */
static void test_latency_filter(void)
{
	struct coord_client a, b;
	coord_client_init(&a, NULL, 3);
	coord_client_init(&b, NULL, 3);
	a.c.vec[0] = b.c.vec[0] = 0.01;
	struct coord other;
	peer(&other);
	/* a sees 10, 1000, 10 ms: the median drops the outlier; b sees 10, 10,
	 * 10: after the 3rd sample both have fed 10 ms three times... except
	 * the 2nd step, where a's median of {10, 1000} is 1000 */
	coord_client_update(&a, "p", &other, 10000000);
	coord_client_update(&b, "p", &other, 10000000);
	coord_client_update(&a, "p", &other, 1000000000);
	coord_client_update(&b, "p", &other, 1000000000);
	coord_client_update(&a, "p", &other, 10000000);
	coord_client_update(&b, "q", &other, 10000000);
	/* a: median(10,1000,10) = 10; b: its q filter holds only 10 */
	CLOSE(b.c.vec[0], a.c.vec[0]);
	CLOSE(b.c.error, a.c.error);
	coord_client_free(&a);
	coord_client_free(&b);
}

static const uint8_t SERF_WIRE[] = {
        0x84, 0xaa, 'A',  'd',  'j',  'u',  's',  't',  'm',  'e',  'n',  't',  0xcb, 0,    0,
        0,    0,    0,    0,    0,    0,    0xa5, 'E',  'r',  'r',  'o',  'r',  0xcb, 0x3f, 0xe0,
        0,    0,    0,    0,    0,    0,    0xa6, 'H',  'e',  'i',  'g',  'h',  't',  0xcb, 0x3f,
        0x50, 0x62, 0x4d, 0xd2, 0xf1, 0xa9, 0xfc, 0xa3, 'V',  'e',  'c',  0x98, 0xcb, 0,    0,
        0,    0,    0,    0,    0,    0,    0xcb, 0x3f, 0x94, 0x7a, 0xe1, 0x47, 0xae, 0x14, 0x7b,
        0xcb, 0,    0,    0,    0,    0,    0,    0,    0,    0xcb, 0,    0,    0,    0,    0,
        0,    0,    0,    0xcb, 0,    0,    0,    0,    0,    0,    0,    0,    0xcb, 0,    0,
        0,    0,    0,    0,    0,    0,    0xcb, 0,    0,    0,    0,    0,    0,    0,    0,
        0xcb, 0,    0,    0,    0,    0,    0,    0,    0};

static void test_wire_matches_serf(void)
{
	struct coord o, d;
	peer(&o);
	uint8_t buf[COORD_WIRE_MAX];
	int n = coord_encode(&o, buf, sizeof buf);
	REQUIRE(n == (int)sizeof SERF_WIRE, "len %d", n);
	CHECK(memcmp(buf, SERF_WIRE, sizeof SERF_WIRE) == 0, "bytes");
	size_t used = 0;
	REQUIRE(coord_decode(SERF_WIRE, sizeof SERF_WIRE, &d, &used) == 0, "%s", mp_error());
	CHECK_INT((long long)sizeof SERF_WIRE, (long long)used);
	CHECK(memcmp(&o, &d, sizeof o) == 0, "round trip");
	CHECK_INT(-1, coord_encode(&o, buf, 100));
	/* the ack payload */
	n = coord_payload_encode(&o, buf, sizeof buf);
	REQUIRE(n == (int)sizeof SERF_WIRE + 1, "len %d", n);
	CHECK_INT(1, buf[0]);
	CHECK_INT(0, coord_payload_decode(buf, (size_t)n, &d));
	buf[0] = 2;
	CHECK_INT(-1, coord_payload_decode(buf, (size_t)n, &d));
	CHECK_INT(-1, coord_payload_decode(buf, 0, &d));
	/* every truncation fails */
	for (size_t i = 0; i < sizeof SERF_WIRE; i++)
		CHECK_INT(-1, coord_decode(SERF_WIRE, i, &d, NULL), "prefix %zu", i);
}

static void test_decode_liberal_and_strict(void)
{
	/* integers and float32 read as numbers; unknown keys are skipped */
	uint8_t buf[256];
	struct wcursor w = {.p = buf, .cap = sizeof buf};
	mp_write_map(&w, 3);
	mp_write_str(&w, "Other");
	mp_write_str(&w, "x");
	mp_write_str(&w, "Error");
	wcursor_u8(&w, 0xca);
	wcursor_be32(&w, 0x3fc00000); /* 1.5f */
	mp_write_str(&w, "Vec");
	mp_write_array(&w, COORD_DIM);
	for (int i = 0; i < COORD_DIM; i++)
		mp_write_int(&w, i - 2);
	struct coord d;
	REQUIRE(coord_decode(buf, w.len, &d, NULL) == 0, "%s", mp_error());
	CHECK_NUM(1.5, d.error);
	CHECK_NUM(-2.0, d.vec[0]);
	CHECK_NUM(5.0, d.vec[7]);
	/* 7 dimensions: refused (Serf refuses an incompatible coordinate) */
	w = (struct wcursor){.p = buf, .cap = sizeof buf};
	mp_write_map(&w, 1);
	mp_write_str(&w, "Vec");
	mp_write_array(&w, 7);
	for (int i = 0; i < 7; i++)
		mp_write_uint(&w, 0);
	CHECK_INT(-1, coord_decode(buf, w.len, &d, NULL));
	/* no Vec */
	w = (struct wcursor){.p = buf, .cap = sizeof buf};
	mp_write_map(&w, 0);
	CHECK_INT(-1, coord_decode(buf, w.len, &d, NULL));
	/* infinity */
	struct coord o;
	peer(&o);
	o.height = INFINITY;
	int n = coord_encode(&o, buf, sizeof buf);
	CHECK_INT(-1, coord_decode(buf, (size_t)n, &d, NULL));
}

/* Nodes on a line converge: after rounds of probes the estimates are close. */
static void test_converges(void)
{
	enum { N = 5 };
	struct coord_client cl[N];
	for (int i = 0; i < N; i++)
		coord_client_init(&cl[i], NULL, (uint64_t)i + 1);
	char name[N][4];
	for (int i = 0; i < N; i++)
		snprintf(name[i], sizeof name[i], "n%d", i);
	for (int r = 0; r < 400; r++) {
		for (int i = 0; i < N; i++) {
			int j = (i + 1 + r % (N - 1)) % N;
			int64_t rtt = 10000000LL * (i > j ? i - j : j - i); /* 10 ms a step */
			struct coord peer_c = cl[j].c;
			coord_client_update(&cl[i], name[j], &peer_c, rtt);
		}
	}
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < N; j++) {
			if (i == j)
				continue;
			double truth = 0.01 * (i > j ? i - j : j - i);
			double est = (double)coord_distance_ns(&cl[i].c, &cl[j].c) / 1e9;
			CHECK(fabs(est - truth) / truth < 0.2, "%d-%d est %.4f truth %.4f", i, j,
			      est, truth);
		}
	}
	for (int i = 0; i < N; i++)
		coord_client_free(&cl[i]);
}

int main(void)
{
	RUN(test_update_matches_serf);
	RUN(test_first_update_by_hand);
	RUN(test_rejects);
	RUN(test_latency_filter);
	RUN(test_wire_matches_serf);
	RUN(test_decode_liberal_and_strict);
	RUN(test_converges);
	return check_exit_code();
}
