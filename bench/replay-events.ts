/**
 * replay-events: what cluster changes during a capture cost a replay. The
 * same whole `svcpath replay` process as replay-e2e, on a 1M-packet capture
 * of the mix, without events, then with 10,000 EndpointSlice changes spread
 * over the capture (traces/synth/bench-traffic.ts churnEvents): each applied
 * at its own time (`--min-sync-period 0`, 10,000 syncs: the worst case), and
 * batched by kube-proxy's default minSyncPeriod of 1 s.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FLOW_CHANGES } from '../control/compile/layout.js';
import { churnEvents } from '../traces/synth/bench-traffic.js';
import { replayOutputs, timeMixReplay, writeRepeatedTrace } from './captures.js';
import type { BenchContext } from './context.js';
import { formatResult, fromRuns, type ScenarioResult } from './measure.js';

const PACKETS = 1_000_000;
const EVENTS = 10_000;
/** Three: with each change synced alone, a run takes minutes (bench/README.md). */
const CLI_RUNS = 3;

export interface ReplayEventsReport {
  packets: number;
  events: number;
  /** Mean seconds of a replay with the events over one without: each change synced alone, and with minSyncPeriod 1 s. */
  ratio: number;
  ratio1s: number;
}

export async function replayEvents(ctx: BenchContext): Promise<{ results: ScenarioResult[]; report: ReplayEventsReport }> {
  const { clusterPath, trace } = ctx.mixFixture();
  const capture = join(ctx.scratch, 'replay-events-capture.pcap');
  const { packets, bytes, firstNs, lastNs } = writeRepeatedTrace(capture, trace, { packets: PACKETS });
  const events = join(ctx.scratch, 'replay-events-changes.jsonl');
  writeFileSync(events, churnEvents({ count: EVENTS, fromNs: firstNs, toNs: lastNs }));
  const spanSeconds = Number(lastNs - firstNs) / 1e9;
  console.log(
    `replay-events: ${packets} packets of the mix (${(bytes / 1e6).toFixed(0)} MB of pcap, ${spanSeconds.toFixed(1)} s), ` +
      `${EVENTS} EndpointSlice changes over them`,
  );
  const variants: Array<[string, string[]]> = [
    ['replay-no-events', []],
    ['replay-events', ['--events', events, '--min-sync-period', '0']],
    // The mix's KubeProxyConfiguration sets no minSyncPeriod: kube-proxy's default, 1 s.
    ['replay-events-1s', ['--events', events]],
  ];
  // Runs taken in turn, so that the machine's load drifting during the scenario weighs on each variant alike.
  const times = variants.map((): number[] => []);
  for (let run = 0; run < CLI_RUNS; run++) {
    variants.forEach(([name, flags], v) => {
      times[v].push(...timeMixReplay(capture, clusterPath, replayOutputs(ctx.scratch, name), flags, 1));
    });
  }
  const results = variants.map(([name], v) => fromRuns(name, 'wasm', packets, times[v]));
  for (const r of results) console.log(formatResult(r));
  for (const [name] of variants.slice(1)) console.log(`${name}: ${flowChangesSeen(replayOutputs(ctx.scratch, name).verdicts)}`);
  const [plain, each, batched] = results.map((r) => r.nsPerPacket);
  const report = { packets, events: EVENTS, ratio: each / plain, ratio1s: batched / plain };
  console.log(`replay-events: ${report.ratio.toFixed(2)}x the replay without events (minSyncPeriod 1 s: ${report.ratio1s.toFixed(2)}x)`);
  return { results, report };
}

/**
 * What the changes did, from a verdicts file: the state the last packet was
 * decided under and the packets of each flowChange, to see that the events
 * were applied and reached flows, and were not merely read.
 */
function flowChangesSeen(verdictsPath: string): string {
  const verdicts = readFileSync(verdictsPath);
  const count = (text: string) => {
    let n = 0;
    for (let at = verdicts.indexOf(text); at >= 0; at = verdicts.indexOf(text, at + text.length)) n++;
    return n;
  };
  const lastState = verdicts.lastIndexOf('"state":');
  const state = lastState < 0 ? 'none' : /^\d+/.exec(verdicts.toString('latin1', lastState + 8, lastState + 20))?.[0];
  const changes = FLOW_CHANGES.map((kind) => `${kind} ${count(`"flowChange":"${kind}"`)}`).join(', ');
  return `last packet under state ${state}; packets by flowChange: ${changes}`;
}
