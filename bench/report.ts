/**
 * report: what `--report` costs a replay, and how large its file is, on a
 * 10M-packet capture of the mix (the bound: under 2 MB). The same
 * whole `svcpath replay` process as replay-e2e, with `--summary` only (no
 * verdicts or output capture, so that the report's own work shows), without
 * and with `--report`.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { MIX_CLI_FLAGS } from '../traces/synth/bench-traffic.js';
import { runCli, writeRepeatedTrace } from './captures.js';
import type { BenchContext } from './context.js';
import { fromRuns, formatResult, type ScenarioResult } from './measure.js';

const PACKETS = 10_000_000;
const CLI_RUNS = 3;

export interface ReportBenchReport {
  packets: number;
  /** Bytes of the HTML report. */
  reportBytes: number;
  /** Mean seconds of a replay with --report over one without. */
  ratio: number;
}

export async function reportBench(ctx: BenchContext): Promise<{ results: ScenarioResult[]; report: ReportBenchReport }> {
  const { clusterPath, trace } = ctx.mixFixture();
  const capture = join(ctx.scratch, 'report-capture.pcap');
  const { packets, bytes } = writeRepeatedTrace(capture, trace, { packets: PACKETS });
  console.log(`report: ${packets} packets of the mix, ${(bytes / 1e6).toFixed(0)} MB of pcap`);
  const html = join(ctx.scratch, 'report.html');
  const base = ['replay', capture, '--cluster', clusterPath, ...MIX_CLI_FLAGS, '--summary', join(ctx.scratch, 'report-summary.json')];
  const timed = (extra: string[]) => Array.from({ length: CLI_RUNS }, () => runCli([...base, ...extra]).seconds);
  const plain = timed([]);
  const withReport = timed(['--report', html]);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const results = [fromRuns('replay-summary', 'wasm', packets, plain), fromRuns('replay-report', 'wasm', packets, withReport)];
  for (const r of results) console.log(formatResult(r));
  const report = { packets, reportBytes: statSync(html).size, ratio: mean(withReport) / mean(plain) };
  console.log(
    `report: ${(report.reportBytes / 1e6).toFixed(2)} MB of HTML; a replay with --report takes ${report.ratio.toFixed(2)}x one without`,
  );
  return { results, report };
}
