/* What every view shares: the app element, the key bar, the key form, and the view on
 * screen (restarted when the key changes). */
import { ApiError, Key } from './api.js';
import { clear, h } from './dom.js';

export const app = document.getElementById('app');
/* The view on screen (has stop()) and how to start afresh (set by app.js). */
export const page = { current: null, restart: () => {} };

export function renderKeybar() {
  const bar = clear(document.getElementById('keybar'));
  if (Key.get()) {
    bar.append(h('span', { text: 'API key set (this tab)' }),
      h('button', {
        type: 'button', id: 'forget-key', text: 'Forget key',
        onclick: () => { Key.clear(); renderKeybar(); page.restart(); },
      }));
  }
}

export function askForKey(why) {
  if (page.current) page.current.stop();
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
    page.restart();
  });
  clear(app).append(form);
  input.focus();
}

export function showProblem(err) {
  if (err instanceof ApiError && err.status === 401) {
    askForKey(Key.get() ? 'refused' : 'missing');
    return true;
  }
  return false;
}
