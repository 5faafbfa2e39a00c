// The playground (web/playground/) in a real browser: built and served as
// `npm run playground` does, the bundled sample replayed in the page must
// give the CLI's verdict counts on the same files, and a broken capture, a
// broken gzip stream and a broken manifest the CLI's one line (judged
// against the CLI run in-process on the same bytes under the same names),
// with no console error and no request but to the page's own server.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { buildPlayground } from '../web/playground/build.js';
import { startServer, type Serving } from '../web/playground/serve.js';
import { launchChromium, openPage, type PageLog } from './browser.js';
import { cli } from './helpers.js';

const SAMPLE = join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap');
const CLUSTER = join(PROJECT_ROOT, 'traces', 'samples', 'cluster.yaml');
const SCREENSHOT = join(PROJECT_ROOT, 'test-output', 'playground.png');

let tmp: string;
let serving: Serving;
let browser: Browser;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'svcpath-playground-'));
  serving = await startServer(0, await buildPlayground(join(tmp, 'site')));
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await serving?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/**
 * `svcpath <args>` run in `dir`, so that files named relatively there are
 * named in its messages as the page names the files given to it.
 */
async function cliIn(dir: string, args: string[]) {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    return await cli(args);
  } finally {
    process.chdir(cwd);
  }
}

/** The verdict counts of a summary as formatSummary prints it ("  TX   847   SERVICE 331, ..."). */
function verdictsOfSummary(text: string): Record<string, number> {
  const block = text.split('\nVerdicts:\n')[1]?.split('\n\n')[0] ?? '';
  return Object.fromEntries(
    block
      .split('\n')
      .map((line) => /^ {2}(\w+)\s+(\d+)\s/.exec(line))
      .filter((m) => m !== null)
      .map((m) => [m[1], Number(m[2])]),
  );
}

/** The page with the bundled sample opened (capture and manifests), node-a chosen. */
async function withSample(): Promise<{ page: Page; log: PageLog }> {
  const opened = await openPage(browser);
  await opened.page.goto(serving.url);
  await opened.page.click('#sample');
  await opened.page.waitForFunction(() => (document.getElementById('manifest-names') as HTMLOutputElement).value === 'cluster.yaml');
  await opened.page.selectOption('#node', 'node-a');
  return opened;
}

/** Runs, and waits for the run to end (the buttons come back). */
async function run(page: Page): Promise<void> {
  await page.click('#run');
  await page.waitForFunction(() => !(document.getElementById('run') as HTMLButtonElement).disabled);
}

const alertText = (page: Page) => page.locator('[role="alert"]').textContent();

function onlyLocal(log: PageLog): void {
  expect(log.errors).toEqual([]);
  // blob: URLs of the page's own origin are its downloads.
  expect(log.requests.filter((url) => !url.startsWith(serving.url) && !url.startsWith(`blob:${serving.url}`))).toEqual([]);
}

describe('playground', () => {
  it('replays the bundled sample as the CLI does', async () => {
    const summaryFile = join(tmp, 'summary.json');
    const cliRun = await cli(['replay', SAMPLE, '--cluster', CLUSTER, '--node', 'node-a', '--summary', summaryFile]);
    expect(cliRun.code).toBe(0);
    const want = (JSON.parse(readFileSync(summaryFile, 'utf8')) as { verdicts: Record<string, number> }).verdicts;
    expect(Object.values(want).reduce((a, b) => a + b)).toBe(1256);

    const { page, log } = await withSample();
    await run(page);
    await expect.poll(() => page.locator('#result').isVisible()).toBe(true);
    expect(await page.locator('#error').isHidden()).toBe(true);
    expect(verdictsOfSummary((await page.textContent('#summary')) ?? '')).toEqual(want);
    // The report draws the same counts, each in an element tagged with its place in the summary JSON.
    const drawn = await page.$$eval('[data-summary^="verdicts."]', (cells) =>
      Object.fromEntries(
        cells.map((c) => [c.getAttribute('data-summary')!.slice('verdicts.'.length), Number(c.getAttribute('data-value'))]),
      ),
    );
    expect(drawn).toEqual(want);
    expect(await page.textContent('#command')).toBe(
      'svcpath replay sample.pcap --cluster cluster.yaml --node node-a --out output.pcap --verdicts verdicts.jsonl',
    );

    // The downloads are the run's outputs: a verdict line per packet, the TX and REDIRECT frames.
    const download = async (name: string) => {
      const [file] = await Promise.all([page.waitForEvent('download'), page.click(`#downloads a[download="${name}"]`)]);
      expect(file.suggestedFilename()).toBe(name);
      return readFileSync(await file.path());
    };
    const lines = (await download('verdicts.jsonl')).toString('utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(1256);
    const sent = lines.map((l) => JSON.parse(l) as { verdict: string }).filter((v) => v.verdict === 'TX' || v.verdict === 'REDIRECT');
    expect(sent).toHaveLength(want.TX + want.REDIRECT);
    const out = await download('output.pcap');
    expect(out.readUInt32LE(0)).toBe(0xa1b2c3d4);

    mkdirSync(join(PROJECT_ROOT, 'test-output'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    onlyLocal(log);
    await page.close();
  });

  it('shows a truncated capture as the CLI says it, after what came before it', async () => {
    const dir = mkdtempSync(join(tmp, 'truncated-'));
    const bytes = readFileSync(SAMPLE).subarray(0, 100_000);
    writeFileSync(join(dir, 'broken.pcap'), bytes);
    const cliRun = await cliIn(dir, ['replay', 'broken.pcap', '--cluster', CLUSTER, '--node', 'node-a']);
    expect(cliRun.code).toBe(1);
    const line = cliRun.stderr.split('\n').at(-1)!;
    expect(line).toMatch(/^svcpath: broken\.pcap: record \d+ .*truncated/);

    const { page, log } = await withSample();
    await page.setInputFiles('#capture-file', { name: 'broken.pcap', mimeType: 'application/octet-stream', buffer: bytes });
    await run(page);
    expect(await alertText(page)).toBe(line);
    // What was processed before the bad record is shown, as the CLI prints it.
    expect(verdictsOfSummary((await page.textContent('#summary')) ?? '')).toEqual(verdictsOfSummary(cliRun.stdout));
    onlyLocal(log);
    await page.close();
  });

  it('shows garbage, a truncated gzip stream and a broken manifest as the CLI does', async () => {
    const dir = mkdtempSync(join(tmp, 'broken-'));
    const sample = readFileSync(SAMPLE);
    const gzip = gzipSync(sample);
    const files = {
      'garbage.pcap': Buffer.from('this is not a capture, only text\n'),
      'cut.pcap.gz': gzip.subarray(0, gzip.length - 1000),
    };
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
    const manifest = 'apiVersion: v1\nkind: Service\nmetadata: {name: web\nspec: {}\n';
    writeFileSync(join(dir, 'bad.yaml'), manifest);

    const { page, log } = await withSample();
    for (const [name, bytes] of Object.entries(files)) {
      const cliRun = await cliIn(dir, ['replay', name, '--cluster', CLUSTER, '--node', 'node-a']);
      expect(cliRun.code, name).toBe(1);
      await page.setInputFiles('#capture-file', { name, mimeType: 'application/octet-stream', buffer: bytes });
      await run(page);
      expect(await alertText(page), name).toBe(cliRun.stderr.split('\n').at(-1));
    }
    // The packets inflated before the gzip stream broke were replayed, as the CLI replays them.
    const replayed = /^cut\.pcap\.gz: (\d+) packets replayed/.exec((await page.textContent('#summary')) ?? '');
    expect(Number(replayed?.[1])).toBeGreaterThan(0);
    const cliRun = await cliIn(dir, ['replay', 'garbage.pcap', '--cluster', 'bad.yaml']);
    expect(cliRun.code).toBe(1);
    await page.setInputFiles('#manifest-files', { name: 'bad.yaml', mimeType: 'text/yaml', buffer: Buffer.from(manifest) });
    // Said as soon as the manifests are given (the page reads their Nodes), and again at a run.
    await expect.poll(() => alertText(page)).toBe(cliRun.stderr);
    await run(page);
    expect(await alertText(page)).toBe(cliRun.stderr);
    onlyLocal(log);
    await page.close();
  });
});
