/*
 * agent/api_ui.c — see api_ui.h.
 */
#include "agent/api_ui.h"

#include <string.h>

#include "agent/env.h"
#include "agent/api_reply.h"
#include "agent/http/http.h"

const struct ui_asset *api_ui_find(const char *path)
{
	for (size_t i = 0; i < ui_assets_n; i++)
		if (strcmp(ui_assets[i].path, path) == 0)
			return &ui_assets[i];
	return NULL;
}

static void redirect(struct http_conn *c, const char *to)
{
	http_add_header(c, "Location", to);
	api_reply_text(c, 301, "Moved Permanently");
}

/*
 * True if the If-None-Match header names this ETag (a list, or "*"), so the
 * copy the browser holds is the one embedded and 304 is the answer.
 */
static bool etag_matches(const struct http_request *req, const char *etag)
{
	const char *inm = http_header_get(req, "If-None-Match");
	if (inm == NULL)
		return false;
	if (strcmp(inm, "*") == 0)
		return true;
	size_t n = strlen(etag);
	for (const char *p = strstr(inm, etag); p != NULL; p = strstr(p + 1, etag)) {
		char after = p[n];
		if (after == '\0' || after == ',' || after == ' ')
			return true;
	}
	return false;
}

/*
 * The headers every file gets: a strict Content-Security-Policy (the page
 * runs only its own inline script and style, by hash, and talks only to this
 * agent), no MIME sniffing, no framing, no referrer leaving the page.
 */
static void common_headers(struct http_conn *c, const struct ui_asset *f)
{
	http_add_header(c, "ETag", f->etag);
	http_add_header(c, "Cache-Control", "no-cache");
	http_add_header(c, "X-Content-Type-Options", "nosniff");
	http_add_header(c, "X-Frame-Options", "DENY");
	http_add_header(c, "Referrer-Policy", "no-referrer");
	http_add_header(c, "Content-Security-Policy", ui_csp);
}

bool api_ui_handle(struct agent *a, struct http_conn *c, const struct http_request *req)
{
	const char *p = req->path;
	if (!a->cfg.ui)
		return false;
	bool root = strcmp(p, "/") == 0, bare = strcmp(p, "/ui") == 0;
	if (!root && !bare && strncmp(p, "/ui/", 4) != 0)
		return false;
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		api_reply_text(c, 405, "method not allowed: the UI's files are read-only");
		return true;
	}
	if (root || bare) {
		redirect(c, "/ui/");
		return true;
	}
	const char *rel = p[4] == '\0' ? "index.html" : p + 4;
	const struct ui_asset *f = api_ui_find(rel);
	if (f == NULL) {
		api_reply_text(c, 404, "404 page not found");
		return true;
	}
	common_headers(c, f);
	if (etag_matches(req, f->etag)) {
		http_respond(c, 304, NULL, "", 0);
		return true;
	}
	http_respond(c, 200, f->type, f->data, f->len);
	return true;
}
