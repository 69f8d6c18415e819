/* A run's timeline: a bar per step, how many ran at each moment, and when each plan version
 * was installed; under an agent step, its tool calls (agent.js). Methods of RunView (run.js). */
import { SUB, callLanes, callsOf, turnTicks } from './agent.js';
import { clockSkew } from './api.js';
import { clear, h, s } from './dom.js';
import { duration, ms, short, span, tickLabel, when } from './format.js';
import { CALL, STEP, TERMINAL_RUN } from './vocabulary.js';

export class TimelinePart {
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
    // A call may end after its step (a cancelled agent's running call is still recorded).
    const ends = ids.flatMap((id) => [r.steps[id].finished_at, ...callsOf(r.steps[id]).map((c) => c.call.finished_at)])
      .map(ms).filter(isFinite);
    // A cancelled agent's running calls go on until they are recorded: they grow too.
    const running = ids.some((id) => r.steps[id].status === STEP.RUNNING
      || callsOf(r.steps[id]).some((c) => c.call.status === CALL.RUNNING));
    let t1 = Math.max(ms(r.finished_at) || 0, ...ends, running || !TERMINAL_RUN.has(r.status) ? now : 0);
    if (!isFinite(t0)) { clear(box).append(h('p', { class: 'muted', text: 'Nothing has run yet.' })); return; }
    if (t1 - t0 < 1000) t1 = t0 + 1000;
    const width = Math.max(480, box.clientWidth || 900);
    const LABEL = 150, RIGHT = 110, ROW = 22, CONC = 44, AXIS = 20;
    const plotW = width - LABEL - RIGHT;
    const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * plotW;
    // Each step's lane, then a thin sub-lane per tool call of an agent step.
    const tops = [];
    let y0 = AXIS + CONC;
    for (const id of rows) { tops.push(y0); y0 += ROW + callsOf(r.steps[id]).length * SUB; }
    const height = y0 + 6;
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
    // concurrency: how many steps were running at each moment (an agent's calls are not steps)
    const marks = [];
    for (const id of started) {
      const st = r.steps[id];
      const a = ms(st.started_at);
      const b = isFinite(ms(st.finished_at)) ? ms(st.finished_at) : (st.status === STEP.RUNNING ? now : a);
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
      const y = tops[i];
      const subs = callsOf(st).length;
      const lane = s('g', { class: 'lane' + (this.selected === id ? ' selected' : ''), data: { step: id } },
        i % 2 ? null : s('rect', { class: 'zebra', x: 0, y, width, height: ROW + subs * SUB }),
        s('text', { class: 'lbl', x: 6, y: y + 15, text: short(id, 18), onclick: () => this.select(id) }));
      if (st.started_at) {
        const a = ms(st.started_at);
        const b = isFinite(ms(st.finished_at)) ? ms(st.finished_at) : (st.status === STEP.RUNNING ? now : a);
        const bx = x(a), bw = Math.max(2, x(Math.max(a, b)) - bx);
        let note = span(st.started_at, st.finished_at) || (st.status === STEP.RUNNING ? duration((now - a) / 1000) + '…' : '');
        if (st.attempts > 1) note += ` · ${st.attempts} tries`;
        if (st.status === STEP.FAILED) note += ' · failed';
        lane.append(s('rect', { class: `bar s-${st.status}`, x: bx.toFixed(1), y: y + 4, width: bw.toFixed(1), height: ROW - 8, rx: 3,
          data: { step: id, status: st.status }, onclick: () => this.select(id) },
          s('title', { text: `${id}: ${st.status}, ${when(st.started_at)} → ${st.finished_at ? when(st.finished_at) : '…'}` })),
        s('text', { class: 'note', x: (bx + bw + 5).toFixed(1), y: y + 15, text: note }));
        if (st.agent) lane.append(...turnTicks(st, y + 2, ROW - 4, x));
      } else {
        lane.append(s('text', { class: 'note', x: LABEL, y: y + 15, text: st.status === STEP.REPLACED ? 'replaced before it started' : st.status === STEP.PENDING ? 'waiting' : `${st.status}, never started` }));
      }
      if (subs) lane.append(...callLanes(id, st, y + ROW, x, now, width, (sid) => this.select(sid)));
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
}
