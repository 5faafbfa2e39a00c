// The bundled rolling-update capture: exactly what its generator builds, every
// frame sound, and closed loop: run through the datapath with the events file's
// EndpointSlice changes applied at kube-proxy's syncs, and kube-proxy's stale
// UDP flush after each, each request goes to the backend the generator
// answered it from; the resolver's one socket is flushed off its CoreDNS pod
// when the pod drains, and only then. Under Cilium's semantics the streams
// left on removed pods move, and the resolver stays on its draining pod until
// the pod is removed.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyEvent, readEvents } from '../control/cluster/events.js';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import type { EndpointConditions } from '../control/cluster/state.js';
import { compile, type CompileOptions } from '../control/compile/compiler.js';
import { hostPort, REASONS } from '../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { flushStaleUdp } from '../control/runtime/conntrack-flush.js';
import { Batch } from '../control/runtime/datapath.js';
import { loadProgram } from '../control/runtime/loader.js';
import { DEFAULT_MIN_SYNC_PERIOD_NS, scheduleSyncs } from '../control/runtime/sync-schedule.js';
import { applyEndpointSliceUpdate, trackProgram } from '../control/runtime/update.js';
import { decodeCaptured, LINKTYPE, verifyCapturedChecksums } from '../traces/frames.js';
import { openCapture } from '../traces/pcap.js';
import {
  buildRollingUpdate,
  ROLLING_UPDATE_EVENTS,
  ROLLING_UPDATE_TRACE,
  writeRollingUpdate,
  type StoryPacket,
} from '../traces/synth/rolling-update.js';
import { SAMPLE_CLUSTER, SAMPLE_NODE, SAMPLE_SEED } from '../traces/synth/sample.js';

const OPTS: CompileOptions = { node: SAMPLE_NODE, seed: SAMPLE_SEED, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE };
const story = buildRollingUpdate();
const initial = loadClusterState([SAMPLE_CLUSTER]);
const read = readEvents(ROLLING_UPDATE_EVENTS, initial);
const syncs = scheduleSyncs(read.events, DEFAULT_MIN_SYNC_PERIOD_NS);
const nanos = (p: { tsSec: number; tsNsec: number }) => BigInt(p.tsSec) * 1_000_000_000n + BigInt(p.tsNsec);
const addr = (b: { ip: string; port: number }) => hostPort(b.ip, b.port);

/** What the datapath decided for each packet: its reason and backend, and what a change did to its flow. */
interface Replayed {
  decided: string[];
  flowChanges: Array<string | undefined>;
}

/**
 * Replays the capture through a datapath loaded with the initial state, each
 * sync's slice changes applied before the first packet at or after its time;
 * under kube-proxy's semantics (the default) followed by its stale UDP flush.
 */
async function replayWithSyncs(semantics: CompileOptions['semantics']): Promise<Replayed> {
  const opts = { ...OPTS, semantics };
  const resolved = resolveServices(initial).services;
  const compiled = compile(initial, resolved, opts);
  const live = trackProgram(await loadProgram(compiled, { ctEntries: 1 << 12, room: { backends: 12, tables: 4, members: 16 } }), {
    state: initial,
    resolved,
    compiled,
    opts,
  });
  const batch = live.dp.createBatch(
    story.length,
    story.reduce((n, p) => n + Batch.footprint(p.data.length), 0),
  );
  const replayed: Replayed = { decided: [], flowChanges: [] };
  const run = (packets: StoryPacket[]) => {
    batch.clear();
    for (const p of packets) batch.add(p.data, p.data.length, p.tsSec, p.tsNsec);
    batch.run();
    packets.forEach((_, i) => {
      const id = batch.backendId(i);
      replayed.decided.push(`${REASONS[batch.reason(i)]} ${id ? addr(live.compiled.backends[id - 1]!) : '-'}`);
      replayed.flowChanges.push(batch.flowChange(i));
    });
  };
  let from = 0;
  let state = initial;
  for (const sync of syncs) {
    const to = story.findIndex((p) => nanos(p) >= sync.at);
    run(story.slice(from, to < 0 ? story.length : to));
    from = to < 0 ? story.length : to;
    const before = state;
    for (const event of sync.changes) {
      if (event.kind !== 'EndpointSlice') throw new Error(`line ${event.line}: only EndpointSlice changes are applied here`);
      applyEndpointSliceUpdate(
        live,
        event.type === 'DELETED' ? { op: 'delete', namespace: event.namespace!, name: event.name } : { op: 'upsert', slice: event.object },
      );
      state = applyEvent(state, event);
    }
    if (semantics !== 'cilium') flushStaleUdp(live, before, sync.at);
  }
  run(story.slice(from));
  return replayed;
}

/** The slice named `name` as the events leave it at each sync, and the sync's time. */
function sliceAtSyncs(name: string) {
  let state = initial;
  return syncs.map((sync) => {
    for (const event of sync.changes) state = applyEvent(state, event);
    return { at: sync.at, slice: state.endpointSlices.find((s) => s.name === name) };
  });
}

/** When the first sync came that leaves slice `name`'s endpoint `ip` with conditions `match` accepts (undefined: not listed). */
function syncWhere(name: string, ip: string, match: (conditions: EndpointConditions | undefined) => boolean): bigint | undefined {
  return sliceAtSyncs(name).find(({ slice }) => match(slice?.endpoints.find((ep) => ep.addresses.includes(ip))?.conditions))?.at;
}

/** Packet indices and what a change did to each packet's flow, in packet order. */
const listed = (changes: Map<number, string>) => [...changes].sort(([a], [b]) => a - b).map(([i, kind]) => `${i} ${kind}`);
const flagged = (flowChanges: Array<string | undefined>) => listed(new Map(flowChanges.flatMap((kind, i) => (kind ? [[i, kind]] : []))));

const resolverPackets = () => story.flatMap((p, i) => (p.role === 'resolver' ? [{ p, i }] : []));
/** The resolver's old CoreDNS pod: where its first query went. */
const resolverPod = () => resolverPackets()[0]!.p.backend.ip;

describe('the bundled rolling-update capture', () => {
  it('is exactly what traces/synth/rolling-update.ts builds', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'svcpath-rolling-')), 'rolling-update.pcap');
    expect(writeRollingUpdate(path)).toBe(story.length);
    expect(Buffer.compare(readFileSync(path), readFileSync(ROLLING_UPDATE_TRACE))).toBe(0);
  });

  it('holds Ethernet frames that decode with every checksum valid, in time order, around the events', () => {
    const reader = openCapture(ROLLING_UPDATE_TRACE);
    const records = Array.from(reader.records(), (r) => ({ tsSec: r.tsSec, tsNsec: r.tsNsec, data: r.data.slice() }));
    reader.close();
    expect(reader.linktype).toBe(LINKTYPE.ETHERNET);
    expect(records.length).toBe(story.length);
    expect(records.length).toBeLessThan(5000);
    records.forEach((r, i) => {
      const d = decodeCaptured(LINKTYPE.ETHERNET, r.data);
      expect(d.ipv4?.protocol, `frame ${i + 1}`).toBe(story[i]!.flow.protocol === 'TCP' ? 6 : 17);
      expect(verifyCapturedChecksums(LINKTYPE.ETHERNET, r.data), `frame ${i + 1}`).toEqual({ ipv4: true, l4: true });
      if (i > 0) expect(nanos(r) >= nanos(records[i - 1]!), `frame ${i + 1}`).toBe(true);
    });
    expect(read.error).toBeUndefined();
    expect(nanos(records[0]!)).toBeLessThan(read.events[0]!.time);
    expect(nanos(records.at(-1)!)).toBeGreaterThan(syncs.at(-1)!.at);
  });

  it("sends each request where its reply comes from, with kube-proxy's semantics, as the events apply", async () => {
    const { decided } = await replayWithSyncs(undefined);
    const expected = story.map((p) => `${p.direction === 'request' ? 'SERVICE' : 'REPLY'} ${addr(p.backend)}`);
    expect(decided).toEqual(expected);
  });

  it('sends lookups to the new CoreDNS pods once they are ready, and none to an old pod after it terminates', () => {
    // A lookup's A and AAAA queries go from one port: where its first goes, when, decides.
    const firsts = new Map<string, StoryPacket>();
    for (const p of story) {
      const flow = `${p.flow.clientIp}:${p.flow.clientPort}`;
      if (p.role === 'lookup' && p.direction === 'request' && !firsts.has(flow)) firsts.set(flow, p);
    }
    const lookups = [...firsts.values()];
    for (const ip of ['10.244.0.3', '10.244.1.3']) {
      const ready = syncWhere('kube-dns-b8k4q', ip, (c) => c?.ready === true)!;
      const sent = lookups.filter((p) => p.backend.ip === ip);
      expect(sent.length).toBeGreaterThan(10);
      expect(sent.every((p) => nanos(p) > ready)).toBe(true);
    }
    for (const ip of ['10.244.0.2', '10.244.1.2']) {
      const terminating = syncWhere('kube-dns-b8k4q', ip, (c) => c?.terminating === true)!;
      const sent = lookups.filter((p) => p.backend.ip === ip);
      expect(sent.length).toBeGreaterThan(0);
      expect(sent.every((p) => nanos(p) < terminating)).toBe(true);
    }
  });

  it("flushes the resolver's socket off its CoreDNS pod at the sync that drains the pod, not before; its next query goes to a new pod", async () => {
    const { decided, flowChanges } = await replayWithSyncs(undefined);
    const old = resolverPod();
    expect(['10.244.0.2', '10.244.1.2']).toContain(old);
    const terminating = syncWhere('kube-dns-b8k4q', old, (c) => c?.terminating === true)!;
    const drained = syncWhere('kube-dns-b8k4q', old, (c) => c?.serving === false)!;
    expect(drained - terminating).toBeGreaterThan(3_000_000_000n);
    const queries = resolverPackets().filter(({ p }) => p.direction === 'request');
    // Kept while the pod terminates but serves: some queries between the two syncs, all still to it.
    const serving = queries.filter(({ p }) => nanos(p) > terminating && nanos(p) < drained);
    expect(serving.length).toBeGreaterThan(0);
    expect(serving.every(({ i }) => decided[i] === `SERVICE ${old}:53`)).toBe(true);
    // The first query after the drain is flushed and load-balanced to a new pod, where every later one goes.
    const after = queries.filter(({ p }) => nanos(p) > drained);
    expect(after.length).toBeGreaterThan(5);
    const moved = decided[after[0]!.i]!;
    expect(['SERVICE 10.244.0.3:53', 'SERVICE 10.244.1.3:53']).toContain(moved);
    expect(after.every(({ i }) => decided[i] === moved)).toBe(true);
    // The flowChanges: FLUSHED on that query alone; STALE_BACKEND on the streams' packets after their pod's removal.
    const expected = new Map(stranded().map((p) => [story.indexOf(p), 'STALE_BACKEND']));
    expected.set(after[0]!.i, 'FLUSHED');
    expect(flagged(flowChanges)).toEqual(listed(expected));
  });

  it("under Cilium's semantics moves the streams whose pod was removed, and the resolver while its pod drains, and nothing else", async () => {
    const kubeProxy = (await replayWithSyncs(undefined)).decided;
    const { decided: cilium, flowChanges } = await replayWithSyncs('cilium');
    const moved = story.filter((_, i) => cilium[i] !== kubeProxy[i]);
    const streams = stranded();
    // Three streams, one per old pod, each with its first poll after the removal and its retransmissions.
    expect(new Set(streams.map((p) => p.backend.ip)).size).toBe(3);
    expect(streams.every((p) => p.direction === 'request')).toBe(true);
    // No flush: the resolver's queries stay on its pod, drained, until the pod is removed (its replies, from
    // the pod kube-proxy's flush chose, match no flow); the first query after the removal chooses again, alike.
    const old = resolverPod();
    const drained = syncWhere('kube-dns-b8k4q', old, (c) => c?.serving === false)!;
    const removed = syncWhere('kube-dns-b8k4q', old, (c) => c === undefined)!;
    const draining = resolverPackets().filter(({ p }) => nanos(p) > drained && nanos(p) < removed);
    expect(draining.length).toBeGreaterThan(10);
    expect(draining.filter(({ p }) => p.direction === 'request').every(({ i }) => cilium[i] === `SERVICE ${old}:53`)).toBe(true);
    expect(moved).toEqual(story.filter((p) => streams.includes(p) || draining.some((d) => d.p === p)));
    // RESELECTED: each stream's first packet after its pod's removal, and the resolver's first query after its pod's.
    const expected = new Map(
      [...new Set(streams.map((p) => p.backend.ip))].map((ip) => [story.indexOf(streams.find((p) => p.backend.ip === ip)!), 'RESELECTED']),
    );
    expected.set(resolverPackets().find(({ p }) => nanos(p) > removed)!.i, 'RESELECTED');
    expect(flagged(flowChanges)).toEqual(listed(expected));
  });
});

/** The streams' packets at or after the sync that removed their pod from web's slice. */
function stranded(): StoryPacket[] {
  return story.filter((p) => {
    const removed = p.role === 'stream' ? syncWhere('web-7xk2p', p.backend.ip, (c) => c === undefined) : undefined;
    return removed !== undefined && nanos(p) >= removed;
  });
}
