/* The run page of `chordal serve`: recent runs (/) and one run, live (/runs/{id}).
 *
 * Plain JavaScript in ES modules, no build step. The DAG is laid out by dagre
 * (vendor/dagre.min.js, a classic script run before the modules) and drawn as SVG here.
 * Everything comes from the HTTP API (docs/api.md) with the key the user enters: it is kept
 * in sessionStorage and sent as `Authorization: Bearer`, never in a URL. A run updates from
 * its events stream (/v1/runs/{id}/events), read with fetch() because EventSource cannot send
 * headers; each event re-fetches the report (coalesced), and a dropped stream is resumed with
 * Last-Event-ID. No polling.
 *
 * The modules: dom (elements), format (how values show), api (requests, events, clock),
 * shell (key bar and form, the view on screen), runs (the runs list), plan (reading plans),
 * run (one run: data and header) with graph, timeline and panels (its other parts), and
 * vocabulary (statuses and event types, generated from planner/vocabulary.py).
 */
import { ROOT } from './api.js';
import { clear, h } from './dom.js';
import { RunView } from './run.js';
import { RunsView } from './runs.js';
import { app, page, renderKeybar, showProblem } from './shell.js';

const VIEW = document.body.dataset.view || 'runs';

function runIdFromPath() {
  const path = location.pathname.slice(ROOT.length);
  const m = path.match(/^\/runs\/([^/]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : null;
}

page.restart = () => {
  if (page.current) page.current.stop();
  renderKeybar();
  const runId = VIEW === 'run' ? runIdFromPath() : null;
  const current = runId ? new RunView(runId) : new RunsView();
  page.current = current;
  window.chordalPage = current; // for the browser console (and the page's tests)
  current.start().catch((err) => {
    if (!showProblem(err) && !(page.current.abort && page.current.abort.signal.aborted)) {
      clear(app).append(h('p', { class: 'notice bad', text: `Something went wrong: ${err.message}` }));
    }
  });
};
page.restart();
