/*
 * test_acl.c — the HTTP ACL decision (agent/acl.h): request classes, where
 * the token is read from, constant-time comparison, loopback detection and
 * the allow/deny table.
 */
#include "agent/acl.h"

#include <stdio.h>
#include <string.h>

#include "agent/http/http.h"
#include "tests/unit/check.h"

/* Parses one raw request; the caller frees *pp. */
static const struct http_request *parse(const char *raw, struct http_reqparser **pp)
{
	struct http_reqparser *p = http_reqparser_new(NULL);
	size_t used = 0;
	*pp = p;
	if (p == NULL || http_reqparser_feed(p, raw, strlen(raw), &used) != HTTP_PARSE_DONE)
		return NULL;
	return http_reqparser_request(p);
}

static void test_writes_are_methods_and_membership_paths(void)
{
	REQUIRE(acl_classify("GET", "/v1/agent/members") == ACL_READ, "GET members is a read");
	REQUIRE(acl_classify("HEAD", "/v1/kv/x") == ACL_READ, "HEAD is a read");
	REQUIRE(acl_classify("PUT", "/v1/kv/x") == ACL_WRITE, "PUT is a write");
	REQUIRE(acl_classify("POST", "/v1/anything") == ACL_WRITE, "POST is a write");
	REQUIRE(acl_classify("DELETE", "/v1/kv/x") == ACL_WRITE, "DELETE is a write");
	REQUIRE(acl_classify("PATCH", "/v1/kv/x") == ACL_WRITE, "unknown methods are writes");
	REQUIRE(acl_classify("GET", "/v1/agent/join/10.0.0.1") == ACL_WRITE, "GET join is a write");
	REQUIRE(acl_classify("GET", "/v1/agent/leave") == ACL_WRITE, "GET leave is a write");
	REQUIRE(acl_classify("GET", "/v1/agent/force-leave/n1") == ACL_WRITE,
	        "GET force-leave is a write");
	REQUIRE(acl_classify("GET", "/v1/operator/keyring") == ACL_WRITE,
	        "keyring list is a write-class request (it reveals key ids)");
	REQUIRE(acl_classify("GET", "/v1/agent/check/pass/web") == ACL_WRITE,
	        "GET check pass (python-consul) is a write");
	REQUIRE(acl_classify("GET", "/v1/agent/service/deregister/web") == ACL_WRITE,
	        "GET service deregister is a write");
	REQUIRE(acl_classify("GET", "/v1/agent/checks") == ACL_READ, "GET checks is a read");
	REQUIRE(acl_classify(NULL, "/x") == ACL_WRITE, "no method: the stricter class");
}

static void test_token_from_header_bearer_or_query(void)
{
	struct http_reqparser *p;
	const struct http_request *r =
	        parse("GET /v1/kv/a?token=q HTTP/1.1\r\nX-Consul-Token: h\r\n\r\n", &p);
	REQUIRE(r != NULL, "request parses");
	const char *t = acl_request_token(r);
	REQUIRE(t && strcmp(t, "h") == 0, "header wins: expected h, got %s", t ? t : "(null)");
	http_reqparser_free(p);

	r = parse("GET /v1/kv/a?token=q HTTP/1.1\r\nAuthorization: Bearer  b\r\n\r\n", &p);
	t = r ? acl_request_token(r) : NULL;
	REQUIRE(t && strcmp(t, "b") == 0, "bearer: expected b, got %s", t ? t : "(null)");
	http_reqparser_free(p);

	r = parse("GET /v1/kv/a?x=1&token=q%2Bz HTTP/1.1\r\n\r\n", &p);
	t = r ? acl_request_token(r) : NULL;
	REQUIRE(t && strcmp(t, "q+z") == 0, "query: expected q+z, got %s", t ? t : "(null)");
	http_reqparser_free(p);

	r = parse("GET /v1/kv/a?token= HTTP/1.1\r\nX-Consul-Token: \r\n\r\n", &p);
	t = r ? acl_request_token(r) : (const char *)"parse failed";
	REQUIRE(t == NULL, "empty tokens count as none, got %s", t);
	http_reqparser_free(p);
}

static void test_token_compare(void)
{
	REQUIRE_BOOL(true, acl_token_equal("secret", "secret"));
	REQUIRE_BOOL(false, acl_token_equal("secret", "secreT"));
	REQUIRE_BOOL(false, acl_token_equal("secret", "secret2"));
	REQUIRE_BOOL(false, acl_token_equal("secret2", "secret"));
	REQUIRE_BOOL(false, acl_token_equal("", ""));
	REQUIRE_BOOL(false, acl_token_equal(NULL, "x"));
	REQUIRE_BOOL(false, acl_token_equal("x", NULL));
	char longa[400], longb[400];
	memset(longa, 'a', sizeof(longa) - 1);
	longa[sizeof(longa) - 1] = '\0';
	memcpy(longb, longa, sizeof(longa));
	REQUIRE_BOOL(false, acl_token_equal(longa, longb)); /* over ACL_TOKEN_MAX */
	longa[ACL_TOKEN_MAX] = '\0';
	longb[ACL_TOKEN_MAX] = '\0';
	REQUIRE_BOOL(true, acl_token_equal(longa, longb)); /* exactly the max */
}

static void test_loopback_addresses(void)
{
	REQUIRE_BOOL(true, acl_addr_is_loopback("127.0.0.1"));
	REQUIRE_BOOL(true, acl_addr_is_loopback("127.3.4.5:8500"));
	REQUIRE_BOOL(true, acl_addr_is_loopback("::1"));
	REQUIRE_BOOL(true, acl_addr_is_loopback("[::1]:8500"));
	REQUIRE_BOOL(true, acl_addr_is_loopback("::ffff:127.0.0.1"));
	REQUIRE_BOOL(false, acl_addr_is_loopback("0.0.0.0"));
	REQUIRE_BOOL(false, acl_addr_is_loopback("::"));
	REQUIRE_BOOL(false, acl_addr_is_loopback("10.0.0.1:8500"));
	REQUIRE_BOOL(false, acl_addr_is_loopback("128.0.0.1"));
	REQUIRE_BOOL(false, acl_addr_is_loopback("[::2]:1"));
	REQUIRE_BOOL(false, acl_addr_is_loopback(""));
	REQUIRE_BOOL(false, acl_addr_is_loopback(NULL));
	REQUIRE_BOOL(false, acl_addr_is_loopback("localhost"));
}

static void test_no_tokens_open_on_loopback_only(void)
{
	REQUIRE_BOOL(true, acl_allow(ACL_WRITE, NULL, NULL, true, "127.0.0.1:1", NULL));
	REQUIRE_BOOL(true, acl_allow(ACL_READ, NULL, NULL, false, "10.0.0.2:1", NULL));
	REQUIRE_BOOL(false, acl_allow(ACL_WRITE, NULL, NULL, false, "10.0.0.2:1", NULL));
	REQUIRE_BOOL(false, acl_allow(ACL_WRITE, "", "", false, "10.0.0.2:1", "anything"));
	REQUIRE_BOOL(true, acl_allow(ACL_WRITE, NULL, NULL, false, "127.0.0.1:5", NULL));
}

static void test_write_token_required_for_writes(void)
{
	REQUIRE_BOOL(false, acl_allow(ACL_WRITE, "w", NULL, true, "127.0.0.1:1", NULL));
	REQUIRE_BOOL(false, acl_allow(ACL_WRITE, "w", NULL, true, "127.0.0.1:1", "x"));
	REQUIRE_BOOL(true, acl_allow(ACL_WRITE, "w", NULL, true, "127.0.0.1:1", "w"));
	REQUIRE_BOOL(true, acl_allow(ACL_WRITE, "w", NULL, false, "10.0.0.2:1", "w"));
	REQUIRE_BOOL(false, acl_allow(ACL_WRITE, "w", "r", true, "127.0.0.1:1", "r"));
	REQUIRE_BOOL(true, acl_allow(ACL_READ, "w", NULL, true, "127.0.0.1:1", NULL));
}

static void test_read_token_required_for_reads(void)
{
	REQUIRE_BOOL(false, acl_allow(ACL_READ, "w", "r", true, "127.0.0.1:1", NULL));
	REQUIRE_BOOL(false, acl_allow(ACL_READ, "w", "r", true, "127.0.0.1:1", "x"));
	REQUIRE_BOOL(true, acl_allow(ACL_READ, "w", "r", true, "127.0.0.1:1", "r"));
	REQUIRE_BOOL(true, acl_allow(ACL_READ, "w", "r", true, "127.0.0.1:1", "w"));
}

int main(void)
{
	RUN(test_writes_are_methods_and_membership_paths);
	RUN(test_token_from_header_bearer_or_query);
	RUN(test_token_compare);
	RUN(test_loopback_addresses);
	RUN(test_no_tokens_open_on_loopback_only);
	RUN(test_write_token_required_for_writes);
	RUN(test_read_token_required_for_reads);
	return check_exit_code();
}
