/**
 * Debian's Chromium driven by playwright-core, which downloads no browser of
 * its own: for the page tests (test/browser.ts) and the docs' screenshots
 * (web/screenshots.ts). Headless, with background networking off, so that
 * the only requests a page makes are its own.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

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
