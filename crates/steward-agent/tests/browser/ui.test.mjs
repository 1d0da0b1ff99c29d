// Browser tests of Steward's web UI, in a real headless Chromium driven by
// playwright-core. Run by crates/steward-agent/tests/e2e/browser.rs, which
// starts the agents (the real `steward run` with its demo) and passes:
//
//   STEWARD_URL         an agent without a token
//   STEWARD_TOKEN_URL   an agent with a token file, and STEWARD_TOKEN its token
//   STEWARD_HOOKS_URL   an agent whose runtime echo has hooks, config-changed failing
//   STEWARD_RELATIONS_URL  an agent (named ui) of echo and kv related as echo:client –
//                       kv:store, kv with a peer relation cluster; its config file is
//                       STEWARD_RELATIONS_CONFIG, and STEWARD_RELATIONS_UNRELATED the same
//                       without the relation (moved over it to remove the relation)
//   STEWARD_FLEET_URL   one of two demo agents (ui-a, ui-b) in a fleet on etcd, whose
//                       process is STEWARD_ETCD_PID (frozen to cut the fleet off)
//   STEWARD_CHROMIUM    the Chromium executable
//   STEWARD_ARTIFACTS   where screenshots go
//
// Every wait has a deadline; nothing sleeps and hopes.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through \`cargo test --test e2e browser\``);
  return value;
};

const OPEN = env('STEWARD_URL');
const PROTECTED = env('STEWARD_TOKEN_URL');
const TOKEN = env('STEWARD_TOKEN');
const HOOKED = env('STEWARD_HOOKS_URL');
const RELATED = env('STEWARD_RELATIONS_URL');
const RELATIONS_CONFIG = env('STEWARD_RELATIONS_CONFIG');
const RELATIONS_UNRELATED = env('STEWARD_RELATIONS_UNRELATED');
const FLEET = env('STEWARD_FLEET_URL');
const ETCD_PID = Number(env('STEWARD_ETCD_PID'));
const ARTIFACTS = env('STEWARD_ARTIFACTS');
const CHROMIUM = env('STEWARD_CHROMIUM');

/** How long any one thing the page should do may take on a loaded machine. */
const WAIT = 30_000;

mkdirSync(ARTIFACTS, { recursive: true });

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root Chromium needs --no-sandbox; the rest keeps it off the
    // network (the machine's network is closed, and the page must not need it).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
});

/**
 * A page that records what must never happen: a request to another
 * origin, a script error, a console error (a CSP violation is one), all
 * asserted by `check()`. `allowed` matches console errors that a test
 * expects (a 401 answer is logged as "Failed to load resource").
 */
async function watchedPage(context, origin, { allowed = [] } = {}) {
  const page = await context.newPage();
  const problems = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.origin !== origin) problems.push(`a request to another origin: ${request.url()}`);
  });
  page.on('pageerror', (error) => problems.push(`a script error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (!allowed.some((pattern) => pattern.test(text))) problems.push(`a console error: ${text}`);
  });
  page.check = () => assert.deepEqual(problems, [], 'the page did something it must not');
  return page;
}

/** A fresh browser profile with a laptop-sized window. */
const desktop = () => browser.newContext({ viewport: { width: 1280, height: 800 } });

async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/**
 * Waits until the overview lists `id` with `active` as its active version.
 * Scoped to the overview's table: the fleet page's rows carry
 * `data-runtime` too, one per agent, and may still be on the page for a
 * moment after a click on "Runtimes".
 */
async function rowWithVersion(page, id, active) {
  const row = page.locator(`table.runtimes tr[data-runtime="${id}"][data-active="${active}"]`);
  await row.waitFor({ timeout: WAIT });
  return row;
}

/** The process id of `id`'s active version, as the API reports it. */
async function activePid(base, id) {
  const detail = await (await fetch(`${base}/v1/runtimes/${id}`)).json();
  const pid = detail.processes.find((process) => process.version === detail.active_version)?.pid;
  assert.ok(Number.isInteger(pid), `${id} has no process: ${JSON.stringify(detail.processes)}`);
  return pid;
}

/** Calls echo's `version` from `workers` loops until stopped; counts by answer. */
function startLoad(base, workers = 4) {
  const counts = { failed: 0, byVersion: {} };
  let running = true;
  const loop = async () => {
    while (running) {
      try {
        const response = await fetch(`${base}/v1/runtimes/echo/call`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ method: 'version' }),
        });
        const body = await response.json();
        if (response.ok) counts.byVersion[body.result] = (counts.byVersion[body.result] ?? 0) + 1;
        else counts.failed += 1;
      } catch {
        counts.failed += 1;
      }
    }
  };
  const loops = Array.from({ length: workers }, loop);
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(loops);
      return counts;
    },
  };
}

/** The plot figure of `kind` on a runtime page. */
const plot = (page, kind) => page.locator(`figure.plot[data-kind="${kind}"]`);

/** Waits until the plot of `kind` has points for `version`. */
async function plotShows(page, kind, version, points = 2) {
  await page.waitForFunction(([kind, version, points]) => {
    const figure = document.querySelector(`figure.plot[data-kind="${kind}"]`);
    return figure
      && Number(figure.dataset.points) >= points
      && figure.dataset.versions.split(' ').includes(version)
      && figure.querySelector('canvas')?.width > 0;
  }, [kind, version, points], { timeout: WAIT });
}

test('the overview lists the demo runtimes, served with a strict CSP', async () => {
  const context = await desktop();
  const page = await watchedPage(context, OPEN);
  const response = await page.goto(OPEN);
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe/);

  for (const id of ['echo', 'kv']) {
    const row = await rowWithVersion(page, id, '1.0.0');
    assert.equal(await row.getAttribute('data-state'), 'running');
    assert.equal(await row.locator('a.runtime-link').textContent(), id);
    // The PID column comes from the detail, which lands after the list.
    await row.locator('td[data-label="PID"]', { hasText: new RegExp(`^${await activePid(OPEN, id)}$`) }).waitFor({ timeout: WAIT });
  }
  await page.locator('#feed-status[data-state="live"]').waitFor({ timeout: WAIT });
  // Uptime comes from the detail and ticks without a reload.
  const uptime = page.locator('tr[data-runtime="echo"] .uptime');
  await page.waitForFunction(() => /\d+s/.test(document.querySelector('tr[data-runtime="echo"] .uptime')?.textContent ?? ''), null, { timeout: WAIT });
  const before = await uptime.textContent();
  await page.waitForFunction((was) => document.querySelector('tr[data-runtime="echo"] .uptime').textContent !== was, before, { timeout: WAIT });
  page.check();
  await context.close();
});

test('the keyboard reaches a runtime and its switch dialog, and Escape cancels it', async () => {
  const context = await desktop();
  const page = await watchedPage(context, OPEN);
  await page.goto(OPEN);
  await rowWithVersion(page, 'echo', '1.0.0');
  let reached = false;
  for (let i = 0; i < 12 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.matches('tr[data-runtime="echo"] a'));
  }
  assert.ok(reached, 'Tab never reached the link of echo');
  // Another runtime's events re-render the table under the focus (kv is
  // killed and restarted): the focus stays on echo's link, so the Enter
  // that follows still opens echo.
  const kvPid = await activePid(OPEN, 'kv');
  const abort = await fetch(`${OPEN}/v1/runtimes/kv/abort`, { method: 'POST', body: JSON.stringify({ force: true }) });
  assert.equal(abort.status, 200);
  await page.waitForFunction((old) => {
    const row = document.querySelector('table.runtimes tr[data-runtime="kv"][data-state="running"]');
    const pid = row?.querySelector('td[data-label="PID"]')?.textContent;
    return pid && pid !== '—' && pid !== String(old);
  }, kvPid, { timeout: WAIT });
  assert.ok(await page.evaluate(() => document.activeElement?.matches('tr[data-runtime="echo"] a')),
    `a live update took the focus from echo's link to ${await page.evaluate(() => document.activeElement?.outerHTML)}`);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#/runtimes/echo', null, { timeout: WAIT });
  const button = page.getByRole('button', { name: 'Switch echo to 2.0.0' });
  await button.waitFor({ timeout: WAIT });
  await button.focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Switch echo to 2.0.0?' });
  await dialog.waitFor({ timeout: WAIT });
  // Focus starts on Cancel: Enter by habit does not switch.
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Cancel');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached', timeout: WAIT });
  const detail = await (await fetch(`${OPEN}/v1/runtimes/echo`)).json();
  assert.equal(detail.desired_version, '1.0.0', 'cancelling must not switch');
  page.check();
  await context.close();
});

test('a switch under load from the runtime page: plots, events and the overview follow live', async () => {
  const context = await desktop();
  const overview = await watchedPage(context, OPEN);
  await overview.goto(OPEN);
  await rowWithVersion(overview, 'echo', '1.0.0');
  const runtime = await watchedPage(context, OPEN);
  await runtime.goto(`${OPEN}/#/runtimes/echo`);
  await runtime.getByRole('button', { name: 'Switch echo to 2.0.0' }).waitFor({ timeout: WAIT });
  // A reload would lose these.
  for (const page of [overview, runtime]) await page.evaluate(() => { window.notReloaded = true; });

  const load = startLoad(OPEN);
  try {
    // The plots get points while the load runs.
    await plotShows(runtime, 'calls', '1.0.0');
    await plotShows(runtime, 'latency', '1.0.0');
    assert.equal(await plot(runtime, 'errors').getAttribute('data-versions'), '1.0.0');

    await runtime.getByRole('button', { name: 'Switch echo to 2.0.0' }).click();
    const dialog = runtime.getByRole('dialog', { name: 'Switch echo to 2.0.0?' });
    await dialog.getByRole('button', { name: 'Switch to 2.0.0' }).click();
    await runtime.locator('.action-status[data-outcome="ok"]', { hasText: 'Switched echo to 2.0.0 (was 1.0.0)' })
      .waitFor({ timeout: WAIT });
    await runtime.locator('tr[data-version="2.0.0"][data-active="true"]').waitFor({ timeout: WAIT });
    // The events came in live, on both pages.
    await runtime.locator('.events li[data-kind="switched"]', { hasText: '2.0.0' }).waitFor({ timeout: WAIT });
    await runtime.locator('.events li[data-kind="started"]', { hasText: '2.0.0' }).waitFor({ timeout: WAIT });
    await overview.locator('.events li[data-kind="switched"][data-runtime="echo"]').waitFor({ timeout: WAIT });
    // The overview shows the new version without a reload.
    await rowWithVersion(overview, 'echo', '2.0.0');
    // The load moved to 2.0.0, and the plots show both versions.
    await plotShows(runtime, 'calls', '2.0.0');
  } finally {
    const counts = await load.stop();
    console.log(`load during the switch: ${JSON.stringify(counts)}`);
    assert.equal(counts.failed, 0, 'calls failed during a make-before-break switch');
    assert.ok(counts.byVersion['1.0.0'] > 0 && counts.byVersion['2.0.0'] > 0, JSON.stringify(counts));
  }
  for (const page of [overview, runtime]) {
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was reloaded');
  }
  await screenshot(overview, 'overview');
  await screenshot(runtime, 'runtime');
  overview.check();
  runtime.check();
  await context.close();
});

test('the runtime page shows its log lines, and new ones live', async () => {
  const context = await desktop();
  const page = await watchedPage(context, OPEN);
  await page.goto(`${OPEN}/#/runtimes/echo`);
  const logs = page.getByRole('list', { name: 'Log lines of echo' });
  // The tail: at least the line each echo process prints on start.
  await logs.locator('li.log-line[data-source="runtime"][data-stream="stdout"]', { hasText: 'starting' })
    .first().waitFor({ timeout: WAIT });
  await page.evaluate(() => { window.notReloaded = true; });

  // A line the runtime prints now appears without a reload, marked stderr.
  const text = `printed for the browser ${Date.now()}`;
  const response = await fetch(`${OPEN}/v1/runtimes/echo/call`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ method: 'print', args: { text, stream: 'stderr' } }),
  });
  assert.equal(response.status, 200, await response.text());
  const line = logs.locator('li.log-line', { hasText: text });
  await line.waitFor({ timeout: WAIT });
  assert.equal(await line.getAttribute('data-stream'), 'stderr');
  assert.match(await line.locator('time').textContent(), /\d\d:\d\d:\d\d/);
  const version = await line.getAttribute('data-version');
  assert.equal(await line.locator('.log-source').textContent(), version);

  // The version filter: another version's lines go, this one's stay (and
  // there are some: the list is empty for a moment while it reconnects).
  const other = version === '1.0.0' ? '2.0.0' : '1.0.0';
  await page.getByLabel('Show').selectOption(other);
  await page.waitForFunction(([text, other]) => {
    const rows = [...document.querySelectorAll('.logs li.log-line')];
    return rows.length > 0
      && !rows.some((row) => row.textContent.includes(text))
      && rows.every((row) => row.dataset.version === other);
  }, [text, other], { timeout: WAIT });
  await page.getByLabel('Show').selectOption('');
  await line.waitFor({ timeout: WAIT });

  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was reloaded');
  await screenshot(page, 'runtime-logs');
  page.check();
  await context.close();
});

test('on a phone-sized screen nothing scrolls sideways', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await watchedPage(context, OPEN);
  await page.goto(OPEN);
  await page.locator('tr[data-runtime="echo"]').waitFor({ timeout: WAIT });
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(await overflow() <= 0, `the overview is ${await overflow()} px too wide`);
  await screenshot(page, 'phone-overview');
  await page.goto(`${OPEN}/#/runtimes/echo`);
  await page.locator('figure.plot[data-kind="calls"] canvas').waitFor({ timeout: WAIT });
  assert.ok(await overflow() <= 0, `the runtime page is ${await overflow()} px too wide`);
  await screenshot(page, 'phone-runtime');
  page.check();
  await context.close();
});

test('a token-protected agent refuses the page until the token is given', async () => {
  const origin = PROTECTED;
  const context = await desktop();
  const page = await watchedPage(context, origin, {
    allowed: [/status of 401/],
  });
  const api = [];
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.pathname.startsWith('/v1/')) {
      api.push({ path: url.pathname, status: response.status(), auth: response.request().headers().authorization ?? null });
    }
  });
  await page.goto(origin);
  const heading = page.getByRole('heading', { name: 'This agent needs its token' });
  await heading.waitFor({ timeout: WAIT });
  assert.ok(api.length > 0 && api.every((r) => r.status === 401 && r.auth === null), JSON.stringify(api));
  assert.equal(await page.locator('tr[data-runtime]').count(), 0, 'runtimes shown without the token');
  await page.locator('#feed-status[data-state="token"]').waitFor({ timeout: WAIT });

  // A wrong token is refused, and the form says so.
  await page.getByLabel('Token', { exact: true }).fill('not-the-token');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor({ timeout: WAIT });
  assert.ok(api.some((r) => r.status === 401 && r.auth === 'Bearer not-the-token'), JSON.stringify(api));
  await screenshot(page, 'token-form');

  // The right one opens the page; the event stream works with it too.
  await page.getByLabel('Token', { exact: true }).fill(TOKEN);
  await page.getByRole('button', { name: 'Continue' }).click();
  await rowWithVersion(page, 'kv', '1.0.0');
  await page.locator('#feed-status[data-state="live"]').waitFor({ timeout: WAIT });
  const abort = await fetch(`${origin}/v1/runtimes/kv/abort`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ force: true }),
  });
  assert.equal(abort.status, 200);
  await page.locator('.events li[data-kind="started"][data-runtime="kv"]').waitFor({ timeout: WAIT });
  const since = api.slice(api.findLastIndex((r) => r.status === 401) + 1);
  assert.ok(since.length > 0 && since.every((r) => r.status === 200 && r.auth === `Bearer ${TOKEN}`), JSON.stringify(since));
  assert.ok(since.some((r) => r.path === '/v1/events'), 'the event stream was not opened with the token');

  // Never in the URL; kept for this tab only.
  assert.ok(!page.url().includes(TOKEN), page.url());
  assert.equal(await page.evaluate(() => sessionStorage.getItem('steward.token')), TOKEN);
  await page.reload();
  await rowWithVersion(page, 'echo', '1.0.0');
  assert.equal(await heading.count(), 0, 'the token was asked again after a reload');
  page.check();

  // Session storage is per tab: another tab asks again.
  const other = await watchedPage(context, origin, { allowed: [/status of 401/] });
  await other.goto(origin);
  await other.getByRole('heading', { name: 'This agent needs its token' }).waitFor({ timeout: WAIT });
  other.check();
  await context.close();
});

test('hook and workload status show live, and a failed hook can be skipped from the page', async () => {
  const context = await desktop();
  const page = await watchedPage(context, HOOKED);
  await page.goto(HOOKED);
  const row = page.locator('tr[data-runtime="echo"]');
  await row.locator('td[data-label="Hooks"]', { hasText: 'error: config-changed' }).waitFor({ timeout: WAIT });
  await row.locator('td[data-label="Workload"]', { hasText: 'active: installed' }).waitFor({ timeout: WAIT });
  await screenshot(page, 'hooks-overview');

  await row.getByRole('link', { name: 'echo' }).click();
  const skip = page.getByRole('button', { name: 'Skip config-changed…' });
  await skip.click();
  const dialog = page.getByRole('dialog', { name: 'Skip config-changed?' });
  await dialog.getByRole('button', { name: 'Skip config-changed' }).click();
  await page.locator('.action-status', { hasText: 'config-changed was skipped.' }).waitFor({ timeout: WAIT });
  // The hooks after it run; their status arrives through the events.
  await page.locator('.facts dd', { hasText: 'active: ready' }).waitFor({ timeout: WAIT });
  await page.locator('.events li[data-kind="hook_succeeded"]', { hasText: 'start' }).waitFor({ timeout: WAIT });
  assert.equal(await skip.count(), 0, 'the skip button stays after the hook was resolved');

  await page.getByRole('link', { name: '← All runtimes' }).click();
  await row.locator('td[data-label="Hooks"]', { hasText: 'idle' }).waitFor({ timeout: WAIT });
  await row.locator('td[data-label="Workload"]', { hasText: 'active: ready' }).waitFor({ timeout: WAIT });
  page.check();
  await context.close();
});

/** How far the page scrolls sideways (0 or less: not at all). */
const sideways = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

test('the overview and a runtime page show the relations, and a relation removed by a config edit leaves both live', async () => {
  const context = await desktop();
  const overview = await watchedPage(context, RELATED);
  await overview.goto(RELATED);
  const relation = overview.locator('#relations tr[data-peer="false"]');
  await relation.locator('.relation-end[data-runtime="echo"][data-endpoint="client"]', { hasText: 'echo/ui' }).waitFor({ timeout: WAIT });
  await relation.locator('.relation-end[data-runtime="kv"][data-endpoint="store"]', { hasText: 'kv/ui' }).waitFor({ timeout: WAIT });
  assert.equal(await relation.getAttribute('data-state'), 'alive');
  assert.equal(await relation.locator('td[data-label="State"]').textContent(), 'alive');
  const id = await relation.getAttribute('data-relation');
  assert.match(await relation.locator('td[data-label="Relation"]').textContent(), new RegExp(`^#${id}`));
  const peer = overview.locator('#relations tr[data-peer="true"]');
  await peer.locator('.relation-end[data-runtime="kv"][data-endpoint="cluster"]').waitFor({ timeout: WAIT });
  assert.match(await peer.locator('td[data-label="Relation"]').textContent(), /peer/);
  assert.equal(await overview.locator('#relations tbody tr').count(), 2);
  await screenshot(overview, 'relations-overview');

  // echo's page, from the relation's link: the other end and its units.
  await relation.locator('.relation-end[data-runtime="echo"] a').click();
  await overview.waitForFunction(() => location.hash === '#/runtimes/echo', null, { timeout: WAIT });
  const own = overview.locator(`#relations tr[data-relation="${id}"]`);
  await own.locator('.remote-units', { hasText: 'kv/ui' }).waitFor({ timeout: WAIT });
  assert.equal(await own.locator('td[data-label="Relation"]').textContent(), `client:${id}`);
  assert.equal(await own.locator('td[data-label="Other end"]').textContent(), 'kv:store');
  assert.equal(await own.locator('.own-settings').textContent(), 'none');
  await screenshot(overview, 'relations-runtime');
  await overview.goBack();
  await relation.waitFor({ timeout: WAIT });

  // Another tab on echo's page; then the relation leaves the config. (It
  // opens kv's page at the end, whose log panel gets a 409: kv keeps no
  // lines.)
  const runtime = await watchedPage(context, RELATED, { allowed: [/status of 409/] });
  await runtime.goto(`${RELATED}/#/runtimes/echo`);
  await runtime.locator(`#relations tr[data-relation="${id}"]`).waitFor({ timeout: WAIT });
  for (const page of [overview, runtime]) {
    await page.locator('#feed-status[data-state="live"]').waitFor({ timeout: WAIT });
    await page.evaluate(() => { window.notReloaded = true; });
  }
  const next = join(dirname(RELATIONS_CONFIG), 'next.toml');
  copyFileSync(RELATIONS_UNRELATED, next);
  renameSync(next, RELATIONS_CONFIG);

  await overview.locator('.events li[data-kind="relation_removed"]').first().waitFor({ timeout: WAIT });
  // Coloured by what it means, as other events are: dying is a warning.
  await overview.locator('.events li[data-kind="relation_dying"] .badge-warn').first().waitFor({ timeout: WAIT });
  await overview.locator(`#relations tr[data-relation="${id}"]`).waitFor({ state: 'detached', timeout: WAIT });
  await peer.waitFor({ timeout: WAIT });
  assert.equal(await overview.locator('#relations tbody tr').count(), 1, 'only the peer relation stays');
  // echo has no relation left: its page's relations panel goes.
  await runtime.locator('#relations').waitFor({ state: 'hidden', timeout: WAIT });
  await runtime.locator('.events li[data-kind="relation_removed"]').first().waitFor({ timeout: WAIT });
  for (const page of [overview, runtime]) {
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was reloaded');
  }
  // kv keeps its peer relation, shown on its page.
  await runtime.goto(`${RELATED}/#/runtimes/kv`);
  await runtime.locator('#relations tr[data-peer="true"] td[data-label="Relation"]', { hasText: 'cluster:' }).waitFor({ timeout: WAIT });
  overview.check();
  runtime.check();
  await context.close();

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await watchedPage(phone, RELATED);
  await small.goto(RELATED);
  await small.locator('#relations tr[data-peer="true"]').waitFor({ timeout: WAIT });
  assert.ok(await sideways(small) <= 0, `the overview with relations is ${await sideways(small)} px too wide`);
  small.check();
  await phone.close();
});

test('a runtime that keeps no log lines says so once, and the page does not ask again', async () => {
  const context = await desktop();
  // Chromium logs the 409 answer as a console error.
  const page = await watchedPage(context, RELATED, { allowed: [/status of 409/] });
  // The page's timers run on a clock the test moves: a retry would be due
  // many times over in the minute it moves it by.
  await page.clock.install();
  const asked = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/v1/runtimes/kv/logs') asked.push(request.url());
  });
  await page.goto(`${RELATED}/#/runtimes/kv`);
  const status = page.locator('.logs-status', { hasText: 'keeps no output lines' });
  await status.waitFor({ timeout: WAIT });
  assert.doesNotMatch(await status.textContent(), /retrying/);
  await page.clock.runFor(60_000);
  // Another filter asks again, once, and gets the same answer.
  const answered = page.waitForResponse((response) => new URL(response.url()).pathname === '/v1/runtimes/kv/logs', { timeout: WAIT });
  await page.getByLabel('Show').selectOption('1.0.0');
  assert.equal((await answered).status(), 409);
  await status.waitFor({ timeout: WAIT });
  assert.equal(asked.length, 2, `the panel asked for kv's lines ${asked.length} times: ${asked.join(', ')}`);
  assert.match(asked[1], /version=1\.0\.0/);
  page.check();
  await context.close();
});

test('an agent not in a fleet shows nothing of the fleet, and never asks for it', async () => {
  const context = await desktop();
  const page = await watchedPage(context, OPEN);
  const asked = [];
  page.on('request', (request) => asked.push(new URL(request.url()).pathname));
  const health = page.waitForResponse((response) => new URL(response.url()).pathname === '/healthz', { timeout: WAIT });
  await page.goto(OPEN);
  assert.equal((await (await health).json()).fleet, undefined);
  // (Another test switched echo here: any version will do.)
  await page.locator('tr[data-runtime="echo"]').waitFor({ timeout: WAIT });
  await page.locator('#feed-status[data-state="live"]').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#nav-fleet').isVisible(), false, 'a Fleet link on an agent not in a fleet');
  assert.equal(await page.locator('#fleet-banner').isVisible(), false);
  // The demo has no relations: no relations panel either.
  assert.equal(await page.locator('#relations').isVisible(), false);

  // Even at #/fleet it only says so.
  await page.goto(`${OPEN}/#/fleet`);
  await page.getByText('This agent is not in a fleet').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('table.fleet').isVisible(), false);
  assert.ok(!asked.includes('/v1/fleet'), `the page asked for /v1/fleet: ${asked.join(' ')}`);
  page.check();
  await context.close();
});

test('the fleet page lists every unit, and says when the fleet is cut off', async () => {
  const context = await desktop();
  // While etcd is frozen, /v1/fleet answers 503 (logged as a console error).
  const page = await watchedPage(context, FLEET, { allowed: [/status of 503/] });
  await page.goto(FLEET);
  await rowWithVersion(page, 'echo', '1.0.0');
  const link = page.getByRole('link', { name: 'Fleet' });
  await link.waitFor({ timeout: WAIT });
  await link.focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#/fleet', null, { timeout: WAIT });
  assert.equal(await link.getAttribute('aria-current'), 'page');
  for (const unit of ['echo/ui-a', 'echo/ui-b', 'kv/ui-a', 'kv/ui-b']) {
    const row = page.locator(`table.fleet tr[data-unit="${unit}"][data-state="running"][data-active="1.0.0"]`);
    await row.waitFor({ timeout: WAIT });
    assert.equal(await row.locator('td[data-label="Agent"]').textContent(), unit.split('/')[1]);
    assert.equal(await row.locator('td[data-label="Desired"]').textContent(), '1.0.0');
    assert.match(await row.locator('td[data-label="Last seen"]').textContent(), /ago$/);
  }
  assert.match(await page.locator('.panel-head .status-line').textContent(), /4 units on 2 agents/);
  assert.equal(await page.locator('#fleet-banner').isVisible(), false);
  await screenshot(page, 'fleet');
  await page.evaluate(() => { window.notReloaded = true; });

  // etcd frozen: the banner says since when; the units read last stay.
  process.kill(ETCD_PID, 'SIGSTOP');
  try {
    const banner = page.locator('#fleet-banner');
    await banner.filter({ hasText: /fleet: disconnected since \d\d:\d\d:\d\d/ }).waitFor({ timeout: WAIT });
    await page.locator('[role="alert"]', { hasText: 'Cannot read the fleet now' }).waitFor({ timeout: WAIT });
    assert.equal(await page.locator('table.fleet tr[data-unit]').count(), 4);
    await screenshot(page, 'fleet-disconnected');
    // On the overview too: the banner is the page's, not the fleet page's.
    await page.getByRole('link', { name: 'Runtimes' }).click();
    await rowWithVersion(page, 'kv', '1.0.0');
    assert.ok(await banner.isVisible(), 'no banner on the overview while disconnected');
  } finally {
    process.kill(ETCD_PID, 'SIGCONT');
  }
  await page.locator('#fleet-banner').waitFor({ state: 'hidden', timeout: WAIT });
  await page.getByRole('link', { name: 'Fleet' }).click();
  await page.locator('table.fleet tr[data-unit="kv/ui-b"]').waitFor({ timeout: WAIT });
  await page.waitForFunction(() => !document.querySelector('[role="alert"]')?.textContent, null, { timeout: WAIT });
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was reloaded');
  page.check();
  await context.close();

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await watchedPage(phone, FLEET);
  await small.goto(`${FLEET}/#/fleet`);
  await small.locator('table.fleet tr[data-unit="kv/ui-b"]').waitFor({ timeout: WAIT });
  assert.ok(await sideways(small) <= 0, `the fleet page is ${await sideways(small)} px too wide`);
  await screenshot(small, 'phone-fleet');
  small.check();
  await phone.close();
});

test('a switch on an agent of a fleet says the fleet follows, and the Fleet page shows every unit at it', async () => {
  const context = await desktop();
  const page = await watchedPage(context, FLEET);
  await page.goto(`${FLEET}/#/runtimes/echo`);
  // The Fleet link shows once the page knows the agent is in a fleet.
  await page.getByRole('link', { name: 'Fleet' }).waitFor({ timeout: WAIT });
  await page.getByRole('button', { name: 'Switch echo to 2.0.0' }).click();
  const dialog = page.getByRole('dialog', { name: 'Switch echo to 2.0.0?' });
  await dialog.locator('.fleet-note', { hasText: 'on every agent of the fleet' }).waitFor({ timeout: WAIT });
  await dialog.getByRole('button', { name: 'Switch to 2.0.0' }).click();
  const status = page.locator('.action-status[data-outcome="ok"]', { hasText: 'Switched echo to 2.0.0 on this agent (was 1.0.0). The other agents of the fleet follow' });
  await status.waitFor({ timeout: WAIT });
  await status.getByRole('link', { name: 'the Fleet page' }).click();
  await page.waitForFunction(() => location.hash === '#/fleet', null, { timeout: WAIT });
  for (const agent of ['ui-a', 'ui-b']) {
    await page.locator(`table.fleet tr[data-unit="echo/${agent}"][data-state="running"][data-active="2.0.0"]`).waitFor({ timeout: WAIT });
  }
  page.check();
  await context.close();
});
