/**
 * A real browser for the page tests: Debian's Chromium driven by
 * playwright-core (which downloads no browser of its own). Headless, with
 * background networking off, so that the only requests a page makes are its
 * own; every request and console error is recorded for the tests to check.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's package (`apt-get install -y chromium`); .ci/run installs it. */
export const CHROMIUM = process.env.SVCPATH_CHROMIUM ?? '/usr/bin/chromium';

const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
];

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set SVCPATH_CHROMIUM)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/** What a page did besides drawing: its requests (URLs) and its console errors and uncaught exceptions. */
export interface PageLog {
  requests: string[];
  errors: string[];
}

/** A new page whose requests and errors are logged. */
export async function openPage(browser: Browser, viewport = { width: 1280, height: 900 }): Promise<{ page: Page; log: PageLog }> {
  const page = await browser.newPage({ viewport });
  const log: PageLog = { requests: [], errors: [] };
  page.on('request', (r) => log.requests.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') log.errors.push(m.text());
  });
  page.on('pageerror', (e) => log.errors.push(String(e)));
  return { page, log };
}
