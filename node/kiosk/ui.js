// A tiny DOM builder: h('button', {class: 'primary', onclick}, 'text'). Text goes in as text nodes,
// never as HTML, so product names from the API cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let ids = 0;
/** A fresh id for label/for and aria-describedby pairs. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled input: returns [wrapper, input]. */
export function field(label, attrs) {
  const id = uid('f');
  const input = h('input', { id, ...attrs });
  return [h('div', { class: 'field' }, h('label', { for: id }, label), input), input];
}

/** Says `text` to screen readers (and shows it briefly), without moving focus. */
export function announce(text) {
  const live = document.getElementById('live');
  live.textContent = '';
  // A new text node after clearing is what makes screen readers speak a repeated message.
  requestAnimationFrame(() => {
    live.textContent = text;
  });
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}
