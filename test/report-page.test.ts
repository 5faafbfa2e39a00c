// The HTML report (--report) in a real browser: the built page (dist/web/)
// in reportHtml's document. The CLI's reports of the bundled sample and of
// its rolling update (--events) are read against the --summary JSON of the
// same run; report data made by hand around the sample's reviewed summary
// (test/report-fixture.ts) covers what those runs lack: a capped flow table,
// masquerading, markup in a label, one bin, an empty replay, a diff, test
// cases. Every chart must put ink on its canvas in its series' colors, or
// shapes in its SVG; the flows table must sort, filter and copy; the page
// must ask for nothing but itself.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReportAssets } from '../control/cli/report-file.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { VERDICTS } from '../control/compile/layout.js';
import { inlineJson, reportHtml } from '../control/runtime/report-html.js';
import type { DiffView, ReportData, RunReport } from '../control/runtime/report-types.js';
import type { Summary } from '../control/runtime/summary.js';
import { ACCENT, VERDICT_COLORS } from '../web/report/colors.js';
import { launchChromium, openPage, type PageLog } from './browser.js';
import { cli } from './helpers.js';
import { HOSTILE_LABEL, reportOf, runOf, sampleSummary } from './report-fixture.js';

const SCREENSHOT = join(PROJECT_ROOT, 'test-output', 'report.png');
const dir = mkdtempSync(join(tmpdir(), 'svcpath-report-'));

/** The value at a dotted path ("services.2.backends.0.flows") of a JSON value. */
function at(value: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, key) => (v as Record<string, unknown> | undefined)?.[key], value);
}

interface Ink {
  chart: string;
  kind: 'canvas' | 'svg' | 'none';
  /** Canvas: pixels with any ink; SVG: shapes of non-zero size. */
  ink: number;
  /** Of the colors asked about, those drawn (opaque canvas pixels of that color, SVG fills and strokes). */
  colors: string[];
}

/** What each [data-chart] under `scope` drew, read back from its canvas pixels or its SVG's shapes. */
async function inkOf(page: Page, scope: string, colors: string[]): Promise<Ink[]> {
  return page.$$eval(
    `${scope} [data-chart]`,
    (charts, colors) => {
      const rgb = (hex: string) => [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));
      const near = (a: number[], b: number[]) => Math.abs(a[0] - b[0]) + Math.abs(a[1] - b[1]) + Math.abs(a[2] - b[2]) < 24;
      return charts.map((chart) => {
        const name = (chart as HTMLElement).dataset.chart!;
        const canvas = chart.querySelector('canvas');
        if (canvas) {
          const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
          let ink = 0;
          const found = new Set<string>();
          for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] === 0) continue;
            ink++;
            if (data[i + 3] < 200) continue;
            const px = [data[i], data[i + 1], data[i + 2]];
            for (const c of colors) if (near(px, rgb(c))) found.add(c);
          }
          return { chart: name, kind: 'canvas' as const, ink, colors: [...found] };
        }
        const svg = chart instanceof SVGSVGElement ? chart : chart.querySelector('svg');
        if (!svg) return { chart: name, kind: 'none' as const, ink: 0, colors: [] };
        const shapes = [...svg.querySelectorAll('rect, line')].filter((s) => {
          const box = (s as SVGGraphicsElement).getBBox();
          return box.width > 0 || box.height > 0;
        });
        const fills = shapes.map((s) => s.getAttribute('fill'));
        return { chart: name, kind: 'svg' as const, ink: shapes.length, colors: colors.filter((c) => fills.includes(c)) };
      });
    },
    colors,
  );
}

const ALL_COLORS = [...Object.values(VERDICT_COLORS), ACCENT];

const SAMPLE_REPLAY = ['replay', 'traces/samples/sample.pcap', '--cluster', 'traces/samples/cluster.yaml', '--node', 'node-a'];
const ROLLING_UPDATE = [
  'replay',
  'traces/samples/rolling-update.pcap',
  '--cluster',
  'traces/samples/cluster.yaml',
  '--node',
  'node-a',
  '--events',
  'traces/samples/rolling-update.events.jsonl',
];

/** The data a report file carries, read as the page reads it. */
function dataOf(html: string): ReportData {
  const json = /<script type="application\/json" id="svcpath-report">(.*?)<\/script>/s.exec(html);
  return JSON.parse(json![1]) as ReportData;
}

/** 0.4567 -> "45.7%", written here from the definition rather than taken from the page's code. */
function share(x: number): string {
  return `${(Math.round(x * 1000) / 10).toFixed(1)}%`;
}

/**
 * Every [data-summary] number under `scope` is the summary's at that path and
 * reads as it with separators; and the page shows every verdict, reason,
 * Service and backend count of the summary.
 */
async function expectSummaryNumbers(page: Page, scope: string, summary: Summary): Promise<void> {
  const mirrored = await page.$$eval(`${scope} [data-summary]`, (els) =>
    els.map((e) => ({ path: (e as HTMLElement).dataset.summary!, value: Number((e as HTMLElement).dataset.value), text: e.textContent })),
  );
  for (const { path, value, text } of mirrored) {
    expect(value, path).toBe(at(summary, path));
    expect(text, path).toBe(value.toLocaleString('en-US'));
  }
  const paths = new Set(mirrored.map((m) => m.path));
  const expected = [
    'packets',
    'written',
    ...Object.keys(summary.verdicts).map((v) => `verdicts.${v}`),
    ...summary.byVerdictAndReason.flatMap((_, i) => [`byVerdictAndReason.${i}.packets`, `byVerdictAndReason.${i}.bytes`]),
    ...summary.services.flatMap((s, i) => [
      ...['flows', 'packets', 'bytes'].map((key) => `services.${i}.${key}`),
      ...s.backends.flatMap((_, k) => ['flows', 'packets', 'bytes'].map((key) => `services.${i}.backends.${k}.${key}`)),
    ]),
  ];
  expect(expected.filter((path) => !paths.has(path))).toEqual([]);
  const verdicts = await page.$$eval(`${scope} [data-verdict]`, (els) =>
    els.map((e) => [(e as HTMLElement).dataset.verdict!, Number((e as HTMLElement).dataset.value)]),
  );
  expect(Object.fromEntries(verdicts)).toEqual(summary.verdicts);
}

/** A diff of the sample where web's second backend took 8 flows and api's third went (diff's words for the decisions). */
function diffView(): DiffView {
  const [web0, web1, web2] = ['10.244.0.12:8080', '10.244.1.20:8080', '10.244.1.21:8080'].map((b) => `TX SERVICE ${b}`);
  const api = ['10.244.0.40:8443', '10.244.1.41:8443', '10.244.2.42:8443'].map((b) => `TX SERVICE ${b}`);
  const dropped = 'DROP NO_ENDPOINTS';
  const changes = Array.from({ length: 12 }, (_, i) => ({
    flow: `TCP 10.244.0.${20 + i}:${41000 + i} > 10.96.0.10:80`,
    packet: 40 + i * 17,
    service: i < 8 ? 'default/web:http' : 'shop/api:https',
    before: i < 5 ? web0 : i < 8 ? web1 : api[2],
    after: i < 8 ? web2 : dropped,
  }));
  return {
    report: {
      trace: 'traces/samples/sample.pcap',
      flows: 146,
      changed: 20,
      services: [
        {
          service: 'default/web:http',
          flows: 50,
          changed: 8,
          moves: { [`${web0} -> ${web2}`]: 5, [`${web1} -> ${web2}`]: 3 },
          stayed: { [web0]: 22, [web1]: 20 },
        },
        {
          service: 'shop/api:https',
          flows: 36,
          changed: 12,
          moves: { [`${api[2]} -> ${dropped}`]: 12 },
          stayed: { [api[0]]: 11, [api[1]]: 11, [api[2]]: 2 },
        },
      ],
      changes,
    },
    changesCap: 12,
    matrices: [
      {
        service: 'default/web:http',
        before: [web0, web1],
        after: [web0, web1, web2],
        flows: [
          [22, 0, 5],
          [0, 20, 3],
        ],
      },
      {
        service: 'shop/api:https',
        before: api,
        after: [dropped, ...api],
        flows: [
          [0, 11, 0, 0],
          [0, 0, 11, 0],
          [12, 0, 0, 2],
        ],
      },
    ],
  };
}

/** A replay of an empty capture: no verdicts, no Services, no bins. */
function emptySummary(): Summary {
  return { ...sampleSummary(), packets: 0, verdicts: {}, reasons: {}, byVerdictAndReason: [], services: [], skipped: [] };
}

describe('the HTML report page', () => {
  let browser: Browser;
  const assets = readReportAssets();

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  async function load(file: string): Promise<{ page: Page; log: PageLog; url: string }> {
    const { page, log } = await openPage(browser);
    const url = pathToFileURL(file).href;
    await page.goto(url, { waitUntil: 'load' });
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(done)));
    return { page, log, url };
  }

  async function open(data: ReportData, name: string): Promise<{ page: Page; log: PageLog; url: string }> {
    const file = join(dir, name);
    writeFileSync(file, reportHtml(data, assets));
    return load(file);
  }

  it('keeps the verdict colors in the datapath order and the page light', () => {
    expect(Object.keys(VERDICT_COLORS)).toEqual([...VERDICTS]);
    expect(assets.script.length + assets.css.length).toBeLessThan(200_000);
  });

  it('inlines the data so that nothing in it can end its <script> element', () => {
    const data = reportOf({ command: 'svcpath replay </script><script>alert(1)</script>' });
    const html = reportHtml(data, assets);
    const json = inlineJson({ label: HOSTILE_LABEL });
    expect(json).not.toMatch(/[<\u2028\u2029]/);
    expect(JSON.parse(json)).toEqual({ label: HOSTILE_LABEL });
    expect(html.match(/<script\b/g)).toHaveLength(2);
    expect(html).toContain('<title>svcpath replay &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>');
    expect(html).toContain('<link rel="icon" href="data:,">');
  });

  describe('the report of a replay, made by the CLI beside its --summary', () => {
    const file = join(dir, 'sample.html');
    const summaryFile = join(dir, 'sample.summary.json');
    let data: ReportData;
    let run: RunReport;
    let summary: Summary;
    let page: Page;
    let log: PageLog;
    let url: string;

    beforeAll(async () => {
      process.chdir(PROJECT_ROOT);
      const r = await cli([...SAMPLE_REPLAY, '--report', file, '--summary', summaryFile]);
      expect(r).toMatchObject({ code: 0, stderr: '' });
      summary = JSON.parse(readFileSync(summaryFile, 'utf8'));
      data = dataOf(readFileSync(file, 'utf8'));
      run = data.run!;
      ({ page, log, url } = await load(file));
      mkdirSync(dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
    });

    it('loads with no error and no request but its own file', async () => {
      expect(log.errors).toEqual([]);
      expect(log.requests).toEqual([url]);
      expect(await page.title()).toBe(data.command);
    });

    it('draws every chart', async () => {
      const ink = await inkOf(page, '', ALL_COLORS);
      expect(ink.map((c) => c.chart).sort()).toEqual(
        [
          'verdicts',
          'packets',
          'new-flows',
          'conntrack',
          'masquerade-ports',
          ...summary.services.filter((s) => s.backends.length > 0).map(() => 'backends'),
        ].sort(),
      );
      for (const c of ink) expect(c.ink, c.chart).toBeGreaterThan(0);
      const byName = new Map(ink.map((c) => [c.chart, c]));
      const verdictColors = Object.keys(summary.verdicts).map((v) => VERDICT_COLORS[v]);
      expect(verdictColors).toHaveLength(5);
      expect(byName.get('verdicts')!.kind).toBe('svg');
      expect(byName.get('verdicts')!.colors.sort()).toEqual([...verdictColors].sort());
      expect(byName.get('packets')!.kind).toBe('canvas');
      expect(byName.get('packets')!.colors.sort()).toEqual([...verdictColors].sort());
      // The sample's node masquerades nothing: an all-zero series, whose line lies on the axis.
      expect(run.series.masqueradePorts.every((n) => n === 0)).toBe(true);
      for (const name of ['new-flows', 'conntrack', 'masquerade-ports']) expect(byName.get(name)!.colors, name).toEqual([ACCENT]);
      for (const c of ink.filter((c) => c.chart === 'backends')) expect(c.colors).toEqual([ACCENT]);
    });

    it('shows the numbers of the --summary JSON', async () => {
      await expectSummaryNumbers(page, '', summary);
    });

    it('shows Maglev’s expected share beside the share of flows each backend got', async () => {
      for (const svc of summary.services.filter((s) => s.backends.length > 0)) {
        const balance = run.balance.find((b) => b.service === svc.service)!;
        const shares = await page.$$eval(`[data-service="${svc.service}"] table.backends tbody tr`, (rows) =>
          rows.map((r) => [...r.querySelectorAll('td')].slice(-2).map((td) => td.textContent)),
        );
        expect(shares, svc.service).toEqual(
          svc.backends.map((b) => [
            share(balance.backends.find((e) => e.backend === b.backend)!.expected!),
            svc.flows > 0 ? share(b.flows / svc.flows) : '–',
          ]),
        );
      }
    });

    it('states the flow table’s cap', async () => {
      expect(run.flows.rows.length).toBe(run.flows.total);
      expect(await page.textContent('p.cap')).toBe(`All ${run.flows.total} flows of the replay, in order of their first packet.`);
    });

    const column = (key: string) =>
      page.$$eval(
        'table.flows tbody tr',
        (rows, key) => {
          const k = [...document.querySelectorAll('table.flows thead th')].findIndex((th) => (th as HTMLElement).dataset.key === key);
          return (rows as HTMLTableRowElement[]).map((r) => r.cells[k].dataset.value ?? r.cells[k].textContent!);
        },
        key,
      );

    it('sorts the flows by a column, then the other way', async () => {
      expect(await column('packet')).toEqual(run.flows.rows.map((r) => String(r.packet)));
      await page.click('table.flows th[data-key="bytes"]');
      const ascending = run.flows.rows.map((r) => r.bytes).sort((a, b) => a - b);
      expect((await column('bytes')).map(Number)).toEqual(ascending);
      await page.click('table.flows th[data-key="bytes"]');
      expect((await column('bytes')).map(Number)).toEqual([...ascending].reverse());
      expect(await page.getAttribute('table.flows th[data-key="bytes"]', 'aria-sort')).toBe('descending');
      await page.click('table.flows th[data-key="service"]');
      expect(await column('service')).toEqual(run.flows.rows.map((r) => r.service).sort());
    });

    it('filters the flows by the words typed', async () => {
      const backend = run.flows.rows.find((r) => r.service === 'shop/api:https')!.backend!;
      await page.fill('.filter input', `shop/api ${backend}`);
      const kept = run.flows.rows.filter((r) => r.service === 'shop/api:https' && r.backend === backend);
      expect(kept.length).toBeGreaterThan(1);
      expect((await column('packet')).map(Number).sort((a, b) => a - b)).toEqual(kept.map((r) => r.packet));
      expect(await page.textContent('.filter .shown')).toBe(`${kept.length} of ${run.flows.rows.length} rows match`);
      await page.fill('.filter input', '');
      expect(await column('packet')).toHaveLength(run.flows.rows.length);
    });

    it('copies a flow’s trace command, or selects it where the clipboard is closed', async () => {
      const traces = await page.$$eval('table.flows tbody tr td.trace code', (codes) => codes.slice(0, 2).map((c) => c.textContent));
      expect(traces[0]).toMatch(/^svcpath trace traces\/samples\/sample\.pcap /);
      const press = async (row: number) => {
        await page.click(`table.flows tbody tr:nth-child(${row + 1}) button.copy`);
        await page.waitForFunction((row) => document.querySelectorAll('table.flows tbody button.copy')[row].textContent !== 'copy', row);
        return page.$eval(`table.flows tbody tr:nth-child(${row + 1}) button.copy`, (b) => b.textContent);
      };
      // A clipboard that records what it is given, then none (a page the browser does not let write it).
      await page.evaluate(() => {
        const copied: string[] = [];
        Object.assign(window, { copied });
        Object.defineProperty(navigator, 'clipboard', {
          configurable: true,
          value: { writeText: async (text: string) => copied.push(text) },
        });
      });
      expect(await press(0)).toBe('copied');
      expect(await page.evaluate(() => (window as unknown as { copied: string[] }).copied)).toEqual([traces[0]]);
      await page.evaluate(() => Object.defineProperty(navigator, 'clipboard', { configurable: true, value: undefined }));
      expect(await press(1)).toBe('selected: Ctrl+C');
      expect(await page.evaluate(() => window.getSelection()!.toString())).toBe(traces[1]);
      expect(log.errors).toEqual([]);
    });
  });

  describe('the report of a replay with cluster changes, made by the CLI', () => {
    const file = join(dir, 'rolling-update.html');
    const summaryFile = join(dir, 'rolling-update.summary.json');
    let run: RunReport;
    let summary: Summary;
    let page: Page;
    let log: PageLog;

    beforeAll(async () => {
      process.chdir(PROJECT_ROOT);
      const r = await cli([...ROLLING_UPDATE, '--report', file, '--summary', summaryFile]);
      expect(r).toMatchObject({ code: 0, stderr: '' });
      summary = JSON.parse(readFileSync(summaryFile, 'utf8'));
      run = dataOf(readFileSync(file, 'utf8')).run!;
      ({ page, log } = await load(file));
    });

    it('marks each sync of the --summary JSON on every time chart and lists it', async () => {
      const syncs = summary.changes!.syncs;
      expect(syncs.length).toBeGreaterThan(10);
      // "seconds.nanoseconds" of the capture's clock, from the first packet.
      const at = (sync: (typeof syncs)[number]) => `+${(Number(sync.at) - run.series.start).toFixed(3)} s`;
      for (const chart of ['packets', 'new-flows', 'conntrack', 'masquerade-ports']) {
        const labels = await page.$$eval(`[data-chart="${chart}"] .marker`, (els) => els.map((e) => e.textContent));
        expect(labels, chart).toEqual(syncs.map((s) => String(s.state)));
      }
      const table = await page.$$eval('table.markers tbody tr', (rows) =>
        (rows as HTMLTableRowElement[]).map((r) => [r.cells[0].textContent, r.cells[1].textContent]),
      );
      expect(table).toEqual(syncs.map((s) => [String(s.state), at(s)]));
      expect(log.errors).toEqual([]);
    });

    it('shows the numbers of the --summary JSON', async () => {
      await expectSummaryNumbers(page, '', summary);
    });
  });

  describe('hand-made data: a capped flow table, masquerading, a label with markup', () => {
    const data = reportOf({ run: runOf(sampleSummary()) });
    const run = data.run!;
    let page: Page;
    let log: PageLog;

    beforeAll(async () => {
      ({ page, log } = await open(data, 'hand-made.html'));
    });

    it('shows the expected and the got share of each backend, and the masquerade counts', async () => {
      const api = await page.$$eval('[data-service="shop/api:https"] table.backends tbody tr', (rows) =>
        rows.map((r) => [...r.querySelectorAll('td')].slice(-2).map((td) => td.textContent)),
      );
      // 11, 11 and 14 of 36 flows; the even table's third each.
      expect(api).toEqual([
        ['33.3%', '30.6%'],
        ['33.3%', '30.6%'],
        ['33.3%', '38.9%'],
      ]);
      expect(await page.textContent('[data-service="shop/api:https"] .masquerade')).toBe(
        'Masqueraded (source rewritten to the node’s): 4 of 36 flows, 37 packets.',
      );
    });

    it('marks the cluster changes on every time chart, their labels as text', async () => {
      const titles = await page.$$eval('.chart .marker', (els) => els.map((e) => e.getAttribute('title')));
      expect(titles).toHaveLength(4 * run.series.markers.length);
      expect(titles.filter((t) => t!.includes(HOSTILE_LABEL))).toHaveLength(4);
      expect(await page.$('#injected')).toBeNull();
      const table = await page.$$eval('table.markers tbody tr', (rows) =>
        (rows as HTMLTableRowElement[]).map((r) => [...r.cells].map((c) => c.textContent)),
      );
      expect(table).toEqual(
        run.series.markers.map((m) => [
          String(m.state),
          `+${(m.time - run.series.start).toFixed(3)} s`,
          m.label,
          String(m.flows),
          String(m.packetsChanged),
        ]),
      );
      expect(log.errors).toEqual([]);
    });

    it('states the flow table’s cap', async () => {
      expect(await page.textContent('p.cap')).toBe(
        `The first 60 of ${run.flows.total} flows, in order of their first packet (the report keeps at most 60).`,
      );
    });
  });

  describe('a diff, test cases, one bin and an empty replay', () => {
    const view = diffView();
    // One bin, and the 3 busiest of the sample's 6 Services as the collector keeps them past its cap.
    const full = runOf(sampleSummary(), 1, 1, false);
    const busiest = [...full.summary.services].sort((a, b) => b.packets - a.packets).slice(0, 3);
    const oneBin = {
      ...full,
      summary: { ...full.summary, services: full.summary.services.filter((s) => busiest.includes(s)) },
      services: { cap: 3, total: 6 },
      balance: full.balance.filter((b) => busiest.some((s) => s.service === b.service)),
    };
    const data = reportOf({
      command: 'svcpath test test/cases --report r.html',
      diff: view,
      cases: [
        { name: 'sample', passed: true, failures: [], run: oneBin },
        {
          name: 'empty',
          passed: true,
          failures: [],
          run: { ...runOf(emptySummary(), 0, 1, false), balance: [], flows: { cap: 60, total: 0, rows: [] } },
        },
        {
          name: 'moved',
          passed: false,
          failures: [
            'packet 12: verdict TX SERVICE, expected REDIRECT SERVICE',
            'packet 40: backend 10.244.1.20:8080, expected 10.244.0.12:8080',
          ],
        },
      ],
    });
    let page: Page;
    let log: PageLog;

    beforeAll(async () => {
      ({ page, log } = await open(data, 'cases.html'));
    });

    it('shows the diff’s totals and each move matrix', async () => {
      const totals = await page.$$eval('[data-diff]', (els) =>
        els.map((e) => [(e as HTMLElement).dataset.diff!, Number((e as HTMLElement).dataset.value)]),
      );
      for (const [path, value] of totals) expect(value, path as string).toBe(at(view.report, path as string));
      expect(totals.map(([p]) => p)).toEqual(expect.arrayContaining(['flows', 'changed', 'services.0.changed', 'services.1.changed']));
      for (const m of view.matrices) {
        const cells = await page.$$eval(`table[data-matrix="${m.service}"] tbody tr`, (rows) =>
          rows.map((r) => [...r.querySelectorAll('td')].map((td) => Number(td.dataset.value))),
        );
        expect(cells, m.service).toEqual(m.flows);
      }
      expect(await page.$$eval('table.changes tbody tr', (rows) => rows.length)).toBe(12);
      expect(await page.textContent('section:has(table.changes) p.cap')).toBe(
        'The first 12 of 20 changed flows (the report keeps at most 12).',
      );
      // The diagonal: the flows that stayed.
      expect(await page.$$eval('table.matrix td.same', (tds) => tds.map((td) => Number(td.dataset.value)))).toEqual([22, 20, 11, 11, 2]);
    });

    it('lists the cases with their failures', async () => {
      const rows = await page.$$eval('table.cases tbody tr', (rows) =>
        (rows as HTMLTableRowElement[]).map((r) => [
          r.className,
          r.cells[0].textContent,
          r.cells[1].textContent,
          [...r.querySelectorAll('li')].map((li) => li.textContent),
        ]),
      );
      expect(rows).toEqual(data.cases!.map((c) => [c.passed ? 'pass' : 'fail', c.name, c.passed ? 'pass' : 'FAIL', c.failures]));
      expect(await page.$$eval('details.case-run', (els) => els.map((e) => (e as HTMLElement).dataset.case))).toEqual(['sample', 'empty']);
    });

    it('draws a case’s run when opened, with one bin, and an empty one', async () => {
      expect(await page.$$eval('details.case-run [data-chart]', (els) => els.length)).toBe(0);
      for (const name of ['sample', 'empty']) {
        await page.click(`details[data-case="${name}"] > summary`);
        await page.evaluate(() => new Promise((done) => requestAnimationFrame(done)));
        const ink = await inkOf(page, `details[data-case="${name}"]`, ALL_COLORS);
        const expected = name === 'sample' ? 5 + oneBin.balance.length : 5;
        expect(ink, name).toHaveLength(expected);
        for (const c of ink) expect(c.ink, `${name} ${c.chart}`).toBeGreaterThan(0);
        if (name === 'sample') {
          for (const c of ink.filter((c) => c.kind === 'canvas' && c.chart !== 'packets')) expect(c.colors, c.chart).toEqual([ACCENT]);
          // In one bin the lines of 1 ABORTED and 2 DROPs lie on one pixel row beside 847 TX: those apart by 2% of the scale must show.
          const verdicts = oneBin.summary.verdicts;
          const apart = Object.keys(verdicts).filter((v) => verdicts[v] >= 0.02 * Math.max(...Object.values(verdicts)));
          expect(apart).toEqual(['TX', 'REDIRECT', 'PASS']);
          expect(ink.find((c) => c.chart === 'packets')!.colors).toEqual(expect.arrayContaining(apart.map((v) => VERDICT_COLORS[v])));
        }
      }
      expect(await page.textContent('details[data-case="empty"] p.cap')).toBe('All 0 flows of the replay, in order of their first packet.');
      expect(await page.textContent('details[data-case="empty"] section:has([data-chart="packets"]) p.note')).toBe(
        'The capture has no packets: nothing happened over time.',
      );
      expect(await page.textContent('details[data-case="sample"] section:has(table.services) p.cap')).toBe(
        'The 3 Services with the most packets of 6 (the report keeps at most 3).',
      );
      expect(await page.$$eval('details[data-case="sample"] table.services tbody tr', (rows) => rows.length)).toBe(3);
      expect(log.errors).toEqual([]);
    });
  });
});
