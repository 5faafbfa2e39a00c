/**
 * Big captures made of a mixed trace repeated at its period (the flows'
 * later copies find their earlier copies closed and open again), and
 * running `svcpath replay` on them as a child process.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../control/common/paths.js';
import type { MixTrace } from '../traces/synth/bench-traffic.js';
import { createPcapWriter } from '../traces/pcap.js';

const PCAP_HEADER_BYTES = 24;
const PCAP_RECORD_HEADER_BYTES = 16;
const LINKTYPE_ETHERNET = 1;

export const CLI = join(PROJECT_ROOT, 'dist', 'control', 'cli', 'bin.js');

export interface CaptureSize {
  packets: number;
  bytes: number;
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
  const size: CaptureSize = { packets: 0, bytes: PCAP_HEADER_BYTES };
  for (let pass = 0; ; pass++) {
    for (const p of packets) {
      const next = size.bytes + PCAP_RECORD_HEADER_BYTES + p.data.length;
      if (size.packets === (limit.packets ?? Infinity) || next > (limit.bytes ?? Infinity)) return size;
      write?.(p.tsSec + pass * periodSeconds, p.tsNsec, p.data);
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

/** Runs `node [nodeFlags] dist/control/cli/bin.js ...args`; throws on failure; returns its output and wall-clock seconds. */
export function runCli(args: string[], nodeFlags: string[] = []): { stdout: string; stderr: string; seconds: number } {
  const started = process.hrtime.bigint();
  const child = spawnSync(process.execPath, [...nodeFlags, CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (child.status !== 0) throw new Error(`svcpath ${args.join(' ')} exited with ${child.status ?? child.signal}: ${child.stderr}`);
  return { stdout: child.stdout, stderr: child.stderr, seconds };
}
