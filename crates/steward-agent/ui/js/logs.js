// A runtime's recent output lines, live: its versions' stdout and stderr
// and its hooks' (GET /v1/runtimes/{id}/logs?follow=true), read with
// fetch() like the event feed, so that the token goes in the header.
//
// The stream sends the tail first, then each new line. After a broken
// connection the panel reads the tail again (it replaces what it shows:
// lines are never shown twice); a `lagged` message, from an agent whose
// output outran this page, shows how many lines the page missed. The
// panel keeps at most SHOWN lines in the page.

import { send, AuthRequired } from './api.js';
import { h, fill, clock } from './dom.js';
import { readSse } from './events.js';

/** How many lines the panel shows (and asks for on each connection). */
const SHOWN = 200;

/** Answers that asking again would not change: 404 (no such runtime or
 * version) and 409 (the runtime keeps no lines). */
const PERMANENT = new Set([404, 409]);

function lineRow(line) {
  const source = line.hook ? `hook:${line.hook}` : line.version;
  return h('li', {
    class: 'log-line',
    dataset: { stream: line.stream, source: line.source, version: line.version, seq: String(line.seq) },
  },
  h('time', { datetime: line.time, text: clock(line.time) }),
  h('span', { class: 'log-source', text: source, title: line.hook ? `hook ${line.hook} of version ${line.version}` : `version ${line.version}` }),
  h('span', { class: 'log-stream', text: line.stream }),
  h('span', { class: 'log-text', text: line.dropped ? `${line.text}  (${line.dropped} lines lost before this one)` : line.text }));
}

export class LogPanel {
  constructor(id) {
    this.id = id;
    this.version = '';
    this.running = false;
    this.disposed = false;
    this.controller = null;
    this.list = h('ol', { class: 'logs', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': `Log lines of ${id}` });
    this.status = h('p', { class: 'hint logs-status', role: 'status' });
    this.select = h('select', { id: 'logs-version', onchange: () => this.filter(this.select.value) },
      h('option', { value: '', text: 'all versions' }));
    this.el = h('section', { class: 'panel', 'aria-labelledby': 'logs-heading' },
      h('div', { class: 'panel-head' },
        h('h2', { id: 'logs-heading', text: 'Log lines' }),
        h('label', { for: 'logs-version', class: 'inline-label' }, 'Show ', this.select)),
      h('p', { class: 'hint', text: 'The runtime’s stdout and stderr, and its hooks’ output, as the agent reads them; newest last.' }),
      this.list, this.status);
  }

  /** Offers `versions` in the version filter (keeping the choice). */
  setVersions(versions) {
    const known = [...this.select.options].map((option) => option.value).slice(1);
    if (known.join('\n') === versions.join('\n')) return;
    fill(this.select, h('option', { value: '', text: 'all versions' }),
      versions.map((version) => h('option', { value: version, text: version, selected: version === this.version })));
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() {
    this.disposed = true;
    this.running = false;
    this.controller?.abort();
  }

  filter(version) {
    this.version = version;
    this.controller?.abort(); // the loop reconnects with the new filter at once
    if (!this.running && !this.disposed) this.start(); // it had stopped on a permanent error
  }

  async loop() {
    let delay = 500;
    while (this.running) {
      this.controller = new AbortController();
      const params = new URLSearchParams({ follow: 'true', tail: String(SHOWN) });
      if (this.version) params.set('version', this.version);
      let filterChanged = false;
      try {
        const response = await send(`/v1/runtimes/${encodeURIComponent(this.id)}/logs?${params}`, {
          headers: { Accept: 'text/event-stream' },
          signal: this.controller.signal,
        });
        if (!response.ok || !response.body) {
          let message = `HTTP ${response.status}`;
          try {
            message = (await response.json()).error.message;
          } catch {
            // not an error body
          }
          throw Object.assign(new Error(message), { status: response.status });
        }
        fill(this.list);
        this.status.textContent = '';
        delay = 500;
        await this.read(response.body);
        if (this.running) this.status.textContent = 'The agent ended the log stream; reconnecting…';
      } catch (error) {
        if (error instanceof AuthRequired) {
          this.running = false;
          this.status.textContent = 'The agent needs its token to show log lines.';
          return;
        }
        if (!this.running) return;
        if (PERMANENT.has(error.status)) {
          // Asking again gets the same answer (the runtime keeps no lines,
          // or has no such version): say so once, and wait for another
          // filter.
          this.running = false;
          this.status.textContent = `Cannot read the log lines: ${error.message}`;
          return;
        }
        filterChanged = error.name === 'AbortError';
        if (!filterChanged) this.status.textContent = `Cannot read the log lines: ${error.message}; retrying…`;
      }
      if (!this.running) return;
      if (filterChanged) continue;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }

  read(body) {
    return readSse(body, (message) => this.dispatch(message));
  }

  dispatch({ event, data }) {
    if (event === 'lagged') {
      let missed = '?';
      try {
        missed = JSON.parse(data).missed;
      } catch {
        // keep '?'
      }
      // The count is of every version's lines: under a filter, some of
      // them would not have been shown anyway.
      const count = this.version ? `up to ${missed}` : missed;
      this.append(h('li', { class: 'log-line log-lagged', text: `… ${count} lines missed: the agent read them faster than this page could take them` }));
      return;
    }
    let line;
    try {
      line = JSON.parse(data);
    } catch {
      console.warn('a log line that is not JSON', data);
      return;
    }
    this.append(lineRow(line));
  }

  append(row) {
    // Follow the end only when the reader is at the end already.
    const atEnd = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 24;
    this.list.append(row);
    while (this.list.children.length > SHOWN) this.list.firstElementChild.remove();
    if (atEnd) this.list.scrollTop = this.list.scrollHeight;
  }
}
