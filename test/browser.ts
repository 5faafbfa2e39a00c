/**
 * A real browser for the page tests (web/chromium.ts), with every request
 * and console error a page makes recorded for the tests to check.
 */
import type { Browser, Page } from 'playwright-core';

export { CHROMIUM, launchChromium } from '../web/chromium.js';

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
