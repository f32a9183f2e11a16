// boot.js — a classic script at the top of <head>, run before the rest of
// the page is parsed: starts the GETs the first page shown will make, so
// that they are on the wire while the page and its modules are still being
// parsed and compiled. api.js's request() takes each over, once, instead of
// sending it again. Not a module, so it may not import; keep it small.
window.rumorEarly = (() => {
  const early = new Map();
  const first = {
    nodes: ['/v1/catalog/nodes', '/v1/agent/members', '/v1/agent/self'],
    services: ['/v1/catalog/services'],
    events: ['/v1/event/list'],
  };
  const page = location.hash.replace(/^#\/?/, '').split('/')[0] || 'nodes';
  let token = '';
  try { token = localStorage.getItem('rumor.token') || ''; } catch { /* storage off */ }
  const headers = token ? { 'X-Consul-Token': token } : {};
  for (const path of first[page] || [])
    early.set(path, { token, response: fetch(path, { headers, credentials: 'omit', cache: 'no-store' }) });
  return early;
})();
