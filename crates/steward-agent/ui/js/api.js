// The agent's control API, as the page uses it: same origin, JSON, and
// the bearer token when the agent has one.
//
// The token lives in this tab's sessionStorage only (gone when the tab
// closes) and travels in the Authorization header only: never in a URL,
// a cookie or the page's markup. A 401 forgets it and asks for it again.

const TOKEN_KEY = 'steward.token';

/** The agent refused the request for want of the right token. */
export class AuthRequired extends Error {
  constructor(refused) {
    super(refused ? 'the agent refused this token' : 'this agent needs its token');
    this.name = 'AuthRequired';
    /** Whether a token was sent (and refused), rather than none. */
    this.refused = refused;
  }
}

/** An error answer of the API: `{"error": {module, code, message}}`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail?.message ?? `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.module = detail?.module ?? 'steward';
    this.code = detail?.code ?? status;
  }
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: ask every time
  }
}

export function setToken(value) {
  try {
    sessionStorage.setItem(TOKEN_KEY, value);
  } catch {
    // Storage disabled: the token lasts until the page reloads.
    memoryToken = value;
  }
}

let memoryToken = null;

function currentToken() {
  return token() ?? memoryToken;
}

function forgetToken() {
  memoryToken = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored
  }
}

const authListeners = new Set();

/** Calls `listener(error)` whenever a request is refused with 401. */
export function onAuthRequired(listener) {
  authListeners.add(listener);
  return () => authListeners.delete(listener);
}

/** How far the agent's clock is ahead of this browser's, in ms (from the
 * `Date` header of its answers; uptimes are computed with it). */
export let serverClockOffset = 0;

/** `fetch` with the token; a 401 becomes an `AuthRequired` (and the
 * token is forgotten). Other statuses are the caller's. */
export async function send(path, init = {}) {
  const headers = new Headers(init.headers);
  const sent = currentToken();
  if (sent) headers.set('Authorization', `Bearer ${sent}`);
  const response = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' });
  const date = response.headers.get('Date');
  if (date) {
    const at = Date.parse(date);
    if (!Number.isNaN(at)) serverClockOffset = at + 500 - Date.now();
  }
  if (response.status === 401) {
    if (sent && currentToken() === sent) forgetToken();
    const error = new AuthRequired(Boolean(sent));
    for (const listener of authListeners) listener(error);
    throw error;
  }
  return response;
}

/** A JSON request; resolves to the answer's JSON, rejects with ApiError. */
export async function request(method, path, body, { signal } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await send(path, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(response.status, { message: `not JSON: ${text.slice(0, 200)}` });
  }
  if (!response.ok) throw new ApiError(response.status, json?.error);
  return json;
}

export const get = (path, options) => request('GET', path, undefined, options);

const enc = encodeURIComponent;

export const api = {
  list: (options) => get('/v1/runtimes', options),
  detail: (id, options) => get(`/v1/runtimes/${enc(id)}`, options),
  stats: (id, seconds, options) => get(`/v1/runtimes/${enc(id)}/stats?seconds=${seconds}`, options),
  switchVersion: (id, version) => request('PUT', `/v1/runtimes/${enc(id)}/version`, { version }),
  abort: (id, force) => request('POST', `/v1/runtimes/${enc(id)}/abort`, { force }),
  resolve: (id, retry) => request('POST', `/v1/runtimes/${enc(id)}/resolve`, { retry }),
  relations: (options) => get('/v1/relations', options),
  fleet: (options) => get('/v1/fleet', options),
  health: (options) => get('/healthz', options),
};
