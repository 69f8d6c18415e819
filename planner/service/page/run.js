/* One run (/runs/{id}), live: its report, re-fetched on each event of its stream, drawn
 * by the parts in graph.js (the DAG), timeline.js and panels.js (details, errors, answer,
 * usage, steps), whose methods are the view's own. This module keeps the data, the
 * events, the header, banner and plan versions. */
import { ApiError, ROOT, api, readEvents } from './api.js';
import { clear, h, sleep } from './dom.js';
import { badge, plural, span, when } from './format.js';
import { GraphPart } from './graph.js';
import { PanelsPart } from './panels.js';
import { hashStep, membership, planInfo } from './plan.js';
import { app, showProblem } from './shell.js';
import { TimelinePart } from './timeline.js';
import { EVENT, RUN, STEP_STATUSES, TERMINAL_RUN } from './vocabulary.js';

export class RunView {
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
    const ended = TERMINAL_RUN.has(this.report.status);
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
      if (closed && this.report && TERMINAL_RUN.has(this.report.status)) break;
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
    if (ev.event === EVENT.RUN_FINISHED) this.finished = true;
    const version = event && event.data && event.data.version;
    if (ev.event === EVENT.PLAN_INSTALLED && version && event.at) {
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
    this.setLive(this.live || (TERMINAL_RUN.has(r.status) ? 'ended' : 'on'));
  }

  renderBanner() {
    const r = this.report;
    clear(this.el.banner);
    if (r.reason) this.el.banner.append(h('p', { class: 'notice', id: 'waiting', text: `Waiting: ${r.reason}` }));
    if (r.status === RUN.AWAITING_APPROVAL) {
      this.el.banner.append(h('p', { class: 'notice', text: `Nothing runs before \`chordal approve ${r.run_id}\` (or POST /v1/runs/${r.run_id}/approve).` }));
    }
    if (r.status === RUN.PAUSED) {
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

  select(id, updateHash = true) {
    this.selected = id && this.report && this.report.steps[id] ? id : null;
    if (updateHash) history.replaceState(null, '', this.selected ? `#step=${encodeURIComponent(this.selected)}` : location.pathname + location.search);
    if (this.report) {
      this.renderGraph();
      this.renderTimeline();
      this.renderDetails();
    }
  }
}

// The parts' methods are RunView's: `this` is the view in each of them.
for (const part of [GraphPart, TimelinePart, PanelsPart]) {
  for (const name of Object.getOwnPropertyNames(part.prototype)) {
    if (name !== 'constructor') {
      Object.defineProperty(RunView.prototype, name,
        Object.getOwnPropertyDescriptor(part.prototype, name));
    }
  }
}
