/* The recent runs (/): a table of the key's runs, filtered by status, paged by cursor. */
import { ROOT, api } from './api.js';
import { clear, h } from './dom.js';
import { badge, span, when } from './format.js';
import { app, showProblem } from './shell.js';
import { RUN_STATUSES } from './vocabulary.js';

export class RunsView {
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
