// The page's entry: routes (`#/` the overview, `#/runtimes/ID` a
// runtime, `#/fleet` the fleet), the shared event feed and fleet watch,
// and the token form that a token-protected agent needs once per tab.

import { onAuthRequired, setToken } from './api.js';
import { h, fill } from './dom.js';
import { EventFeed } from './events.js';
import { FleetWatch, mountFleet, mountFleetChrome } from './fleet.js';
import { mountOverview } from './overview.js';
import { mountRuntime } from './runtime.js';

const main = document.getElementById('main');
const feedStatus = document.getElementById('feed-status');
const feed = new EventFeed();
const fleet = new FleetWatch();
mountFleetChrome(fleet, {
  link: document.getElementById('nav-fleet'),
  banner: document.getElementById('fleet-banner'),
});
// A (re)connection may be to an agent restarted with or without --fleet.
feed.subscribe((message) => {
  if (message.type === 'resync') fleet.recheck();
});

let view = null; // the mounted view: {focus, dispose}
let askingToken = false;

const STATUS_TEXT = {
  connecting: 'connecting…',
  live: 'live',
  retrying: 'reconnecting…',
  token: 'token needed',
};

feed.onStatus((status) => {
  feedStatus.dataset.state = status;
  feedStatus.textContent = STATUS_TEXT[status] ?? status;
  feedStatus.title = status === 'live' ? 'Receiving the agent’s events as they happen' : '';
});

function route() {
  let hash;
  try {
    hash = decodeURIComponent(location.hash.replace(/^#/, ''));
  } catch {
    return { name: 'overview' }; // a malformed %-escape
  }
  const runtime = /^\/runtimes\/(.+)$/.exec(hash);
  if (runtime) return { name: 'runtime', id: runtime[1] };
  if (hash === '/fleet') return { name: 'fleet' };
  return { name: 'overview' };
}

function render({ focus = false } = {}) {
  if (askingToken) return;
  view?.dispose();
  const current = route();
  document.title = { runtime: `${current.id} · Steward`, fleet: 'Fleet · Steward' }[current.name] ?? 'Runtimes · Steward';
  for (const [id, name] of [['nav-runtimes', 'overview'], ['nav-fleet', 'fleet']]) {
    const nav = document.getElementById(id);
    if (current.name === name) nav.setAttribute('aria-current', 'page');
    else nav.removeAttribute('aria-current');
  }
  if (current.name === 'runtime') view = mountRuntime(main, { feed, fleet, id: current.id });
  else if (current.name === 'fleet') view = mountFleet(main, { watch: fleet });
  else view = mountOverview(main, { feed, fleet });
  if (focus) view.focus();
}

/** Replaces the page with the token form until a token is given. */
function askForToken(error) {
  if (askingToken) return;
  askingToken = true;
  feed.stop('token');
  view?.dispose();
  view = null;
  const input = h('input', {
    id: 'token-input',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-help',
  });
  const problem = h('p', { id: 'token-error', class: 'error-text', role: 'alert' },
    error.refused ? 'The agent refused that token. Check it and try again.' : '');
  // No action and no method: the handler below is the only way the token
  // leaves the form (and the CSP's form-action 'none' stops any other).
  const form = h('form', { class: 'token-form', 'aria-labelledby': 'token-heading', novalidate: true },
    h('h1', { id: 'token-heading', tabindex: '-1', text: 'This agent needs its token' }),
    h('p', { id: 'token-help', class: 'hint' },
      'The agent was started with ', h('code', { text: '--token-file' }),
      '. Paste that file’s content. It is kept in this tab’s session storage only, and sent in the Authorization header of the page’s API requests.'),
    h('label', { for: 'token-input', text: 'Token' }),
    input,
    problem,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button primary', text: 'Continue' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      problem.textContent = 'Enter the token.';
      input.focus();
      return;
    }
    setToken(value);
    input.value = '';
    askingToken = false;
    render({ focus: true });
    feed.start();
    fleet.recheck();
  });
  fill(main, form);
  input.focus();
}

onAuthRequired(askForToken);
window.addEventListener('hashchange', () => render({ focus: true }));
render();
feed.start();
fleet.start();
