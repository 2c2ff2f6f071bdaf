// Helpers of the kiosk browser test: the system Chromium through playwright-core, axe-core, the
// REST API, and the control channel to tests/tests/kiosk.rs (which owns the hub and node
// processes: the script asks it on stdout, it answers "ok" on stdin).

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

// The flags that work as root on these machines (ECOSYSTEM.md); without the background-networking
// ones Chromium floods the closed network with refused connections.
const FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: FLAGS,
    headless: true,
  });
}

export const LANDSCAPE = { width: 1920, height: 1080 };
export const PORTRAIT = { width: 1080, height: 1920 };

/** A page of `base` whose every request must stay on `base` (no CDN, no fonts, no internet). */
export async function kioskPage(browser, base, { locale = 'en-US', viewport = LANDSCAPE } = {}) {
  const context = await browser.newContext({ locale, viewport, hasTouch: true });
  const page = await context.newPage();
  page.external = [];
  page.errors = [];
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(base) && !url.startsWith('data:')) page.external.push(url);
  });
  page.on('pageerror', (e) => page.errors.push(e.message));
  return page;
}

// ---- control channel --------------------------------------------------------------------------

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the Rust side to act on a process (`stop-hub`, `start-hub`, `kill-node`, `start-node`). */
export async function control(command) {
  process.stdout.write(`@@control ${command}\n`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== 'ok') throw new Error(`control ${command}: ${done ? 'no answer' : value}`);
}

// ---- REST API ---------------------------------------------------------------------------------

export async function api(base, method, path, { token, body, key } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  if (key) headers['idempotency-key'] = key;
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

export async function apiOk(base, method, path, opts) {
  const r = await api(base, method, path, opts);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function login(base, email, password) {
  return (await apiOk(base, 'POST', '/v1/auth/login', { body: { email, password } })).token;
}

/** Polls `probe` until it returns a truthy value or `ms` pass. */
export async function eventually(what, probe, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ---- checks -----------------------------------------------------------------------------------

const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** Runs axe-core on the page; fails on any serious or critical violation. */
export async function axe(page, screen) {
  // Evaluated through DevTools, which the page's Content-Security-Policy does not block.
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) throw new Error(`axe on ${screen}: ${JSON.stringify(bad, null, 1)}`);
  return result.length;
}

/** Every visible control is at least 44×44 CSS px and has an accessible label. */
export async function touchTargets(page, screen) {
  const small = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('button, input, select, a[href], [role="button"]')) {
      const r = el.getBoundingClientRect();
      const shown = r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0 && r.left < innerWidth && !el.closest('[hidden]');
      if (shown && (r.width < 44 || r.height < 44)) out.push(`${el.tagName} "${el.textContent || el.getAttribute('aria-label') || el.id}" ${r.width}×${r.height}`);
    }
    return out;
  });
  if (small.length) throw new Error(`touch targets under 44 px on ${screen}: ${small.join('; ')}`);
}

const SHOTS = new URL('./screenshots/', import.meta.url);
mkdirSync(SHOTS, { recursive: true });

export async function shot(page, name) {
  const { width, height } = page.viewportSize();
  const file = new URL(`${name}-${width > height ? 'landscape' : 'portrait'}.png`, SHOTS);
  await page.screenshot({ path: file.pathname });
}
