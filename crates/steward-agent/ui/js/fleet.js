// Fleet mode as the page shows it: whether the agent is in a fleet and
// reaches its etcd (`GET /healthz`, polled), the header's Fleet link and
// the "fleet: disconnected" banner, and the Fleet page (`#/fleet`): every
// unit of the fleet from `GET /v1/fleet`, polled while visible.
//
// An agent not in a fleet shows none of it, and the page never asks it
// for `/v1/fleet` (its 404 would be a console error for nothing). This
// module only reads; it must never write desired state.

import { api, serverClockOffset } from './api.js';
import { h, fill, badge, clock, duration } from './dom.js';
import { stateBadge } from './parts.js';

/** How often /healthz and /v1/fleet are read while the page is visible. */
const POLL_MS = 2000;

/**
 * The agent's fleet connection, from `/healthz`: polled every 2 s while
 * the agent is in a fleet and the page is visible; an agent not in a
 * fleet is asked again only on `recheck()` (a reconnection of the event
 * stream: it may have been restarted with `--fleet`).
 */
export class FleetWatch {
  constructor() {
    /** `{inFleet, connected, since, reason}`, or null until known. */
    this.state = null;
    this.listeners = new Set();
    this.timer = null;
    this.checking = null;
  }

  get inFleet() {
    return Boolean(this.state?.inFleet);
  }

  /** `listener(state)` now (if known) and on every change. */
  subscribe(listener) {
    this.listeners.add(listener);
    if (this.state) listener(this.state);
    return () => this.listeners.delete(listener);
  }

  start() {
    this.recheck();
    this.timer = setInterval(() => {
      if (this.inFleet && !document.hidden) this.recheck();
    }, POLL_MS);
  }

  recheck() {
    this.checking ??= this.check().finally(() => { this.checking = null; });
    return this.checking;
  }

  async check() {
    let health;
    try {
      health = await api.health();
    } catch {
      return; // the agent is away: keep what was known (the feed says it)
    }
    const state = {
      inFleet: health.fleet !== undefined && health.fleet !== null,
      connected: health.fleet === 'connected',
      since: health.fleet_since ?? null,
      reason: health.fleet_reason ?? null,
    };
    const was = this.state;
    if (was && was.inFleet === state.inFleet && was.connected === state.connected
      && was.since === state.since && was.reason === state.reason) return;
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }
}

/** Keeps the header's Fleet link and the disconnection banner in step. */
export function mountFleetChrome(watch, { link, banner }) {
  watch.subscribe((state) => {
    link.hidden = !state.inFleet;
    const disconnected = state.inFleet && !state.connected;
    banner.hidden = !disconnected;
    if (!disconnected) {
      banner.replaceChildren();
      return;
    }
    const since = state.since ? `${clock(state.since)} (${new Date(state.since).toLocaleDateString()})` : 'a moment ago';
    fill(banner,
      h('strong', { text: `fleet: disconnected since ${since}` }),
      state.reason ? [' — ', h('span', { class: 'banner-reason', text: state.reason.replace(/\.$/, '') }), '.'] : null,
      h('span', { class: 'banner-note', text: ' Runtimes keep serving at their last known desired versions; the agent retries.' }));
  });
}

const HOOKS_KIND = { idle: 'off', running: 'busy', error: 'bad' };

function lastSeen(iso) {
  if (!iso) return '—';
  const ago = Date.now() + serverClockOffset - Date.parse(iso);
  return h('time', { datetime: iso, title: new Date(iso).toLocaleString(), text: `${duration(Math.max(ago, 0))} ago` });
}

const COLUMNS = [
  { label: 'Unit', cell: (u) => h('code', { class: 'unit-name', text: u.unit }) },
  { label: 'Agent', cell: (u) => u.agent },
  { label: 'State', cell: (u) => (u.state ? stateBadge(u.state) : badge('unreadable', 'bad')) },
  { label: 'Active', cell: (u) => u.active_version ?? '—' },
  {
    label: 'Desired',
    cell: (u) => (u.desired_version && u.desired_version !== u.active_version
      ? h('span', { class: 'pending', title: 'switching to this version', text: `${u.desired_version} (pending)` })
      : u.desired_version ?? '—'),
  },
  { label: 'Hooks', cell: (u) => (u.hooks ? badge(u.hooks, HOOKS_KIND[u.hooks] ?? 'off') : '—') },
  { label: 'Last seen', cell: (u) => lastSeen(u.last_seen) },
  { label: 'Error', cell: (u) => (u.error ? h('span', { class: 'error-text', text: u.error }) : '—') },
];

/** The Fleet page: every unit, re-read every 2 s while visible. */
export function mountFleet(main, { watch }) {
  let disposed = false;
  let units = null;
  let timer = null;

  const heading = h('h1', { id: 'fleet-heading', tabindex: '-1', text: 'Fleet' });
  const status = h('p', { class: 'status-line', role: 'status' });
  const problem = h('p', { class: 'error-text', role: 'alert' });
  const note = h('p', { class: 'hint', hidden: true });
  const table = h('table', { class: 'fleet cards', 'aria-describedby': 'fleet-caption' });
  const body = h('div', { class: 'table-wrap' }, table);
  fill(main,
    h('section', { class: 'panel', 'aria-labelledby': 'fleet-heading' },
      h('div', { class: 'panel-head' }, heading, status),
      h('p', { id: 'fleet-caption', class: 'hint', text: 'Every unit (a runtime on one agent) of the fleet, as its agent last published it to etcd; re-read every 2 seconds.' }),
      note,
      problem,
      body));

  function render() {
    const rows = units ?? [];
    const agents = new Set(rows.map((u) => u.agent));
    status.textContent = `${rows.length} unit${rows.length === 1 ? '' : 's'} on ${agents.size} agent${agents.size === 1 ? '' : 's'}`;
    fill(table,
      h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col', text: c.label })))),
      h('tbody', {}, rows.length === 0
        ? h('tr', {}, h('td', { colspan: COLUMNS.length, text: 'No units are published yet.' }))
        : rows.map((unit) => h('tr', {
          dataset: { unit: unit.unit, agent: unit.agent, runtime: unit.runtime, state: unit.state ?? '', active: unit.active_version ?? '' },
        }, COLUMNS.map((c) => h('td', { 'data-label': c.label }, c.cell(unit)))))));
  }

  async function poll() {
    clearTimeout(timer);
    if (disposed) return;
    if (watch.inFleet && !document.hidden) {
      try {
        const answer = await api.fleet();
        if (disposed) return;
        units = answer.units;
        problem.textContent = '';
        render();
      } catch (error) {
        if (disposed || error.name === 'AuthRequired') return;
        // During an outage (503) the last units read stay, marked stale.
        problem.textContent = units
          ? `Cannot read the fleet now (${error.message}); showing what it said at the last read.`
          : `Cannot read the fleet: ${error.message}`;
      }
    }
    timer = setTimeout(poll, POLL_MS);
  }

  const unsubscribe = watch.subscribe((state) => {
    body.hidden = !state.inFleet;
    note.hidden = state.inFleet;
    if (!state.inFleet) {
      status.textContent = '';
      problem.textContent = '';
      fill(note, 'This agent is not in a fleet: start it with ', h('code', { text: '--fleet URL' }), ' to share desired versions with other agents.');
      return;
    }
    if (units === null) poll();
  });

  return {
    focus: () => heading.focus(),
    dispose() {
      disposed = true;
      unsubscribe();
      clearTimeout(timer);
    },
  };
}
