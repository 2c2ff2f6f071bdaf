// The public REST API, as any client uses it. The bearer token lives in this module's memory only:
// never in localStorage or sessionStorage, so a shared screen cannot leak it to the next shopper
// and a reload (or the idle sign-out) forgets it.

let token = null;
const listeners = new Set();

/** A problem document from the API (RFC 9457), with its HTTP status. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/** The node did not answer at all (stopped, restarting, network down). */
export class Unreachable extends Error {}

export function setToken(value) {
  token = value;
}

export function signedIn() {
  return token !== null;
}

/** `fn(reachable)` is called whenever a request reaches the node or fails to. */
export function onReachability(fn) {
  listeners.add(fn);
}

function report(reachable) {
  for (const fn of listeners) fn(reachable);
}

/** A random key for `Idempotency-Key` (crypto.randomUUID needs a secure context; a kiosk on a
 *  store LAN may be plain http). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function request(method, path, { body, key, timeoutMs = 8000 } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  if (key) headers['Idempotency-Key'] = key;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: abort.signal,
      cache: 'no-store',
    });
  } catch (e) {
    report(false);
    throw new Unreachable(String(e));
  } finally {
    clearTimeout(timer);
  }
  report(true);
  let data = null;
  const text = await response.text().catch(() => '');
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts = {}) => request('POST', path, { ...opts, body });

/** Every item of a cursor-paginated list (at most `maxPages` pages of 100). */
export async function getAll(path, maxPages = 50) {
  const items = [];
  let token = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${sep}page_size=100${token ? `&page_token=${encodeURIComponent(token)}` : ''}`);
    items.push(...page.items);
    token = page.next_page_token;
    if (!token) break;
  }
  return items;
}

/** Runs `fn` until the node answers: a request that could not reach it is retried (with the same
 *  idempotency key, so nothing happens twice) once it is back. */
export async function whenReachable(fn, { attempts = 60, delayMs = 1000 } = {}) {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof Unreachable) || i >= attempts) throw e;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
