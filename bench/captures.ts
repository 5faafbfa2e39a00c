/**
 * Big captures made of a mixed trace repeated at its period (the flows'
 * later copies find their earlier copies closed and open again), and
 * running `svcpath replay` on them as a child process.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { MIX_CLI_FLAGS, type MixTrace } from '../traces/synth/bench-traffic.js';
import { createPcapWriter } from '../traces/pcap.js';

const PCAP_HEADER_BYTES = 24;
const PCAP_RECORD_HEADER_BYTES = 16;
const LINKTYPE_ETHERNET = 1;

export const CLI = join(PROJECT_ROOT, 'dist', 'control', 'cli', 'bin.js');

export interface CaptureSize {
  packets: number;
  bytes: number;
  /** The first and the last packet's times, nanoseconds since the epoch; 0n for no packets. */
  firstNs: bigint;
  lastNs: bigint;
}

/**
 * Walks the repeated trace until `limit` (packets, or bytes of pcap file)
 * is reached, handing each packet to `write`; returns the capture's size.
 * Without `write` it only tells the size, to see whether a file on disk is
 * this capture.
 */
export function repeatTrace(
  trace: MixTrace,
  limit: { packets?: number; bytes?: number },
  write?: (tsSec: number, tsNsec: number, data: Uint8Array) => void,
): CaptureSize {
  const { packets, periodSeconds } = trace;
  const size = { packets: 0, bytes: PCAP_HEADER_BYTES };
  const nanos = (tsSec: number, tsNsec: number) => BigInt(tsSec) * 1_000_000_000n + BigInt(tsNsec);
  let last = { tsSec: 0, tsNsec: 0 };
  for (let pass = 0; ; pass++) {
    for (const p of packets) {
      const next = size.bytes + PCAP_RECORD_HEADER_BYTES + p.data.length;
      if (size.packets === (limit.packets ?? Infinity) || next > (limit.bytes ?? Infinity)) {
        return { ...size, firstNs: size.packets ? nanos(packets[0].tsSec, packets[0].tsNsec) : 0n, lastNs: nanos(last.tsSec, last.tsNsec) };
      }
      last = { tsSec: p.tsSec + pass * periodSeconds, tsNsec: p.tsNsec };
      write?.(last.tsSec, last.tsNsec, p.data);
      size.packets++;
      size.bytes = next;
    }
  }
}

/** Writes the repeated trace as a nanosecond pcap (no timestamp rounding) at `path`. */
export function writeRepeatedTrace(path: string, trace: MixTrace, limit: { packets?: number; bytes?: number }): CaptureSize {
  const writer = createPcapWriter(path, { linktype: LINKTYPE_ETHERNET, nanosecond: true });
  try {
    return repeatTrace(trace, limit, (tsSec, tsNsec, data) => writer.write(tsSec, tsNsec, data));
  } finally {
    writer.close();
  }
}

/** Where a timed replay writes its outputs, named after `stem`. */
export function replayOutputs(scratch: string, stem: string): { out: string; verdicts: string } {
  return { out: join(scratch, `${stem}.pcap`), verdicts: join(scratch, `${stem}.jsonl`) };
}

/**
 * Wall-clock seconds of each of `runs` whole runs of `svcpath replay <capture>`
 * on the mix's cluster, writing the output capture and verdicts to `outputs`,
 * with `extraFlags` after the usual ones.
 */
export function timeMixReplay(
  capture: string,
  clusterPath: string,
  outputs: { out: string; verdicts: string },
  extraFlags: string[],
  runs: number,
): number[] {
  const args = [
    'replay',
    capture,
    '--cluster',
    clusterPath,
    ...MIX_CLI_FLAGS,
    '--out',
    outputs.out,
    '--verdicts',
    outputs.verdicts,
    ...extraFlags,
  ];
  return Array.from({ length: runs }, () => runCli(args).seconds);
}

/** Runs `node [nodeFlags] dist/control/cli/bin.js ...args`; throws on failure; returns its output and wall-clock seconds. */
export function runCli(args: string[], nodeFlags: string[] = []): { stdout: string; stderr: string; seconds: number } {
  const started = process.hrtime.bigint();
  const child = spawnSync(process.execPath, [...nodeFlags, CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (child.status !== 0) throw new Error(`svcpath ${args.join(' ')} exited with ${child.status ?? child.signal}: ${child.stderr}`);
  return { stdout: child.stdout, stderr: child.stderr, seconds };
}
