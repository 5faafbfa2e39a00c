/**
 * `npm run screenshots`: the README's pictures, made again from the current
 * build in Debian's Chromium: docs/report.png (the top of the bundled
 * sample's report), docs/report-time.png (the rolling update's charts over
 * time, its cluster changes marked) and docs/playground.png (the playground
 * after deciding the sample). Review them by eye before committing.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { launchChromium } from './chromium.js';
import { buildPlayground } from './playground/build.js';
import { startServer } from './playground/serve.js';

const DOCS = join(PROJECT_ROOT, 'docs');
const CLI = join(PROJECT_ROOT, 'dist', 'control', 'cli', 'bin.js');
const VIEWPORT = { width: 1280, height: 900 };

/** `svcpath replay` of a bundled capture with --report into `html`. */
function report(html: string, capture: string, extra: string[] = []): void {
  const args = ['replay', capture, '--cluster', 'traces/samples/cluster.yaml', '--node', 'node-a', ...extra, '--report', html];
  const run = spawnSync(process.execPath, [CLI, ...args], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`svcpath ${args.join(' ')}: ${run.stderr}`);
}

async function main(): Promise<void> {
  mkdirSync(DOCS, { recursive: true });
  const scratch = mkdtempSync(join(tmpdir(), 'svcpath-screenshots-'));
  const browser = await launchChromium();
  try {
    const sample = join(scratch, 'sample.html');
    const rolling = join(scratch, 'rolling-update.html');
    report(sample, 'traces/samples/sample.pcap');
    report(rolling, 'traces/samples/rolling-update.pcap', ['--events', 'traces/samples/rolling-update.events.jsonl']);
    const page = await browser.newPage({ viewport: VIEWPORT });

    await page.goto(pathToFileURL(sample).href);
    await page.screenshot({ path: join(DOCS, 'report.png'), fullPage: true, clip: { x: 0, y: 0, width: VIEWPORT.width, height: 1500 } });

    await page.goto(pathToFileURL(rolling).href);
    await page
      .locator('section', { has: page.locator('h2', { hasText: 'Over time' }) })
      .screenshot({ path: join(DOCS, 'report-time.png') });

    await buildPlayground();
    const serving = await startServer(0);
    try {
      await page.goto(serving.url);
      await page.click('#sample');
      await page.click('#run');
      await page.locator('#report [data-chart="packets"] canvas').first().waitFor();
      await page.screenshot({
        path: join(DOCS, 'playground.png'),
        fullPage: true,
        clip: { x: 0, y: 0, width: VIEWPORT.width, height: 1300 },
      });
    } finally {
      await serving.close();
    }
  } finally {
    await browser.close();
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(`wrote ${['report.png', 'report-time.png', 'playground.png'].map((f) => join('docs', f)).join(', ')}`);
}

await main();
