/**
 * replay-e2e: a capture on disk to an output capture and verdicts on disk.
 * WASM: `svcpath replay` as a child process, whole-process time (start-up,
 * loading and compiling the cluster, reading, deciding, writing), several
 * runs. TS: the reference model over the same file in this process, from
 * compiling the cluster to closing the outputs, read and written with the
 * project's own pcap reader and writer. The I/O floor: `cp` of the same
 * capture, timed alike, against the CLI's time.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { hostPort } from '../control/compile/layout.js';
import { ReferenceDatapath } from '../model/reference-datapath.js';
import { compileMixCluster } from '../traces/synth/bench-traffic.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { replayOutputs, runCli, timeMixReplay, writeRepeatedTrace } from './captures.js';
import type { BenchContext } from './context.js';
import { formatResult, fromRuns, seconds, type ScenarioResult } from './measure.js';

/** The mixed trace repeated to this many packets (about 330 MB of pcap). */
const PACKETS = 2_000_000;
const CLI_RUNS = 5;
/** The model takes ~16 s per million packets here: three runs, enough for a usable margin of error. */
const MODEL_RUNS = 3;
const CP_RUNS = 5;

/** The replay's mean time over the mean time of `cp` of its capture: issue 16's target is at most 3. */
export interface IoFloor {
  bytes: number;
  cpSeconds: number;
  replaySeconds: number;
  ratio: number;
}

export async function replayE2e(ctx: BenchContext): Promise<{ results: ScenarioResult[]; ioFloor: IoFloor }> {
  const { clusterPath, trace } = ctx.mixFixture();
  const capture = join(ctx.scratch, 'replay-e2e.pcap');
  const { packets, bytes } = writeRepeatedTrace(capture, trace, { packets: PACKETS });
  console.log(`replay-e2e: ${packets} packets of the mix, ${(bytes / 1e6).toFixed(0)} MB of pcap`);
  const outputs = (tag: string) => replayOutputs(ctx.scratch, `replay-e2e-${tag}`);

  const variants: Array<[string, string[]]> = [['replay-e2e', []]];
  if (cliSupportsWorkers()) variants.push(['replay-e2e-2w', ['--workers', '2']]);
  const cliRuns = variants.map(([name, flags]) => timeMixReplay(capture, clusterPath, outputs(name), flags, CLI_RUNS));
  const results = variants.map(([name], i) => fromRuns(name, 'wasm', packets, cliRuns[i]));
  const ioFloor = copyFloor(capture, join(ctx.scratch, 'replay-e2e-copy.pcap'), bytes, mean(cliRuns[0]));
  const { out, verdicts } = outputs('ts');
  results.push(
    fromRuns(
      'replay-e2e',
      'ts',
      packets,
      Array.from({ length: MODEL_RUNS }, () => seconds(() => modelReplay(capture, clusterPath, out, verdicts))),
    ),
  );
  for (const [name] of variants) checkSameVerdicts(name, outputs(name).verdicts, verdicts);
  for (const r of results) console.log(formatResult(r));
  console.log(
    `replay-e2e: I/O floor: cp of the capture ${ioFloor.cpSeconds.toFixed(2)} s (mean of ${CP_RUNS}), the replay ${ioFloor.replaySeconds.toFixed(2)} s: ` +
      `${ioFloor.ratio.toFixed(1)}x cp's time (≤ 3× is issue 16's target)`,
  );
  return { results, ioFloor };
}

/**
 * `cp` of the capture to `copy`, whole-process time as for the CLI, the
 * capture as warm in the page cache as for the replays just before.
 */
function copyFloor(capture: string, copy: string, bytes: number, replaySeconds: number): IoFloor {
  const copyOnce = () => {
    const child = spawnSync('cp', [capture, copy], { encoding: 'utf8' });
    if (child.status !== 0) throw new Error(`cp ${capture} ${copy} failed: ${child.error?.message ?? child.stderr}`);
  };
  try {
    const cpSeconds = mean(Array.from({ length: CP_RUNS }, () => seconds(copyOnce)));
    return { bytes, cpSeconds, replaySeconds, ratio: replaySeconds / cpSeconds };
  } finally {
    rmSync(copy, { force: true });
  }
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Whether this build's `svcpath replay` has `--workers` (added by a separate change). */
function cliSupportsWorkers(): boolean {
  return runCli(['replay', '--help']).stdout.includes('--workers');
}

/** What `svcpath replay --out --verdicts` does, with the reference model deciding. */
function modelReplay(capture: string, clusterPath: string, outPath: string, verdictsPath: string): void {
  const compiled = compileMixCluster(clusterPath);
  const model = new ReferenceDatapath(compiled);
  const serviceJson = ['null', ...compiled.services.map((s) => JSON.stringify(s.name))];
  const backendJson = ['null', ...compiled.backends.map((b) => JSON.stringify(hostPort(b.ip, b.port)))];
  const reader = openCapture(capture);
  const writer = createPcapWriter(outPath, { linktype: reader.linktype, nanosecond: reader.nanosecond });
  const verdicts = new TextSink(verdictsPath);
  try {
    for (const rec of reader.records()) {
      const o = model.process(rec.data, { linktype: rec.linktype, wireLen: rec.origlen, tsSec: rec.tsSec, tsNsec: rec.tsNsec });
      verdicts.push(
        `{"n":${rec.n},"verdict":"${o.verdict}","reason":"${o.reason}","service":${serviceJson[o.serviceId]},"backend":${backendJson[o.backendId]},"snat":${o.snat}}\n`,
      );
      if (o.verdict === 'TX' || o.verdict === 'REDIRECT') writer.write(rec.tsSec, rec.tsNsec, o.out);
    }
  } finally {
    verdicts.close();
    writer.close();
    reader.close();
  }
}

/** Lines gathered and written in 1 MB pieces. */
class TextSink {
  private parts: string[] = [];
  private size = 0;
  private readonly fd: number;

  constructor(path: string) {
    this.fd = openSync(path, 'w');
  }

  push(line: string): void {
    this.parts.push(line);
    this.size += line.length;
    if (this.size > 1 << 20) this.flush();
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }

  private flush(): void {
    writeSync(this.fd, this.parts.join(''));
    this.parts = [];
    this.size = 0;
  }
}

/** The verdict files must be identical, or the implementations did different work. */
function checkSameVerdicts(name: string, wasm: string, ts: string): void {
  if (!readFileSync(wasm).equals(readFileSync(ts)))
    console.log(`${name}: WARNING: the CLI's and the model's verdicts differ (${wasm}, ${ts})`);
}
