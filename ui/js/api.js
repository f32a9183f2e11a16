// api.js — talking to the agent's HTTP API: the token header, errors shown
// as the API sent them, and blocking queries that pause in a hidden tab.
const TOKEN_KEY = 'rumor.token';

export class ApiError extends Error {
  constructor(method, path, status, text) {
    super(`${method} ${path}: ${status} ${text}`.trim());
    this.status = status;
    this.body = text;
  }
}

// Read from localStorage once (the first read of a fresh profile's storage
// is slow, and every request wants it), again after another tab changed it.
let tokenNow = null;
export function token() {
  if (tokenNow === null) {
    try { tokenNow = localStorage.getItem(TOKEN_KEY) || ''; } catch { tokenNow = ''; }
  }
  return tokenNow;
}
export function setToken(t) {
  tokenNow = t;
  try { if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY); } catch { /* storage off */ }
}
window.addEventListener('storage', (ev) => { if (ev.key === TOKEN_KEY || ev.key === null) tokenNow = null; });

// The first page's GETs, sent by boot.js while the page was parsed: path ->
// {token, response}; each answers the first GET of its path, if the token
// is still the one it was sent with.
const early = window.rumorEarly instanceof Map ? window.rumorEarly : new Map();

// One request. Resolves {status, index, data, text}; rejects with ApiError
// for any status outside `ok` (default: 2xx), carrying the body verbatim.
export async function request(method, path, body, opts = {}) {
  const headers = {};
  const t = token();
  if (t) headers['X-Consul-Token'] = t;
  const pre = method === 'GET' ? early.get(path) : undefined;
  early.delete(path);
  let r;
  try {
    if (pre && pre.token === t) r = await pre.response;
    else r = await fetch(path, { method, headers, body, signal: opts.signal, credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(method, path, 0, 'network error: ' + e.message);
  }
  const text = await r.text();
  if (!(r.ok || (opts.ok && opts.ok.includes(r.status)))) throw new ApiError(method, path, r.status, text);
  let data = null;
  if (text && (r.headers.get('Content-Type') || '').includes('json')) data = JSON.parse(text);
  return { status: r.status, index: r.headers.get('X-Consul-Index'), data, text };
}

export const get = async (path, opts) => (await request('GET', path, undefined, opts)).data;

export const enc = (s) => s.split('/').map(encodeURIComponent).join('/');

// Blocking-query watchers. Each one loops GET path?index=N&wait=..., calling
// onData(data, index) when the index moves (and once at first). While the
// tab is hidden every watcher's request is aborted and none is sent; they
// resume (from the index they had) when it is shown again.
const watchers = new Set();
document.addEventListener('visibilitychange', () => {
  for (const w of watchers) if (document.hidden) w.pause(); else w.resume();
});

export function watch(path, onData, onError, opts = {}) {
  let index = null, ctl = null, running = false, stopped = false, backoff = 1000;
  const wait = opts.wait || '60s';
  async function loop() {
    if (running) return;
    running = true;
    while (!stopped && !document.hidden) {
      ctl = new AbortController();
      const sep = path.includes('?') ? '&' : '?';
      const url = index == null ? path : `${path}${sep}index=${index}&wait=${wait}`;
      try {
        const r = await request('GET', url, undefined, { signal: ctl.signal, ok: opts.ok });
        backoff = 1000;
        const fresh = index == null || r.index !== index;
        // the next call waits on the index this answer carries, even one
        // lower than before (a restarted agent); none or 0: ask again plainly
        index = r.index && r.index !== '0' ? r.index : null;
        if (fresh) await onData(r.data, r);
        if (index == null) await sleep(1000);
      } catch (e) {
        if (e.name === 'AbortError') break;
        if (onError) onError(e);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 30000);
      }
    }
    running = false;
  }
  const w = {
    pause() { if (ctl) ctl.abort(); },
    resume() { loop(); },
    stop() { stopped = true; watchers.delete(w); if (ctl) ctl.abort(); },
    // fetch again now, whatever the index (after a write of our own)
    kick() { index = null; if (ctl) ctl.abort(); setTimeout(loop, 0); },
  };
  watchers.add(w);
  loop();
  return w;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
