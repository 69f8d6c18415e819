/* A run's plan as a DAG: every step of every plan version, laid out by dagre (the global of
 * vendor/dagre.min.js) and drawn as SVG. Methods of RunView (run.js). */
import { clear, h, s } from './dom.js';
import { short, span } from './format.js';
import { RUN, STEP } from './vocabulary.js';

const NODE_W = 224, NODE_H = 62, NODE_CHARS = 35;

export class GraphPart {
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
      clear(box).append(h('p', { class: 'muted', id: 'no-plan', text: r.status === RUN.PENDING ? 'The planner is writing the plan…' : 'No steps.' }));
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
      const err = st.error && st.status !== STEP.SUCCEEDED ? `${st.error.message}` : '';
      node.err.textContent = err ? short(err, NODE_CHARS) : (info && info.description ? short(info.description, NODE_CHARS) : '');
      node.err.setAttribute('class', err ? 'err' : 'sub');
      node.tag.textContent = multi ? (inCurrent ? vs.map((v) => `v${v}`).join(' ') : `v${vs.join(', v')} · dropped`) : '';
      node.title.textContent = [id + (info && info.description ? ` — ${info.description}` : ''),
        `status: ${st.status}, attempts: ${st.attempts}`, err ? `error: ${st.error.type}: ${err}` : ''].filter(Boolean).join('\n');
    }
    for (const edge of this.edgeEls) {
      const running = r.steps[edge.to].status === STEP.RUNNING;
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
}
