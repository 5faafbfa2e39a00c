// What --report collects (control/runtime/report-data.ts), through the CLI,
// checked against what the run computes another way: the summary's counters
// (the datapath's stats maps, not the descriptors the report reads), the
// verdict lines, the conntrack timeouts worked by hand, the flows' packets
// decoded from the capture.
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDatapath } from '../control/cli/common-flags.js';
import { ReportCollector } from '../control/runtime/report-data.js';
import type { DiffReport } from '../control/runtime/diff.js';
import type { ReportData, RunReport } from '../control/runtime/report-types.js';
import { replay } from '../control/runtime/replay.js';
import { buildSummary, readCounters } from '../control/runtime/summary.js';
import { openCapture, createPcapWriter } from '../traces/pcap.js';
import { createPcapngWriter } from '../traces/pcapng.js';
import { cli, udp } from './helpers.js';

const SAMPLE = 'traces/samples/sample.pcap';
const CLUSTER = 'traces/samples/cluster.yaml';
const tmp = () => mkdtempSync(join(tmpdir(), 'svcpath-report-data-'));

/** The data a report file holds, as the page reads it. */
function reportDataOf(file: string): ReportData {
  const html = readFileSync(file, 'utf8');
  const json = /<script type="application\/json" id="svcpath-report">([\s\S]*?)<\/script>/.exec(html);
  if (!json) throw new Error(`${file} holds no report data`);
  return JSON.parse(json[1]) as ReportData;
}

async function replayWithReport(capture: string, flags: string[] = [], cluster = CLUSTER) {
  const dir = tmp();
  const files = { report: join(dir, 'r.html'), summary: join(dir, 's.json'), verdicts: join(dir, 'v.jsonl') };
  const run = await cli([
    'replay',
    capture,
    '--cluster',
    cluster,
    '--node',
    'node-a',
    ...flags,
    '--report',
    files.report,
    '--summary',
    files.summary,
    '--verdicts',
    files.verdicts,
  ]);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  const data = reportDataOf(files.report);
  return { data, run: data.run!, files, verdicts: readFileSync(files.verdicts, 'utf8') };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const cumulative = (xs: number[]) => xs.map((_, i) => sum(xs.slice(0, i + 1)));

/** Every series counts what the summary counts, bin by bin adding up. */
function expectSeriesAddUp(run: RunReport): void {
  const { series, summary } = run;
  const bins = series.time.length;
  for (const [verdict, counts] of Object.entries(series.packets)) {
    expect(counts.length, verdict).toBe(bins);
    expect(sum(counts), verdict).toBe(summary.verdicts[verdict]);
  }
  expect(Object.keys(series.packets).sort()).toEqual(Object.keys(summary.verdicts).sort());
  expect(sum(series.newFlows)).toBe(sum(summary.services.map((s) => s.flows)));
  expect(run.flows.total).toBe(sum(summary.services.map((s) => s.flows)));
  for (const s of [series.newFlows, series.conntrack, series.masqueradePorts]) expect(s.length).toBe(bins);
}

describe('--report data', () => {
  it('the sample: series add up to the summary; nothing expires in its 1.2 s, so the census is the running sum of new flows', async () => {
    const { run, data } = await replayWithReport(SAMPLE);
    expect(data.command).toMatch(
      new RegExp(`^svcpath replay ${SAMPLE} --cluster ${CLUSTER} --node node-a --report \\S+/r.html --summary `),
    );
    expect(data.generator).toMatch(/^svcpath \d+\.\d+\.\d+/);
    expectSeriesAddUp(run);
    const { series } = run;
    expect(series.binSeconds * 1000).toBe(2 ** Math.round(Math.log2(series.binSeconds * 1000)));
    expect(series.time.length).toBeLessThanOrEqual(500);
    // 1.18 s of capture: more than 250 bins of 4 ms.
    expect(series.time.length).toBeGreaterThan(250);
    expect(series.conntrack).toEqual(cumulative(series.newFlows));
    expect(series.masqueradePorts.every((n) => n === 0)).toBe(true);
    expect(series.markers).toEqual([]);
  });

  it("the sample: the flow table holds every flow, and its packets are the backends' packets", async () => {
    const { run } = await replayWithReport(SAMPLE);
    const { rows } = run.flows;
    expect(rows.length).toBe(run.flows.total);
    expect(rows.map((r) => r.packet)).toEqual([...rows.map((r) => r.packet)].sort((a, b) => a - b));
    for (const s of run.summary.services) {
      for (const b of s.backends) {
        const mine = rows.filter((r) => r.service === s.service && r.backend === b.backend);
        expect(mine.length, `${s.service} ${b.backend} flows`).toBe(b.flows);
        expect(sum(mine.map((r) => r.packets)), `${s.service} ${b.backend} packets`).toBe(b.packets);
        expect(sum(mine.map((r) => r.bytes)), `${s.service} ${b.backend} bytes`).toBe(b.bytes);
      }
    }
    for (const r of rows) expect(r.trace).toBe(`svcpath trace ${SAMPLE} --cluster ${CLUSTER} --node node-a --flow ${r.client}`);
  });

  it("a flow's first packet, client and frontend are those of the capture's frame", async () => {
    const { run } = await replayWithReport(SAMPLE);
    const frames = new Map<number, { src: string; dst: string }>();
    const { decodeCaptured } = await import('../traces/frames.js');
    const { hostPort } = await import('../control/compile/layout.js');
    for (const rec of openCapture(SAMPLE).records()) {
      const d = decodeCaptured(rec.linktype, rec.data);
      const ip = d.ipv4 ?? d.ipv6;
      const l4 = d.tcp ?? d.udp;
      if (ip && l4) frames.set(rec.n, { src: hostPort(ip.src, l4.sport), dst: hostPort(ip.dst, l4.dport) });
    }
    for (const r of run.flows.rows) expect(frames.get(r.packet), `packet ${r.packet}`).toEqual({ src: r.client, dst: r.frontend });
  });

  it("Maglev shares: each table adds up to 1; the balance names the summary's backends", async () => {
    const { run } = await replayWithReport(SAMPLE);
    for (const b of run.balance) {
      const summary = run.summary.services.find((s) => s.service === b.service)!;
      expect(b.flows).toBe(summary.flows);
      expect(b.backends.map((x) => x.backend)).toEqual(summary.backends.map((x) => x.backend));
      const shares = b.backends.map((x) => x.expected).filter((x) => x !== null) as number[];
      if (shares.length > 0) expect(sum(shares)).toBeCloseTo(1, 9);
    }
    const web = run.balance.find((b) => b.service === 'default/web:http')!;
    // Two backends in a table of 16381 slots: 8191 and 8190.
    expect(web.backends.map((b) => b.expected! * 16381).sort()).toEqual([8190, 8191].map((n) => expect.closeTo(n, 6)));
  });

  it('deciding with a report changes no decision: the verdict lines are the same without it', async () => {
    const dir = tmp();
    const plain = join(dir, 'plain.jsonl');
    await cli(['replay', SAMPLE, '--cluster', CLUSTER, '--node', 'node-a', '--verdicts', plain]);
    const { verdicts } = await replayWithReport(SAMPLE);
    expect(verdicts).toBe(readFileSync(plain, 'utf8'));
  });

  it('pcapng (the reader path) makes the same report as classic pcap (the zero-copy path)', async () => {
    const dir = tmp();
    const ng = join(dir, 'sample.pcapng');
    const w = createPcapngWriter(ng, { interfaces: [{ linktype: 1, tsresolNs: false }] });
    for (const r of openCapture(SAMPLE).records()) w.write(0, r.tsSec, r.tsNsec, r.data, r.origlen);
    w.close();
    const a = await replayWithReport(SAMPLE);
    const b = await replayWithReport(ng);
    expect(b.run.series).toEqual(a.run.series);
    expect(b.run.balance).toEqual(a.run.balance);
    expect(b.run.flows.rows.map((r) => ({ ...r, trace: '' }))).toEqual(a.run.flows.rows.map((r) => ({ ...r, trace: '' })));
  });

  it('--masquerade-all: masquerade ports in use are the live masqueraded flows', async () => {
    const { run } = await replayWithReport(SAMPLE, ['--masquerade-all']);
    expectSeriesAddUp(run);
    const masqueradedFlows = sum(run.balance.map((b) => b.masqueraded.flows));
    expect(masqueradedFlows).toBeGreaterThan(0);
    expect(run.flows.rows.filter((r) => r.masqueraded).length).toBe(masqueradedFlows);
    // Nothing expires: ports in use at the end are the masqueraded flows.
    expect(run.series.masqueradePorts.at(-1)).toBe(masqueradedFlows);
  });

  it('flows expire on the conntrack timeouts: two UDP flows at 0 s are gone by 100 s (udp timeout 30 s); bins double to fit', async () => {
    const dir = tmp();
    const capture = join(dir, 'gap.pcap');
    const w = createPcapWriter(capture, { linktype: 1 });
    const t0 = 1_767_225_600;
    w.write(t0, 0, udp('10.244.0.100', 40001, '10.96.0.53', 53));
    w.write(t0, 1000, udp('10.244.0.101', 40002, '10.96.0.53', 53));
    w.write(t0 + 20, 0, udp('10.244.0.100', 40001, '10.96.0.53', 53));
    w.write(t0 + 100, 0, udp('10.244.0.102', 40003, '10.96.0.53', 53));
    w.close();
    const { run } = await replayWithReport(capture);
    expectSeriesAddUp(run);
    const { series } = run;
    expect(series.time.length).toBeLessThanOrEqual(500);
    // 100 s in at most 500 bins of 2^k ms: 256 ms.
    expect(series.binSeconds).toBe(0.256);
    const at = (seconds: number) => series.conntrack[Math.floor(seconds / series.binSeconds)];
    expect(at(1)).toBe(2);
    // The second flow's last packet was at 0.001 s: live to 30.001 s; the first's, at 20 s: to 50 s.
    expect(at(35)).toBe(1);
    expect(at(60)).toBe(0);
    expect(series.conntrack.at(-1)).toBe(1);
    expect(sum(series.newFlows)).toBe(3);
  });

  it("a cap of bins merges pairs: counts add up, the census keeps each merged bin's end", async () => {
    const fine = (await replayWithReport(SAMPLE)).run.series;
    const { compiled, dp } = await buildDatapath({ cluster: [CLUSTER], node: 'node-a' });
    const collector = new ReportCollector(dp, () => compiled, { traceCommand: 'svcpath trace', maxBins: 8 });
    const result = await replay(SAMPLE, compiled, dp, { report: collector });
    const { series } = collector.finish(buildSummary(result, compiled, readCounters(dp, compiled), [], []));
    expect(series.time.length).toBeLessThanOrEqual(8);
    const ratio = series.binSeconds / fine.binSeconds;
    expect(Number.isInteger(Math.log2(ratio))).toBe(true);
    for (const [verdict, counts] of Object.entries(series.packets)) {
      const merged = counts.map((_, k) => sum(fine.packets[verdict].slice(k * ratio, (k + 1) * ratio)));
      expect(counts, verdict).toEqual(merged);
    }
    // At each merged bin's end, as the fine series had it at the same moment (its last bin may be the capture's end).
    expect(series.conntrack.slice(0, -1)).toEqual(series.conntrack.slice(0, -1).map((_, k) => fine.conntrack[(k + 1) * ratio - 1]));
    expect(series.conntrack.at(-1)).toBe(fine.conntrack.at(-1));
  });

  it('with --events: a marker per applied sync, at its time, with the flows it flushed or left on backends that went', async () => {
    const { run } = await replayWithReport('traces/samples/rolling-update.pcap', [
      '--events',
      'traces/samples/rolling-update.events.jsonl',
    ]);
    expectSeriesAddUp(run);
    const syncs = run.summary.changes!.syncs;
    expect(run.series.markers.map((m) => m.state)).toEqual(syncs.map((s) => s.state));
    for (const [i, m] of run.series.markers.entries()) {
      const s = syncs[i];
      expect(m.time).toBeCloseTo(Number(s.at), 6);
      expect(m.flows).toBe(sum(Object.values(s.onRemovedBackends)) + sum(Object.values(s.flushed)));
    }
    expect(run.series.markers.some((m) => m.flows > 0)).toBe(true);
    const flushed = syncs.find((s) => sum(Object.values(s.flushed)) > 0)!;
    expect(flushed).toBeDefined();
  });

  it('diff --report: per Service a matrix whose cells add up to its flows, off the diagonal to its changed flows, as --json has them', async () => {
    const dir = tmp();
    const after = join(dir, 'after.yaml');
    writeFileSync(after, readFileSync(CLUSTER, 'utf8').replaceAll('10.244.1.20', '10.244.1.21'));
    const args = ['diff', SAMPLE, '--cluster', CLUSTER, '--against', after, '--node', 'node-a'];
    const json = await cli([...args, '--json']);
    const report = JSON.parse(json.stdout) as DiffReport;
    const page = await cli([...args, '--report', join(dir, 'd.html')]);
    expect(page.code).toBe(0);
    const { diff } = reportDataOf(join(dir, 'd.html'));
    expect(diff!.report).toEqual(report);
    expect(report.changed).toBeGreaterThan(0);
    for (const s of report.services.filter((x) => x.flows > 0)) {
      const m = diff!.matrices.find((x) => x.service === s.service)!;
      expect(sum(m.flows.flat()), s.service).toBe(s.flows);
      const moved = m.flows.flatMap((row, r) => row.filter((_, c) => m.before[r] !== m.after[c]));
      expect(sum(moved), s.service).toBe(s.changed);
    }
    const web = diff!.matrices.find((x) => x.service === 'default/web:http')!;
    expect(web.after).toContain('TX SERVICE 10.244.1.21:8080');
    expect(web.before).not.toContain('TX SERVICE 10.244.1.21:8080');
  });

  it("test --report: every case with its replay, which adds up as a replay's does", async () => {
    const dir = tmp();
    const run = await cli(['test', 'test/cases', '--report', join(dir, 't.html')]);
    expect(run.code).toBe(0);
    const { cases } = reportDataOf(join(dir, 't.html'));
    expect(cases!.map((c) => c.name)).toEqual(readdirSync('test/cases').sort());
    for (const c of cases!) {
      expect(c.passed, c.name).toBe(true);
      expect(c.failures).toEqual([]);
      expectSeriesAddUp(c.run!);
      expect(c.run!.flows.rows.every((r) => r.trace.startsWith(`svcpath trace test/cases/${c.name}/input.pcap`))).toBe(true);
    }
    expect(cases!.find((c) => c.name === 'sctp-udp-nanosecond')!.run!.flows.rows.some((r) => r.protocol === 'SCTP')).toBe(true);
  });

  it('test --report: a failing case is in it with its first differences, and its replay', async () => {
    const dir = tmp();
    cpSync('test/cases/clusterip-sample', join(dir, 'broken'), { recursive: true });
    const expected = join(dir, 'broken', 'expected', 'verdicts.jsonl');
    writeFileSync(expected, readFileSync(expected, 'utf8').replace('"verdict":"TX"', '"verdict":"DROP"'));
    const run = await cli(['test', join(dir, 'broken'), '--report', join(dir, 't.html')]);
    expect(run.code).toBe(1);
    const [c] = reportDataOf(join(dir, 't.html')).cases!;
    expect(c.passed).toBe(false);
    expect(c.failures[0]).toMatch(/^packet \d+: verdict differs$/);
    expect(run.stdout).toContain(c.failures[0]);
    expectSeriesAddUp(c.run!);
  });
});
