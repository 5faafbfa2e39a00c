/**
 * `npm run bench [-- --json FILE] [-- --only a,b] [-- --keep] [-- --kernel]`:
 * the WASM datapath (`wasm`) against the TypeScript reference model (`ts`,
 * model/) on identical packets, plus compile time and memory; with
 * `--kernel`, ct-hit also against an XDP program of its shape in the running
 * kernel (bench/kernel.ts). bench/README.md says what each scenario measures.
 *
 *   ct-hit          established IPv4 TCP flows: conntrack hit, DNAT, checksums
 *   new-flows       every packet a new flow: service lookup, Maglev, two CT inserts, LRU eviction
 *   mixed           closed-loop realistic mix (traces/synth/bench-traffic.ts), 20% IPv6
 *   scale-services  100k Services, 1M backends: half new flows, half established
 *   scale-ct        1M established flows in conntrack, packets in random order
 *   replay-e2e      pcap file to output pcap and verdicts, whole `svcpath replay` process
 *   replay-events   the same on 1M packets with 10,000 EndpointSlice changes (--events), against none
 *   memory          bytes per conntrack entry; peak RSS replaying 0.5 GB and 5 GB
 *   compile         10k Services x 10 endpoints to map entries
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compileReport, type CompileReport } from './compile.js';
import { BenchContext } from './context.js';
import { kernelCtHit, kernelSkipped, whyNoKernel, type KernelReport } from './kernel.js';
import { ctHit, mixed, newFlows, scaleCt, scaleServices, SCALE_MAGLEV_TABLE_SIZE, SCALE_SERVICES } from './inprocess.js';
import type { ScenarioResult } from './measure.js';
import { memory, type MemoryReport } from './memory.js';
import { type IoFloor, replayE2e } from './replay-e2e.js';
import { replayEvents, type ReplayEventsReport } from './replay-events.js';
import { reportBench, type ReportBenchReport } from './report.js';

const SCENARIOS = [
  'ct-hit',
  'new-flows',
  'mixed',
  'scale-services',
  'scale-ct',
  'replay-e2e',
  'replay-events',
  'report',
  'memory',
  'compile',
] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Report {
  date: string;
  cpu: string;
  cores: number;
  node: string;
  scenarios: ScenarioResult[];
  compile: Partial<CompileReport> & {
    scaleServices?: { services: number; endpointsPerService: number; maglevTableSize: number; compileMs: number; loadMs: number };
  };
  memory?: MemoryReport;
  replayEvents?: ReplayEventsReport;
  report?: ReportBenchReport;
  kernel?: KernelReport;
  ioFloor?: IoFloor;
}

function selected(only: string | undefined): Scenario[] {
  if (only === undefined) return [...SCENARIOS];
  const names = only.split(',').map((s) => s.trim());
  const unknown = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`--only: unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.join(', ')})`);
  return SCENARIOS.filter((s) => names.includes(s));
}

/** `--kernel` compares with the WASM ct-hit of the same run: it runs ct-hit even when `--only` leaves it out. */
function withKernel(scenarios: Scenario[], kernel: boolean): Scenario[] {
  if (!kernel || scenarios.includes('ct-hit')) return scenarios;
  console.log("--kernel: running ct-hit too, for the WASM time beside the kernel's");
  return ['ct-hit', ...scenarios];
}

function wasmNsPerPacket(report: Report, name: string): number {
  const result = report.scenarios.find((r) => r.name === name && r.impl === 'wasm');
  if (!result) throw new Error(`no WASM result of ${name}`);
  return result.nsPerPacket;
}

async function runScenario(scenario: Scenario, ctx: BenchContext, report: Report): Promise<void> {
  switch (scenario) {
    case 'ct-hit':
      report.scenarios.push(...(await ctHit()));
      break;
    case 'new-flows':
      report.scenarios.push(...(await newFlows()));
      break;
    case 'mixed':
      report.scenarios.push(...(await mixed(ctx)));
      break;
    case 'scale-services': {
      const { results, compileMs, loadMs } = await scaleServices();
      report.scenarios.push(...results);
      report.compile.scaleServices = {
        services: SCALE_SERVICES,
        endpointsPerService: 10,
        maglevTableSize: SCALE_MAGLEV_TABLE_SIZE,
        compileMs,
        loadMs,
      };
      break;
    }
    case 'scale-ct':
      report.scenarios.push(...(await scaleCt()));
      break;
    case 'replay-e2e': {
      const { results, ioFloor } = await replayE2e(ctx);
      report.scenarios.push(...results);
      report.ioFloor = ioFloor;
      break;
    }
    case 'replay-events': {
      const { results, report: events } = await replayEvents(ctx);
      report.scenarios.push(...results);
      report.replayEvents = events;
      break;
    }
    case 'report': {
      const { results, report: html } = await reportBench(ctx);
      report.scenarios.push(...results);
      report.report = html;
      break;
    }
    case 'memory':
      report.memory = await memory(ctx);
      break;
    case 'compile':
      Object.assign(report.compile, await compileReport());
      break;
  }
}

/** One row per scenario: both implementations and their ratio. */
function table(results: ScenarioResult[]): string {
  const cell = (r?: ScenarioResult) => (r ? `${r.mpps.toFixed(2)} Mpps ±${r.rme.toFixed(0)}%` : '');
  const rows = [...new Set(results.map((r) => r.name))].map((name) => {
    const wasm = results.find((r) => r.name === name && r.impl === 'wasm');
    const ts = results.find((r) => r.name === name && r.impl === 'ts');
    const ratio = wasm && ts ? `${(wasm.mpps / ts.mpps).toFixed(1)}x` : '';
    return `${name.padEnd(16)} ${cell(wasm).padStart(18)} ${cell(ts).padStart(18)} ${ratio.padStart(8)}`;
  });
  return [`${'scenario'.padEnd(16)} ${'wasm'.padStart(18)} ${'ts'.padStart(18)} ${'wasm/ts'.padStart(8)}`, ...rows].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { json: { type: 'string' }, only: { type: 'string' }, keep: { type: 'boolean' }, kernel: { type: 'boolean' } },
  });
  const started = performance.now();
  const report: Report = {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    node: process.version,
    scenarios: [],
    compile: {},
  };
  const noKernel = values.kernel ? whyNoKernel() : undefined;
  if (noKernel) report.kernel = kernelSkipped(noKernel);
  const kernel = values.kernel === true && noKernel === undefined;
  const scenarios = withKernel(selected(values.only), kernel);
  const ctx = new BenchContext(mkdtempSync(join(tmpdir(), 'svcpath-bench-')), values.keep ?? false);
  try {
    for (const scenario of scenarios) {
      await runScenario(scenario, ctx, report);
      if (scenario === 'ct-hit' && kernel) report.kernel = await kernelCtHit(ctx.scratch, wasmNsPerPacket(report, 'ct-hit'));
    }
  } finally {
    rmSync(ctx.scratch, { recursive: true, force: true });
  }
  if (report.scenarios.length) console.log(`\n${table(report.scenarios)}`);
  console.log(`\nbench took ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (values.json) {
    writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`wrote ${values.json}`);
  }
}

await main();
