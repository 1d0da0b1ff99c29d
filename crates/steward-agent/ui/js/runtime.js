// A runtime's page: its state, its versions with a switch button (after a
// confirmation), abort, its hooks (with resolve when one failed), its
// relations (the remote end's units, its own settings), live
// plots of calls, errors and latency per version, its latest events
// (live), and its recent log lines (live).

import { api } from './api.js';
import { h, fill, badge, clock, confirmDialog } from './dom.js';
import { EventList, hooksText, pidOf, stateBadge, uptime, workloadText } from './parts.js';
import { Plots } from './plots.js';
import { LogPanel } from './logs.js';
import { renderRuntimeRelations } from './relations.js';

/** The plot windows offered, in seconds (the agent keeps 299). */
const WINDOWS = [60, 120, 299];
const DEFAULT_WINDOW = 60;

/** How many of the runtime's latest events the page lists. */
const SHOWN_EVENTS = 50;

function row(label, value) {
  return [h('dt', { text: label }), h('dd', {}, value ?? '—')];
}

/** How often the detail is re-read in a fleet, where other agents' units
 * join and leave this runtime's relations without an event here. */
const FLEET_POLL_MS = 5000;

export function mountRuntime(main, { feed, fleet, id }) {
  let detail = null;
  let disposed = false;
  let busy = false; // a switch or abort in flight
  let windowSeconds = DEFAULT_WINDOW;
  let statsTimer = null;
  let loading = null;

  const heading = h('h1', { tabindex: '-1' }, id);
  const stateSlot = h('span', { class: 'heading-state' });
  const facts = h('dl', { class: 'facts' });
  const hooksPanel = h('section', { class: 'panel', hidden: true, 'aria-labelledby': 'hooks-heading' });
  const relationsPanel = h('section', { class: 'panel', id: 'relations', hidden: true, 'aria-labelledby': 'relations-heading' });
  const versions = h('table', { class: 'versions' });
  const actionStatus = h('p', { class: 'action-status', role: 'status', 'aria-live': 'polite' });
  const abortButton = h('button', { type: 'button', class: 'button danger', text: 'Abort calls in progress…', onclick: abort });
  const plotsBox = h('div', { class: 'plots' });
  const windowSelect = h('select', { id: 'plot-window', onchange: () => { windowSeconds = Number(windowSelect.value); pollStats(); } },
    WINDOWS.map((s) => h('option', { value: s, selected: s === DEFAULT_WINDOW, text: s >= 120 ? `last ${Math.round(s / 60)} minutes` : 'last minute' })));
  const plotsStatus = h('p', { class: 'hint plots-status' });
  const events = new EventList(feed, {
    runtime: id,
    limit: SHOWN_EVENTS,
    empty: 'No events since this page was opened; they appear here as they happen.',
  });
  const logs = new LogPanel(id);

  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/', text: '← All runtimes' })),
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, heading, stateSlot),
      facts),
    hooksPanel,
    h('section', { class: 'panel', 'aria-labelledby': 'versions-heading' },
      h('h2', { id: 'versions-heading', text: 'Versions' }),
      h('div', { class: 'table-wrap' }, versions),
      h('div', { class: 'actions' }, abortButton),
      actionStatus),
    relationsPanel,
    h('section', { class: 'panel', 'aria-labelledby': 'traffic-heading' },
      h('div', { class: 'panel-head' },
        h('h2', { id: 'traffic-heading', text: 'Traffic' }),
        h('label', { for: 'plot-window', class: 'inline-label' }, 'Window ', windowSelect)),
      h('p', { class: 'hint', text: 'Calls made through the API, per version and second; updated every second.' }),
      plotsBox, plotsStatus),
    h('section', { class: 'panel', 'aria-labelledby': 'events-heading' },
      h('h2', { id: 'events-heading', text: 'Latest events' }),
      events.el),
    logs.el);

  const plots = new Plots(plotsBox);

  function renderFacts() {
    if (!detail) return;
    fill(stateSlot, stateBadge(detail.state));
    fill(facts,
      row('Active version', detail.active_version),
      row('Desired version', detail.desired_version),
      row('Uptime', h('span', { class: 'uptime', text: uptime(detail) })),
      row('Started', detail.started_at ? `${clock(detail.started_at)} (${new Date(detail.started_at).toLocaleDateString()})` : null),
      row('Restarts', String(detail.restarts)),
      pidOf(detail) !== null ? row('PID', String(pidOf(detail))) : null,
      row('Switching', detail.transition),
      row('Call timeout', `${detail.call_timeout_ms / 1000} s`),
      row('Protocol', detail.info ? `${detail.info.protocol_version} (reports ${detail.info.runtime_version})` : null),
      detail.workload ? row('Workload', workloadText(detail.workload)) : null,
      row('Last error', detail.last_error ? h('span', { class: 'error-text', text: detail.last_error }) : null));
  }

  function renderHooks() {
    const hooks = detail?.hooks;
    hooksPanel.hidden = !hooks;
    if (!hooks) return;
    const buttons = hooks.state === 'error'
      ? h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button primary', text: `Retry ${hooks.hook}`, onclick: () => resolve(true) }),
        h('button', { type: 'button', class: 'button', text: `Skip ${hooks.hook}…`, onclick: () => resolve(false) }))
      : null;
    const last = hooks.last;
    fill(hooksPanel,
      h('h2', { id: 'hooks-heading', text: 'Hooks' }),
      h('dl', { class: 'facts' },
        row('State', hooks.state === 'error' ? badge(hooksText(hooks), 'bad') : hooksText(hooks)),
        hooks.message ? row('Why', h('span', { class: 'error-text', text: hooks.message })) : null,
        row('Last hook', last ? `${last.hook}: ${last.outcome} (${last.duration_ms} ms, ${clock(last.finished_at)})` : null)),
      buttons);
  }

  function renderVersions() {
    if (!detail) return;
    fill(versions,
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'Version' }),
        h('th', { scope: 'col', text: 'Status' }),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden', text: 'Action' })))),
      h('tbody', {}, detail.versions.map((version) => {
        const active = version === detail.active_version;
        const desired = version === detail.desired_version;
        const marks = [
          active ? badge('active', 'ok') : null,
          desired && !active ? badge('desired', 'busy') : null,
        ];
        const button = h('button', {
          type: 'button',
          class: 'button primary',
          disabled: active || busy || !detail.active_version,
          'aria-label': `Switch ${id} to ${version}`,
          dataset: { version },
          text: active ? 'Active' : `Switch to ${version}`,
          onclick: () => switchTo(version),
        });
        return h('tr', { dataset: { version, active: String(active) } },
          h('th', { scope: 'row', text: version }),
          h('td', {}, marks.some(Boolean) ? marks : '—'),
          h('td', { class: 'num' }, button));
      })));
    abortButton.disabled = busy || detail.state !== 'running';
  }

  function render() {
    renderFacts();
    renderHooks();
    renderVersions();
    if (detail) renderRuntimeRelations(relationsPanel, id, detail.relations);
    if (detail) logs.setVersions(detail.versions);
  }

  async function load() {
    if (loading) {
      loading.again = true;
      return;
    }
    loading = { again: false };
    try {
      do {
        loading.again = false;
        try {
          detail = await api.detail(id);
          if (disposed) return;
          document.title = `${id} · Steward`;
          render();
        } catch (error) {
          if (disposed || error.name === 'AuthRequired') return;
          if (error.status === 404) {
            fill(facts, h('p', { class: 'error-text', text: `No runtime ${id}: ${error.message}` }));
            return;
          }
          actionStatus.textContent = `Cannot read ${id}: ${error.message}`;
        }
      } while (loading.again && !disposed);
    } finally {
      loading = null;
    }
  }

  async function pollStats() {
    clearTimeout(statsTimer);
    if (disposed) return;
    if (document.hidden) {
      // Nobody looks: look again in a second (and read it all then).
      statsTimer = setTimeout(pollStats, 1000);
      return;
    }
    try {
      const stats = await api.stats(id, windowSeconds);
      if (disposed) return;
      plots.update(detail?.versions ?? [], stats);
      plotsStatus.textContent = '';
    } catch (error) {
      if (disposed || error.name === 'AuthRequired') return;
      plotsStatus.textContent = `Cannot read the stats: ${error.message}`;
    }
    statsTimer = setTimeout(pollStats, 1000);
  }

  async function switchTo(version) {
    const from = detail?.active_version ?? 'no version';
    const confirmed = await confirmDialog({
      title: `Switch ${id} to ${version}?`,
      body: [
        h('p', {}, `${id} runs ${from} now. `,
          detail?.transition === 'stop-then-start'
            ? `${from} is stopped first, then ${version} starts: calls fail until it serves.`
            : `${version} starts next to ${from}; once it serves, new calls go to it and ${from} stops after its calls in progress end.`),
        // In a fleet the desired version is the fleet's, not this agent's.
        fleet.inFleet
          ? h('p', { class: 'fleet-note', text: `This agent is in a fleet: ${id} switches to ${version} on every agent of the fleet.` })
          : null,
      ],
      confirmLabel: `Switch to ${version}`,
    });
    if (!confirmed || disposed) return;
    busy = true;
    renderVersions();
    actionStatus.textContent = `Switching ${id} to ${version}…`;
    actionStatus.dataset.outcome = 'pending';
    try {
      const answer = await api.switchVersion(id, version);
      // The agent waited for its own switch only: in a fleet the others
      // follow the desired version on their own, and the Fleet page
      // shows each of them.
      fill(actionStatus, `Switched ${id} to ${answer.version}${answer.fleet ? ' on this agent' : ''} (was ${answer.previous ?? 'none'}).`,
        answer.fleet
          ? [' The other agents of the fleet follow: ', h('a', { href: '#/fleet', text: 'the Fleet page' }), ' shows each unit.']
          : null);
      actionStatus.dataset.outcome = 'ok';
    } catch (error) {
      actionStatus.textContent = `The switch to ${version} failed: ${error.message}`;
      actionStatus.dataset.outcome = 'error';
    } finally {
      busy = false;
      if (!disposed) load();
    }
  }

  async function abort() {
    const force = h('input', { type: 'checkbox', id: 'abort-force' });
    const confirmed = await confirmDialog({
      title: `Abort ${id}'s calls in progress?`,
      body: [
        h('p', { text: 'The runtime is asked to abandon its calls in progress; they fail with its “aborted” error. If it does not answer within its abort timeout (1 s unless the config says otherwise), its process is killed and restarted.' }),
        h('p', {}, h('label', { class: 'check' }, force, ' Force: kill and restart the process at once')),
      ],
      confirmLabel: 'Abort',
      danger: true,
    });
    if (!confirmed || disposed) return;
    busy = true;
    renderVersions();
    actionStatus.textContent = `Aborting ${id}…`;
    actionStatus.dataset.outcome = 'pending';
    try {
      const answer = await api.abort(id, force.checked);
      actionStatus.textContent = {
        abandoned: `${id} aborted its calls in progress.`,
        killed: answer.force ? `${id} was killed and is restarting.` : `${id} did not abandon its calls when asked, so it was killed and is restarting.`,
        not_running: `No process of ${id} was serving: nothing was aborted.`,
      }[answer.outcome] ?? `${id}: abort done (${answer.outcome}).`;
      actionStatus.dataset.outcome = 'ok';
    } catch (error) {
      actionStatus.textContent = `Abort failed: ${error.message}`;
      actionStatus.dataset.outcome = 'error';
    } finally {
      busy = false;
      if (!disposed) load();
    }
  }

  async function resolve(retry) {
    const hook = detail?.hooks?.hook;
    if (!retry) {
      const confirmed = await confirmDialog({
        title: `Skip ${hook}?`,
        body: [h('p', { text: `${hook} is marked done without running it again; the changes it would have made are dropped, and the hooks after it run.` })],
        confirmLabel: `Skip ${hook}`,
        danger: true,
      });
      if (!confirmed || disposed) return;
    }
    try {
      await api.resolve(id, retry);
      actionStatus.textContent = retry ? `${hook} runs again.` : `${hook} was skipped.`;
    } catch (error) {
      actionStatus.textContent = `Resolve failed: ${error.message}`;
    }
    load();
  }

  const unsubscribe = feed.subscribe((message) => {
    if (message.type === 'resync') {
      load();
      return;
    }
    if (message.event.runtime !== id) return;
    load();
    events.add(message.event);
  });
  const ticker = setInterval(() => {
    const el = facts.querySelector('.uptime');
    if (el) el.textContent = uptime(detail);
  }, 1000);
  const fleetTimer = setInterval(() => {
    if (fleet.inFleet && !document.hidden) load();
  }, FLEET_POLL_MS);

  load().then(() => pollStats());
  logs.start();
  return {
    focus: () => heading.focus(),
    dispose() {
      disposed = true;
      unsubscribe();
      clearInterval(ticker);
      clearInterval(fleetTimer);
      clearTimeout(statsTimer);
      plots.destroy();
      logs.stop();
    },
  };
}
