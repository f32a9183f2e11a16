/*
 * test_cli_ops.c — `rumor info` rendering from /v1/agent/self and
 * /v1/agent/metrics answers (pure function; the server tier's consul and
 * raft sections from self's Stats), and cli_ops_stream's errors.
 */
#include "agent/cli/cli_ops.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"

static const char *SELF =
        "{\"Config\":{\"Datacenter\":\"dc1\",\"NodeName\":\"n1\",\"NodeID\":\"abc\","
        "\"Revision\":\"rumor\",\"Version\":\"0.1.0\"},"
        "\"DebugConfig\":{\"DataDir\":\"/var/lib/rumor\",\"GossipProfile\":\"lan\","
        "\"LogLevel\":\"info\"}}";

static const char *METRICS =
        "{\"Timestamp\":\"x\",\"Points\":[],\"Samples\":[],"
        "\"Gauges\":["
        "{\"Name\":\"rumor.serf.members\",\"Value\":3,\"Labels\":{\"status\":\"alive\"}},"
        "{\"Name\":\"rumor.serf.members\",\"Value\":1,\"Labels\":{\"status\":\"failed\"}},"
        "{\"Name\":\"rumor.serf.members\",\"Value\":0,\"Labels\":{\"status\":\"suspect\"}},"
        "{\"Name\":\"rumor.serf.members\",\"Value\":2,\"Labels\":{\"status\":\"left\"}},"
        "{\"Name\":\"rumor.memberlist.keyring.keys\",\"Value\":1,\"Labels\":{}},"
        "{\"Name\":\"rumor.memberlist.health.score\",\"Value\":0,\"Labels\":{}},"
        "{\"Name\":\"rumor.runtime.uptime_seconds\",\"Value\":1.25,\"Labels\":{}}],"
        "\"Counters\":[{\"Name\":\"rumor.memberlist.packets.sent\",\"Count\":10,\"Sum\":10,"
        "\"Min\":1,\"Max\":1,\"Mean\":1,\"Stddev\":0,\"Labels\":{}}]}";

static void test_info_has_sorted_sections_and_counts(void)
{
	json_t *self = json_loads(SELF, 0, NULL), *m = json_loads(METRICS, 0, NULL);
	REQUIRE(self && m, "fixtures do not parse");
	char *t = cli_ops_info_text(self, m, 2, -1);
	REQUIRE(t != NULL, "NULL text");
	REQUIRE(strncmp(t, "agent:\n", 7) == 0, "first section: %s", t);
	REQUIRE_HAS(t, "\tnode_name = n1\n");
	REQUIRE_HAS(t, "\tservices = 2\n");
	REQUIRE(strstr(t, "checks =") == NULL, "unknown check count shown:\n%s", t);
	REQUIRE_HAS(t, "build:\n\tprerelease = \n\trevision = rumor\n\tversion = 0.1.0\n");
	REQUIRE_HAS(t, "\tmembers = 6\n");
	REQUIRE_HAS(t, "\tfailed = 1\n");
	REQUIRE_HAS(t, "\tencrypted = true\n");
	REQUIRE_HAS(t, "\tpackets_sent = 10\n");
	REQUIRE_HAS(t, "\tuptime_seconds = 1.250\n");
	/* keys sorted inside serf_lan */
	const char *lan = strstr(t, "serf_lan:\n");
	REQUIRE(lan != NULL, "no serf_lan");
	REQUIRE(strstr(lan, "alive") < strstr(lan, "encrypted") &&
	                strstr(lan, "encrypted") < strstr(lan, "members"),
	        "serf_lan keys not sorted:\n%s", lan);
	free(t);
	json_decref(self);
	json_decref(m);
}

static void test_info_tolerates_missing_metrics(void)
{
	json_t *self = json_object(), *m = json_object();
	char *t = cli_ops_info_text(self, m, -1, -1);
	REQUIRE(t != NULL, "NULL text");
	REQUIRE_HAS(t, "serf_lan:\n\talive = 0\n");
	REQUIRE(strstr(t, "encrypted") == NULL, "encrypted shown without a keyring metric");
	free(t);
	json_decref(self);
	json_decref(m);
}

static void test_stream_reports_refused_connection(void)
{
	char err[300];
	int r = cli_ops_stream("127.0.0.1:1", "/v1/agent/monitor", NULL, 2000, stdout, err,
	                       sizeof(err));
	REQUIRE(r == -1, "expected -1, got %d", r);
	REQUIRE_HAS(err, "Error connecting to agent at 127.0.0.1:1: connection refused");
	r = cli_ops_stream("127.0.0.1:1", "/bad path", NULL, 2000, stdout, err, sizeof(err));
	REQUIRE(r == -1 && strstr(err, "invalid request path") != NULL, "bad path: %s", err);
	r = cli_ops_stream("127.0.0.1:1", "/p", "tok\r\nX: y", 2000, stdout, err, sizeof(err));
	REQUIRE(r == -1 && strstr(err, "-token") != NULL, "bad token: %s", err);
}

/* A server's /v1/agent/self: Config.Server and the server tier's Stats. */
static void test_info_shows_consul_and_raft_sections(void)
{
	json_t *self = json_loads(
	        "{\"Config\":{\"NodeName\":\"s1\",\"Server\":true},"
	        "\"Stats\":{\"serf_lan\":{\"members\":3},"
	        "\"consul\":{\"server\":\"true\",\"leader\":\"true\",\"bootstrap\":\"false\","
	        "\"leader_addr\":\"10.0.0.1:8300\",\"known_datacenters\":\"1\"},"
	        "\"raft\":{\"state\":\"Leader\",\"term\":\"2\",\"num_peers\":\"2\","
	        "\"applied_index\":\"40\",\"commit_index\":\"41\",\"last_contact\":\"0\"}}}",
	        0, NULL);
	json_t *m = json_object();
	REQUIRE(self != NULL, "fixture does not parse");
	char *t = cli_ops_info_text(self, m, -1, -1);
	REQUIRE(t != NULL, "NULL text");
	REQUIRE_HAS(t, "\tserver = true\n");
	REQUIRE_HAS(t, "consul:\n\tbootstrap = false\n\tknown_datacenters = 1\n\tleader = true\n"
	               "\tleader_addr = 10.0.0.1:8300\n\tserver = true\n");
	REQUIRE_HAS(t, "raft:\n\tapplied_index = 40\n\tcommit_index = 41\n\tlast_contact = 0\n"
	               "\tnum_peers = 2\n\tstate = Leader\n\tterm = 2\nruntime:\n");
	REQUIRE(strstr(t, "build:\n") < strstr(t, "consul:\n") &&
	                strstr(t, "raft:\n") < strstr(t, "runtime:\n"),
	        "sections not in name order:\n%s", t);
	free(t);
	json_decref(self);
	json_decref(m);
}

/* An agent that sends no consul/raft Stats (a client has no raft; an
 * older agent neither): no empty sections, server = false. */
static void test_info_without_server_stats(void)
{
	json_t *self = json_loads("{\"Config\":{\"Server\":false},"
	                          "\"Stats\":{\"consul\":{\"server\":\"false\","
	                          "\"known_servers\":\"3\"}}}",
	                          0, NULL),
	       *old = json_object(), *m = json_object();
	REQUIRE(self != NULL, "fixture does not parse");
	char *t = cli_ops_info_text(self, m, -1, -1);
	REQUIRE(t != NULL, "NULL text");
	REQUIRE_HAS(t, "consul:\n\tknown_servers = 3\n\tserver = false\nruntime:\n");
	REQUIRE(strstr(t, "raft:") == NULL, "raft section on a client:\n%s", t);
	free(t);
	t = cli_ops_info_text(old, m, -1, -1);
	REQUIRE(t != NULL, "NULL text");
	REQUIRE_HAS(t, "\tserver = false\n");
	REQUIRE(strstr(t, "consul:") == NULL && strstr(t, "raft:") == NULL,
	        "empty sections shown:\n%s", t);
	free(t);
	json_decref(self);
	json_decref(old);
	json_decref(m);
}

int main(void)
{
	RUN(test_info_has_sorted_sections_and_counts);
	RUN(test_info_tolerates_missing_metrics);
	RUN(test_info_shows_consul_and_raft_sections);
	RUN(test_info_without_server_stats);
	RUN(test_stream_reports_refused_connection);
	return check_exit_code();
}
