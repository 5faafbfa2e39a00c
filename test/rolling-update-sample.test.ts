// The bundled rolling-update capture: exactly what its generator builds, every
// frame sound, and closed loop: run through the datapath with the events file's
// EndpointSlice changes applied at kube-proxy's syncs, each request goes to the
// backend the generator answered it from. Under Cilium's semantics the
// streams left on removed pods move, and only they.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readEvents } from '../control/cluster/events.js';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { compile, type CompileOptions } from '../control/compile/compiler.js';
import { hostPort, REASONS } from '../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
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

/** Each packet's reason and backend from a datapath loaded with the initial state, each sync applied before the first packet at or after its time. */
async function replayWithSyncs(semantics: CompileOptions['semantics']): Promise<string[]> {
  const opts = { ...OPTS, semantics };
  const resolved = resolveServices(initial).services;
  const compiled = compile(initial, resolved, opts);
  const live = trackProgram(await loadProgram(compiled, { ctEntries: 1 << 12, room: { backends: 8, tables: 4, members: 16 } }), {
    state: initial,
    resolved,
    compiled,
    opts,
  });
  const batch = live.dp.createBatch(
    story.length,
    story.reduce((n, p) => n + Batch.footprint(p.data.length), 0),
  );
  const decided: string[] = [];
  const run = (packets: StoryPacket[]) => {
    batch.clear();
    for (const p of packets) batch.add(p.data, p.data.length, p.tsSec, p.tsNsec);
    batch.run();
    packets.forEach((_, i) => {
      const id = batch.backendId(i);
      decided.push(`${REASONS[batch.reason(i)]} ${id ? addr(live.compiled.backends[id - 1]!) : '-'}`);
    });
  };
  let from = 0;
  for (const sync of syncs) {
    const to = story.findIndex((p) => nanos(p) >= sync.at);
    run(story.slice(from, to < 0 ? story.length : to));
    from = to < 0 ? story.length : to;
    for (const event of sync.changes) {
      if (event.kind !== 'EndpointSlice') throw new Error(`line ${event.line}: only EndpointSlice changes are applied here`);
      applyEndpointSliceUpdate(
        live,
        event.type === 'DELETED' ? { op: 'delete', namespace: event.namespace!, name: event.name } : { op: 'upsert', slice: event.object },
      );
    }
  }
  run(story.slice(from));
  return decided;
}

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
    const decided = await replayWithSyncs(undefined);
    const expected = story.map((p) => `${p.direction === 'request' ? 'SERVICE' : 'REPLY'} ${addr(p.backend)}`);
    expect(decided).toEqual(expected);
  });

  it("under Cilium's semantics moves the streams whose pod was removed, and nothing else", async () => {
    const [kubeProxy, cilium] = [await replayWithSyncs(undefined), await replayWithSyncs('cilium')];
    const moved = story.filter((_, i) => cilium[i] !== kubeProxy[i]);
    // When each stream's pod leaves web's slice: the first sync whose slice does not list it.
    const removedAt = (ip: string) =>
      syncs.find((s) => s.changes.some((e) => e.kind === 'EndpointSlice' && !e.object.endpoints.some((ep) => ep.addresses.includes(ip))))
        ?.at;
    const stranded = story.filter((p) => {
      const removed = p.role === 'stream' ? removedAt(p.backend.ip) : undefined;
      return removed !== undefined && nanos(p) >= removed;
    });
    // Three streams, one per old pod, each with its first poll after the removal and its retransmissions.
    expect(new Set(stranded.map((p) => p.backend.ip)).size).toBe(3);
    expect(stranded.every((p) => p.direction === 'request')).toBe(true);
    expect(moved).toEqual(stranded);
  });
});
