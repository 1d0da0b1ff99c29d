// Relations as the page shows them: the overview's table of every
// relation (`GET /v1/relations`, re-read on relation events), and a
// runtime page's own relations (from its detail, with the remote end's
// units and the unit's own settings). This module only reads; a relation
// changes through the config alone.

import { api } from './api.js';
import { h, fill, badge } from './dom.js';

const LIFE_KIND = { alive: 'ok', dying: 'warn' };

/** Event kinds after which the relations may read differently: a relation
 * created, dying or gone, and a hook that succeeded (a unit with hooks
 * enters its relations once its `start` hook ran). */
const RELATION_EVENTS = new Set(['relation_created', 'relation_dying', 'relation_removed', 'hook_succeeded']);

/** How often the relations are re-read in a fleet, where other agents'
 * units join and leave without an event on this one. */
const FLEET_POLL_MS = 5000;

export function lifeBadge(state) {
  return badge(state ?? 'unknown', LIFE_KIND[state] ?? 'off');
}

function runtimeLink(runtime) {
  return h('a', { href: `#/runtimes/${encodeURIComponent(runtime)}`, class: 'runtime-link', text: runtime });
}

/** A list of unit names (or a note that there are none yet). */
export function unitList(units, none = 'no units yet') {
  if (!units?.length) return h('span', { class: 'hint-inline', text: none });
  return h('ul', { class: 'units' }, units.map((unit) => h('li', {}, h('code', { text: unit }))));
}

/** One end: `runtime:endpoint` (the runtime linked), then its units. */
function endCell(end) {
  return h('div', { class: 'relation-end', dataset: { runtime: end.runtime, endpoint: end.endpoint } },
    h('span', { class: 'endpoint' }, runtimeLink(end.runtime), `:${end.endpoint}`),
    unitList(end.units));
}

const COLUMNS = ['Relation', 'State', 'End', 'Other end'];

/**
 * The overview's relations panel: hidden while there are none, re-read on
 * relation events and (re)connections, and every few seconds in a fleet.
 */
export class RelationsPanel {
  constructor({ fleet }) {
    this.fleet = fleet;
    this.relations = null;
    this.loading = null;
    this.disposed = false;
    this.status = h('p', { class: 'status-line', role: 'status' });
    this.table = h('table', { class: 'relations cards', 'aria-describedby': 'relations-caption' });
    this.el = h('section', { class: 'panel', id: 'relations', hidden: true, 'aria-labelledby': 'relations-heading' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'relations-heading', text: 'Relations' }), this.status),
      h('p', { id: 'relations-caption', class: 'hint', text: 'Each end is runtime:endpoint with the units the other end sees. Live: re-read on relation events.' }),
      h('div', { class: 'table-wrap' }, this.table));
    this.timer = setInterval(() => {
      if (this.fleet.inFleet && !document.hidden) this.load();
    }, FLEET_POLL_MS);
  }

  /** Whether `event` may change what the panel shows. */
  static concerns(event) {
    return RELATION_EVENTS.has(event.kind);
  }

  /** Re-reads the relations; one asked for while one runs runs after it. */
  async load() {
    if (this.loading) {
      this.loading.again = true;
      return;
    }
    this.loading = { again: false };
    try {
      do {
        this.loading.again = false;
        try {
          const list = await api.relations();
          if (this.disposed) return;
          this.relations = list.relations;
          this.render();
        } catch (error) {
          if (this.disposed || error.name === 'AuthRequired') return;
          this.el.hidden = false;
          this.status.textContent = `Cannot read the relations: ${error.message}`;
        }
      } while (this.loading.again && !this.disposed);
    } finally {
      this.loading = null;
    }
  }

  render() {
    const relations = this.relations ?? [];
    this.el.hidden = relations.length === 0;
    this.status.textContent = `${relations.length} relation${relations.length === 1 ? '' : 's'}`;
    fill(this.table,
      h('thead', {}, h('tr', {}, COLUMNS.map((label) => h('th', { scope: 'col', text: label })))),
      h('tbody', {}, relations.map((relation) => {
        const [first, second] = relation.endpoints;
        return h('tr', { dataset: { relation: relation.id, state: relation.state, peer: String(relation.peer) } },
          h('td', { 'data-label': 'Relation' }, h('span', { class: 'relation-id', text: `#${relation.id}` }),
            relation.peer ? badge('peer', 'busy') : null),
          h('td', { 'data-label': 'State' }, lifeBadge(relation.state)),
          h('td', { 'data-label': 'End' }, first ? endCell(first) : '—'),
          h('td', { 'data-label': 'Other end' }, second
            ? endCell(second)
            : h('span', { class: 'hint-inline', text: `peer: the units of ${first?.runtime ?? 'the runtime'} relate to each other` })));
      })));
  }

  dispose() {
    this.disposed = true;
    clearInterval(this.timer);
  }
}

function settingsList(settings) {
  const entries = Object.entries(settings ?? {});
  if (!entries.length) return h('span', { class: 'hint-inline', text: 'none' });
  return h('dl', { class: 'settings' },
    entries.flatMap(([key, value]) => [h('dt', {}, h('code', { text: key })), h('dd', {}, h('code', { text: value }))]));
}

/**
 * A runtime page's relations panel, filled from the runtime's detail:
 * hidden when it has none.
 */
export function renderRuntimeRelations(panel, id, relations) {
  panel.hidden = !relations?.length;
  if (panel.hidden) return;
  fill(panel,
    h('h2', { id: 'relations-heading', text: 'Relations' }),
    h('p', { class: 'hint', text: `Each relation at one of ${id}’s endpoints, the other end’s units in it, and the settings ${id}’s unit has set in it (relation-set).` }),
    h('div', { class: 'table-wrap' }, h('table', { class: 'relations cards' },
      h('thead', {}, h('tr', {},
        ['Relation', 'State', 'Other end', 'Its units', 'Own settings'].map((label) => h('th', { scope: 'col', text: label })))),
      h('tbody', {}, relations.map((relation) => {
        const peer = relation.remote.runtime === id && relation.remote.endpoint === relation.endpoint;
        return h('tr', { dataset: { relation: relation.id, state: relation.state, peer: String(peer) } },
          h('td', { 'data-label': 'Relation' }, h('code', { text: `${relation.endpoint}:${relation.id}` }),
            peer ? badge('peer', 'busy') : null),
          h('td', { 'data-label': 'State' }, lifeBadge(relation.state)),
          h('td', { 'data-label': 'Other end' },
            h('span', { class: 'endpoint' }, runtimeLink(relation.remote.runtime), `:${relation.remote.endpoint}`)),
          h('td', { 'data-label': 'Its units', class: 'remote-units' }, unitList(relation.remote.units, peer ? 'no other units' : 'no units yet')),
          h('td', { 'data-label': 'Own settings', class: 'own-settings' }, settingsList(relation.settings)));
      })))));
}
