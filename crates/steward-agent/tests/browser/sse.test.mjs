// Unit tests of the page's server-sent-events parser (ui/js/events.js),
// which reads GET /v1/events through fetch() in pieces of any size.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../../ui/js/events.js';

const STREAM = ': keep-alive\n\n'
  + 'data: {"runtime":"echo","kind":"started"}\n\n'
  + 'event: lagged\r\ndata: {"missed":3}\r\n\r\n'
  + 'data:first\rdata: second\r\r'
  + 'id: 7\nretry: 10\ndata\n\n';

const EXPECTED = [
  { event: 'message', data: '{"runtime":"echo","kind":"started"}' },
  { event: 'lagged', data: '{"missed":3}' },
  { event: 'message', data: 'first\nsecond' },
  { event: 'message', data: '' },
];

test('a whole stream parses into its messages', () => {
  assert.deepEqual(new SseParser().push(STREAM), EXPECTED);
});

test('every split of the stream into two pieces gives the same messages', () => {
  for (let at = 0; at <= STREAM.length; at++) {
    const parser = new SseParser();
    const messages = [...parser.push(STREAM.slice(0, at)), ...parser.push(STREAM.slice(at))];
    assert.deepEqual(messages, EXPECTED, `split at ${at}`);
  }
});

test('one character at a time gives the same messages', () => {
  const parser = new SseParser();
  const messages = [];
  for (const char of STREAM) messages.push(...parser.push(char));
  assert.deepEqual(messages, EXPECTED);
});

test('a message is dispatched only at its blank line', () => {
  const parser = new SseParser();
  assert.deepEqual(parser.push('data: {"a":1}\n'), []);
  assert.deepEqual(parser.push('\n'), [{ event: 'message', data: '{"a":1}' }]);
});
