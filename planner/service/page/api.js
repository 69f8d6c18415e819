/* The HTTP API (docs/api.md) with the key the user enters: requests, the events stream read
 * with fetch, and the server's clock. */
import { ms } from './format.js';

export const ROOT = document.body.dataset.root || '';
const KEY_ITEM = 'chordal.apiKey';

// -- the API key and requests ------------------------------------------------------------
export const Key = {
  get() { try { return sessionStorage.getItem(KEY_ITEM); } catch (e) { return null; } },
  set(v) { try { sessionStorage.setItem(KEY_ITEM, v); } catch (e) { /* private mode */ } },
  clear() { try { sessionStorage.removeItem(KEY_ITEM); } catch (e) { /* ignore */ } },
};

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

export function headers(extra) {
  const hs = new Headers(extra || {});
  const key = Key.get();
  if (key) hs.set('Authorization', 'Bearer ' + key);
  return hs;
}

export async function failure(resp) {
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  const err = (body && body.error) || {};
  return new ApiError(resp.status, err.type || `HTTP ${resp.status}`,
    err.message || (body && body.detail) || resp.statusText || 'request failed');
}

/* The server's clock minus ours, for bars of running steps. The Date header (whole
 * seconds) bounds it: the server's time was in [date, date + 1 s), and at least the newest
 * time in the answer. Within those bounds we take 0: one machine, or synced clocks. */
export let clockSkew = 0;

export function learnClock(resp, newest) {
  const date = Date.parse(resp.headers.get('Date') || '');
  const now = Date.now();
  if (!isFinite(date)) return;
  const low = Math.max(date - now, isFinite(newest) ? newest - now : -Infinity);
  const high = Math.max(low, date + 1000 - now);
  clockSkew = Math.min(Math.max(0, low), high);
}

export function newestTime(report) {
  let newest = -Infinity;
  const see = (iso) => { const t = ms(iso); if (isFinite(t) && t > newest) newest = t; };
  see(report.created_at);
  see(report.finished_at);
  for (const st of Object.values(report.steps || {})) { see(st.started_at); see(st.finished_at); }
  return newest;
}

export async function api(path, signal, withClock) {
  const resp = await fetch(ROOT + path, {
    headers: headers({ Accept: 'application/json' }), cache: 'no-store', signal,
  });
  if (!resp.ok) throw await failure(resp);
  const body = await resp.json();
  if (withClock) learnClock(resp, newestTime(body));
  return body;
}

/* Read a text/event-stream with fetch (EventSource cannot send a header), calling
 * onEvent({id, event, data}) per event. Resolves when the server ends the stream. */
export async function readEvents(path, lastId, onEvent, onOpen, signal) {
  const hs = headers({ Accept: 'text/event-stream' });
  if (lastId) hs.set('Last-Event-ID', lastId);
  const resp = await fetch(ROOT + path, { headers: hs, cache: 'no-store', signal });
  if (!resp.ok) throw await failure(resp);
  if (!resp.body) throw new ApiError(0, 'NoStream', 'this browser cannot read a stream');
  onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let ev = { id: null, event: 'message', data: [] };
  const line = (text) => {
    if (text === '') {
      if (ev.data.length) onEvent({ id: ev.id, event: ev.event, data: ev.data.join('\n') });
      ev = { id: null, event: 'message', data: [] };
      return;
    }
    if (text.startsWith(':')) return; // a comment: keep-alive
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') ev.data.push(value);
    else if (field === 'event') ev.event = value;
    else if (field === 'id' && !value.includes('\0')) ev.id = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return; // an event cut off by the end of the stream is dropped (as EventSource does)
    buffer += value;
    let start = 0;
    for (let i = 0; i < buffer.length; i += 1) {
      const c = buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      if (c === '\r' && i + 1 === buffer.length) break; // maybe half of a \r\n: wait
      line(buffer.slice(start, i));
      if (c === '\r' && buffer[i + 1] === '\n') i += 1;
      start = i + 1;
    }
    buffer = buffer.slice(start);
  }
}
