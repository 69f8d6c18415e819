/* An agent step's conversation (a report's steps[id].agent) on the run page: a thin
 * sub-lane per tool call under the step's lane, a tick on the step's bar where each turn
 * ended, and the "Turns" section of the details panel. Turns are numbered from 1 here, as
 * in the terminal view ("turn 1/8"); the task ids keep the store's numbers (t0, c0t0i0). */
import { h, s } from './dom.js';
import { duration, ms, pretty, short, span, when } from './format.js';
import { CALL, TURN } from './vocabulary.js';

/* The height of a call's sub-lane (a step's lane is 22). */
export const SUB = 14;

/* Every call of the conversation, in turn and index order, with the turn it belongs to. */
export function callsOf(st) {
  const turns = (st.agent && st.agent.turns) || [];
  return turns.flatMap((turn) => (turn.calls || []).map((call) => ({ turn, call })));
}

const callLabel = (turn, call) => `↳ t${turn.turn + 1} ${call.tool}`;

/* A tool call as a short line: its tool, status and time (a bar's tooltip, a list's head). */
function callSummary(turn, call) {
  const took = span(call.started_at, call.finished_at);
  const tries = call.attempts > 1 ? ` · ${call.attempts} attempts` : '';
  const err = call.error ? ` · ${call.error.type}: ${call.error.message}` : '';
  return `turn ${turn.turn + 1} · ${call.tool} ${call.status}${took ? ' ' + took : ''}${tries}${err}`;
}

/* The sub-lanes of an agent step's calls, from y down (SUB each); x maps a time to pixels.
 * A call that ran is a bar from started_at to finished_at (to now while it runs); a refused
 * call never ran: a dot where its turn ended. Calls are not steps: the "parallel" curve
 * above does not count them. */
export function callLanes(id, st, y, x, now, width, select) {
  return callsOf(st).map(({ turn, call }, i) => {
    const top = y + i * SUB;
    const g = s('g', { class: 'sublane', data: { step: id, turn: String(turn.turn), call: String(call.index), status: call.status } },
      s('text', { class: 'sublbl', x: 14, y: top + 10.5, text: short(callLabel(turn, call), 26), onclick: () => select(id) },
        s('title', { text: callLabel(turn, call) })));
    const tip = s('title', { text: callSummary(turn, call) });
    const a = ms(call.started_at);
    if (call.status === CALL.REFUSED || !isFinite(a)) {
      const at = ms(call.finished_at) || ms(turn.finished_at);
      if (call.status === CALL.REFUSED && isFinite(at)) {
        g.append(s('circle', { class: `calldot c-${call.status}`, cx: x(at).toFixed(1), cy: top + SUB / 2, r: 3.5, onclick: () => select(id) }, tip));
      } else {
        g.append(s('text', { class: 'subnote', x: x(ms(turn.finished_at) || now).toFixed(1), y: top + 10.5, text: call.status }, tip));
      }
      return g;
    }
    const b = isFinite(ms(call.finished_at)) ? ms(call.finished_at) : (call.status === CALL.RUNNING ? now : a);
    const bx = x(a), bw = Math.max(2, x(Math.max(a, b)) - bx);
    const note = span(call.started_at, call.finished_at) || (call.status === CALL.RUNNING ? duration((now - a) / 1000) + '…'
      : call.status === CALL.PENDING ? 'waiting for its retry' : call.status);
    g.append(s('rect', { class: `callbar c-${call.status}`, x: bx.toFixed(1), y: top + 3, width: bw.toFixed(1), height: SUB - 6, rx: 2, onclick: () => select(id) }, tip),
      s('text', { class: 'subnote', x: Math.min(bx + bw + 4, width - 60).toFixed(1), y: top + 10.5, text: note }));
    return g;
  });
}

/* A tick on the step's bar (y to y + height) where each turn ended. */
export function turnTicks(st, y, height, x) {
  const turns = (st.agent && st.agent.turns) || [];
  return turns.filter((turn) => isFinite(ms(turn.finished_at))).map((turn) => {
    const px = x(ms(turn.finished_at)).toFixed(1);
    return s('line', { class: `turntick k-${turn.kind}`, x1: px, x2: px, y1: y, y2: y + height, data: { turn: String(turn.turn), kind: turn.kind } },
      s('title', { text: `turn ${turn.turn + 1}: ${turn.kind}, ended ${when(turn.finished_at)}` }));
  });
}

/* What a turn came to, in words. */
const KIND_WORDS = {
  [TURN.THINKING]: 'thinking…', [TURN.TOOLS]: 'called tools', [TURN.REFUSED]: 'its calls were refused',
  [TURN.FINAL]: 'answered', [TURN.REPAIR]: 'answer off its schema: one repair', [TURN.INVALID]: 'answer off its schema again',
  [TURN.MAX_TURNS]: 'out of turns',
};

/* The details panel's "Turns": each turn's model text, problems, its calls with their args,
 * results or errors, and times. errorBox draws an ErrorRecord as the panel does. */
export function turnsSection(st, errorBox) {
  const agent = st.agent;
  const turns = agent.turns || [];
  const calls = callsOf(st).length;
  const head = h('h2', { text: `Turns (${turns.length} of at most ${agent.max_turns} · ${calls} tool call${calls === 1 ? '' : 's'})` });
  if (!turns.length) return [head, h('p', { class: 'muted', text: 'No turn yet.' })];
  return [head, h('ol', { class: 'turns', id: 'turns' }, turns.map((turn) => {
    const meta = [span(turn.started_at, turn.finished_at), turn.tries > 1 ? `${turn.tries} tries` : '',
      turn.usage ? `${(turn.usage.input_tokens || 0) + (turn.usage.output_tokens || 0)} tokens` : '',
      (turn.worker || '').split('@').pop(), when(turn.started_at)].filter(Boolean);
    return h('li', { class: 'turn', data: { turn: String(turn.turn), kind: turn.kind } },
      h('div', { class: 'turnhead' }, h('strong', { text: `turn ${turn.turn + 1}` }), ' ',
        h('span', { class: `tkind k-${turn.kind}`, text: KIND_WORDS[turn.kind] || turn.kind }), ' ',
        h('span', { class: 'muted', text: meta.join(' · ') })),
      turn.text ? h('div', { class: 'turntext', text: turn.text }) : null,
      turn.problems && turn.problems.length ? h('ul', { class: 'turnproblems' }, turn.problems.map((p) => h('li', { text: p }))) : null,
      (turn.calls || []).length ? h('ul', { class: 'calls' }, turn.calls.map((call) => callItem(turn, call, errorBox))) : null);
  }))];
}

function callItem(turn, call, errorBox) {
  const took = span(call.started_at, call.finished_at);
  const meta = [took, call.attempts > 1 ? `${call.attempts} attempts` : '', (call.worker || '').split('@').pop(),
    call.started_at ? when(call.started_at) : ''].filter(Boolean);
  const result = call.error ? errorBox(call.error, null)
    : call.output !== null && call.output !== undefined ? h('pre', { class: 'jsonbox callout', text: pretty(call.output, 4000) })
      : null;
  return h('li', { class: 'call', data: { call: String(call.index), status: call.status } },
    h('div', {}, h('span', { class: 'mono', text: `${call.tool}` }), ' ',
      h('span', { class: `cbadge c-${call.status}`, text: call.status }), ' ',
      h('span', { class: 'muted', text: meta.join(' · ') })),
    h('div', { class: 'callargs mono', title: pretty(call.args === undefined ? null : call.args, 4000) },
      h('span', { class: 'muted', text: 'args ' }), short(call.args === undefined ? null : call.args, 300)),
    result ? h('div', { class: 'callres' }, h('span', { class: 'muted', text: call.error ? '' : 'result' }), result) : null);
}
