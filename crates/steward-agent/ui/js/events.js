// The agent's event stream (GET /v1/events), read with fetch() so that the
// token goes in the Authorization header: EventSource cannot send headers,
// and a token in the URL would end up in logs and history.
//
// One feed per page, shared by the views. It reconnects with backoff;
// after every (re)connection and after a `lagged` message it says so, and
// views re-read what they show (events missed meanwhile are not replayed).

import { send, AuthRequired } from './api.js';

/** How many events the page remembers (the API keeps no history). */
const KEPT = 200;

/**
 * A server-sent-events parser: `push(text)` takes what arrived (in any
 * pieces) and returns the messages completed by it, each `{event, data}`
 * (`event` is "message" unless the stream named it).
 */
export class SseParser {
  constructor() {
    this.buffer = '';
    this.data = null;
    this.event = 'message';
  }

  push(text) {
    this.buffer += text;
    const messages = [];
    let start = 0;
    for (;;) {
      const rest = this.buffer.slice(start);
      const match = /\r\n|\r|\n/.exec(rest);
      if (!match) break;
      // A \r at the very end may be the first half of a \r\n.
      if (match[0] === '\r' && match.index + 1 === rest.length) break;
      const line = rest.slice(0, match.index);
      start += match.index + match[0].length;
      this.line(line, messages);
    }
    this.buffer = this.buffer.slice(start);
    return messages;
  }

  line(line, messages) {
    if (line === '') {
      if (this.data !== null) messages.push({ event: this.event, data: this.data });
      this.data = null;
      this.event = 'message';
      return;
    }
    if (line.startsWith(':')) return; // a keep-alive comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data = this.data === null ? value : `${this.data}\n${value}`;
    else if (field === 'event') this.event = value;
  }
}

/** Reads the server-sent events of a response `body` to its end, passing
 * each message to `dispatch` (shared with the log panel's stream). */
export async function readSse(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    for (const message of parser.push(value)) dispatch(message);
  }
}

export class EventFeed {
  constructor() {
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.events = []; // newest last
    this.status = 'connecting';
    this.controller = null;
    this.running = false;
  }

  /** `listener({type: 'event', event} | {type: 'resync', why})`. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** `listener(status)`: connecting, live, retrying, token. */
  onStatus(listener) {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  /** The remembered events, newest first, optionally of one runtime. */
  recent(runtime, limit = KEPT) {
    const out = [];
    for (let i = this.events.length - 1; i >= 0 && out.length < limit; i--) {
      if (!runtime || this.events[i].runtime === runtime) out.push(this.events[i]);
    }
    return out;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  /** Closes the stream; `status` says why (e.g. `token`). */
  stop(status) {
    this.running = false;
    this.controller?.abort();
    if (status) this.setStatus(status);
  }

  setStatus(status) {
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }

  emit(message) {
    for (const listener of this.listeners) {
      try {
        listener(message);
      } catch (error) {
        console.error('event listener failed', error);
      }
    }
  }

  async loop() {
    let delay = 500;
    while (this.running) {
      this.controller = new AbortController();
      this.setStatus(this.status === 'live' ? 'retrying' : this.status);
      try {
        const response = await send('/v1/events', {
          headers: { Accept: 'text/event-stream' },
          signal: this.controller.signal,
        });
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        this.setStatus('live');
        delay = 500;
        this.emit({ type: 'resync', why: 'connected' });
        await this.read(response.body);
      } catch (error) {
        if (error instanceof AuthRequired) {
          this.running = false;
          this.setStatus('token');
          return;
        }
        if (!this.running) return;
      }
      if (!this.running) return;
      this.setStatus('retrying');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }

  read(body) {
    return readSse(body, (message) => this.dispatch(message));
  }

  dispatch({ event, data }) {
    if (event === 'lagged') {
      this.emit({ type: 'resync', why: 'lagged' });
      return;
    }
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      console.warn('an event that is not JSON', data);
      return;
    }
    this.events.push(parsed);
    if (this.events.length > KEPT) this.events.splice(0, this.events.length - KEPT);
    this.emit({ type: 'event', event: parsed });
  }
}
