/* How times, durations, values and statuses are shown. */
import { h } from './dom.js';

export const ms = (iso) => (iso ? Date.parse(iso) : NaN);
export function duration(seconds) {
  if (!isFinite(seconds)) return '';
  if (seconds < 10) return seconds.toFixed(seconds < 1 ? 3 : 2) + 's';
  if (seconds < 60) return seconds.toFixed(1) + 's';
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m}m ${Math.round(seconds % 60)}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
}
export function span(a, b) {
  const t0 = ms(a), t1 = ms(b);
  return isFinite(t0) && isFinite(t1) ? duration((t1 - t0) / 1000) : '';
}
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}
export function short(value, width) {
  let text = typeof value === 'string' ? value : JSON.stringify(value);
  if (text === undefined) text = '';
  return text.length <= width ? text : text.slice(0, width - 1) + '…';
}
export function pretty(value, limit) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  return text.length > limit ? text.slice(0, limit) + `\n… (${text.length - limit} more characters)` : text;
}
export function tickLabel(t, step) {
  if (step < 1) return t.toFixed(1) + 's';
  if (t < 120) return Math.round(t) + 's';
  const m = Math.floor(t / 60), sec = Math.round(t % 60);
  return sec ? `${m}m${String(sec).padStart(2, '0')}` : `${m}m`;
}
export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
export const badge = (status) => h('span', { class: `badge s-${status}`, text: status.replace('_', ' ') });
export const money = (x) => '$' + (x || 0).toFixed(4);
export const int = (x) => (x || 0).toLocaleString('en-US');
