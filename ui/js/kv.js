// kv.js — the key/value store: browse by '/', view a value as text or
// JSON, create, edit with check-and-set, delete a key or a folder.
// An edit remembers the ModifyIndex it started from and saves with
// ?cas=<it>: if someone else wrote the key meanwhile the agent answers
// false, and the page shows both values instead of overwriting theirs.
import { request, watch, enc } from './api.js';
import { h, replace, b64text } from './dom.js';

const parent = (p) => { const t = p.replace(/\/$/, ''); const i = t.lastIndexOf('/'); return i < 0 ? '' : t.slice(0, i + 1); };
const link = (p) => '#/kv/' + enc(p);

function crumbs(path) {
  const parts = path.split('/');
  const out = [h('a', { href: '#/kv/' }, '(root)')];
  let acc = '';
  parts.forEach((seg, i) => {
    if (seg === '' && i === parts.length - 1) return;
    acc += seg + (i < parts.length - 1 ? '/' : '');
    out.push(' / ', i < parts.length - 1 ? h('a', { href: link(acc) }, seg) : h('strong', null, seg));
  });
  return h('nav', { class: 'crumbs', 'aria-label': 'Key path' }, out);
}

// A button that asks once more before doing `act` (no window.confirm: it
// would block the page and is awkward with the keyboard).
function twoStep(label, ask, act) {
  const box = h('span');
  const first = h('button', { type: 'button', class: 'danger', onclick: () => {
    const yes = h('button', { type: 'button', class: 'danger', id: 'confirm-yes', onclick: act }, 'Yes, ' + label.toLowerCase());
    replace(box, h('span', null, ask, ' '), yes, ' ', h('button', { type: 'button', onclick: () => replace(box, first) }, 'Cancel'));
    yes.focus();
  } }, label);
  box.append(first);
  return box;
}

export function kvPage(main, ctx, path) {
  main.append(h('h1', null, 'Key/Value'), crumbs(path));
  return path === '' || path.endsWith('/') ? folder(main, ctx, path) : keyView(main, ctx, path);
}

function folder(main, ctx, prefix) {
  const list = h('div', { id: 'kv-list' });
  const name = h('input', { id: 'kv-new-key', required: true, spellcheck: 'false', 'aria-describedby': 'kv-new-help' });
  const value = h('textarea', { id: 'kv-new-value', rows: 4 });
  const form = h('form', { class: 'box', id: 'kv-create', onsubmit: async (ev) => {
    ev.preventDefault();
    const key = prefix + name.value;
    try {
      const r = await request('PUT', '/v1/kv/' + enc(key) + '?cas=0', key.endsWith('/') ? '' : value.value);
      if (r.data === false) { ctx.error(`PUT /v1/kv/${key}?cas=0: false (the key already exists; open it to edit)`); return; }
      ctx.clearError();
      ctx.status('Created ' + key);
      location.hash = link(key);
    } catch (e) { ctx.error(e); }
  } }, h('h2', null, 'Create'),
  h('div', { class: 'row' }, h('label', null, 'Key under ' + (prefix || '(root)'), name),
    h('span', { class: 'muted', id: 'kv-new-help' }, 'End the name with / to make a folder.')),
  h('label', { class: 'wide' }, 'Value', value),
  h('p', null, h('button', { type: 'submit', class: 'primary' }, 'Create')));
  const tools = prefix ? h('p', null, twoStep('Delete folder', `Delete ${prefix} and every key under it?`, async () => {
    try {
      await request('DELETE', '/v1/kv/' + enc(prefix) + '?recurse');
      ctx.status('Deleted ' + prefix);
      location.hash = link(parent(prefix));
    } catch (e) { ctx.error(e); }
  })) : null;
  main.append(list, form, tools || '');
  const w = watch('/v1/kv/' + enc(prefix) + '?keys&separator=/', (keys) => {
    const items = (keys || []).filter((k) => k !== prefix).map((k) =>
      h('li', null, h('a', { href: link(k), 'data-key': k }, k.endsWith('/') ? '📁 ' : '', k.slice(prefix.length))));
    replace(list, items.length ? h('ul', { class: 'keys' }, items) : h('p', { class: 'muted' }, 'No keys here.'));
    ctx.clearError();
    ctx.rendered();
  }, (e) => ctx.error(e), { ok: [404] });
  return () => w.stop();
}

function keyView(main, ctx, key) {
  let base = null;      // the entry the editor started from
  let dirty = false;
  let mode = 'text';
  const view = h('div', { id: 'kv-view' });
  const notice = h('div', { id: 'kv-notice', role: 'status' });
  const editor = h('textarea', { id: 'kv-editor', rows: 10, 'aria-label': 'Value of ' + key, spellcheck: 'false',
    oninput: () => { dirty = true; } });
  const meta = h('p', { class: 'muted', id: 'kv-meta' });

  function show() {
    const v = base ? b64text(base.Value) : '';
    let out = v;
    if (mode === 'json') {
      try { out = JSON.stringify(JSON.parse(v), null, 2); } catch (e) { out = 'Not valid JSON: ' + e.message + '\n\n' + v; }
    }
    replace(view, h('div', { class: 'row', role: 'group', 'aria-label': 'Show as' },
      ['text', 'json'].map((m) => h('button', { type: 'button', 'aria-pressed': String(mode === m), onclick: () => { mode = m; show(); } }, m.toUpperCase()))),
    h('pre', { id: 'kv-value' }, out));
    meta.textContent = base ? `ModifyIndex ${base.ModifyIndex} · CreateIndex ${base.CreateIndex} · Flags ${base.Flags}` +
      (base.Session ? ` · locked by session ${base.Session}` : '') : 'This key does not exist.';
  }

  async function save(cas) {
    try {
      const r = await request('PUT', `/v1/kv/${enc(key)}?cas=${cas}`, editor.value);
      if (r.data === true) {
        dirty = false;
        replace(notice);
        ctx.clearError();
        ctx.status('Saved ' + key);
        w.kick();
        return;
      }
      await conflict();
    } catch (e) { ctx.error(e); }
  }

  // The agent refused the CAS: someone wrote (or deleted) the key after we
  // read it. Show theirs next to ours and let the user choose.
  async function conflict() {
    const r = await request('GET', '/v1/kv/' + enc(key), undefined, { ok: [404] });
    const cur = r.data ? r.data[0] : null;
    replace(notice, h('div', { class: 'notice', id: 'conflict' },
      h('strong', null, 'Conflict: '),
      cur ? `${key} was changed by someone else (ModifyIndex ${base ? base.ModifyIndex : 0} → ${cur.ModifyIndex}) since you opened it. Your edit was not saved. Their value:`
        : `${key} was deleted by someone else since you opened it. Your edit was not saved.`,
      cur ? h('pre', null, b64text(cur.Value)) : null,
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'danger', onclick: () => save(cur ? cur.ModifyIndex : 0) }, 'Overwrite with my edit'),
        h('button', { type: 'button', onclick: () => { dirty = false; base = cur; editor.value = cur ? b64text(cur.Value) : ''; replace(notice); show(); } }, 'Discard my edit'))));
    notice.querySelector('button').focus();
  }

  main.append(meta, view, notice,
    h('form', { class: 'box', id: 'kv-edit', onsubmit: (ev) => { ev.preventDefault(); save(base ? base.ModifyIndex : 0); } },
      h('h2', null, 'Edit'), editor,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', id: 'kv-save' }, 'Save'),
        twoStep('Delete', `Delete ${key}?`, async () => {
          try {
            const r = await request('DELETE', `/v1/kv/${enc(key)}?cas=${base ? base.ModifyIndex : 0}`);
            if (r.data === false) { await conflict(); return; }
            ctx.status('Deleted ' + key);
            location.hash = link(parent(key));
          } catch (e) { ctx.error(e); }
        }))));

  const w = watch('/v1/kv/' + enc(key), (d) => {
    const cur = d ? d[0] : null;
    if (!dirty) {
      base = cur;
      editor.value = cur ? b64text(cur.Value) : '';
      show();
    } else if ((cur ? cur.ModifyIndex : 0) !== (base ? base.ModifyIndex : 0)) {
      replace(notice, h('div', { class: 'notice', id: 'kv-stale' },
        `${key} changed on the agent while you were editing (now ModifyIndex ${cur ? cur.ModifyIndex : 'deleted'}). Saving will be refused unless you choose to overwrite.`));
    }
    ctx.clearError();
    ctx.rendered();
  }, (e) => ctx.error(e), { ok: [404] });
  return () => w.stop();
}
