// The overview: every runtime in one table (current state first), kept
// live from the event stream: an event of a runtime re-reads that
// runtime, a (re)connection or a lagged stream re-reads them all. Below
// it, the relations (re-read on relation events) and the latest events of
// all runtimes.

import { api } from './api.js';
import { h, fill, badge } from './dom.js';
import { EventList, hooksText, pidOf, stateBadge, uptime, workloadText } from './parts.js';
import { RelationsPanel } from './relations.js';

/** How many of the latest events the overview lists. */
const SHOWN_EVENTS = 15;

const COLUMNS = [
  { key: 'id', label: 'Runtime' },
  { key: 'state', label: 'State' },
  { key: 'active', label: 'Active' },
  { key: 'desired', label: 'Desired' },
  { key: 'restarts', label: 'Restarts', numeric: true },
  { key: 'uptime', label: 'Uptime', numeric: true },
  { key: 'pid', label: 'PID', numeric: true, optional: (details) => details.some((d) => pidOf(d) !== null) },
  { key: 'workload', label: 'Workload', optional: (details) => details.some((d) => d.workload) },
  { key: 'hooks', label: 'Hooks', optional: (details) => details.some((d) => d.hooks) },
  { key: 'error', label: 'Last error' },
];

function cell(column, runtime) {
  const detail = runtime;
  switch (column.key) {
    case 'id':
      return h('a', { href: `#/runtimes/${encodeURIComponent(runtime.id)}`, class: 'runtime-link', text: runtime.id });
    case 'state':
      return stateBadge(runtime.state);
    case 'active':
      return runtime.active_version ?? '—';
    case 'desired': {
      // No desired version (a fleet agent cut off from etcd) is no switch.
      const desired = runtime.desired_version ?? '—';
      return runtime.desired_version && desired !== (runtime.active_version ?? '—')
        ? h('span', { class: 'pending', title: 'switching to this version', text: `${desired} (pending)` })
        : desired;
    }
    case 'restarts':
      return String(detail.restarts ?? '—');
    case 'uptime':
      return h('span', { class: 'uptime', text: uptime(detail) });
    case 'pid':
      return String(pidOf(detail) ?? '—');
    case 'workload':
      return workloadText(detail.workload) ?? '—';
    case 'hooks': {
      const text = hooksText(detail.hooks);
      if (!text) return '—';
      return detail.hooks.state === 'error' ? badge(text, 'bad') : text;
    }
    case 'error':
      return detail.last_error ? h('span', { class: 'error-text', text: detail.last_error }) : '—';
    default:
      return '';
  }
}

export function mountOverview(main, { feed, fleet }) {
  const details = new Map(); // id → detail (or summary until the detail arrives)
  let order = [];
  let disposed = false;
  const refreshing = new Map(); // id → {again}

  const status = h('p', { class: 'status-line', role: 'status' });
  const table = h('table', { class: 'runtimes cards', 'aria-describedby': 'runtimes-caption' });
  const events = new EventList(feed, { limit: SHOWN_EVENTS, empty: 'Events from now on appear here.' });
  const heading = h('h1', { tabindex: '-1', text: 'Runtimes' });
  const relations = new RelationsPanel({ fleet });
  fill(main,
    h('section', { class: 'panel', 'aria-labelledby': 'runtimes-heading' },
      h('div', { class: 'panel-head' }, Object.assign(heading, { id: 'runtimes-heading' }), status),
      h('p', { id: 'runtimes-caption', class: 'hint', text: 'Live: updated from the agent’s event stream. Select a runtime for its versions, plots and events.' }),
      h('div', { class: 'table-wrap' }, table)),
    relations.el,
    h('section', { class: 'panel', 'aria-labelledby': 'events-heading' },
      h('h2', { id: 'events-heading', text: 'Latest events' }),
      events.el));

  function render() {
    const rows = order.map((id) => details.get(id)).filter(Boolean);
    const columns = COLUMNS.filter((c) => !c.optional || c.optional(rows));
    fill(table,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.numeric ? 'num' : null, text: c.label })))),
      h('tbody', {}, rows.length === 0
        ? h('tr', {}, h('td', { colspan: columns.length, text: 'No runtimes in the config.' }))
        : rows.map((runtime) => h('tr', { dataset: { runtime: runtime.id, state: runtime.state, active: runtime.active_version ?? '' } },
          columns.map((c) => h('td', { 'data-label': c.label, class: c.numeric ? 'num' : null }, cell(c, runtime)))))));
  }

  async function loadAll() {
    try {
      const list = await api.list();
      if (disposed) return;
      order = list.runtimes.map((r) => r.id);
      for (const summary of list.runtimes) {
        // Keep the fuller detail until its refresh lands; the list's
        // fields are fresher.
        details.set(summary.id, { ...(details.get(summary.id) ?? {}), ...summary });
      }
      for (const id of [...details.keys()]) if (!order.includes(id)) details.delete(id);
      render();
      status.textContent = `${order.length} runtime${order.length === 1 ? '' : 's'}`;
      await Promise.all(order.map((id) => refresh(id)));
    } catch (error) {
      if (!disposed && error.name !== 'AuthRequired') status.textContent = `Cannot read the runtimes: ${error.message}`;
    }
  }

  /** Re-reads one runtime; a refresh asked for while one runs runs after it. */
  async function refresh(id) {
    const running = refreshing.get(id);
    if (running) {
      running.again = true;
      return running.promise;
    }
    const entry = { again: false };
    entry.promise = (async () => {
      do {
        entry.again = false;
        try {
          const detail = await api.detail(id);
          if (disposed) return;
          details.set(id, detail);
          if (!order.includes(id)) order = [...order, id].sort();
          render();
        } catch (error) {
          if (error.status === 404) {
            details.delete(id);
            order = order.filter((known) => known !== id);
            render();
          } else if (error.name === 'AuthRequired') {
            return;
          }
        }
      } while (entry.again && !disposed);
    })();
    refreshing.set(id, entry);
    try {
      await entry.promise;
    } finally {
      refreshing.delete(id);
    }
  }

  const unsubscribe = feed.subscribe((message) => {
    if (message.type === 'resync') {
      loadAll();
      relations.load();
    } else {
      refresh(message.event.runtime);
      if (RelationsPanel.concerns(message.event)) relations.load();
      events.add(message.event);
    }
  });
  const ticker = setInterval(() => {
    for (const el of table.querySelectorAll('tr[data-runtime] .uptime')) {
      const id = el.closest('tr').dataset.runtime;
      el.textContent = uptime(details.get(id));
    }
  }, 1000);

  render();
  loadAll();
  relations.load();
  return {
    focus: () => heading.focus(),
    dispose() {
      disposed = true;
      relations.dispose();
      unsubscribe();
      clearInterval(ticker);
    },
  };
}
