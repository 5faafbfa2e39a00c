/**
 * `npm run check:workers [-- --packets N] [-- --workers N] [-- --keep]`:
 * replays a generated mixed capture (traces/synth/bench-traffic.ts: handshakes,
 * replies, masqueraded NodePort flows, affinity, UDP, misses, 20% IPv6) once
 * with one worker and once with N, and checks that the verdict files, the
 * output captures and the summaries are the same, byte for byte. Default
 * 10M packets (about 1.7 GB); too slow for `npm test`, which checks the same
 * on smaller inputs (test/sharded-replay.test.ts).
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compileMixCluster, generateMix, MIX_CLI_FLAGS, mixClusterManifests } from '../traces/synth/bench-traffic.js';
import { repeatTrace, runCli, writeRepeatedTrace } from './captures.js';

/** Whether two files hold the same bytes, read a chunk at a time. */
function sameFile(a: string, b: string): boolean {
  if (statSync(a).size !== statSync(b).size) return false;
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const ba = Buffer.alloc(8 << 20);
    const bb = Buffer.alloc(8 << 20);
    for (;;) {
      const n = readSync(fa, ba, 0, ba.length, null);
      if (readSync(fb, bb, 0, bb.length, null) !== n) return false;
      if (n === 0) return true;
      if (ba.compare(bb, 0, n, 0, n) !== 0) return false;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** The summary without its notes (which say how many packets each worker decided). */
function summaryOf(path: string): string {
  const summary = JSON.parse(readFileSync(path, 'utf8'));
  delete summary.notes;
  return JSON.stringify(summary);
}

function main(): number {
  const { values } = parseArgs({ options: { packets: { type: 'string' }, workers: { type: 'string' }, keep: { type: 'boolean' } } });
  const packets = Number(values.packets ?? 10_000_000);
  const workers = Number(values.workers ?? 2);
  const dir = join(tmpdir(), 'svcpath-check-workers');
  mkdirSync(dir, { recursive: true });
  const cluster = join(dir, 'cluster.yaml');
  writeFileSync(cluster, mixClusterManifests());
  const trace = generateMix(compileMixCluster(cluster), { seed: 1, packets: 1 << 16 });
  const capture = join(dir, `mix-${packets}.pcap`);
  const size = repeatTrace(trace, { packets });
  if (!existsSync(capture) || statSync(capture).size !== size.bytes) writeRepeatedTrace(capture, trace, { packets });
  console.log(`${capture}: ${size.packets} packets, ${(size.bytes / 1e9).toFixed(2)} GB`);

  const outputs = (n: number) => ({
    out: join(dir, `out-${n}.pcap`),
    verdicts: join(dir, `verdicts-${n}.jsonl`),
    summary: join(dir, `summary-${n}.json`),
  });
  for (const n of [1, workers]) {
    const o = outputs(n);
    const { seconds } = runCli([
      'replay',
      capture,
      '--cluster',
      cluster,
      ...MIX_CLI_FLAGS,
      '--out',
      o.out,
      '--verdicts',
      o.verdicts,
      '--summary',
      o.summary,
      '--workers',
      String(n),
    ]);
    console.log(`--workers ${n}: ${seconds.toFixed(1)} s, ${(size.packets / seconds / 1e6).toFixed(2)} Mpps`);
  }
  const [one, many] = [outputs(1), outputs(workers)];
  const checks = {
    verdicts: sameFile(one.verdicts, many.verdicts),
    'output capture': sameFile(one.out, many.out),
    summary: summaryOf(one.summary) === summaryOf(many.summary),
  };
  for (const [what, same] of Object.entries(checks)) console.log(`${what}: ${same ? 'the same' : 'DIFFERENT'}`);
  for (const o of [one, many]) for (const f of Object.values(o)) rmSync(f, { force: true });
  if (!values.keep) rmSync(capture, { force: true });
  return Object.values(checks).every(Boolean) ? 0 : 1;
}

process.exitCode = main();
