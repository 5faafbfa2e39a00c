/**
 * The in-process throughput scenarios. Each operation is one batch of 4096
 * packets: for WASM, the datapath walks them as pcap records lying in linear
 * memory into its batch and decides the batch in one process_batch call,
 * exactly as a replay of a pcap file does (control/runtime/zero-copy-replay.ts), minus the
 * file reads; for the model, one process() call per packet. Both
 * implementations get the same packets with the same times, and are checked
 * to decide the first timed batch alike.
 */
import { compile, type Compiled } from '../control/compile/compiler.js';
import { Batch, type Datapath } from '../control/runtime/datapath.js';
import { LINKTYPES, PCAP_F, REASONS, VERDICTS, WALK } from '../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { loadProgram } from '../control/runtime/loader.js';
import { Mulberry32 } from '../control/common/random.js';
import { ReferenceDatapath, type ModelOutcome } from '../model/reference-datapath.js';
import { describeMix } from '../traces/synth/bench-traffic.js';
import { TCP_FLAGS } from '../traces/frames.js';
import type { BenchContext } from './context.js';
import { formatResult, measure, seconds, TS_TIMING, WASM_TIMING, type ScenarioResult } from './measure.js';
import { compileSynthetic, flowPacket, flowPackets, syntheticCluster, syntheticCompileOptions } from './synthetic.js';

const BATCH = 4096;
const TS0 = 1_800_000_000;
/** An untagged Ethernet frame with a 1500-byte MTU, the largest the scenarios send. */
const MAX_FRAME = 1514;
/** Longer than every conntrack timeout: a pass this much later finds only expired flows. */
const TWO_DAYS = 2 * 86_400;

/** Packets cycled batch after batch; pass k over them is k * passSeconds later than the first. */
interface Traffic {
  frames: Uint8Array[];
  tsSec: number[];
  tsNsec: number[];
  passSeconds: number;
}

/** Frames one nanosecond apart from TS0. */
function steadyTraffic(frames: Uint8Array[], passSeconds = 0): Traffic {
  return { frames, tsSec: frames.map(() => TS0), tsNsec: frames.map((_, i) => i), passSeconds };
}

type Visit = (frame: Uint8Array, tsSec: number, tsNsec: number) => void;

/** One implementation's position in a traffic. */
class Cursor {
  private index = 0;
  private offset = 0;

  constructor(private readonly traffic: Traffic) {}

  take(count: number, visit: Visit): void {
    const { frames, tsSec, tsNsec, passSeconds } = this.traffic;
    for (let i = 0; i < count; i++) {
      visit(frames[this.index], tsSec[this.index] + this.offset, tsNsec[this.index]);
      if (++this.index === frames.length) {
        this.index = 0;
        this.offset += passSeconds;
      }
    }
  }
}

/**
 * The traffic as pcap records in linear memory, as a replay's chunk holds a
 * file's: the datapath walks them from there. Pass k over them is k *
 * passSeconds later, so their timestamps move on at every wrap.
 */
class RecordImage {
  readonly base: number;
  readonly length: number;

  constructor(
    private readonly dp: Datapath,
    private readonly traffic: Traffic,
  ) {
    this.length = traffic.frames.reduce((n, f) => n + RECORD_HEADER + f.length, 0);
    this.base = dp.reserve(this.length);
    const mem = new Uint8Array(dp.memory);
    const view = new DataView(dp.memory);
    let at = this.base;
    traffic.frames.forEach((frame, i) => {
      view.setUint32(at, traffic.tsSec[i], true);
      view.setUint32(at + 4, traffic.tsNsec[i], true);
      view.setUint32(at + 8, frame.length, true);
      view.setUint32(at + 12, frame.length, true);
      mem.set(frame, at + RECORD_HEADER);
      at += RECORD_HEADER + frame.length;
    });
  }

  nextPass(): void {
    if (this.traffic.passSeconds === 0) return;
    const view = new DataView(this.dp.memory);
    for (let at = this.base; at < this.base + this.length; at += RECORD_HEADER + view.getUint32(at + 8, true)) {
      view.setUint32(at, view.getUint32(at, true) + this.traffic.passSeconds, true);
    }
  }
}

const RECORD_HEADER = 16;
const SNAPLEN = 262144;

/** The WASM datapath and the model side by side, each at its own position in the same traffic. */
class Contestants {
  private readonly batch: Batch;
  private readonly image: RecordImage;
  private position = 0;
  private readonly modelCursor: Cursor;
  private readonly decide: Visit;
  private outcomes?: ModelOutcome[];

  constructor(dp: Datapath, model: ReferenceDatapath, traffic: Traffic) {
    this.batch = dp.createBatch(BATCH, BATCH * Batch.footprint(MAX_FRAME));
    this.image = new RecordImage(dp, traffic);
    this.modelCursor = new Cursor(traffic);
    this.decide = (frame, tsSec, tsNsec) => {
      const outcome = model.process(frame, { linktype: LINKTYPES.ETHERNET, wireLen: frame.length, tsSec, tsNsec });
      this.outcomes?.push(outcome);
    };
  }

  /** One batch through the WASM datapath: walked from the records, then decided. */
  readonly wasm = (): void => {
    this.batch.clear();
    while (this.batch.count < BATCH) {
      const { consumed, stop } = this.batch.walk(
        this.image.base,
        this.image.length,
        this.position,
        PCAP_F.NANOSECOND,
        SNAPLEN,
        LINKTYPES.ETHERNET,
      );
      this.position = consumed;
      if (stop === WALK.NEED_DATA) {
        this.image.nextPass();
        this.position = 0;
      } else if (stop !== WALK.BATCH_FULL) {
        throw new Error(`the walker stopped at a record it should take (offset ${consumed})`);
      }
    }
    this.batch.run();
  };

  /** One batch through the model. */
  readonly ts = (): void => {
    this.modelCursor.take(BATCH, this.decide);
  };

  /** The next batch through both: how many packets they decided differently (verdict, reason, backend). */
  disagreements(): number {
    this.outcomes = [];
    this.wasm();
    this.ts();
    const b = this.batch;
    const differ = this.outcomes.filter(
      (o, i) => VERDICTS[b.verdict(i)] !== o.verdict || REASONS[b.reason(i)] !== o.reason || b.backendId(i) !== o.backendId,
    ).length;
    this.outcomes = undefined;
    return differ;
  }
}

/** Runs `frames` once through both, untimed (to open flows). */
function openFlows(dp: Datapath, model: ReferenceDatapath, frames: Uint8Array[]): void {
  const opening = new Contestants(dp, model, steadyTraffic(frames));
  for (let done = 0; done < frames.length; done += BATCH) {
    opening.wasm();
    opening.ts();
  }
}

/**
 * The compiled state in a fresh WASM datapath (loadMs: how long filling its
 * maps took) and a fresh model; `opening` (flows to open) sent once through both.
 */
async function contestants(name: string, compiled: Compiled, ctEntries?: number, opening?: Uint8Array[]) {
  const started = performance.now();
  const dp = await loadProgram(compiled, { ctEntries });
  const loadMs = performance.now() - started;
  const model = new ReferenceDatapath(compiled);
  if (opening) {
    const took = seconds(() => openFlows(dp, model, opening));
    console.log(`${name}: opened ${opening.length} flows in both implementations (${took.toFixed(1)} s)`);
  }
  return { dp, model, loadMs };
}

/** Checks that both decide the traffic's first batch alike, then times both on it. */
function race(name: string, dp: Datapath, model: ReferenceDatapath, traffic: Traffic): ScenarioResult[] {
  const pair = new Contestants(dp, model, traffic);
  const differ = pair.disagreements();
  if (differ > 0) console.log(`${name}: WARNING: WASM and model decide ${differ} of ${BATCH} packets differently`);
  const results = [measure(name, 'wasm', BATCH, pair.wasm, WASM_TIMING), measure(name, 'ts', BATCH, pair.ts, TS_TIMING)];
  for (const r of results) console.log(formatResult(r));
  return results;
}

/** ct-hit's state size, also the kernel program's (bench/kernel.ts): Services, backends each, established flows (BATCH). */
export const SERVICES = 100;
export const BACKENDS_PER_SERVICE = 10;
export const CT_HIT_FLOWS = BATCH;

/** 4096 established IPv4 TCP flows to 100 Services: conntrack hit, DNAT, incremental checksums. */
export async function ctHit(): Promise<ScenarioResult[]> {
  const established = flowPackets(BATCH, SERVICES);
  const compiled = compileSynthetic(SERVICES, BACKENDS_PER_SERVICE, DEFAULT_MAGLEV_TABLE_SIZE);
  const { dp, model } = await contestants('ct-hit', compiled, undefined, established);
  return race('ct-hit', dp, model, steadyTraffic(established));
}

/**
 * Every packet a new flow: 131072 flows cycled through a 65536-entry
 * conntrack map (LRU eviction), each pass two days later, so the model (which
 * never evicts) finds only expired flows too.
 */
export async function newFlows(): Promise<ScenarioResult[]> {
  const compiled = compileSynthetic(SERVICES, BACKENDS_PER_SERVICE, DEFAULT_MAGLEV_TABLE_SIZE);
  const { dp, model } = await contestants('new-flows', compiled, 1 << 16);
  return race('new-flows', dp, model, steadyTraffic(flowPackets(1 << 17, SERVICES), TWO_DAYS));
}

/** The closed-loop mix of traces/synth/bench-traffic.ts, repeated at its period. */
export async function mixed(ctx: BenchContext): Promise<ScenarioResult[]> {
  const { compiled, trace } = ctx.mixFixture();
  console.log(`mixed: ${describeMix(trace)}`);
  const traffic: Traffic = {
    frames: trace.packets.map((p) => p.data),
    tsSec: trace.packets.map((p) => p.tsSec),
    tsNsec: trace.packets.map((p) => p.tsNsec),
    passSeconds: trace.periodSeconds,
  };
  const { dp, model } = await contestants('mixed', compiled);
  return race('mixed', dp, model, traffic);
}

export const SCALE_SERVICES = 100_000;
/** Maglev tables of 16381 slots for 100k Services would take 6.5 GB, past wasm32's 4 GiB; 251 is a prime Cilium allows too. */
export const SCALE_MAGLEV_TABLE_SIZE = 251;
const SCALE_FLOWS = 1 << 17;

/**
 * 100k Services x 10 backends; 131072 flows spread over all of them. Each
 * batch holds the SYNs of 2048 flows, then an ACK of each: half the packets
 * open a flow (service lookup, Maglev, conntrack inserts), half hit
 * conntrack. Each pass is two days later, so every flow opens again.
 */
export async function scaleServices(): Promise<{ results: ScenarioResult[]; compileMs: number; loadMs: number }> {
  const { state, resolved } = syntheticCluster(SCALE_SERVICES, BACKENDS_PER_SERVICE);
  const started = performance.now();
  const compiled = compile(state, resolved, syntheticCompileOptions(SCALE_MAGLEV_TABLE_SIZE));
  const compileMs = performance.now() - started;
  const half = BATCH / 2;
  const frames: Uint8Array[] = [];
  for (let first = 0; first < SCALE_FLOWS; first += half) {
    for (let i = first; i < first + half; i++) frames.push(flowPacket(i, SCALE_SERVICES, TCP_FLAGS.SYN));
    for (let i = first; i < first + half; i++) frames.push(flowPacket(i, SCALE_SERVICES));
  }
  const { dp, model, loadMs } = await contestants('scale-services', compiled, 4 * SCALE_FLOWS);
  console.log(
    `scale-services: ${SCALE_SERVICES} Services x ${BACKENDS_PER_SERVICE} backends (Maglev M=${SCALE_MAGLEV_TABLE_SIZE}) compiled in ${(compileMs / 1000).toFixed(1)} s, loaded into the datapath's maps in ${(loadMs / 1000).toFixed(1)} s`,
  );
  return { results: race('scale-services', dp, model, steadyTraffic(frames, TWO_DAYS)), compileMs, loadMs };
}

const SCALE_CT_FLOWS = 1 << 20;

/** 1M established flows (2M conntrack entries), their packets in a random order. */
export async function scaleCt(): Promise<ScenarioResult[]> {
  const compiled = compileSynthetic(SERVICES, BACKENDS_PER_SERVICE, DEFAULT_MAGLEV_TABLE_SIZE);
  const frames = flowPackets(SCALE_CT_FLOWS, SERVICES);
  const { dp, model } = await contestants('scale-ct', compiled, 4 * SCALE_CT_FLOWS, frames);
  return race('scale-ct', dp, model, steadyTraffic(shuffled(frames)));
}

/** Fisher-Yates with a fixed seed. */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  const rng = new Mulberry32(6);
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
