// events.js — the agent's recent user events (GET /v1/event/list, blocking
// on its index) and a form to fire one (PUT /v1/event/fire/<name>).
import { request, watch, enc } from './api.js';
import { h, table, replace, b64text } from './dom.js';

export function eventsPage(main, ctx) {
  const list = h('div', { id: 'events' });
  const f = { name: h('input', { id: 'ev-name', required: true }), payload: h('input', { id: 'ev-payload' }),
    node: h('input', { id: 'ev-node' }), service: h('input', { id: 'ev-service' }), tag: h('input', { id: 'ev-tag' }) };
  const form = h('form', { class: 'box', id: 'ev-fire', onsubmit: async (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const k of ['node', 'service', 'tag']) if (f[k].value) q.set(k, f[k].value);
    try {
      const r = await request('PUT', '/v1/event/fire/' + enc(f.name.value) + (q.toString() ? '?' + q : ''), f.payload.value);
      ctx.clearError();
      ctx.status(`Fired ${f.name.value} (ID ${r.data && r.data.ID})`);
    } catch (e) { ctx.error(e); }
  } }, h('h2', null, 'Fire an event'),
  h('div', { class: 'row' }, h('label', null, 'Name', f.name), h('label', null, 'Payload', f.payload),
    h('label', null, 'Node filter (regexp)', f.node), h('label', null, 'Service filter', f.service), h('label', null, 'Tag filter', f.tag)),
  h('button', { type: 'submit', class: 'primary' }, 'Fire'));
  main.append(h('h1', null, 'Events'), form, h('h2', null, 'Recent events'), list);
  const w = watch('/v1/event/list', (evs) => {
    const rows = (evs || []).slice().reverse().map((e) => h('tr', { 'data-event': e.ID },
      h('th', { scope: 'row' }, e.Name), h('td', null, h('code', null, b64text(e.Payload))),
      h('td', null, e.LTime), h('td', null, [e.NodeFilter, e.ServiceFilter, e.TagFilter].filter(Boolean).join(' · ')),
      h('td', null, h('code', null, e.ID))));
    replace(list, rows.length ? table(['Name', 'Payload', 'LTime', 'Filters', 'ID'], rows) : h('p', { class: 'muted' }, 'No events yet.'));
    ctx.clearError();
    ctx.rendered();
  }, (e) => ctx.error(e));
  return () => w.stop();
}
