// Shared pieces of the browser flows (tests/browser/*.mjs): launching Debian's Chromium through
// playwright-core, a guard against requests that leave BASE_URL's origin, screenshots, and the
// one JSON line of results the Rust side (tests/testsuite/web_browser/) reads.
//
// A flow prints exactly one line on stdout:
//   {"flow":"login","checks":["login.form", ...],"failures":[{"check":"…","detail":"…"}],"screenshots":[…]}
// and exits 0 when `failures` is empty, 1 otherwise (2 when the flow itself crashed).

import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** An environment variable the flow cannot run without. */
export function need(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`environment variable ${name} is not set (tests/testsuite/web_browser/ sets it)`);
  }
  return value;
}

export const BASE_URL = need('BASE_URL').replace(/\/$/, '');
export const ORIGIN = new URL(BASE_URL).origin;
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || 'target/web-screenshots';

/** Hex SHA-256 of a buffer. */
export function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Checks, failures and screenshots of one flow; `finish` prints them and exits. */
export class Run {
  constructor(flow) {
    this.flow = flow;
    this.checks = [];
    this.failures = [];
    this.screenshots = [];
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
  }

  /** Records check `name` as passed when `ok`, else as a failure with `detail`. */
  check(name, ok, detail = '') {
    if (ok) {
      this.checks.push(name);
    } else {
      this.failures.push({ check: name, detail: String(detail) });
    }
    return ok;
  }

  /** Equality check that says what it saw. */
  equal(name, actual, expected) {
    return this.check(name, actual === expected, `expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }

  /** Runs `body`; an exception (a selector that never appeared, a timeout) fails `name`. */
  async step(name, body) {
    try {
      return await body();
    } catch (e) {
      this.failures.push({ check: name, detail: `threw: ${e && e.message ? e.message.split('\n')[0] : e}` });
      return undefined;
    }
  }

  /** A full-page screenshot `<flow>-<step>.png` for people to look at. */
  async shot(page, step) {
    const path = join(SCREENSHOT_DIR, `${this.flow}-${step}.png`);
    try {
      await page.screenshot({ path, fullPage: true });
      this.screenshots.push(path);
    } catch (e) {
      this.failures.push({ check: `screenshot ${step}`, detail: String(e.message || e) });
    }
  }

  finish() {
    process.stdout.write(
      JSON.stringify({ flow: this.flow, checks: this.checks, failures: this.failures, screenshots: this.screenshots }) + '\n',
    );
    process.exit(this.failures.length === 0 ? 0 : 1);
  }
}

/**
 * Debian's Chromium (`CHROMIUM`, default /usr/bin/chromium), headless, never a browser that
 * playwright downloads. Chromium refuses to start as root with its sandbox on (the sandbox
 * drops privileges that root would keep; CI runs as root), so `--no-sandbox` then, and only then.
 */
export async function launch() {
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: asRoot ? ['--no-sandbox'] : [],
  });
}

/**
 * A new context (its own cookies) whose requests may only go to BASE_URL's origin: any other
 * is recorded in `outside` and aborted, so a test never reaches the network and a page that
 * tries to is caught.
 */
export async function guardedContext(browser, run, options = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...options });
  context.setDefaultTimeout(15000);
  context.outside = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(ORIGIN + '/')) {
      return route.continue();
    }
    context.outside.push(url);
    return route.abort('blockedbyclient');
  });
  // WebSockets are not routes: refuse every one (the app opens none).
  await context.routeWebSocket(/.*/, (ws) => {
    context.outside.push(`websocket ${ws.url()}`);
    ws.close();
  });
  return context;
}

/** Fails `name` if any request left the origin in `context`. */
export function noOutsideRequests(run, context, name) {
  run.check(name, context.outside.length === 0, `requests outside ${ORIGIN}: ${context.outside.join(', ')}`);
}

/** Logs in through form#login; returns the response of the page it lands on. */
export async function login(page, user, password) {
  await page.goto(`${BASE_URL}/login`);
  await page.fill('form#login input[name=user]', user);
  await page.fill('form#login input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('form#login button[type=submit]')]);
}

/** The path (and query) of the page's URL. */
export function pathOf(page) {
  const url = new URL(page.url());
  return url.pathname + url.search;
}
