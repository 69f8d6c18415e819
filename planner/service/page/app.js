/* The run page of `chordal serve`: recent runs (/) and one run, live (/runs/{id}).
 *
 * Plain JavaScript, no build step. The DAG is laid out by dagre (vendor/dagre.min.js) and
 * drawn as SVG here. Everything comes from the HTTP API (docs/api.md) with the key the user
 * enters: it is kept in sessionStorage and sent as `Authorization: Bearer`, never in a URL.
 * A run updates from its events stream (/v1/runs/{id}/events), read with fetch() because
 * EventSource cannot send headers; each event re-fetches the report (coalesced), and a
 * dropped stream is resumed with Last-Event-ID. No polling.
 */
(function () {
  'use strict';

  const ROOT = document.body.dataset.root || '';
  const VIEW = document.body.dataset.view || 'runs';
  const KEY_ITEM = 'chordal.apiKey';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const RUN_STATUSES = ['pending', 'awaiting_approval', 'running', 'paused', 'succeeded',
    'failed', 'cancelled'];
  const STEP_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'skipped', 'replaced',
    'cancelled'];
  // How an attempt ended (a step's history): see docs/engine.md, "Attempts and fencing".
  const ATTEMPT_STATUSES = ['running', 'succeeded', 'failed', 'lost', 'revoked', 'cancelled',
    'superseded'];
  const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
  const app = document.getElementById('app');

  // -- DOM helpers -----------------------------------------------------------------------
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
  const h = (tag, attrs, ...children) => build(null, tag, attrs, children.flat());
  const s = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children.flat());
  const clear = (el) => { while (el.firstChild) el.removeChild(el.firstChild); return el; };
  const sleep = (ms, signal) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); });
  });

  // -- formatting ------------------------------------------------------------------------
  const ms = (iso) => (iso ? Date.parse(iso) : NaN);
  function duration(seconds) {
    if (!isFinite(seconds)) return '';
    if (seconds < 10) return seconds.toFixed(seconds < 1 ? 3 : 2) + 's';
    if (seconds < 60) return seconds.toFixed(1) + 's';
    const m = Math.floor(seconds / 60);
    return m < 60 ? `${m}m ${Math.round(seconds % 60)}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
  }
  function span(a, b) {
    const t0 = ms(a), t1 = ms(b);
    return isFinite(t0) && isFinite(t1) ? duration((t1 - t0) / 1000) : '';
  }
  function when(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function short(value, width) {
    let text = typeof value === 'string' ? value : JSON.stringify(value);
    if (text === undefined) text = '';
    return text.length <= width ? text : text.slice(0, width - 1) + '…';
  }
  function pretty(value, limit) {
    const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
    return text.length > limit ? text.slice(0, limit) + `\n… (${text.length - limit} more characters)` : text;
  }
  function tickLabel(t, step) {
    if (step < 1) return t.toFixed(1) + 's';
    if (t < 120) return Math.round(t) + 's';
    const m = Math.floor(t / 60), sec = Math.round(t % 60);
    return sec ? `${m}m${String(sec).padStart(2, '0')}` : `${m}m`;
  }
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const badge = (status) => h('span', { class: `badge s-${status}`, text: status.replace('_', ' ') });
  const money = (x) => '$' + (x || 0).toFixed(4);
  const int = (x) => (x || 0).toLocaleString('en-US');

  // -- the API key and requests ------------------------------------------------------------
  const Key = {
    get() { try { return sessionStorage.getItem(KEY_ITEM); } catch (e) { return null; } },
    set(v) { try { sessionStorage.setItem(KEY_ITEM, v); } catch (e) { /* private mode */ } },
    clear() { try { sessionStorage.removeItem(KEY_ITEM); } catch (e) { /* ignore */ } },
  };

  class ApiError extends Error {
    constructor(status, type, message) {
      super(message);
      this.status = status;
      this.type = type;
    }
  }

  function headers(extra) {
    const hs = new Headers(extra || {});
    const key = Key.get();
    if (key) hs.set('Authorization', 'Bearer ' + key);
    return hs;
  }

  async function failure(resp) {
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    const err = (body && body.error) || {};
    return new ApiError(resp.status, err.type || `HTTP ${resp.status}`,
      err.message || (body && body.detail) || resp.statusText || 'request failed');
  }

  /* The server's clock minus ours, for bars of running steps. The Date header (whole
   * seconds) bounds it: the server's time was in [date, date + 1 s), and at least the newest
   * time in the answer. Within those bounds we take 0: one machine, or synced clocks. */
  let clockSkew = 0;

  function learnClock(resp, newest) {
    const date = Date.parse(resp.headers.get('Date') || '');
    const now = Date.now();
    if (!isFinite(date)) return;
    const low = Math.max(date - now, isFinite(newest) ? newest - now : -Infinity);
    const high = Math.max(low, date + 1000 - now);
    clockSkew = Math.min(Math.max(0, low), high);
  }

  function newestTime(report) {
    let newest = -Infinity;
    const see = (iso) => { const t = ms(iso); if (isFinite(t) && t > newest) newest = t; };
    see(report.created_at);
    see(report.finished_at);
    for (const st of Object.values(report.steps || {})) { see(st.started_at); see(st.finished_at); }
    return newest;
  }

  async function api(path, signal, withClock) {
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
  async function readEvents(path, lastId, onEvent, onOpen, signal) {
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

  // -- the key bar and form --------------------------------------------------------------
  let restart = () => {};
  let current = null; // the view on screen (has stop())

  function renderKeybar() {
    const bar = clear(document.getElementById('keybar'));
    if (Key.get()) {
      bar.append(h('span', { text: 'API key set (this tab)' }),
        h('button', {
          type: 'button', id: 'forget-key', text: 'Forget key',
          onclick: () => { Key.clear(); renderKeybar(); restart(); },
        }));
    }
  }

  function askForKey(why) {
    if (current) current.stop();
    // No `name` on the input and no action: the form can never submit the key anywhere.
    const input = h('input', {
      id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'the secret of a CHORDAL_API_KEYS entry', 'aria-label': 'API key',
    });
    const form = h('form', { class: 'card keyform', id: 'key-form', method: 'post' },
      h('h1', { text: 'API key' }),
      h('p', { class: why === 'refused' ? 'notice bad' : 'muted', text: why === 'refused'
        ? 'The server refused that key. Enter another.'
        : 'This server asks for an API key.' }),
      input,
      h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit', text: 'Use key' }),
        h('span', { class: 'muted', text: 'Kept in this tab only and sent in a header, never in a URL.' })));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      Key.set(key);
      renderKeybar();
      restart();
    });
    clear(app).append(form);
    input.focus();
  }

  function showProblem(err) {
    if (err instanceof ApiError && err.status === 401) {
      askForKey(Key.get() ? 'refused' : 'missing');
      return true;
    }
    return false;
  }

  // -- recent runs -----------------------------------------------------------------------
  class RunsView {
    constructor() {
      this.abort = new AbortController();
      this.status = new URLSearchParams(location.search).get('status') || '';
    }

    stop() { this.abort.abort(); }

    async start() {
      document.title = 'Runs · Chordal';
      clear(document.getElementById('crumbs')).append('recent runs');
      const select = h('select', { id: 'status-filter', 'aria-label': 'status' },
        h('option', { value: '', text: 'every status' }),
        RUN_STATUSES.map((st) => h('option', { value: st, text: st.replace('_', ' ') })));
      select.value = this.status;
      select.addEventListener('change', () => {
        this.status = select.value;
        const url = new URL(location.href);
        if (this.status) url.searchParams.set('status', this.status);
        else url.searchParams.delete('status');
        history.replaceState(null, '', url);
        this.load(null);
      });
      const open = h('input', { id: 'open-run', placeholder: 'run id', 'aria-label': 'run id', size: 20 });
      const openForm = h('form', { class: 'row', method: 'post' }, open,
        h('button', { type: 'submit', text: 'Open' }));
      openForm.addEventListener('submit', (e) => {
        e.preventDefault();
        if (open.value.trim()) location.assign(`${ROOT}/runs/${encodeURIComponent(open.value.trim())}`);
      });
      this.body = h('tbody', { id: 'runs' });
      this.more = h('div', { class: 'row' });
      this.note = h('div');
      clear(app).append(h('div', { class: 'card' },
        h('div', { class: 'controls' }, h('h1', { text: 'Recent runs' }), select,
          h('button', { type: 'button', id: 'refresh', text: 'Refresh', onclick: () => this.load(null) }),
          h('span', { class: 'muted', text: '·' }), openForm),
        this.note,
        h('table', {}, h('thead', {}, h('tr', {},
          ['run', 'status', 'goal', 'plan', 'created', 'took'].map((c) =>
            h('th', { text: c, class: c === 'plan' || c === 'took' ? 'num' : null })))), this.body),
        this.more));
      // Back on the tab: show what changed (no timer).
      document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible' && !this.abort.signal.aborted) this.load(null);
      }, { signal: this.abort.signal });
      await this.load(null);
    }

    async load(cursor) {
      const params = new URLSearchParams({ limit: '50' });
      if (this.status) params.set('status', this.status);
      if (cursor) params.set('cursor', cursor);
      let page;
      try {
        page = await api(`/v1/runs?${params}`, this.abort.signal);
      } catch (err) {
        if (this.abort.signal.aborted || showProblem(err)) return;
        clear(this.note).append(h('p', { class: 'notice bad', text: `Could not list runs: ${err.message}` }));
        return;
      }
      clear(this.note);
      if (!cursor) clear(this.body);
      for (const run of page.runs) {
        const link = `${ROOT}/runs/${encodeURIComponent(run.run_id)}`;
        this.body.append(h('tr', { class: 'clickable', data: { run: run.run_id }, onclick: (e) => {
          if (e.target.tagName !== 'A') location.assign(link);
        } },
          h('td', { class: 'mono' }, h('a', { href: link, text: run.run_id })),
          h('td', {}, badge(run.status)),
          h('td', { class: 'trunc', title: run.goal, text: run.goal || '—' }),
          h('td', { class: 'num', text: run.plan_version ? `v${run.plan_version}` : '' }),
          h('td', { text: when(run.created_at) }),
          h('td', { class: 'num', text: span(run.created_at, run.finished_at) })));
      }
      if (!this.body.firstChild) {
        this.body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted',
          text: this.status ? `No ${this.status.replace('_', ' ')} runs.` : 'No runs yet. Start one with `chordal run` or POST /v1/runs.' })));
      }
      clear(this.more);
      if (page.next_cursor) {
        this.more.append(h('button', { type: 'button', id: 'more', text: 'More',
          onclick: () => this.load(page.next_cursor) }));
      }
    }
  }

  // -- one run -----------------------------------------------------------------------------
  function refsIn(value, out) {
    if (Array.isArray(value)) value.forEach((v) => refsIn(v, out));
    else if (value && typeof value === 'object') {
      const keys = Object.keys(value);
      if (keys.length === 1 && keys[0] === '$ref' && typeof value.$ref === 'string') {
        out.add(value.$ref.split('.')[0]);
      } else keys.forEach((k) => refsIn(value[k], out));
    }
    return out;
  }

  /* What a plan says of its steps: {id: {deps, tool, description, args, on_failure}}. */
  function planInfo(plan) {
    const info = {};
    for (const st of (plan && plan.steps) || []) {
      const deps = refsIn(st.args || {}, new Set(st.depends_on || []));
      info[st.id] = {
        deps: [...deps].sort(), tool: st.tool, description: st.description || '',
        args: st.args || {}, on_failure: st.on_failure || 'replan', checkpoint: !!st.checkpoint,
      };
    }
    return info;
  }

  /* Step ids of each plan version, from the versions' diffs (kept + added). */
  function membership(versions) {
    const members = {};
    for (const v of versions) members[v.version] = new Set([...(v.kept || []), ...(v.added || [])]);
    return members;
  }

  /* The step named in the URL's fragment (#step=ID), if any. */
  function hashStep() {
    const m = location.hash.match(/step=([^&]+)/);
    try { return m ? decodeURIComponent(m[1]) : null; } catch (e) { return null; }
  }

  const NODE_W = 224, NODE_H = 62, NODE_CHARS = 35;

  class RunView {
    constructor(runId) {
      this.runId = runId;
      this.abort = new AbortController();
      this.report = null;
      this.lastEventId = null;
      this.finished = false;
      this.inflight = null;
      this.dirty = false;
      this.events = 0;
      this.selected = hashStep();
      this.focusVersion = null;
      this.layoutKey = null;
      this.nodes = new Map();
      this.plans = this.loadPlans();
      this.ticking = false;
      this.marks = new Map(); // plan version -> when it was installed (from the events)
    }

    stop() { this.abort.abort(); }

    // Plans of earlier versions, as this tab saw them (the report holds the current one).
    loadPlans() {
      try { return JSON.parse(sessionStorage.getItem(`chordal.plans.${this.runId}`) || '{}'); } catch (e) { return {}; }
    }

    /* Earlier plan versions this tab did not see (opened after a replan): asked for once
     * each, so the steps a replan dropped keep their edges. */
    fetchOldPlans() {
      const r = this.report;
      this.asked = this.asked || new Set();
      const missing = (r.versions || []).map((v) => v.version)
        .filter((v) => v !== r.plan_version && !this.plans[v] && !this.asked.has(v));
      if (!missing.length) return;
      for (const v of missing) this.asked.add(v);
      const id = encodeURIComponent(this.runId);
      Promise.all(missing.map((v) => api(`/v1/runs/${id}/plans/${v}`, this.abort.signal)
        .then((plan) => this.savePlan(v, plan), () => { this.asked.delete(v); })))
        .then(() => { if (!this.abort.signal.aborted && this.report) this.render(); });
    }

    savePlan(version, plan) {
      if (!version || !plan || this.plans[version]) return;
      this.plans[version] = planInfo(plan);
      try { sessionStorage.setItem(`chordal.plans.${this.runId}`, JSON.stringify(this.plans)); } catch (e) { /* full */ }
    }

    async start() {
      document.title = `Run ${this.runId} · Chordal`;
      clear(document.getElementById('crumbs')).append(h('a', { href: `${ROOT}/`, text: 'runs' }), ' / ',
        h('span', { class: 'mono', text: this.runId }));
      this.el = {
        head: h('div', { class: 'card', id: 'run-head' }),
        banner: h('div', { id: 'banner' }),
        versions: h('div', { class: 'card', id: 'versions', hidden: true }),
        graph: h('div', { class: 'graph', id: 'graph' }),
        timeline: h('div', { class: 'timeline', id: 'timeline' }),
        details: h('div', { class: 'card', id: 'details' }),
        problems: h('div', { class: 'card', id: 'problems' }),
        usage: h('div', { class: 'card', id: 'usage', hidden: true }),
        answer: h('div', { class: 'card', id: 'answer', hidden: true }),
        steps: h('div', { class: 'card', id: 'steps' }),
      };
      const e = this.el;
      clear(app).append(e.head, e.banner, e.versions,
        h('div', { class: 'card' }, h('h2', { text: 'Plan' }), e.graph, this.legend()),
        h('div', { class: 'card' }, h('h2', { text: 'Timeline' }), e.timeline),
        h('div', { class: 'grid2' }, e.details, e.problems), h('div', { class: 'spacer' }),
        e.answer, e.usage, e.steps);
      window.addEventListener('resize', () => this.report && this.renderTimeline(), { signal: this.abort.signal });
      window.addEventListener('hashchange', () => this.select(hashStep(), false),
        { signal: this.abort.signal });
      try {
        await this.refresh();
      } catch (err) {
        return;
      }
      const ended = TERMINAL.has(this.report.status);
      if (ended) this.setLive('ended');
      this.follow(ended);
    }

    legend() {
      return h('div', { class: 'legend' }, STEP_STATUSES.map((st) =>
        h('span', {}, h('span', { class: `sw leg-${st}` }), st)),
        h('span', {}, h('span', { class: 'sw leg-dropped' }), 'dashed: not in the current plan version'));
    }

    /* Re-fetch the report; calls made while one is in flight are folded into one more. */
    refresh() {
      if (this.inflight) { this.dirty = true; return this.inflight; }
      this.inflight = (async () => {
        try {
          do {
            this.dirty = false;
            this.report = await api(`/v1/runs/${encodeURIComponent(this.runId)}`, this.abort.signal, true);
            this.render();
            this.fetchOldPlans();
          } while (this.dirty && !this.abort.signal.aborted);
        } catch (err) {
          if (this.abort.signal.aborted) throw err;
          if (showProblem(err)) throw err;
          if (err instanceof ApiError && err.status === 404) {
            this.stop();
            clear(app).append(h('p', { class: 'notice bad', id: 'not-found',
              text: `No run ${this.runId} (or it is not yours, or it has expired).` }));
            throw err;
          }
          this.setBanner('error', `Could not load the report: ${err.message}`);
          if (!this.report) throw err;
        } finally {
          this.inflight = null;
        }
      })();
      return this.inflight;
    }

    /* Follow the events stream until run.finished, resuming after a dropped connection
     * with Last-Event-ID. A run that had ended is only replayed (the server sends its
     * events and closes): they place the plan versions on the timeline. */
    async follow(replay) {
      const signal = this.abort.signal;
      let delay = 250;
      const path = `/v1/runs/${encodeURIComponent(this.runId)}/events`;
      while (!signal.aborted && !this.finished) {
        let closed = false;
        try {
          await readEvents(path, this.lastEventId, (ev) => { delay = 250; this.onEvent(ev, replay); },
            () => { if (!replay) this.setLive('on'); }, signal);
          closed = true;
        } catch (err) {
          if (signal.aborted) return;
          if (showProblem(err)) return;
          if (err instanceof ApiError && err.status === 404) { this.refresh().catch(() => {}); return; }
        }
        if (this.finished || signal.aborted) break;
        if (replay) return;
        // The stream ended or broke before run.finished: say so, wait a little, resume.
        // (Whatever happened meanwhile is in the report, and in the resumed stream.)
        this.setLive('retry');
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 10000);
        try { await this.refresh(); } catch (err) { /* shown in the banner; retry */ }
        // Closed by the server on a run that has ended: its end is in the report.
        if (closed && this.report && TERMINAL.has(this.report.status)) break;
      }
      if (signal.aborted) return;
      if (replay) { this.renderTimeline(); return; }
      this.setLive('ended');
      this.refresh().catch(() => {});
    }

    onEvent(ev, replay) {
      if (ev.id) this.lastEventId = ev.id;
      this.events += 1;
      let event = null;
      try { event = JSON.parse(ev.data); } catch (e) { /* not JSON: only counted */ }
      this.lastEvent = { type: ev.event, id: ev.id, step: event && event.step };
      if (ev.event === 'run.finished') this.finished = true;
      const version = event && event.data && event.data.version;
      if (ev.event === 'plan.installed' && version && event.at) {
        this.marks.set(version, { at: event.at, reason: event.data.reason });
      }
      if (!replay) this.refresh().catch(() => {});
    }

    setLive(state) {
      this.live = state;
      const el = document.getElementById('live');
      if (!el) return;
      el.className = 'live' + (state === 'on' ? ' on' : state === 'retry' ? ' retry' : '');
      el.textContent = state === 'on' ? 'live' : state === 'retry' ? 'reconnecting…' : 'ended';
      el.dataset.state = state;
    }

    setBanner(kind, text) {
      clear(this.el.banner);
      if (text) this.el.banner.append(h('p', { class: `notice ${kind === 'error' ? 'bad' : ''}`, text }));
    }

    // -- rendering -------------------------------------------------------------------------
    render() {
      const r = this.report;
      if (r.plan) this.savePlan(r.plan_version, r.plan);
      this.current = planInfo(r.plan);
      this.members = membership(r.versions || []);
      document.title = `${r.status} · run ${r.run_id} · Chordal`;
      this.renderHead();
      this.renderBanner();
      this.renderVersions();
      this.renderGraph();
      this.renderTimeline();
      this.renderDetails();
      this.renderProblems();
      this.renderAnswer();
      this.renderUsage();
      this.renderSteps();
      document.body.dataset.runStatus = r.status;
    }

    renderHead() {
      const r = this.report;
      const ids = Object.keys(r.steps);
      const counts = {};
      for (const id of ids) counts[r.steps[id].status] = (counts[r.steps[id].status] || 0) + 1;
      const took = r.finished_at ? span(r.created_at, r.finished_at) : '';
      clear(this.el.head).append(h('div', { class: 'runhead' },
        h('div', {},
          h('div', { class: 'row' }, h('h1', {}, 'Run ', h('span', { class: 'mono', text: r.run_id })),
            h('span', { id: 'run-status' }, badge(r.status)), r.partial ? badge('partial') : null),
          h('div', { class: 'goal', id: 'goal', text: r.goal || '' }),
          h('div', { class: 'meta' },
            h('span', { text: `created ${when(r.created_at)}` }),
            took ? h('span', { text: `took ${took}` }) : null,
            r.plan_version ? h('span', { text: `plan v${r.plan_version}` + (r.replans ? ` · ${plural(r.replans, 'replan')}` : '') }) : h('span', { text: 'planning…' }),
            h('span', { text: ids.length ? STEP_STATUSES.filter((st) => counts[st]).map((st) => `${counts[st]} ${st}`).join(' · ') : 'no steps yet' }))),
        h('span', { id: 'live', class: 'live' })));
      this.setLive(this.live || (TERMINAL.has(r.status) ? 'ended' : 'on'));
    }

    renderBanner() {
      const r = this.report;
      clear(this.el.banner);
      if (r.reason) this.el.banner.append(h('p', { class: 'notice', id: 'waiting', text: `Waiting: ${r.reason}` }));
      if (r.status === 'awaiting_approval') {
        this.el.banner.append(h('p', { class: 'notice', text: `Nothing runs before \`chordal approve ${r.run_id}\` (or POST /v1/runs/${r.run_id}/approve).` }));
      }
      if (r.status === 'paused') {
        this.el.banner.append(h('p', { class: 'notice', text: `It goes on after \`chordal resume ${r.run_id}\` with a new budget (or POST /v1/runs/${r.run_id}/resume).` }));
      }
      if (r.error) {
        this.el.banner.append(h('div', { class: 'notice bad', id: 'run-error' },
          h('strong', { text: `Run ${r.status}: ` }), `${r.error.type}: ${r.error.message}`));
      }
    }

    renderVersions() {
      const r = this.report;
      const versions = r.versions || [];
      const box = clear(this.el.versions);
      box.hidden = versions.length === 0;
      if (!versions.length) return;
      const chips = (ids, cls, sign) => ids.map((x) => h('span', { class: `chip ${cls}`, text: sign + x }));
      box.append(h('h2', { text: `Plan versions (${versions.length})` }),
        h('div', { class: 'versions' }, versions.map((v) => h('button', {
          type: 'button', class: 'version' + (v.version === r.plan_version ? ' current' : '') + (this.focusVersion === v.version ? ' on' : ''),
          data: { version: String(v.version) }, title: 'Show this version\'s steps',
          onclick: () => { this.focusVersion = this.focusVersion === v.version ? null : v.version; this.render(); },
        },
          h('div', {}, h('span', { class: 'vname', text: `v${v.version}` }), ' ',
            h('span', { class: 'muted', text: v.reason + (v.version === r.plan_version ? ' · current' : '') })),
          h('div', { class: 'diff' },
            v.failed && v.failed.length ? [h('span', { text: 'after ' }), chips(v.failed, 'fail', '✗ ')] : null,
            chips(v.added || [], 'add', '+'), chips(v.dropped || [], 'drop', '−'),
            v.version > 1 ? chips(v.kept || [], 'keep', '=') : null)))));
    }

    /* Nodes: every step of every version. Edges: the current plan's dependencies, plus those
     * of earlier versions this tab saw (dashed). Laid out again only when they change. */
    graphModel() {
      const r = this.report;
      const ids = Object.keys(r.steps);
      const edges = [];
      const seen = new Set();
      const add = (from, to, old) => {
        const k = `${from}\u0000${to}`;
        if (seen.has(k) || !r.steps[from] || !r.steps[to]) return;
        seen.add(k);
        edges.push({ from, to, old });
      };
      for (const [id, info] of Object.entries(this.current)) for (const d of info.deps) add(d, id, false);
      const versions = Object.keys(this.plans).map(Number).sort((a, b) => b - a);
      for (const v of versions) {
        if (v === r.plan_version) continue;
        for (const [id, info] of Object.entries(this.plans[v])) for (const d of info.deps) add(d, id, true);
      }
      return { ids, edges };
    }

    info(id) {
      if (this.current[id]) return this.current[id];
      const versions = Object.keys(this.plans).map(Number).sort((a, b) => b - a);
      for (const v of versions) if (this.plans[v][id]) return this.plans[v][id];
      return null;
    }

    versionsOf(id) {
      return Object.keys(this.members).map(Number).filter((v) => this.members[v].has(id));
    }

    renderGraph() {
      const r = this.report;
      const box = this.el.graph;
      const model = this.graphModel();
      if (!model.ids.length) {
        this.layoutKey = null;
        clear(box).append(h('p', { class: 'muted', id: 'no-plan', text: r.status === 'pending' ? 'The planner is writing the plan…' : 'No steps.' }));
        return;
      }
      const key = JSON.stringify(model);
      if (key !== this.layoutKey) {
        this.layoutKey = key;
        this.layout(model);
      }
      const focus = this.focusVersion ? this.members[this.focusVersion] : null;
      const cur = this.members[r.plan_version];
      const multi = (r.versions || []).length > 1;
      for (const id of model.ids) {
        const node = this.nodes.get(id);
        const st = r.steps[id];
        const info = this.info(id);
        const inCurrent = !cur || cur.has(id);
        const vs = this.versionsOf(id);
        node.g.setAttribute('class', `node s-${st.status}` + (inCurrent ? '' : ' dropped')
          + (this.selected === id ? ' selected' : '') + (focus && !focus.has(id) ? ' dim' : ''));
        node.g.dataset.status = st.status;
        node.g.dataset.versions = vs.join(',');
        let sub = (info ? info.tool : '?') + ' · ' + st.status;
        if (st.attempts > 1) sub += ` · ${st.attempts} tries`;
        const took = span(st.started_at, st.finished_at);
        if (took) sub += ` · ${took}`;
        node.sub.textContent = short(sub, NODE_CHARS);
        const err = st.error && st.status !== 'succeeded' ? `${st.error.message}` : '';
        node.err.textContent = err ? short(err, NODE_CHARS) : (info && info.description ? short(info.description, NODE_CHARS) : '');
        node.err.setAttribute('class', err ? 'err' : 'sub');
        node.tag.textContent = multi ? (inCurrent ? vs.map((v) => `v${v}`).join(' ') : `v${vs.join(', v')} · dropped`) : '';
        node.title.textContent = [id + (info && info.description ? ` — ${info.description}` : ''),
          `status: ${st.status}, attempts: ${st.attempts}`, err ? `error: ${st.error.type}: ${err}` : ''].filter(Boolean).join('\n');
      }
      for (const edge of this.edgeEls) {
        const running = r.steps[edge.to].status === 'running';
        const dim = focus && !(focus.has(edge.from) && focus.has(edge.to));
        edge.path.setAttribute('class', 'edge' + (edge.old ? ' old' : '') + (running ? ' hot' : '') + (dim ? ' dim' : ''));
      }
    }

    layout(model) {
      const g = new dagre.graphlib.Graph({ multigraph: false });
      g.setGraph({ rankdir: 'LR', nodesep: 22, ranksep: 64, marginx: 12, marginy: 12 });
      g.setDefaultEdgeLabel(() => ({}));
      for (const id of model.ids) g.setNode(id, { width: NODE_W, height: NODE_H });
      for (const e of model.edges) g.setEdge(e.from, e.to);
      dagre.layout(g);
      const W = Math.ceil(g.graph().width), H = Math.ceil(g.graph().height);
      const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'the plan\'s steps and their dependencies' },
        s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
          s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))));
      this.edgeEls = [];
      for (const e of model.edges) {
        const pts = g.edge(e.from, e.to).points;
        const d = pts.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
        const path = s('path', { d, class: 'edge', 'marker-end': 'url(#arrow)', data: { from: e.from, to: e.to } });
        svg.append(path);
        this.edgeEls.push({ ...e, path });
      }
      this.nodes.clear();
      for (const id of model.ids) {
        const n = g.node(id);
        const x = n.x - NODE_W / 2, y = n.y - NODE_H / 2;
        const title = s('title', {});
        const sub = s('text', { x: 10, y: 38, class: 'sub' });
        const err = s('text', { x: 10, y: 54, class: 'sub' });
        const tag = s('text', { x: NODE_W - 8, y: 17, class: 'tag', 'text-anchor': 'end' });
        const gEl = s('g', { class: 'node', transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, data: { step: id }, tabindex: 0, role: 'button',
          onclick: () => this.select(id), onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') this.select(id); } },
          title, s('rect', { class: 'box', width: NODE_W, height: NODE_H, rx: 8 }),
          s('text', { x: 10, y: 19, class: 'nid', text: short(id, 24) }), tag, sub, err);
        svg.append(gEl);
        this.nodes.set(id, { g: gEl, sub, err, tag, title });
      }
      clear(this.el.graph).append(svg);
    }

    select(id, updateHash = true) {
      this.selected = id && this.report && this.report.steps[id] ? id : null;
      if (updateHash) history.replaceState(null, '', this.selected ? `#step=${encodeURIComponent(this.selected)}` : location.pathname + location.search);
      if (this.report) {
        this.renderGraph();
        this.renderTimeline();
        this.renderDetails();
      }
    }

    /* A row per step from its first start to its end: overlapping bars are steps that ran
     * in parallel; above them, how many ran at each moment. */
    renderTimeline() {
      const r = this.report;
      const box = this.el.timeline;
      const now = Date.now() + clockSkew;
      const ids = Object.keys(r.steps);
      const started = ids.filter((id) => r.steps[id].started_at)
        .sort((a, b) => ms(r.steps[a].started_at) - ms(r.steps[b].started_at));
      const rows = started.concat(ids.filter((id) => !r.steps[id].started_at));
      if (!rows.length) { clear(box).append(h('p', { class: 'muted', text: 'Nothing has run yet.' })); return; }
      const t0 = Math.min(ms(r.created_at) || Infinity, ...started.map((id) => ms(r.steps[id].started_at)));
      const ends = ids.map((id) => ms(r.steps[id].finished_at)).filter(isFinite);
      const running = ids.some((id) => r.steps[id].status === 'running');
      let t1 = Math.max(ms(r.finished_at) || 0, ...ends, running || !TERMINAL.has(r.status) ? now : 0);
      if (!isFinite(t0)) { clear(box).append(h('p', { class: 'muted', text: 'Nothing has run yet.' })); return; }
      if (t1 - t0 < 1000) t1 = t0 + 1000;
      const width = Math.max(480, box.clientWidth || 900);
      const LABEL = 150, RIGHT = 110, ROW = 22, CONC = 44, AXIS = 20;
      const plotW = width - LABEL - RIGHT;
      const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * plotW;
      const height = AXIS + CONC + rows.length * ROW + 6;
      const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'when each step started and ended' });
      // axis
      const axis = s('g', { class: 'axis' });
      const spanS = (t1 - t0) / 1000;
      const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]
        .find((c) => spanS / c <= 10) || 14400;
      for (let t = 0; t <= spanS + 1e-9; t += step) {
        const px = x(t0 + t * 1000);
        axis.append(s('line', { x1: px, x2: px, y1: AXIS - 4, y2: height }),
          s('text', { x: px, y: 12, 'text-anchor': 'middle', text: tickLabel(t, step) }));
      }
      svg.append(axis);
      // concurrency: how many steps were running at each moment
      const marks = [];
      for (const id of started) {
        const st = r.steps[id];
        const a = ms(st.started_at);
        const b = isFinite(ms(st.finished_at)) ? ms(st.finished_at) : (st.status === 'running' ? now : a);
        marks.push([a, 1], [Math.max(a, b), -1]);
      }
      marks.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
      let level = 0, peak = 0, d = `M${x(t0)},${AXIS + CONC - 4}`;
      const base = AXIS + CONC - 4;
      const levels = [];
      for (const [t, delta] of marks) { level += delta; levels.push([t, level]); peak = Math.max(peak, level); }
      const unit = peak ? (CONC - 10) / peak : 0;
      let prev = 0;
      for (const [t, lv] of levels) {
        d += ` L${x(t).toFixed(1)},${(base - prev * unit).toFixed(1)} L${x(t).toFixed(1)},${(base - lv * unit).toFixed(1)}`;
        prev = lv;
      }
      d += ` L${x(t1).toFixed(1)},${(base - prev * unit).toFixed(1)} L${x(t1).toFixed(1)},${base} Z`;
      svg.append(s('path', { d, class: 'conc' }),
        s('text', { x: 4, y: AXIS + 16, class: 'conc-label', id: 'peak', text: `parallel (peak ${peak})` }));
      // When each plan version was installed (the first after planning, the rest replans).
      for (const [version, mark] of [...this.marks.entries()].sort((a, b) => a[0] - b[0])) {
        const t = ms(mark.at);
        if (!isFinite(t) || t < t0 || t > t1) continue;
        const px = x(t).toFixed(1);
        svg.append(s('g', { class: 'vmark', data: { version: String(version) } },
          s('line', { x1: px, x2: px, y1: AXIS, y2: height }),
          s('text', { x: (x(t) + 3).toFixed(1), y: AXIS + 9, text: `v${version}` }),
          s('title', { text: `plan v${version} installed (${mark.reason || ''}) at ${when(mark.at)}` })));
      }
      // lanes
      rows.forEach((id, i) => {
        const st = r.steps[id];
        const y = AXIS + CONC + i * ROW;
        const lane = s('g', { class: 'lane' + (this.selected === id ? ' selected' : ''), data: { step: id } },
          i % 2 ? null : s('rect', { class: 'zebra', x: 0, y, width, height: ROW }),
          s('text', { class: 'lbl', x: 6, y: y + 15, text: short(id, 18), onclick: () => this.select(id) }));
        if (st.started_at) {
          const a = ms(st.started_at);
          const b = isFinite(ms(st.finished_at)) ? ms(st.finished_at) : (st.status === 'running' ? now : a);
          const bx = x(a), bw = Math.max(2, x(Math.max(a, b)) - bx);
          let note = span(st.started_at, st.finished_at) || (st.status === 'running' ? duration((now - a) / 1000) + '…' : '');
          if (st.attempts > 1) note += ` · ${st.attempts} tries`;
          if (st.status === 'failed') note += ' · failed';
          lane.append(s('rect', { class: `bar s-${st.status}`, x: bx.toFixed(1), y: y + 4, width: bw.toFixed(1), height: ROW - 8, rx: 3,
            data: { step: id, status: st.status }, onclick: () => this.select(id) },
            s('title', { text: `${id}: ${st.status}, ${when(st.started_at)} → ${st.finished_at ? when(st.finished_at) : '…'}` })),
          s('text', { class: 'note', x: (bx + bw + 5).toFixed(1), y: y + 15, text: note }));
        } else {
          lane.append(s('text', { class: 'note', x: LABEL, y: y + 15, text: st.status === 'replaced' ? 'replaced before it started' : st.status === 'pending' ? 'waiting' : `${st.status}, never started` }));
        }
        svg.append(lane);
      });
      clear(box).append(svg);
      // Running bars grow with the clock (drawing only: nothing is fetched).
      if (running && !this.ticking && !this.abort.signal.aborted) {
        this.ticking = true;
        let last = performance.now();
        const tick = (t) => {
          if (this.abort.signal.aborted) { this.ticking = false; return; }
          if (t - last > 500) { last = t; this.ticking = false; this.renderTimeline(); return; }
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }
    }

    renderDetails() {
      const r = this.report;
      const box = clear(this.el.details);
      const id = this.selected;
      if (!id || !r.steps[id]) {
        box.append(h('h2', { text: 'Step' }), h('p', { class: 'muted', text: 'Click a step in the plan or the timeline for its details.' }));
        return;
      }
      const st = r.steps[id];
      const info = this.info(id);
      const rows = [];
      const kv = (k, v) => { if (v !== null && v !== undefined && v !== '') rows.push(h('dt', { text: k }), h('dd', {}, v)); };
      kv('status', badge(st.status));
      kv('description', info && info.description);
      kv('tool', info && h('code', { text: info.tool }));
      kv('after', info && info.deps.length ? info.deps.join(', ') : null);
      kv('on failure', info && info.on_failure);
      const vs = this.versionsOf(id);
      if ((r.versions || []).length > 1) kv('plan versions', vs.map((v) => `v${v}`).join(', ') + (this.members[r.plan_version] && !this.members[r.plan_version].has(id) ? ' (dropped since)' : ''));
      kv('attempts', String(st.attempts));
      const tries = (st.history || []).filter((a) => ATTEMPT_STATUSES.includes(a.status));
      if (tries.length > 1 || tries.some((a) => a.status !== 'succeeded')) {
        kv('history', h('span', {}, ...tries.map((a) => h('span', { title: a.error ? `${a.error.type}: ${a.error.message}` : (a.outcome ? `reported ${a.outcome}, after another attempt took over` : '') },
          `#${a.attempt} `, badge(a.status), ' '))));
      }
      kv('worker', st.worker);
      kv('started', when(st.started_at));
      kv('finished', when(st.finished_at));
      kv('took', span(st.started_at, st.finished_at));
      const usage = r.usage && r.usage.by_step && r.usage.by_step[id];
      if (usage && usage.calls) kv('model', `${int(usage.total_tokens)} tokens, ${money(usage.cost_usd)}`);
      box.append(h('h2', {}, 'Step ', h('span', { class: 'mono', text: id })), h('dl', { class: 'kv', id: 'step-details' }, rows));
      if (st.error) box.append(h('h2', { text: 'Error' }), this.errorBox(st.error));
      if (info && Object.keys(info.args).length) box.append(h('h2', { text: 'Args' }), h('pre', { class: 'jsonbox', text: pretty(info.args, 4000) }));
      if (st.output !== null && st.output !== undefined) box.append(h('h2', { text: 'Output' }), h('pre', { class: 'jsonbox', id: 'step-output', text: pretty(st.output, 8000) }));
    }

    errorBox(err) {
      const parts = [];
      for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth += 1) {
        const extra = [];
        if (e.attempt) extra.push(`attempt ${e.attempt}`);
        if (e.transient !== undefined && e.transient !== null) extra.push(e.transient ? 'transient' : 'permanent');
        if (e.retry_in_s) extra.push(`retry in ${e.retry_in_s}s`);
        parts.push(h('div', {}, depth ? 'caused by ' : '', h('strong', { text: e.type }), ': ',
          h('span', { class: 'errmsg', text: e.message }), extra.length ? h('span', { class: 'muted', text: ` (${extra.join(', ')})` }) : null));
        if (e.problems && e.problems.length) parts.push(h('ul', {}, e.problems.map((p) => h('li', { text: p }))));
      }
      return h('div', { class: 'errbox', id: 'step-error' }, parts);
    }

    renderProblems() {
      const r = this.report;
      const box = clear(this.el.problems);
      box.append(h('h2', { text: 'Attempts and errors' }));
      const items = Object.entries(r.steps).filter(([, st]) => st.error || st.attempts > 1);
      if (!items.length && !r.error) {
        box.append(h('p', { class: 'muted', id: 'no-problems', text: 'No errors and no retries so far.' }));
        return;
      }
      const list = h('ul', { class: 'problems', id: 'problem-list' });
      for (const [id, st] of items) {
        const head = h('div', {}, h('strong', { class: 'mono', text: id }), ' ', badge(st.status), ' ',
          h('span', { class: 'muted', text: `${plural(st.attempts, 'attempt')}` + (st.worker ? ` · ${st.worker.split('@').pop()}` : '') }));
        list.append(h('li', { data: { step: id }, onclick: () => this.select(id) }, head,
          st.error ? h('span', { class: 'msg', text: `${st.error.type}: ${st.error.message}` })
            : h('span', { class: 'muted', text: 'succeeded after a retry' })));
      }
      if (r.error) list.append(h('li', {}, h('strong', { text: 'run' }), ' ', badge(r.status), h('span', { class: 'msg', text: `${r.error.type}: ${r.error.message}` })));
      box.append(list);
    }

    renderAnswer() {
      const r = this.report;
      const box = clear(this.el.answer);
      box.hidden = r.answer === null || r.answer === undefined;
      if (box.hidden) return;
      box.append(h('h2', { text: r.partial ? 'Partial answer' : 'Answer' }),
        typeof r.answer === 'string' ? h('div', { class: 'answer-text', id: 'answer-text', text: r.answer })
          : h('pre', { class: 'jsonbox', id: 'answer-text', text: pretty(r.answer, 20000) }));
    }

    renderUsage() {
      const r = this.report;
      const box = clear(this.el.usage);
      const u = r.usage;
      box.hidden = !u || !u.total || !u.total.calls;
      if (box.hidden) return;
      const cols = ['calls', 'input_tokens', 'output_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens', 'total_tokens'];
      const names = ['calls', 'input', 'output', 'cache read', 'cache write', 'tokens', 'cost (est.)'];
      const row = (name, t, cls) => h('tr', { class: cls, data: { role: name } }, h('td', { text: name }),
        cols.map((c) => h('td', { class: 'num', text: int(t[c]) })), h('td', { class: 'num', text: money(t.cost_usd) }));
      box.append(h('h2', { text: 'Model usage by role' }), h('table', { id: 'usage-table' },
        h('thead', {}, h('tr', {}, h('th', { text: 'role' }), names.map((n) => h('th', { class: 'num', text: n })))),
        h('tbody', {}, Object.entries(u.by_role || {}).map(([role, t]) => row(role, t)), row('total', u.total, 'total'))));
    }

    renderSteps() {
      const r = this.report;
      const box = clear(this.el.steps);
      const ids = Object.keys(r.steps);
      box.append(h('h2', { text: 'Steps' }));
      if (!ids.length) { box.append(h('p', { class: 'muted', text: 'No steps yet.' })); return; }
      box.append(h('table', { id: 'steps-table' },
        h('thead', {}, h('tr', {}, ['step', 'after', 'status', 'tries', 'time', 'worker', 'output / error'].map((c) => h('th', { text: c })))),
        h('tbody', {}, ids.map((id) => {
          const st = r.steps[id];
          const info = this.info(id);
          const shown = st.error && st.status !== 'succeeded' ? st.error.message
            : (st.status === 'succeeded' || st.status === 'skipped') ? short(st.output, 80) : '';
          return h('tr', { class: 'clickable', data: { step: id, status: st.status }, onclick: () => this.select(id) },
            h('td', { class: 'mono', text: id }), h('td', { class: 'mono', text: info ? info.deps.join(', ') : '' }),
            h('td', {}, badge(st.status)), h('td', { class: 'num', text: String(st.attempts) }),
            h('td', { class: 'num', text: span(st.started_at, st.finished_at) }),
            h('td', { text: (st.worker || '').split('@').pop() }),
            h('td', { class: 'trunc mono', title: shown, text: shown }));
        }))));
    }
  }

  // -- start ---------------------------------------------------------------------------------
  function runIdFromPath() {
    const path = location.pathname.slice(ROOT.length);
    const m = path.match(/^\/runs\/([^/]+)\/?$/);
    return m ? decodeURIComponent(m[1]) : null;
  }

  restart = () => {
    if (current) current.stop();
    renderKeybar();
    const runId = VIEW === 'run' ? runIdFromPath() : null;
    current = runId ? new RunView(runId) : new RunsView();
    window.chordalPage = current; // for the browser console (and the page's tests)
    current.start().catch((err) => {
      if (!showProblem(err) && !(current.abort && current.abort.signal.aborted)) {
        clear(app).append(h('p', { class: 'notice bad', text: `Something went wrong: ${err.message}` }));
      }
    });
  };
  restart();
})();
