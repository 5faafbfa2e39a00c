/**
 * memory: (a) linear memory a conntrack entry takes, measured through the
 * datapath's own reserver; (b) peak RSS of `svcpath replay` on a ~5 GB
 * capture and on one a tenth of its size: a replay that streams stays flat.
 */
import { existsSync, rmSync, statfsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Datapath } from '../control/runtime/datapath.js';
import type { MapName } from '../control/compile/layout.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { loadProgram } from '../control/runtime/loader.js';
import { generateMix, MIX_CLI_FLAGS, type MixTrace } from '../traces/synth/bench-traffic.js';
import { repeatTrace, runCli, writeRepeatedTrace } from './captures.js';
import type { BenchContext } from './context.js';
import { compileSynthetic } from './synthetic.js';

const CT_ENTRIES = 1 << 21;
const BIG_TRACE_BYTES = 5e9;
const SMALL_TRACE_BYTES = BIG_TRACE_BYTES / 10;
/** Room left on the disk after writing the traces. */
const DISK_MARGIN_BYTES = 2e9;
const RSS_HOOK = pathToFileURL(join(PROJECT_ROOT, 'dist', 'bench', 'report-rss.js')).href;

export interface ConntrackMemory {
  entries: number;
  /** IPv4 conntrack map (ct4) per entry of max_entries: half a flow record and the index slots of one key (datapath/flow_table.ts). */
  bytesPerEntry: number;
  /** A flow takes two entries, original and reply: one record and two keys' index slots. */
  bytesPerFlow: number;
  /** The same for IPv6 (ct6). */
  bytesPerEntry6: number;
  bytesPerFlow6: number;
  /** Every map `--ct-entries` sizes (conntrack, NAT, affinity, fragments; both families), per conntrack entry. */
  bytesPerCtEntriesUnit: number;
}

export interface ReplayRss {
  traceBytes: number;
  packets: number;
  maxRssMB: number;
  seconds: number;
}

export interface MemoryReport {
  conntrack: ConntrackMemory;
  replay: ReplayRss[];
  /** Set when the disk had no room for the 5 GB trace. */
  scaledDown?: string;
}

export async function memory(ctx: BenchContext): Promise<MemoryReport> {
  const conntrack = await conntrackMemory();
  console.log(
    `memory: conntrack ${conntrack.bytesPerEntry} B per IPv4 entry (${conntrack.bytesPerFlow} B per flow), ${conntrack.bytesPerEntry6} B per IPv6 entry (${conntrack.bytesPerFlow6} B per flow); ` +
      `all maps sized by --ct-entries: ${conntrack.bytesPerCtEntriesUnit} B per entry`,
  );
  return { conntrack, ...replayRss(ctx) };
}

/** Linear memory a map of `entries` entries takes, from the reserver's top before and after creating it. */
async function mapBytes(map: MapName, entries: number): Promise<number> {
  const dp = await Datapath.load();
  // The map API's scratch room is reserved with the first map, and is big enough for any later one's: keep it out of the measure.
  dp.createMap('config', 1);
  const before = dp.exports.memory_top();
  dp.createMap(map, entries);
  return dp.exports.memory_top() - before;
}

/** Map headers spread over millions of entries are noise below a tenth of a byte. */
const tenths = (x: number) => Math.round(10 * x) / 10;

async function conntrackMemory(): Promise<ConntrackMemory> {
  const perEntry = async (map: MapName) => tenths((await mapBytes(map, CT_ENTRIES)) / CT_ENTRIES);
  const bytesPerEntry = await perEntry('ct4');
  const bytesPerEntry6 = await perEntry('ct6');
  // Whole datapaths for a one-Service cluster, differing only in --ct-entries.
  const compiled = compileSynthetic(1, 1, 7);
  const top = async (ctEntries: number) => (await loadProgram(compiled, { ctEntries })).exports.memory_top();
  const bytesPerCtEntriesUnit = tenths(((await top(2 * CT_ENTRIES)) - (await top(CT_ENTRIES))) / CT_ENTRIES);
  return {
    entries: CT_ENTRIES,
    bytesPerEntry,
    bytesPerFlow: 2 * bytesPerEntry,
    bytesPerEntry6,
    bytesPerFlow6: 2 * bytesPerEntry6,
    bytesPerCtEntriesUnit,
  };
}

/** A mix of mostly full-size frames: long TCP transfers and big datagrams. */
function largeFrameTrace(ctx: BenchContext): MixTrace {
  return generateMix(ctx.mixFixture().compiled, { seed: 2, packets: 1 << 15, payloadBytes: [1400, 1400], tcpExchanges: [8, 16] });
}

function replayRss(ctx: BenchContext): Pick<MemoryReport, 'replay' | 'scaledDown'> {
  const trace = largeFrameTrace(ctx);
  const { bigBytes, scaledDown } = fitOnDisk();
  if (scaledDown) console.log(`memory: ${scaledDown}`);
  const replay = [bigBytes / 10, bigBytes].map((bytes) => {
    const path = traceFile(bytes);
    const size = ensureTrace(path, trace, bytes);
    const run = runCli(
      ['replay', path, '--cluster', ctx.mixFixture().clusterPath, ...MIX_CLI_FLAGS, '--out', '/dev/null', '--verdicts', '/dev/null'],
      ['--import', RSS_HOOK],
    );
    if (!ctx.keep) rmSync(path);
    const maxRssMB = Number(/maxRSS (\d+)/.exec(run.stderr)?.[1]) / 1024;
    const result = { traceBytes: size.bytes, packets: size.packets, maxRssMB, seconds: run.seconds };
    console.log(
      `memory: replay of ${(size.bytes / 1e9).toFixed(2)} GB (${size.packets} packets) in ${run.seconds.toFixed(1)} s, peak RSS ${maxRssMB.toFixed(0)} MB`,
    );
    return result;
  });
  return { replay, scaledDown };
}

/** Kept in the temp directory across runs with --keep, named by size. */
const traceFile = (bytes: number) => join(tmpdir(), `svcpath-bench-${(bytes / 1e9).toFixed(1)}GB.pcap`);

/** The big trace's size: 5 GB, or less when the temp directory's disk has no room for it and its tenth (--keep keeps both). */
function fitOnDisk(): { bigBytes: number; scaledDown?: string } {
  const fs = statfsSync(tmpdir());
  const free = fs.bavail * fs.bsize;
  const kept = [SMALL_TRACE_BYTES, BIG_TRACE_BYTES]
    .map(traceFile)
    .reduce((sum, path) => sum + (existsSync(path) ? statSync(path).size : 0), 0);
  const room = free + kept - DISK_MARGIN_BYTES;
  if (room >= BIG_TRACE_BYTES + SMALL_TRACE_BYTES) return { bigBytes: BIG_TRACE_BYTES };
  const bigBytes = Math.max(1e8, Math.floor(room / 1.1 / 1e8) * 1e8);
  return {
    bigBytes,
    scaledDown: `only ${(free / 1e9).toFixed(1)} GB free in ${tmpdir()}: the big trace is ${(bigBytes / 1e9).toFixed(1)} GB instead of 5 GB`,
  };
}

/** The capture at `path`: reused when a file of exactly its size is there, else written. */
function ensureTrace(path: string, trace: MixTrace, bytes: number) {
  const size = repeatTrace(trace, { bytes });
  if (existsSync(path) && statSync(path).size === size.bytes) return size;
  return writeRepeatedTrace(path, trace, { bytes });
}
