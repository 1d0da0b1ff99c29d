// Pieces that the overview and the runtime page both show: state
// badges, uptime, hook and workload status, event rows.

import { serverClockOffset } from './api.js';
import { h, fill, badge, clock, duration } from './dom.js';

const STATE_KIND = {
  running: 'ok',
  starting: 'busy',
  installing: 'busy',
  restarting: 'warn',
  failed: 'bad',
  stopped: 'off',
};

export function stateBadge(state) {
  return badge(state ?? 'unknown', STATE_KIND[state] ?? 'off');
}

/** Uptime of the active version, from `started_at` (agent's clock). */
export function uptime(detail) {
  if (detail?.state !== 'running' || !detail.started_at) return '—';
  return duration(Date.now() + serverClockOffset - Date.parse(detail.started_at));
}

/** The active version's process id, from a detail's `processes` (a
 * list entry has none, and neither has a runtime between processes). */
export function pidOf(detail) {
  const pid = detail?.processes?.find((process) => process.version === detail.active_version)?.pid;
  return Number.isInteger(pid) ? pid : null;
}

export function hooksText(hooks) {
  if (!hooks) return null;
  if (hooks.state === 'running') return `running ${hooks.hook}`;
  if (hooks.state === 'error') return `error: ${hooks.hook}`;
  return hooks.installed ? 'idle' : 'not installed';
}

export function workloadText(workload) {
  if (!workload) return null;
  return workload.message ? `${workload.status}: ${workload.message}` : workload.status;
}

const EVENT_KIND = {
  started: 'ok',
  switched: 'ok',
  hook_succeeded: 'ok',
  stopped: 'off',
  hook_started: 'busy',
  updated: 'busy',
  failed_to_start: 'bad',
  switch_failed: 'bad',
  hook_failed: 'bad',
  relation_created: 'ok',
  relation_dying: 'warn',
  relation_removed: 'off',
};

/** One event as a list item (`withRuntime`: name the runtime too). */
export function eventRow(event, withRuntime = false) {
  return h('li', { class: 'event', dataset: { kind: event.kind, runtime: event.runtime } },
    h('time', { datetime: event.time, text: clock(event.time) }),
    withRuntime ? h('a', { href: `#/runtimes/${encodeURIComponent(event.runtime)}`, class: 'event-runtime', text: event.runtime }) : null,
    h('span', { class: 'event-version', text: event.version }),
    badge(event.kind, EVENT_KIND[event.kind] ?? 'off'),
    event.message ? h('span', { class: 'event-message', text: event.message }) : null);
}

/**
 * A live list of the latest events (of one runtime, or of all): filled
 * from the feed's memory, then one item added at the top per event, so
 * that a screen reader announces only the new one.
 */
export class EventList {
  constructor(feed, { runtime = null, limit, empty }) {
    this.feed = feed;
    this.runtime = runtime;
    this.limit = limit;
    this.empty = empty;
    this.el = h('ol', { class: 'events', 'aria-live': 'polite', 'aria-relevant': 'additions' });
    this.render();
  }

  render() {
    const recent = this.feed.recent(this.runtime, this.limit);
    fill(this.el, recent.length
      ? recent.map((event) => eventRow(event, !this.runtime))
      : h('li', { class: 'hint', text: this.empty }));
  }

  add(event) {
    if (this.runtime && event.runtime !== this.runtime) return;
    this.el.querySelector('li.hint')?.remove();
    this.el.prepend(eventRow(event, !this.runtime));
    while (this.el.children.length > this.limit) this.el.lastElementChild.remove();
  }
}
