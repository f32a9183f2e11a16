// services.js — services and their instances with health: each check's
// status and output, filtered by name, tag and state. One blocking query on
// the catalog (its index moves on any registration or check change), then
// the health of every service.
import { get, watch, enc } from './api.js';
import { h, badge, table, replace, clock } from './dom.js';

const RANK = { passing: 0, warning: 1, critical: 2 };
const worst = (checks) => checks.reduce((s, c) => (RANK[c.Status] > RANK[s] ? c.Status : s), 'passing');

export function servicesPage(main, ctx, arg) {
  const f = { name: arg || '', tag: '', state: '' };
  let data = [];
  const body = h('div', { id: 'services' });
  const tagSel = h('select', { id: 'f-tag', onchange: (e) => { f.tag = e.target.value; draw(); } });
  const stateSel = h('select', { id: 'f-state', onchange: (e) => { f.state = e.target.value; draw(); } },
    ['', 'passing', 'warning', 'critical'].map((s) => h('option', { value: s }, s || 'any')));
  const nameIn = h('input', { id: 'f-name', type: 'search', value: f.name, oninput: (e) => { f.name = e.target.value; draw(); } });
  main.append(h('h1', null, 'Services'),
    h('div', { class: 'filters', role: 'search' },
      h('label', null, 'Name contains', nameIn), h('label', null, 'Tag', tagSel), h('label', null, 'State', stateSel)),
    body);

  function draw() {
    const tags = [...new Set(data.flatMap((s) => s.tags))].sort();
    replace(tagSel, h('option', { value: '' }, 'any'), tags.map((t) => h('option', { value: t }, t)));
    tagSel.value = tags.includes(f.tag) ? f.tag : '';
    const shown = [];
    for (const s of data) {
      if (f.name && !s.name.includes(f.name)) continue;
      const inst = s.entries.filter((e) => (!f.tag || (e.Service.Tags || []).includes(f.tag)) &&
        (!f.state || worst(e.Checks) === f.state));
      if (inst.length === 0) continue;
      shown.push(h('section', { class: 'svc', 'data-service': s.name, 'aria-label': 'service ' + s.name },
        h('h2', null, s.name, ' ', h('span', { class: 'muted' }, `${inst.length} instance${inst.length === 1 ? '' : 's'}`)),
        table(['Instance', 'Node', 'Address', 'Tags', 'Health', 'Checks'], inst.map(instanceRow))));
    }
    replace(body, shown.length ? shown : h('p', { class: 'muted' }, data.length ? 'No instance matches the filters.' : 'No services registered.'));
  }

  const w = watch('/v1/catalog/services', async (svcs) => {
    const names = Object.keys(svcs).sort();
    const entries = await Promise.all(names.map((n) => get('/v1/health/service/' + enc(n))));
    data = names.map((n, i) => ({ name: n, tags: svcs[n] || [], entries: entries[i] || [] }));
    draw();
    ctx.clearError();
    ctx.status('Updated ' + clock());
    ctx.rendered();
  }, (e) => ctx.error(e));
  return () => w.stop();
}

function instanceRow(e) {
  const s = e.Service;
  const addr = (s.Address || e.Node.Address) + (s.Port ? ':' + s.Port : '');
  return h('tr', { 'data-instance': s.ID },
    h('th', { scope: 'row' }, s.ID),
    h('td', null, e.Node.Node),
    h('td', null, addr),
    h('td', null, (s.Tags || []).map((t) => h('span', { class: 'tag' }, t))),
    h('td', null, badge(worst(e.Checks))),
    h('td', null, h('ul', { class: 'checks' }, e.Checks.map((c) => h('li', { 'data-check': c.CheckID },
      badge(c.Status), ' ', c.Name || c.CheckID,
      c.Output ? h('pre', { class: 'output' }, c.Output) : null)))));
}
