/*
 * tests/unit/test_api_event.c — the pure parts of agent/api_event.c: Consul's
 * event index from an event ID, the ID every agent derives for a plain serf
 * event, and the decoder of Consul's user-event envelope.
 */
#include <stdio.h>
#include <string.h>

#include "agent/api_event.h"
#include "lib/cursor.h"
#include "lib/mp.h"
#include "tests/unit/check.h"

static void test_index_is_consuls_uuid_to_uint64_in_53_bits(void)
{
	/* Consul's TestUUIDToUint64: 6430540886266763072 = 0x593ddedd978e5740 */
	CHECK_INT((long long)(6430540886266763072ULL & API_EVENT_INDEX_MASK),
	          (long long)api_event_id_index("cb9a81ad-fff6-52ac-92a7-5f70687805ec"));
	CHECK_INT(1, (long long)api_event_id_index("not-a-uuid"));
	CHECK_INT(1, (long long)api_event_id_index("00000000-0000-0000-0000-000000000000"));
	CHECK_INT(1, (long long)api_event_id_index("cb9a81ad-fff6-52ac-92a7-5f70687805ec00"));
}

static void test_derived_id_depends_on_name_ltime_payload_only(void)
{
	char a[37], b[37], c[37], d[37], e[37];
	api_event_derive_id("deploy", 7, (const uint8_t *)"v1", 2, a);
	api_event_derive_id("deploy", 7, (const uint8_t *)"v1", 2, b);
	api_event_derive_id("deploy", 8, (const uint8_t *)"v1", 2, c);
	api_event_derive_id("deplo", 7, (const uint8_t *)"yv1", 3, d);
	api_event_derive_id("deploy", 7, NULL, 0, e);
	CHECK_STR(a, b, "same event, same ID");
	CHECK(strcmp(a, c) != 0, "another lamport time, another ID (%s)", c);
	CHECK(strcmp(a, d) != 0, "name/payload boundary is part of the ID (%s)", d);
	CHECK(strcmp(a, e) != 0, "payload is part of the ID (%s)", e);
	CHECK_INT(36, (long long)strlen(a));
	CHECK_INT('8', a[14], "version nibble of %s", a);
	CHECK(strchr("89ab", a[19]) != NULL, "variant of %s", a);
}

/* An envelope as Consul's agent writes it (go-msgpack, strings as raw). */
static size_t consul_envelope(uint8_t *buf, size_t cap, const char *id, const char *name,
                              const char *payload, const char *nodefilter)
{
	struct wcursor w = {.p = buf, .len = 0, .cap = cap};
	mp_write_map(&w, 4 + (nodefilter != NULL));
	mp_write_str(&w, "ID");
	mp_write_str(&w, id);
	mp_write_str(&w, "n");
	mp_write_str(&w, name);
	mp_write_str(&w, "p");
	mp_write_bytes(&w, payload, strlen(payload));
	if (nodefilter != NULL) {
		mp_write_str(&w, "nf");
		mp_write_str(&w, nodefilter);
	}
	mp_write_str(&w, "v");
	mp_write_uint(&w, 1);
	return w.len;
}

static void test_envelope_decodes_consuls_fields(void)
{
	uint8_t buf[256];
	const char *id = "cb9a81ad-fff6-52ac-92a7-5f70687805ec";
	size_t n = consul_envelope(buf, sizeof(buf), id, "deploy", "v42", "web-.*");
	struct api_event_envelope e;
	REQUIRE_INT(MP_OK, api_event_decode_envelope(buf, n, &e), "%s", mp_error());
	CHECK_STR(id, e.id);
	CHECK_INT(6, (long long)e.name_len);
	CHECK(memcmp(e.name, "deploy", 6) == 0, "name");
	CHECK_INT(3, (long long)e.payload_len);
	CHECK(memcmp(e.payload, "v42", 3) == 0, "payload");
	CHECK_INT(6, (long long)e.filter_len[0]);
	CHECK_INT(0, (long long)e.filter_len[1]);
	CHECK_INT(1, e.version);
}

static void test_envelope_refuses_short_and_malformed_input(void)
{
	uint8_t buf[256];
	struct api_event_envelope e;
	size_t n = consul_envelope(buf, sizeof(buf), "cb9a81ad-fff6-52ac-92a7-5f70687805ec",
	                           "deploy", "", NULL);
	for (size_t cut = 0; cut < n; cut++)
		CHECK_INT(MP_BAD, api_event_decode_envelope(buf, cut, &e), "cut at %zu", cut);
	n = consul_envelope(buf, sizeof(buf), "short-id", "deploy", "", NULL);
	CHECK_INT(MP_BAD, api_event_decode_envelope(buf, n, &e));
	CHECK_HAS(mp_error(), "ID");
	const uint8_t raw[] = "hello"; /* a plain serf payload */
	CHECK_INT(MP_BAD, api_event_decode_envelope(raw, 5, &e));
}

int main(void)
{
	RUN(test_index_is_consuls_uuid_to_uint64_in_53_bits);
	RUN(test_derived_id_depends_on_name_ltime_payload_only);
	RUN(test_envelope_decodes_consuls_fields);
	RUN(test_envelope_refuses_short_and_malformed_input);
	return check_exit_code();
}
