/*
 * agent/api_ui.h — the web UI: static files under /ui/, embedded in the
 * binary at build time.
 *
 * Owns: the answer to GET/HEAD /ui/... and, while the UI is on, to GET / (a
 * redirect to /ui/, as Consul does). Nothing is read from disk at run time:
 * cmake/embed_ui.cmake turns ui/ into the ui_assets[] table of a generated C
 * file (path, Content-Type, ETag, bytes), and this module only looks a path
 * up in that table. The page is one file: index.html with its stylesheet
 * and JavaScript modules inlined at build time (one request on a cold load),
 * allowed by their hashes in ui_csp, the Content-Security-Policy.
 *
 * Data flow: the router (agent/api.c) offers each request to api_ui_handle
 * before its own table and before the ACL check (the files are the same for
 * everyone and hold no data: the browser sends its token with the API calls
 * the pages make, and those are checked as any other). With the UI off the
 * function takes nothing and /ui/ falls through to the router's 404, as
 * Consul's agent without a UI answers.
 *
 * Caching: every answer carries the file's ETag (a hash of its bytes made at
 * build time) and "Cache-Control: no-cache": the browser revalidates each
 * load and gets 304 without a body while the binary is the same one.
 */
#ifndef RUMOR_AGENT_API_UI_H
#define RUMOR_AGENT_API_UI_H

#include <stdbool.h>
#include <stddef.h>

struct agent;
struct http_conn;
struct http_request;

/* One embedded file; the table is generated (build dir, ui_assets.c). */
struct ui_asset {
	const char *path; /* under /ui/, e.g. "index.html", "js/app.js" */
	const char *type; /* Content-Type */
	const char *etag; /* quoted, as sent */
	const unsigned char *data;
	size_t len;
};
extern const struct ui_asset ui_assets[];
extern const size_t ui_assets_n;
/* The Content-Security-Policy every file is served with: script-src and
 * style-src are the SHA-256 hashes of the page's inline script and style,
 * computed at build time (never 'unsafe-inline'). */
extern const char ui_csp[];

/* Answers req if it is the UI's (ui on and path "/", "/ui" or "/ui/..."):
 * true when answered, false to let the router go on. */
bool api_ui_handle(struct agent *a, struct http_conn *c, const struct http_request *req);

/* The embedded file at `path` (relative to /ui/), or NULL. */
const struct ui_asset *api_ui_find(const char *path);

#endif
