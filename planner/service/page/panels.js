/* A run's panels below its plan and timeline: the selected step's details, attempts and
 * errors, the answer, model usage and the steps table. Methods of RunView (run.js). */
import { turnsSection } from './agent.js';
import { clear, h } from './dom.js';
import { badge, int, money, plural, pretty, short, span, when } from './format.js';
import { ATTEMPT, ATTEMPT_STATUSES, EARNED_STEP, STEP } from './vocabulary.js';

export class PanelsPart {
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
    if (tries.length > 1 || tries.some((a) => a.status !== ATTEMPT.SUCCEEDED)) {
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
    if (st.agent) box.append(...turnsSection(st, (err, elId) => this.errorBox(err, elId)));
  }

  // A call's error in the Turns section has no id: the page's #step-error is the step's.
  errorBox(err, elId = 'step-error') {
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
    return h('div', { class: 'errbox', id: elId }, parts);
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
        const shown = st.error && st.status !== STEP.SUCCEEDED ? st.error.message
          : EARNED_STEP.has(st.status) ? short(st.output, 80) : '';
        return h('tr', { class: 'clickable', data: { step: id, status: st.status }, onclick: () => this.select(id) },
          h('td', { class: 'mono', text: id }), h('td', { class: 'mono', text: info ? info.deps.join(', ') : '' }),
          h('td', {}, badge(st.status)), h('td', { class: 'num', text: String(st.attempts) }),
          h('td', { class: 'num', text: span(st.started_at, st.finished_at) }),
          h('td', { text: (st.worker || '').split('@').pop() }),
          h('td', { class: 'trunc mono', title: shown, text: shown }));
      }))));
  }
}
