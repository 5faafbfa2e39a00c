/**
 * A seeded fuzzer for the datapath: generated frames, frames from real
 * captures and random bytes, mutated (bit flips, boundary values, cuts,
 * extensions, lying lengths, random link types), in batches through a
 * datapath loaded with traces/samples/fuzz-cluster.yaml. After every batch it
 * checks the invariants an XDP program must keep:
 *
 *  - every frame gets exactly one verdict, with a known reason;
 *  - no byte outside a frame changes, and a frame that is not sent out
 *    (PASS, DROP, ABORTED) does not change at all;
 *  - a frame sent out (TX, REDIRECT) whose checksums were valid coming in
 *    has valid checksums going out, those of an ICMP error's quote included;
 *  - nothing traps.
 *
 * `npm run fuzz` runs it long; test/fuzz.test.ts runs it short in the suite.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadClusterState, resolveServices } from '../../control/cluster/index.js';
import { compile } from '../../control/compile/compiler.js';
import { Batch, type Datapath } from '../../control/runtime/datapath.js';
import { LINKTYPES, REASONS, VERDICTS } from '../../control/compile/layout.js';
import { PROJECT_ROOT } from '../../control/common/paths.js';
import { loadProgram } from '../../control/runtime/loader.js';
import { Mulberry32 } from '../../control/common/random.js';
import { buildFrame, decodeFrame, toLinkType, verifyChecksums } from '../frames.js';
import { openCapture } from '../pcap.js';

export const FUZZ_CLUSTER = join(PROJECT_ROOT, 'traces', 'samples', 'fuzz-cluster.yaml');
const CORPUS = join(PROJECT_ROOT, 'test', 'corpus');
const BATCH_FRAMES = 256;
const CANARY = 0xa5;
const XDP_TX = 3;
const XDP_REDIRECT = 4;

export interface FuzzOptions {
  seed: number;
  batches: number;
}

export interface FuzzReport {
  frames: number;
  /** "VERDICT REASON" -> count */
  outcomes: Record<string, number>;
  /** Invariant violations, each with what is needed to reproduce it. */
  failures: string[];
}

const ADDRESSES = [
  '10.96.0.10',
  '10.96.0.20',
  '10.96.0.30',
  '10.96.0.99',
  '198.51.100.10',
  '203.0.113.10',
  '192.168.0.10',
  '10.244.0.5',
  '10.244.1.5',
  '10.244.1.7',
  '10.244.0.77',
  '172.16.3.4',
  '8.8.8.8',
];
const PORTS = [80, 53, 3868, 30080, 30053, 30081, 30868, 8080, 5353, 81, 40000, 0, 65535];
/** The fuzz cluster's frontends, so that most generated flows reach a Service. */
const FRONTENDS: Array<[string, number, 'tcp' | 'udp' | 'sctp']> = [
  ['10.96.0.10', 80, 'tcp'],
  ['10.96.0.10', 53, 'udp'],
  ['10.96.0.10', 3868, 'sctp'],
  ['198.51.100.10', 80, 'tcp'],
  ['203.0.113.10', 80, 'tcp'],
  ['192.168.0.10', 30080, 'tcp'],
  ['192.168.0.10', 30053, 'udp'],
  ['192.168.0.10', 30868, 'sctp'],
  ['10.96.0.20', 80, 'tcp'],
  ['192.168.0.10', 30081, 'tcp'],
  ['10.96.0.30', 80, 'tcp'],
  ['fd00:96::10', 80, 'tcp'],
  ['fd00:96::10', 53, 'udp'],
  ['fd00:168::10', 30080, 'tcp'],
  ['2001:db8:113::10', 80, 'tcp'],
];
const CLIENTS = ['10.244.0.77', '10.244.1.9', '192.168.0.10', '172.16.3.4', '172.31.0.1', '8.8.8.8', '10.244.0.5'];
const CLIENTS6 = ['fd00:244:0::77', 'fd00:168::10', '2001:db8:5::5', 'fd00:244::5'];

/** A well-formed frame aimed at the cluster's frontends and backends, checksums valid. */
function generatedFrame(rng: Mulberry32): Uint8Array {
  const pick = <T>(xs: readonly T[]) => xs[rng.int(0, xs.length - 1)];
  const target = rng.float() < 0.7 ? pick(FRONTENDS) : undefined;
  const kind = target?.[2] ?? pick(['tcp', 'tcp', 'udp', 'icmp', 'sctp'] as const);
  const sport = target ? rng.int(1024, 65535) : pick(PORTS);
  const dport = target?.[1] ?? pick(PORTS);
  const payload = new Uint8Array(rng.int(0, 64)).map(() => rng.int(0, 255));
  const vlans = rng.float() < 0.2 ? [rng.int(1, 4094)] : rng.float() < 0.05 ? [rng.int(1, 4094), rng.int(1, 4094)] : [];
  if (target?.[0].includes(':')) {
    const ipv6 = { src: pick(CLIENTS6), dst: target[0], extensions: rng.float() < 0.1 ? [{ type: 'destination' as const }] : undefined };
    const base6 = { srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', vlans, ipv6 };
    return kind === 'udp'
      ? buildFrame({ ...base6, l4: { kind: 'udp', sport, dport }, payload }).slice()
      : buildFrame({
          ...base6,
          l4: { kind: 'tcp', sport, dport, seq: rng.next(), ack: rng.next(), flags: rng.int(0, 63) },
          payload,
        }).slice();
  }
  const ipv4 = {
    src: target ? pick(CLIENTS) : pick(ADDRESSES),
    dst: target?.[0] ?? pick(ADDRESSES),
    id: rng.int(0, 65535),
    options: rng.float() < 0.1 ? [0x94, 4, 0, 0] : undefined,
    moreFragments: rng.float() < 0.05,
    fragOffset: rng.float() < 0.05 ? rng.int(1, 100) : 0,
  };
  const base = { srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', vlans };
  if (ipv4.fragOffset) return buildFrame({ ...base, ipv4: { ...ipv4, protocol: 6 }, l4: { kind: 'raw', protocol: 6 }, payload }).slice();
  switch (kind) {
    case 'tcp':
      return buildFrame({
        ...base,
        ipv4,
        l4: { kind: 'tcp', sport, dport, seq: rng.next(), ack: rng.next(), flags: rng.int(0, 63) },
        payload,
      }).slice();
    case 'udp':
      return buildFrame({ ...base, ipv4, l4: { kind: 'udp', sport, dport, zeroChecksum: rng.float() < 0.2 }, payload }).slice();
    case 'icmp':
      return buildFrame({ ...base, ipv4, l4: { kind: 'icmp', type: pick([0, 3, 8, 11]), code: rng.int(0, 4) }, payload }).slice();
    case 'sctp': {
      const sctp = new Uint8Array(12 + payload.length);
      new DataView(sctp.buffer).setUint16(0, sport);
      new DataView(sctp.buffer).setUint16(2, dport);
      sctp.set(payload, 12);
      return buildFrame({ ...base, ipv4, l4: { kind: 'raw', protocol: 132 }, payload: sctp }).slice();
    }
  }
}

/** Up to `max` Ethernet frames from the real captures of test/corpus. */
function corpusFrames(max: number): Uint8Array[] {
  if (!existsSync(CORPUS)) return [];
  const frames: Uint8Array[] = [];
  for (const file of readdirSync(CORPUS)
    .filter((f) => /\.pcap(ng)?$/.test(f))
    .sort()) {
    try {
      for (const rec of openCapture(join(CORPUS, file)).records()) {
        if (rec.linktype === LINKTYPES.ETHERNET && rec.caplen <= 4096) frames.push(rec.data.slice());
        if (frames.length >= max) return frames;
      }
    } catch {
      // Broken files are tested elsewhere; their good records are enough here.
    }
  }
  return frames;
}

function mutate(frame: Uint8Array, rng: Mulberry32): Uint8Array {
  let f = frame.slice();
  const rounds = rng.int(1, 4);
  for (let r = 0; r < rounds && f.length > 0; r++) {
    const at = rng.int(0, f.length - 1);
    switch (rng.int(0, 6)) {
      case 0:
        f[at] ^= 1 << rng.int(0, 7);
        break;
      case 1:
        f[at] = [0, 0xff, 0x80, 0x7f, 0x45, 0x06, 0x11][rng.int(0, 6)];
        break;
      case 2:
        f = f.slice(0, at);
        break;
      case 3: {
        const grown = new Uint8Array(f.length + rng.int(1, 64));
        grown.set(f);
        for (let i = f.length; i < grown.length; i++) grown[i] = rng.int(0, 255);
        f = grown;
        break;
      }
      case 4:
        f[at] = rng.int(0, 255);
        break;
      // Lying lengths: IPv4 total length and IHL of an untagged frame.
      case 5:
        if (f.length > 17) {
          f[16] = rng.int(0, 255);
          f[17] = rng.int(0, 255);
        }
        break;
      case 6:
        if (f.length > 14) f[14] = (4 << 4) | rng.int(0, 15);
        break;
    }
  }
  return f;
}

/**
 * What comes back for a frame the datapath sent to a backend: the backend's
 * answer (addresses and ports swapped), or now and then an ICMP error about it.
 */
function answer(sent: Uint8Array, rng: Mulberry32): Uint8Array | undefined {
  const d = decodeFrame(sent);
  const ip = d.ipv4 ?? d.ipv6;
  const l4 = d.tcp ?? d.udp;
  if (!ip || !l4 || d.eth?.vlans.length) return undefined;
  const proto = d.tcp ? 6 : 17;
  const { sport, dport } = l4;
  const src = ip.src;
  const dst = ip.dst;
  const base = {
    srcMac: '02:00:00:00:00:02',
    dstMac: '02:00:00:00:00:01',
    ...(d.ipv6 ? { ipv6: { src: dst, dst: src } } : { ipv4: { src: dst, dst: src } }),
  };
  if (rng.float() < 0.2) {
    const headerLen = d.ipv4 ? d.ipv4.ihl * 4 : 40;
    const quote = sent.slice(14, Math.min(sent.length, 14 + headerLen + rng.int(8, 64)));
    const l4spec = d.ipv6
      ? { kind: 'icmpv6' as const, type: rng.int(1, 4), code: rng.int(0, 4) }
      : { kind: 'icmp' as const, type: [3, 11, 12][rng.int(0, 2)], code: rng.int(0, 4) };
    return buildFrame({ ...base, l4: l4spec, payload: quote }).slice();
  }
  return proto === 6
    ? buildFrame({ ...base, l4: { kind: 'tcp', sport: dport, dport: sport, seq: 1, ack: 1, flags: ['SYN', 'ACK'] } }).slice()
    : buildFrame({ ...base, l4: { kind: 'udp', sport: dport, dport: sport }, payload: new Uint8Array(8) }).slice();
}

function randomFrame(rng: Mulberry32): Uint8Array {
  return new Uint8Array(rng.int(0, 200)).map(() => rng.int(0, 255));
}

async function fuzzDatapath(): Promise<Datapath> {
  const serviceClusterIPRanges = ['10.96.0.0/12', 'fd00:96::/108'];
  const state = loadClusterState([FUZZ_CLUSTER], { serviceClusterIPRanges });
  const compiled = compile(state, resolveServices(state).services, {
    node: 'node-a',
    seed: 0,
    maglevTableSize: 251,
    snatPortRange: [40000, 40063],
    serviceClusterIPRanges,
  });
  return loadProgram(compiled, { ctEntries: 4096 });
}

const FRAMED_LINKTYPES = [LINKTYPES.LINUX_SLL, LINKTYPES.LINUX_SLL2, LINKTYPES.RAW, LINKTYPES.NULL, LINKTYPES.LOOP];
const UNKNOWN_LINKTYPE = 105; // IEEE 802.11: the datapath must pass it untouched

/** Checksums that must survive a rewrite: every one we can verify was valid (IPv6 has no header checksum). */
function checksumsValid(frame: Uint8Array): boolean | undefined {
  const c = verifyChecksums(frame);
  if (c.ipv4 === 'truncated' || c.l4 === 'truncated' || c.l4 === undefined) return undefined;
  const quote = c.icmpEmbedded as { ipv4?: unknown; l4?: unknown } | undefined;
  const quoteValid = !quote || (quote.ipv4 !== false && quote.l4 !== false);
  return c.ipv4 !== false && (c.l4 === true || c.l4 === 'zero') && quoteValid;
}

export async function fuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const rng = new Mulberry32(opts.seed);
  const dp = await fuzzDatapath();
  const batch = dp.createBatch(BATCH_FRAMES, BATCH_FRAMES * Batch.footprint(4200));
  const seeds = corpusFrames(2000);
  const report: FuzzReport = { frames: 0, outcomes: {}, failures: [] };
  /** Frames the datapath sent to backends in the last batch: their answers come next. */
  let sentToBackends: Uint8Array[] = [];
  let now = 1_800_000_000;
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

  for (let b = 0; b < opts.batches && report.failures.length < 20; b++) {
    const frames: Array<{ data: Uint8Array; linktype: number; wireLen: number }> = [];
    for (let i = 0; i < BATCH_FRAMES; i++) {
      const source = rng.float();
      const reply = source < 0.2 && sentToBackends.length ? answer(sentToBackends[rng.int(0, sentToBackends.length - 1)], rng) : undefined;
      let data =
        reply ??
        (source < 0.55 ? generatedFrame(rng) : source < 0.8 && seeds.length ? seeds[rng.int(0, seeds.length - 1)] : randomFrame(rng));
      let linktype: number = LINKTYPES.ETHERNET;
      const framing = rng.float();
      if (framing < 0.1 && data.length >= 34 && data[12] === 0x08 && data[13] === 0x00) {
        linktype = FRAMED_LINKTYPES[rng.int(0, FRAMED_LINKTYPES.length - 1)];
        data = toLinkType(data, linktype, rng.float() < 0.5);
      } else if (framing < 0.12) {
        linktype = UNKNOWN_LINKTYPE;
      }
      if (rng.float() < 0.4) data = mutate(data, rng);
      const wireLen = rng.float() < 0.2 ? data.length + rng.int(0, 100) : data.length;
      frames.push({ data, linktype, wireLen });
    }
    sentToBackends = [];
    const mem = new Uint8Array(dp.memory);
    mem.fill(CANARY, batch.dataBase, batch.dataBase + batch.dataBytes);
    batch.clear();
    for (const f of frames) {
      now += rng.int(0, 3);
      if (!batch.add(f.data, f.wireLen, now, rng.int(0, 999_999_999), f.linktype)) throw new Error('fuzz batch overflow');
    }
    for (let i = 0; i < batch.count; i++) mem[batch.descBase + i * 48 + 28] = 0xff; // no verdict yet
    const before = mem.slice(batch.dataBase, batch.dataBase + batch.dataBytes);
    const where = (i: number) =>
      `seed ${opts.seed} batch ${b} frame ${i} linktype ${frames[i].linktype} wireLen ${frames[i].wireLen}: ${hex(frames[i].data)}`;
    try {
      batch.run();
    } catch (e) {
      report.failures.push(`trap (${(e as Error).message}) in seed ${opts.seed} batch ${b}`);
      continue;
    }
    const after = new Uint8Array(dp.memory, batch.dataBase, batch.dataBytes);
    // Bytes each frame may have changed: its own, when it is sent out.
    const mayChange = new Uint8Array(batch.dataBytes);
    for (let i = 0; i < batch.count; i++) {
      report.frames++;
      const v = batch.verdict(i);
      const r = batch.reason(i);
      if (v >= VERDICTS.length || r === 0 || r >= REASONS.length) {
        report.failures.push(`no valid verdict (${v}/${r}): ${where(i)}`);
        continue;
      }
      const outcome = `${VERDICTS[v]} ${REASONS[r]}`;
      report.outcomes[outcome] = (report.outcomes[outcome] ?? 0) + 1;
      if (v !== XDP_TX && v !== XDP_REDIRECT) continue;
      const out = batch.frame(i);
      if (r === 1 && frames[i].linktype === LINKTYPES.ETHERNET) sentToBackends.push(out.slice()); // SERVICE
      const start = out.byteOffset - batch.dataBase;
      mayChange.fill(1, start, start + Math.max(out.length, frames[i].data.length));
      if (
        frames[i].linktype === LINKTYPES.ETHERNET &&
        frames[i].wireLen === frames[i].data.length &&
        checksumsValid(frames[i].data) &&
        checksumsValid(out) === false
      ) {
        report.failures.push(`${outcome} broke checksums: ${where(i)} -> ${hex(out)}`);
      }
    }
    for (let k = 0; k < batch.dataBytes; k++) {
      if (!mayChange[k] && after[k] !== before[k]) {
        report.failures.push(`byte ${k} of the batch area changed outside any sent frame (seed ${opts.seed} batch ${b})`);
        break;
      }
    }
  }
  return report;
}
