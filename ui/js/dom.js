// dom.js — a tiny element builder: h('a', {href: '#'}, 'text', child, ...).
// Text is always set as text (never parsed as HTML), so values from the API
// cannot inject markup.
export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'value') e.value = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k == null || k === false) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

export function badge(state) {
  return h('span', { class: 'badge s-' + state }, state);
}

export function table(heads, rows, attrs) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs, h('thead', null, h('tr', null, heads.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows)));
}

// Replaces the children of el, keeping the focused control focused when an
// element with the same id exists in the new content (live updates must not
// steal the keyboard from the user).
export function replace(el, ...kids) {
  const id = document.activeElement && el.contains(document.activeElement) ? document.activeElement.id : '';
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
  if (id) { const f = document.getElementById(id); if (f) f.focus(); }
}

// Base64 (as the API sends values) to text, and back never needed: the
// API takes raw bodies.
export function b64text(b64) {
  if (b64 == null) return '';
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

// The time of day as HH:MM:SS. Not toLocaleTimeString(): its first call
// loads the locale data, 10-15 ms on a cold load, before the first render.
export function clock(d = new Date()) {
  const p2 = (n) => String(n).padStart(2, '0');
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}
