/*
 * agent/api_reply.c — see api_reply.h.
 */
#include "agent/api_reply.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "agent/http/http.h"

void api_reply_json(struct http_conn *c, const struct http_request *req, int status, json_t *j)
{
	bool pretty = req != NULL && http_query_get(req, "pretty") != NULL;
	char *s = json_dumps(j, (pretty ? JSON_INDENT(4) : JSON_COMPACT) | JSON_ENCODE_ANY);
	json_decref(j);
	if (s == NULL) {
		http_respond(c, 500, "text/plain; charset=utf-8", "encoding failed\n", 16);
		return;
	}
	size_t len = strlen(s);
	if (pretty) {
		char *t = realloc(s, len + 2);
		if (t != NULL) {
			s = t;
			s[len++] = '\n';
			s[len] = '\0';
		}
	}
	http_respond(c, status, "application/json", s, len);
	free(s);
}

void api_reply_json_text(struct http_conn *c, const struct http_request *req, int status,
                         const char *text, size_t len)
{
	if (req != NULL && http_query_get(req, "pretty") != NULL) {
		json_t *j = json_loadb(text, len, JSON_DECODE_ANY, NULL);
		if (j != NULL) {
			api_reply_json(c, req, status, j);
			return;
		}
	}
	http_respond(c, status, "application/json", text, len);
}

void api_reply_text(struct http_conn *c, int status, const char *text)
{
	http_respond(c, status, "text/plain; charset=utf-8", text, strlen(text));
}
