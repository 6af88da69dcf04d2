// The dashboard in a real browser: Debian's headless chromium, driven by playwright-core.
//
//   node check.mjs --url http://127.0.0.1:PORT --devices 1,2,3 --device 2 --boots N --rollout ID
//                  [--screenshot FILE.png]
//
// Loads the page, checks every listed device is in the fleet table, clicks --device and checks its
// plot has --boots points in every series, checks rollout --rollout shows the progress the API
// gives. Prints one JSON line (page weight, first contentful paint, what it saw); on anything
// missing, names it on stderr and exits 1 (2 for bad arguments).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT_MS = 10000;
// A row not there once the table is: a refresh's time at most.
const ROW_WAIT_MS = 3500;
// The whole check's bound: past it, it fails rather than hangs.
const DEADLINE_MS = 60000;
// The page and its assets: what "page weight" counts (the API's answers are not the page).
const PAGE_PATHS = ['/', '/dashboard.js', '/dashboard.css', '/favicon.svg'];

function usage(message) {
  console.error(`check.mjs: ${message}\nusage: node check.mjs --url URL --devices ID,ID,... --device ID --boots N --rollout ID [--screenshot FILE]`);
  process.exit(2);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' }, devices: { type: 'string' }, device: { type: 'string' },
        boots: { type: 'string' }, rollout: { type: 'string' }, screenshot: { type: 'string' },
      },
    }));
  } catch (error) {
    usage(error.message);
  }
  for (const name of ['url', 'devices', 'device', 'boots', 'rollout']) {
    if (values[name] === undefined) usage(`--${name} is missing`);
  }
  const id = (name, text) => {
    if (!/^\d+$/.test(text)) usage(`--${name}: "${text}" is not a device or rollout id (a number)`);
    return text;
  };
  const url = values.url.replace(/\/+$/, '');
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) usage(`--url: "${values.url}" is not http://127.0.0.1:PORT`);
  const boots = Number(id('boots', values.boots));
  return {
    url,
    devices: values.devices.split(',').map((d) => id('devices', d.trim())),
    device: id('device', values.device),
    boots,
    rollout: /^[A-Za-z0-9._-]{1,64}$/.test(values.rollout)
      ? values.rollout
      : usage(`--rollout: "${values.rollout}" is not a rollout id`),
    screenshot: values.screenshot,
  };
}

async function firstContentfulPaint(page) {
  return page.evaluate(() => new Promise((resolve) => {
    const found = () => performance.getEntriesByName('first-contentful-paint')[0];
    if (found()) return resolve(found().startTime);
    new PerformanceObserver(() => found() && resolve(found().startTime)).observe({ type: 'paint', buffered: true });
  }));
}

async function check(page, opts, failures) {
  const weights = {};
  page.on('requestfinished', async (request) => {
    if (!PAGE_PATHS.includes(new URL(request.url()).pathname)) return;
    const sizes = await request.sizes();
    weights[new URL(request.url()).pathname] = sizes.responseHeadersSize + sizes.responseBodySize;
  });
  await page.goto(`${opts.url}/`, { waitUntil: 'load' });
  const fcp = await firstContentfulPaint(page);

  // The fleet table: once it has rows (all come in one render), each listed device must be one.
  await page.locator('[data-testid="fleet-rows"] tr').first().waitFor({ timeout: WAIT_MS })
    .catch(() => failures.push('the fleet table stayed empty'));
  for (const id of opts.devices) {
    const row = page.getByTestId(`device-row-${id}`);
    try {
      await row.waitFor({ timeout: ROW_WAIT_MS });
    } catch {
      failures.push(`device ${id} is not in the fleet table`);
      continue;
    }
    const shown = await row.getByTestId('device-id').textContent();
    if (shown !== id) failures.push(`device ${id}'s row shows id "${shown}"`);
  }

  // The device's history and its plot.
  let series = [];
  const deviceRow = page.getByTestId(`device-row-${opts.device}`);
  if (await deviceRow.count()) {
    await deviceRow.click();
    try {
      await page.getByTestId('history-title').filter({ hasText: `Device ${opts.device}:` }).waitFor({ timeout: WAIT_MS });
      await page.getByTestId('plot-series').first().waitFor({ timeout: WAIT_MS });
    } catch {
      failures.push(`clicking device ${opts.device} showed no history plot`);
    }
    series = await page.getByTestId('plot-series').evaluateAll((groups) => groups.map((g) => ({
      name: g.dataset.series, points: g.querySelectorAll('[data-testid="plot-point"]').length,
    })));
    for (const s of series) {
      if (s.points !== opts.boots) failures.push(`plot series "${s.name}" has ${s.points} points, not ${opts.boots}`);
    }
    const axis = await page.getByTestId('plot-y-label').textContent().catch(() => null);
    if (axis !== 'bytes') failures.push(`the plot's y axis is labelled "${axis}", not "bytes"`);
    const bootRows = await page.getByTestId('boot-row').count();
    if (bootRows !== opts.boots) failures.push(`the boots table has ${bootRows} rows, not ${opts.boots}`);
  } else {
    failures.push(`device ${opts.device} (--device) is not in the fleet table, so not clicked`);
  }

  // The rollout and its progress, as the API gives it.
  const rollouts = await (await fetch(`${opts.url}/api/rollouts`)).json();
  const expected = rollouts.find((r) => String(r.id) === opts.rollout);
  const card = page.getByTestId(`rollout-${opts.rollout}`);
  if (!expected) {
    failures.push(`rollout ${opts.rollout} is not in /api/rollouts`);
  } else if (!(await card.count())) {
    failures.push(`rollout ${opts.rollout} is not shown`);
  } else {
    const p = expected.progress;
    for (const [name, value] of [['cohort', p.cohort], ['updated', p.updated], ['confirmed', p.confirmed],
      ['rolled-back', p.rolled_back], ['failed', p.failed]]) {
      const shown = await card.getByTestId(`progress-${name}`).textContent().catch(() => null);
      if (shown !== String(value)) failures.push(`rollout ${opts.rollout} shows ${name} "${shown}", not ${value}`);
    }
    const bar = card.getByTestId('rollout-bar');
    const [now, max] = [await bar.getAttribute('aria-valuenow'), await bar.getAttribute('aria-valuemax')];
    if (now !== String(p.confirmed) || max !== String(p.cohort)) {
      failures.push(`rollout ${opts.rollout}'s progress bar is ${now}/${max}, not ${p.confirmed}/${p.cohort}`);
    }
    const width = await card.getByTestId('bar-confirmed').evaluate((e) => e.getBoundingClientRect().width);
    if ((p.confirmed > 0) !== (width > 0)) failures.push(`rollout ${opts.rollout}'s confirmed bar is ${width}px wide`);
  }
  await page.waitForLoadState('networkidle');
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
  const pageBytes = Object.values(weights).reduce((a, b) => a + b, 0);
  for (const path of PAGE_PATHS) {
    if (!(path in weights)) failures.push(`${path} was not loaded`);
  }
  return { page_bytes: pageBytes, page_resources: weights, first_contentful_paint_ms: fcp,
    devices: opts.devices.length, plot_series: series.length, points_per_series: opts.boots };
}

const opts = options();
const profile = mkdtempSync(join(tmpdir(), 'rota-dashboard-chromium-'));
const deadline = setTimeout(() => {
  console.error(`check.mjs: not done after ${DEADLINE_MS / 1000} s`);
  process.exit(1);
}, DEADLINE_MS);
let status = 0;
let context;
try {
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
  const page = context.pages()[0] ?? await context.newPage();
  const failures = [];
  page.on('pageerror', (error) => failures.push(`the page threw: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') failures.push(`the page logged an error: ${message.text()} (${message.location().url})`);
  });
  const report = await check(page, opts, failures);
  if (failures.length) {
    console.error(`check.mjs: ${failures.length} problem(s):\n  ${failures.join('\n  ')}`);
    status = 1;
  }
  console.log(JSON.stringify(report));
} catch (error) {
  console.error(`check.mjs: ${error.message}`);
  status = 1;
} finally {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(deadline);
}
process.exit(status);
