// nodes.js — every member this agent knows: address, gossip status, the
// estimated round trip from this agent (network coordinates), tags,
// services. Wakes on the catalog's blocking query; a member's liveness
// flips the catalog index, so a failed node shows without a reload.
import { get, watch, enc } from './api.js';
import { h, badge, table, replace, clock } from './dom.js';

const STATUS = ['none', 'alive', 'leaving', 'left', 'failed'];

export function nodesPage(main, ctx) {
  const body = h('div');
  main.append(h('h1', null, 'Nodes'), body);
  let selfName = null;
  // the first draw's members and self are asked for alongside the catalog,
  // not after it: one round trip less before the table shows
  let early = Promise.all([get('/v1/agent/members'), get('/v1/agent/self')]);
  early.catch(() => {}); // reported by the watcher's own call below
  const svcs = new Map(); // node name -> its services, from the last fetch
  let coords = new Map(); // node name -> its coordinate, from the last fetch

  // Serf's estimate (docs/COORDINATES.md): Euclidean distance plus both
  // heights, plus both adjustments when that stays positive; in ms.
  function rtt(name) {
    const a = coords.get(selfName), b = coords.get(name);
    if (!a || !b || name === selfName) return '';
    let d = 0;
    for (let i = 0; i < a.Vec.length; i++) d += (a.Vec[i] - b.Vec[i]) ** 2;
    const plain = Math.sqrt(d) + a.Height + b.Height;
    const adj = plain + a.Adjustment + b.Adjustment;
    return ((adj > 0 ? adj : plain) * 1000).toFixed(3) + ' ms';
  }

  function draw(names, cat, members) {
    const rows = names.map((name) => {
      const m = members.find((x) => x.Name === name);
      const c = cat.find((x) => x.Node === name);
      const st = m ? STATUS[m.Status] || String(m.Status) : 'external';
      const tags = m ? Object.entries(m.Tags || {}) : Object.entries((c && c.Meta) || {});
      return h('tr', { 'data-node': name },
        h('th', { scope: 'row' }, name, name === selfName ? h('span', { class: 'muted' }, ' (this agent)') : null),
        h('td', null, c ? c.Address : m ? `${m.Addr}:${m.Port}` : ''),
        h('td', { class: 'status' }, badge(st)),
        h('td', { class: 'rtt' }, rtt(name)),
        h('td', null, (svcs.get(name) || []).map((s) => h('a', { class: 'tag', href: '#/services/' + encodeURIComponent(s.Service) }, s.Service))),
        h('td', null, tags.map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))));
    });
    const alive = members.filter((m) => m.Status === 1).length;
    replace(body, h('p', { class: 'muted' }, `${names.length} nodes, ${alive} alive, as seen by ${selfName}.`),
      table(['Name', 'Address', 'Status', 'RTT', 'Services', 'Tags'], rows, { id: 'nodes' }));
    ctx.clearError();
    ctx.status('Updated ' + clock());
  }

  const w = watch('/v1/catalog/nodes', async (cat) => {
    const first = early || Promise.all([get('/v1/agent/members'), selfName ? null : get('/v1/agent/self')]);
    early = null;
    const [members, self] = await first;
    if (self) selfName = self.Config.NodeName;
    const names = [...new Set([...members.map((m) => m.Name), ...cat.map((n) => n.Node)])].sort();
    // draw at once with the services known so far, then again with each
    // node's services (one call per node): the table does not wait for them
    draw(names, cat, members);
    ctx.rendered();
    // coordinates: 401 when the agent runs with disable_coordinates
    const cs = get('/v1/coordinate/nodes', { ok: [401] }).catch(() => null);
    const got = await Promise.all(names.map((n) => get('/v1/catalog/node/' + enc(n), { ok: [404] }).catch(() => null)));
    names.forEach((n, i) => { svcs.set(n, got[i] && got[i].Services ? Object.values(got[i].Services) : []); });
    const cl = await cs;
    coords = new Map(Array.isArray(cl) ? cl.map((c) => [c.Node, c.Coord]) : []);
    draw(names, cat, members);
  }, (e) => ctx.error(e));
  return () => w.stop();
}
