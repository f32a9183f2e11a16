/*
 * tests/unit/test_cli_rtt.c — `rumor rtt`'s estimate over the JSON of
 * /v1/coordinate/nodes: consul's line, case-insensitive names, consul's
 * errors for a node without a (valid) coordinate.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "agent/cli/cli_rtt.h"
#include "gossip/coord.h"
#include "tests/unit/check.h"

/* Two nodes 3 ms apart along the first axis, heights 10 us: Serf's
 * DistanceTo gives 3.020 ms; "bad" has a 3-element Vec. */
static json_t *entries(void)
{
	const char *text =
	        "[{\"Node\":\"a\",\"Segment\":\"\",\"Coord\":{\"Vec\":[0,0,0,0,0,0,0,0],"
	        "\"Error\":1.5,\"Adjustment\":0,\"Height\":1e-05}},"
	        "{\"Node\":\"B\",\"Segment\":\"\",\"Coord\":{\"Vec\":[0.003,0,0,0,0,0,0,0],"
	        "\"Error\":1.5,\"Adjustment\":0,\"Height\":1e-05}},"
	        "{\"Node\":\"bad\",\"Segment\":\"\",\"Coord\":{\"Vec\":[0,0,0],"
	        "\"Error\":1.5,\"Adjustment\":0,\"Height\":1e-05}}]";
	return json_loads(text, 0, NULL);
}

static void test_rtt_line_as_consul(void)
{
	json_t *e = entries();
	char out[256];
	CHECK_INT(0, cli_rtt_estimate(e, "a", "b", false, out, sizeof(out)));
	CHECK_STR("Estimated a <-> b rtt: 3.020 ms (using LAN coordinates)", out);
	CHECK_INT(0, cli_rtt_estimate(e, "B", "A", true, out, sizeof(out)));
	CHECK_STR("Estimated B <-> A rtt: 3.020 ms (using WAN coordinates)", out);
	json_decref(e);
}

static void test_rtt_missing_or_bad_coordinate(void)
{
	json_t *e = entries();
	char out[256];
	CHECK_INT(1, cli_rtt_estimate(e, "nobody", "a", false, out, sizeof(out)));
	CHECK_STR("Could not find a coordinate for node \"nobody\"", out);
	CHECK_INT(1, cli_rtt_estimate(e, "a", "bad", false, out, sizeof(out)));
	CHECK_STR("Could not find a coordinate for node \"bad\"", out);
	json_t *empty = json_array();
	CHECK_INT(1, cli_rtt_estimate(empty, "a", "b", false, out, sizeof(out)));
	json_decref(empty);
	json_decref(e);
}

int main(void)
{
	RUN(test_rtt_line_as_consul);
	RUN(test_rtt_missing_or_bad_coordinate);
	return check_exit_code();
}
