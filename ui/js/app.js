// app.js — the shell: hash routes (#/nodes, #/services, #/kv/<path>,
// #/events), the token field, the error banner, and the first-render mark
// (performance mark "rumor-first-render" and body[data-rendered]: the first
// page's data is in the DOM; its paint is measured by the browser test,
// docs/UI.md "First render"). The build inlines this module and those it
// imports into index.html (cmake/embed_ui.cmake).
import { token, setToken } from './api.js';
import { nodesPage } from './nodes.js';
import { servicesPage } from './services.js';
import { kvPage } from './kv.js';
import { eventsPage } from './events.js';

const pages = { nodes: nodesPage, services: servicesPage, kv: kvPage, events: eventsPage };
const main = document.getElementById('main');
const errBox = document.getElementById('error');
const live = document.getElementById('live');
let stop = null;
let firstDone = false;

const ctx = {
  // An API error, shown as the API sent it (status and body).
  error(e) {
    errBox.textContent = e && e.message ? e.message : String(e);
    errBox.hidden = false;
  },
  clearError() { errBox.hidden = true; errBox.textContent = ''; },
  status(text) { live.textContent = text; },
  // Called by a page once its first data is on screen.
  rendered() {
    if (firstDone) return;
    firstDone = true;
    performance.mark('rumor-first-render');
    document.body.dataset.rendered = '1';
  },
};

function route() {
  let hash = location.hash.replace(/^#\/?/, '');
  try { hash = decodeURIComponent(hash); } catch { /* a stray %: keep it as typed */ }
  const slash = hash.indexOf('/');
  const name = slash < 0 ? hash : hash.slice(0, slash);
  const arg = slash < 0 ? '' : hash.slice(slash + 1);
  if (!pages[name]) { location.replace('#/nodes'); return; }
  for (const a of document.querySelectorAll('header nav a'))
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  if (stop) stop();
  ctx.clearError();
  main.replaceChildren();
  document.body.dataset.page = name;
  stop = pages[name](main, ctx, arg);
  document.title = `${name === 'kv' ? 'Key/Value' : name[0].toUpperCase() + name.slice(1)} · rumor`;
}

const tok = document.getElementById('token');
tok.value = token();
document.getElementById('tokenform').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken(tok.value.trim());
  ctx.status(tok.value.trim() ? 'Token saved in this browser.' : 'Token cleared.');
  route();
});
window.addEventListener('hashchange', route);
route();
