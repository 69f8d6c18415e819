/* Building the page's DOM and SVG, and a sleep that an abort cuts short. */
const SVG_NS = 'http://www.w3.org/2000/svg';

function build(ns, tag, attrs, children) {
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of [].concat(children || []).flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
export const h = (tag, attrs, ...children) => build(null, tag, attrs, children.flat());
export const s = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children.flat());
export const clear = (el) => { while (el.firstChild) el.removeChild(el.firstChild); return el; };
export const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); });
});
