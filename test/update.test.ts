// Incremental EndpointSlice updates: the updated datapath decides like one
// loaded from a full compile of the new state, touches few entries, and keeps
// established flows on backends that stay.
import { describe, expect, it } from 'vitest';
import { resolveServices } from '../control/cluster/index.js';
import { compile, type Compiled, type CompileOptions } from '../control/compile/compiler.js';
import type { Datapath } from '../control/runtime/datapath.js';
import { BE_F_GONE, hostPort } from '../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import type { ClusterState, EndpointConditions, EndpointSlice, Service } from '../control/cluster/state.js';
import { loadProgram } from '../control/runtime/loader.js';
import {
  applyEndpointSliceUpdate,
  NeedsReloadError,
  trackProgram,
  type EndpointSliceChange,
  type LiveProgram,
} from '../control/runtime/update.js';
import { READY, makeNode, makeService, runFrames, tcp, type FrameResult } from './helpers.js';

const OPTS: CompileOptions = { node: 'node-a', seed: 3, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE };
const NOT_READY: EndpointConditions = { ready: false, serving: false, terminating: false };
const NODES = [makeNode('node-a', '192.168.0.10'), makeNode('node-b', '192.168.0.11')];

function slice(name: string, service: string, endpoints: Array<[string, string?, EndpointConditions?]>, port = 8080): EndpointSlice {
  return {
    origin: { file: 'test', object: `EndpointSlice default/${name}` },
    namespace: 'default',
    name,
    serviceName: service,
    addressType: 'IPv4',
    endpoints: endpoints.map(([ip, nodeName, conditions]) => ({ addresses: [ip], nodeName, conditions: conditions ?? READY })),
    ports: [{ name: 'http', protocol: 'TCP', port }],
  };
}

const http = [{ name: 'http', port: 80, targetPort: 8080 }];
const SERVICES: Service[] = [
  makeService('default', 'web', '10.96.0.10', http),
  // NodePort with a Local external policy: a local table too.
  makeService('default', 'api', '10.96.0.20', [{ ...http[0], nodePort: 30080 }], { type: 'NodePort', externalTrafficPolicy: 'Local' }),
  makeService('default', 'empty', '10.96.0.30', http),
  // Shares a pod with web.
  makeService('default', 'alias', '10.96.0.40', http),
];
const SLICES = [
  slice('web-a', 'web', [
    ['10.244.1.1', 'node-a'],
    ['10.244.1.2', 'node-b'],
    ['10.244.1.3', 'node-b'],
  ]),
  slice('web-b', 'web', [
    ['10.244.2.1', 'node-a'],
    ['10.244.2.2', 'node-b'],
  ]),
  slice('api-a', 'api', [
    ['10.244.3.1', 'node-a'],
    ['10.244.3.2', 'node-b'],
    ['10.244.3.3', 'node-b'],
  ]),
  // The same pod as web's first, said to be elsewhere: a full compile makes it local, as one of its endpoints is.
  slice('alias-a', 'alias', [
    ['10.244.1.1', 'node-b'],
    ['10.244.4.1', 'node-b'],
  ]),
];
const CT = { ctEntries: 4096 };

function inputs(state: ClusterState, opts = OPTS) {
  const resolved = resolveServices(state).services;
  return { state, resolved, compiled: compile(state, resolved, opts), opts };
}

async function live(room = { backends: 8, tables: 4, members: 16 }, opts = OPTS): Promise<LiveProgram> {
  const from = inputs({ services: SERVICES, endpointSlices: SLICES, nodes: NODES, notes: [] }, opts);
  return trackProgram(await loadProgram(from.compiled, { ...CT, room }), from);
}

/** New flows from many clients to every frontend; `round` keeps them new to a datapath that saw earlier rounds. */
function traffic(round: number) {
  const frontends: Array<[string, number]> = [
    ['10.96.0.10', 80],
    ['10.96.0.20', 80],
    ['192.168.0.10', 30080],
    ['10.96.0.30', 80],
    ['10.96.0.40', 80],
  ];
  return frontends.flatMap(([ip, port]) =>
    Array.from({ length: 60 }, (_, i) => tcp(`10.1.${round}.${i}`, 1024 + 64 * round + (i & 63), ip, port, ['SYN'])),
  );
}

/** What a test compares: verdict, reason, service name and backend address, never ids. */
function decisions(results: FrameResult[], compiled: Compiled): string[] {
  return results.map((r) => {
    const b = r.backendId ? compiled.backends[r.backendId - 1] : undefined;
    return `${r.verdict} ${r.reason} ${r.serviceId ? compiled.services[r.serviceId - 1].name : '-'} ${b ? hostPort(b.ip, b.port) : '-'}`;
  });
}

/** Each service port's Maglev tables as backend addresses per slot: ids aside, the same as a full compile's. */
function tablesByName(compiled: Compiled): Record<string, string[][]> {
  const name = (id: number) => hostPort(compiled.backends[id - 1].ip, compiled.backends[id - 1].port);
  return Object.fromEntries(
    compiled.services.map((cs) => [
      cs.name,
      [cs.cluster, cs.local, cs.cluster6, cs.local6].map((set) => (set ? Array.from(set.maglev, name) : [])),
    ]),
  );
}

/** The service-path maps through the map API, backend ids replaced by what they name. */
function mapsByName(dp: Datapath): Record<string, string[]> {
  const backends = new Map<number, string>();
  for (const map of ['lb4Backends', 'lb6Backends'] as const) {
    for (const [key, value] of dp.map(map).entries()) backends.set(key.value as number, JSON.stringify(value));
  }
  const maglev = dp.map('maglev');
  const tables = [...maglev.keysRaw()].map((key) => {
    const raw = maglev.lookupRaw(key)!;
    const slots = new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    return `${new DataView(key.buffer).getUint32(0, true)}: ${Array.from(slots, (id) => backends.get(id)).join(' ')}`;
  });
  const entries = (map: 'lb4Services' | 'lb6Services') => [...dp.map(map).entries()].map((e) => JSON.stringify(e));
  return {
    // Tombstones (BE_F_GONE) are the live program's own: backends that went, kept for the flows that name them.
    backends: [...backends.values()].filter((b) => (JSON.parse(b).flags & BE_F_GONE) === 0),
    members: [...dp.map('lbMembers').entries()].map(([key]) => `${key.table} ${backends.get(key.backendId as number)}`),
    tables,
    services: entries('lb4Services'),
    services6: entries('lb6Services'),
  };
}

const sorted = (maps: Record<string, string[]>) => Object.fromEntries(Object.entries(maps).map(([k, v]) => [k, [...v].sort()]));

async function expectSameAsFullCompile(l: LiveProgram, round: number): Promise<void> {
  const full = inputs(l.state);
  const reference = await loadProgram(full.compiled, CT);
  const frames = traffic(round);
  expect(decisions(runFrames(l.dp, frames), l.compiled)).toEqual(decisions(runFrames(reference, frames), full.compiled));
  expect(sorted(mapsByName(l.dp))).toEqual(sorted(mapsByName(reference)));
  expect(tablesByName(l.compiled)).toEqual(tablesByName(full.compiled));
  // The live compiled form loads into the same maps as well.
  expect(sorted(mapsByName(await loadProgram(l.compiled, CT)))).toEqual(sorted(mapsByName(reference)));
}

const upsert = (s: EndpointSlice): EndpointSliceChange => ({ op: 'upsert', slice: s });

describe('applying EndpointSlice updates', () => {
  it('decides like a datapath loaded from a full compile of the new state, update after update', async () => {
    const l = await live();
    const steps: Array<[string, EndpointSliceChange]> = [
      [
        'add an endpoint',
        upsert(
          slice('web-a', 'web', [
            ['10.244.1.1', 'node-a'],
            ['10.244.1.2', 'node-b'],
            ['10.244.1.3', 'node-b'],
            ['10.244.1.9', 'node-b'],
          ]),
        ),
      ],
      ['remove one', upsert(slice('web-b', 'web', [['10.244.2.2', 'node-b']]))],
      [
        'mark one not ready',
        upsert(
          slice('web-a', 'web', [
            ['10.244.1.1', 'node-a'],
            ['10.244.1.2', 'node-b', NOT_READY],
            ['10.244.1.3', 'node-b'],
            ['10.244.1.9', 'node-b'],
          ]),
        ),
      ],
      ['delete a slice', { op: 'delete', namespace: 'default', name: 'web-b' }],
      [
        'add a slice for a service that had none',
        upsert(
          slice('empty-a', 'empty', [
            ['10.244.5.1', 'node-b'],
            ['10.244.5.2', 'node-a'],
          ]),
        ),
      ],
      [
        'move the only local endpoint of a Local service away',
        upsert(
          slice('api-a', 'api', [
            ['10.244.3.1', 'node-b'],
            ['10.244.3.2', 'node-b'],
            ['10.244.3.3', 'node-b'],
          ]),
        ),
      ],
      ['remove an endpoint another service shares', upsert(slice('alias-a', 'alias', [['10.244.4.1', 'node-b']]))],
      ['delete every slice of a service', { op: 'delete', namespace: 'default', name: 'web-a' }],
      ['move a slice to another service', upsert(slice('empty-a', 'alias', [['10.244.5.1', 'node-b']]))],
    ];
    await expectSameAsFullCompile(l, 0);
    for (const [i, [, change]] of steps.entries()) {
      applyEndpointSliceUpdate(l, change);
      await expectSameAsFullCompile(l, i + 1);
    }
    // The live state loads again, with room, and updates go on from there.
    const again = trackProgram(await loadProgram(l.compiled, { ...CT, room: { backends: 2, tables: 1, members: 4 } }), {
      ...l,
      opts: OPTS,
    });
    applyEndpointSliceUpdate(
      again,
      upsert(
        slice('web-a', 'web', [
          ['10.244.1.1', 'node-a'],
          ['10.244.2.1', 'node-b'],
        ]),
      ),
    );
    await expectSameAsFullCompile(again, steps.length + 1);
  });

  it('touches only the entries of the backends, members, tables and service entries that change', async () => {
    const ten = Array.from({ length: 10 }, (_, i): [string, string] => [`10.244.1.${i + 1}`, i % 2 ? 'node-b' : 'node-a']);
    const state: ClusterState = {
      services: SERVICES.slice(0, 1),
      endpointSlices: [slice('web-a', 'web', ten)],
      nodes: NODES,
      notes: [],
    };
    const from = inputs(state);
    const l = trackProgram(await loadProgram(from.compiled, { ...CT, room: { backends: 1, tables: 0, members: 1 } }), from);

    const removed = applyEndpointSliceUpdate(l, upsert(slice('web-a', 'web', ten.slice(1))));
    expect(removed.byMap).toEqual({ lb4Backends: 1, lbMembers: 1, maglev: 1, lb4Services: 1 });
    expect(removed.touched).toBe(4);

    const added = applyEndpointSliceUpdate(l, upsert(slice('web-a', 'web', ten)));
    // Plus the new backend's counters, zeroed.
    expect(added.byMap).toEqual({ lb4Backends: 1, backendStats: 1, lbMembers: 1, maglev: 1, lb4Services: 1 });

    const notReady = applyEndpointSliceUpdate(l, upsert(slice('web-a', 'web', [[...ten[0], NOT_READY], ...ten.slice(1)])));
    expect(notReady.byMap).toEqual({ lbMembers: 1, maglev: 1, lb4Services: 1 });

    expect(applyEndpointSliceUpdate(l, upsert(slice('web-a', 'web', [[...ten[0], NOT_READY], ...ten.slice(1)]))).touched).toBe(0);
  });

  /** 300 flows opened, 10.244.1.2 removed: where each went before, after, and where Maglev would put it now. */
  async function removeUnderLoad(opts: CompileOptions) {
    const l = await live(undefined, opts);
    const flows = Array.from({ length: 300 }, (_, i) => [`10.2.${i >> 8}.${i & 255}`, 2000 + i] as const);
    const backendOf = (r: FrameResult, c: Compiled) => c.backends[r.backendId - 1].ip;
    const opened = runFrames(
      l.dp,
      flows.map(([ip, port]) => tcp(ip, port, '10.96.0.10', 80, ['SYN'])),
    ).map((r) => backendOf(r, l.compiled));

    applyEndpointSliceUpdate(
      l,
      upsert(
        slice('web-a', 'web', [
          ['10.244.1.1', 'node-a'],
          ['10.244.1.3', 'node-b'],
          ['10.244.1.8', 'node-b'],
          ['10.244.1.9', 'node-a'],
        ]),
      ),
    );
    const next = runFrames(
      l.dp,
      flows.map(([ip, port]) => tcp(ip, port, '10.96.0.10', 80, ['ACK'])),
    ).map((r) => backendOf(r, l.compiled));
    // What Maglev would pick for these flows now.
    const fresh = inputs(l.state, opts);
    const chosen = runFrames(
      await loadProgram(fresh.compiled, CT),
      flows.map(([ip, port]) => tcp(ip, port, '10.96.0.10', 80, ['SYN'])),
    ).map((r) => backendOf(r, fresh.compiled));
    // The test means something: many flows would be put elsewhere now, and some flows had the removed backend.
    expect(opened.filter((was, i) => chosen[i] !== was).length).toBeGreaterThan(30);
    expect(opened.filter((was) => was === '10.244.1.2').length).toBeGreaterThan(30);
    return { l, flows, backendOf, opened, next, chosen };
  }

  it('keeps established flows where they are, also on a backend that went (kube-proxy keeps the DNAT), and sends new ones by the new tables', async () => {
    const { l, flows, backendOf, opened, next } = await removeUnderLoad(OPTS);
    expect(next).toEqual(opened);
    // The removed backend is a tombstone, in no table: new flows, from fresh ports, never reach it.
    const fresh2 = runFrames(
      l.dp,
      flows.map(([ip, port]) => tcp(ip, port + 10000, '10.96.0.10', 80, ['SYN'])),
    ).map((r) => backendOf(r, l.compiled));
    expect(fresh2).not.toContain('10.244.1.2');
    const gone = [...l.dp.map('lb4Backends').entries()].filter(([, v]) => ((v.flags as number) & BE_F_GONE) !== 0);
    expect(gone.map(([, v]) => v.address)).toEqual(['10.244.1.2']);
  });

  it("with Cilium's semantics moves the established flows of a backend that went, and only those", async () => {
    const { opened, next, chosen } = await removeUnderLoad({ ...OPTS, semantics: 'cilium' });
    opened.forEach((was, i) => expect(next[i]).toBe(was === '10.244.1.2' ? chosen[i] : was));
  });

  it('refuses an update the maps have no room for, changing nothing, and still applies those that fit', async () => {
    const from = inputs({ services: SERVICES, endpointSlices: SLICES, nodes: NODES, notes: [] });
    const l = trackProgram(await loadProgram(from.compiled, CT), from);
    const counts = (dp: Datapath) => (['lb4Backends', 'lbMembers', 'maglev', 'lb4Services'] as const).map((m) => dp.map(m).count());
    const before = counts(l.dp);
    expect(() => applyEndpointSliceUpdate(l, upsert(slice('empty-a', 'empty', [['10.244.5.1', 'node-b']])))).toThrow(NeedsReloadError);
    expect(() =>
      applyEndpointSliceUpdate(l, upsert(slice('web-b', 'web', [['10.244.2.1', 'node-a'], ['10.244.2.2', 'node-b'], ['10.244.2.3']]))),
    ).toThrow(/compile the new state and load it again/);
    expect(counts(l.dp)).toEqual(before);
    await expectSameAsFullCompile(l, 0);

    // A replaced pod frees what its successor takes.
    applyEndpointSliceUpdate(
      l,
      upsert(
        slice('web-b', 'web', [
          ['10.244.2.1', 'node-a'],
          ['10.244.2.7', 'node-b'],
        ]),
      ),
    );
    await expectSameAsFullCompile(l, 1);
  });
});
