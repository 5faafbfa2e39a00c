// State changes applied in place (control/runtime/rebase.ts): after each
// change, new flows are decided as by a datapath loaded from a full compile of
// the new state, the maps hold the same entries up to the ids, the ids that
// stay keep their numbers, established flows keep what they had, and
// EndpointSlice-only changes take the slice path.
import { describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { applyEvent, readEvents, type ClusterEvent } from '../control/cluster/events.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import type {
  ClusterState,
  Endpoint,
  EndpointSlice,
  LegacyEndpoints,
  Node,
  Pod,
  ProxyConfig,
  Service,
  ServiceRanges,
} from '../control/cluster/state.js';
import { compile, type Compiled, type CompileOptions } from '../control/compile/compiler.js';
import { BE_F_GONE, CFG_F, MAPS, hostPort, type MapName, type StructValue } from '../control/compile/layout.js';
import type { Datapath } from '../control/runtime/datapath.js';
import { loadProgram } from '../control/runtime/loader.js';
import { applyStateChange, rebaseState, roomFor, type StateChange } from '../control/runtime/rebase.js';
import { NeedsReloadError, trackProgram, type LiveProgram } from '../control/runtime/update.js';
import { decodeFrame } from '../traces/frames.js';
import { READY, makeNode, makeService, runFrames, tcp, udp, type FrameResult } from './helpers.js';

// compile, watched: which states the narrower paths compile (none, or only the Services that changed).
vi.mock('../control/compile/compiler.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../control/compile/compiler.js')>();
  return { ...actual, compile: vi.fn(actual.compile) };
});

const OPTS: CompileOptions = { node: 'node-a', seed: 11, maglevTableSize: 1021 };
const CT = { ctEntries: 8192 };
const origin = (object: string) => ({ file: 'test', object });

const NODE_A: Node = { ...makeNode('node-a', '192.168.0.10'), zone: 'zone-a' };
const NODE_B: Node = { ...makeNode('node-b', '192.168.0.11'), zone: 'zone-b' };
const PROXY: ProxyConfig = {
  origin: origin('KubeProxyConfiguration'),
  clusterCIDRs: ['10.244.0.0/16'],
  nodePortAddresses: [],
  mode: 'nftables',
  conntrack: {},
};
const RANGES: ServiceRanges = { cidrs: ['10.96.0.0/16'], source: 'test', allocatable: ['10.96.0.0/16'] };

const http = { name: 'http', port: 80, targetPort: 8080 };
const WEB = makeService('default', 'web', '10.96.0.10', [http], { trafficDistribution: 'PreferClose' });
const API = makeService('default', 'api', '10.96.0.20', [http]);
const DNS = makeService('default', 'dns', '10.96.0.53', [
  { name: 'dns', protocol: 'UDP', port: 53 },
  { name: 'dns-tcp', protocol: 'TCP', port: 53 },
]);
const LB = makeService('default', 'lb', '10.96.0.30', [{ ...http, nodePort: 30080 }], {
  type: 'LoadBalancer',
  loadBalancerIngress: [{ ip: '198.51.100.7' }],
  loadBalancerSourceRanges: ['203.0.113.0/24'],
});
const EXTRA = makeService('default', 'extra', '10.96.0.70', [http]);

type Ep = [ip: string, node: string, zone?: string, conditions?: Endpoint['conditions']];

function slice(
  name: string,
  service: string,
  endpoints: Ep[],
  ports: EndpointSlice['ports'] = [{ name: 'http', protocol: 'TCP', port: 8080 }],
): EndpointSlice {
  return {
    origin: origin(`EndpointSlice default/${name}`),
    namespace: 'default',
    name,
    serviceName: service,
    addressType: 'IPv4',
    endpoints: endpoints.map(([ip, nodeName, zone, conditions]) => ({
      addresses: [ip],
      nodeName,
      conditions: conditions ?? READY,
      ...(zone ? { hints: { forZones: [zone], forNodes: [] } } : {}),
    })),
    ports,
  };
}

const WEB_A = slice('web-a', 'web', [
  ['10.244.1.1', 'node-a', 'zone-a'],
  ['10.244.1.2', 'node-b', 'zone-b'],
  ['10.244.1.3', 'node-b', 'zone-b'],
]);
const API_A = slice('api-a', 'api', [
  ['10.244.3.1', 'node-a'],
  ['10.244.3.2', 'node-b'],
]);
const DNS_A = slice(
  'dns-a',
  'dns',
  [
    ['10.244.5.1', 'node-a'],
    ['10.244.5.2', 'node-b'],
  ],
  [
    { name: 'dns', protocol: 'UDP', port: 53 },
    { name: 'dns-tcp', protocol: 'TCP', port: 53 },
  ],
);
const LB_A = slice('lb-a', 'lb', [
  ['10.244.6.1', 'node-a'],
  ['10.244.6.2', 'node-b'],
]);
const EXTRA_A = slice('extra-a', 'extra', [
  ['10.244.7.1', 'node-a'],
  ['10.244.7.2', 'node-b'],
]);

const INITIAL: ClusterState = {
  services: [WEB, API, DNS, LB],
  endpointSlices: [WEB_A, API_A, DNS_A, LB_A],
  nodes: [NODE_A, NODE_B],
  proxyConfig: PROXY,
  serviceRanges: RANGES,
  notes: [],
};

let line = 0;
/** A watch event as events.ts makes them; cluster-scoped kinds have no namespace. */
function event<K extends ClusterEvent['kind']>(
  type: ClusterEvent['type'],
  kind: K,
  object: Extract<ClusterEvent, { kind: K }>['object'],
): ClusterEvent {
  line++;
  const { namespace, name } = object as { namespace?: string; name?: string };
  const clusterScoped = kind === 'Node' || kind === 'KubeProxyConfiguration';
  return { time: BigInt(line), line, type, kind, ...(clusterScoped ? {} : { namespace }), name: name ?? kind, object } as ClusterEvent;
}

const WEB_METRICS = { ...WEB, ports: [...WEB.ports, { name: 'metrics', protocol: 'TCP' as const, port: 9090, targetPort: 9090 }] };
const API_NODEPORT = { ...API, type: 'NodePort' as const, ports: [{ ...API.ports[0], nodePort: 30090 }] };

/** The changes, each one sync; step names say what each tests. */
const STEPS: Array<[string, ClusterEvent[]]> = [
  ['a Service and its slice are added', [event('ADDED', 'Service', EXTRA), event('ADDED', 'EndpointSlice', EXTRA_A)]],
  [
    'a Service gains a port',
    [
      event('MODIFIED', 'Service', WEB_METRICS),
      event('MODIFIED', 'EndpointSlice', {
        ...WEB_A,
        ports: [...WEB_A.ports, { name: 'metrics', protocol: 'TCP', port: 9090 }],
      }),
    ],
  ],
  ['a ClusterIP Service becomes a NodePort', [event('MODIFIED', 'Service', API_NODEPORT)]],
  ['its externalTrafficPolicy becomes Local', [event('MODIFIED', 'Service', { ...API_NODEPORT, externalTrafficPolicy: 'Local' })]],
  [
    'a Node gains an ExternalIP (inside the LoadBalancer source ranges)',
    [event('MODIFIED', 'Node', { ...NODE_A, addresses: [...NODE_A.addresses, { type: 'ExternalIP', address: '203.0.113.10' }] })],
  ],
  [
    "the Node's zone label changes",
    [
      event('MODIFIED', 'Node', {
        ...NODE_A,
        zone: 'zone-b',
        addresses: [...NODE_A.addresses, { type: 'ExternalIP', address: '203.0.113.10' }],
      }),
    ],
  ],
  [
    'the KubeProxyConfiguration changes',
    [
      event('MODIFIED', 'KubeProxyConfiguration', {
        ...PROXY,
        clusterCIDRs: ['10.240.0.0/12'],
        nodePortAddresses: ['0.0.0.0/0'],
        conntrack: { udpTimeout: 90 },
      }),
    ],
  ],
  ['a Service is deleted', [event('DELETED', 'Service', EXTRA)]],
  [
    'a slice changes (only)',
    [
      event(
        'MODIFIED',
        'EndpointSlice',
        slice('api-a', 'api', [
          ['10.244.3.1', 'node-a'],
          ['10.244.3.9', 'node-b'],
        ]),
      ),
    ],
  ],
  ['the deleted Service comes back', [event('ADDED', 'Service', EXTRA)]],
  [
    "a LoadBalancer's IP and source ranges change",
    [event('MODIFIED', 'Service', { ...LB, loadBalancerIngress: [{ ip: '198.51.100.8' }], loadBalancerSourceRanges: ['172.16.0.0/12'] })],
  ],
];

function inputs(state: ClusterState) {
  const resolved = resolveServices(state).services;
  return { state, resolved, compiled: compile(state, resolved, OPTS), opts: OPTS };
}

async function loaded(state: ClusterState, events: readonly ClusterEvent[]): Promise<LiveProgram> {
  const from = inputs(state);
  return trackProgram(await loadProgram(from.compiled, { ...CT, room: roomFor(state, events) }), from);
}

/** New flows to every frontend either program knows (also those gone), and to addresses that are none; `round` keeps them new. */
function traffic(round: number, ...programs: Compiled[]): Uint8Array[] {
  const targets = new Map<string, [string, number, string]>();
  for (const c of programs) {
    for (const cs of c.services)
      for (const f of cs.frontends) targets.set(`${f.address} ${f.port} ${f.protocol}`, [f.address, f.port, f.protocol]);
  }
  targets.set('probe-range', ['10.96.0.99', 80, 'TCP']);
  targets.set('probe-outside', ['8.8.8.8', 53, 'UDP']);
  const clients = ['10.244.9.', '172.16.4.', '203.0.113.'].flatMap((net) => Array.from({ length: 6 }, (_, i) => `${net}${10 + i}`));
  const clients6 = ['fd00:244:9::', 'fd00:172::'].flatMap((net) => Array.from({ length: 9 }, (_, i) => `${net}${10 + i}`));
  return [...targets.values()].flatMap(([address, port, protocol]) =>
    (address.includes(':') ? clients6 : clients).map((client, i) => {
      const sport = 10000 + round * 64 + i;
      return protocol === 'UDP' ? udp(client, sport, address, port) : tcp(client, sport, address, port, ['SYN']);
    }),
  );
}

/** Verdict, reason, Service port name, backend address and masquerade: never ids. */
function decisions(results: FrameResult[], compiled: Compiled): string[] {
  return results.map((r) => {
    const b = r.backendId ? compiled.backends[r.backendId - 1] : undefined;
    const service = r.serviceId ? compiled.services[r.serviceId - 1].name : '-';
    return `${r.verdict} ${r.reason} ${service} ${b ? hostPort(b.ip, b.port) : '-'} ${r.snat}`;
  });
}

/** Every service-path map through the map API, ids replaced by what they name; tombstones and kept reverse-NAT entries aside. */
function namedMaps(dp: Datapath, compiled: Compiled): Record<string, string[]> {
  const name = (id: number) => compiled.services[id - 1].name;
  const backends = new Map<number, StructValue>();
  for (const map of ['lb4Backends', 'lb6Backends'] as const) for (const [k, v] of dp.map(map).entries()) backends.set(k.value as number, v);
  const be = (id: number) => `${backends.get(id)!.address}:${backends.get(id)!.port}`;
  const revnat = new Map<number, string>();
  for (const map of ['lb4Revnat', 'lb6Revnat'] as const)
    for (const [k, v] of dp.map(map).entries()) revnat.set(k.value as number, `${v.address}:${v.port}`);
  const table = (t: number) => `${name(t >> 2)}#${t & 3}`;
  const maglev = dp.map('maglev');
  const keys = (map: 'nodeIps4' | 'nodeIps6' | 'serviceRanges4' | 'serviceRanges6') =>
    [...dp.map(map).entries()].map(([k]) => JSON.stringify(k));
  return {
    services: (['lb4Services', 'lb6Services'] as const).flatMap((map) =>
      [...dp.map(map).entries()].map(([k, v]) => {
        const id = v.serviceId as number;
        return JSON.stringify([k, { ...v, serviceId: id ? name(id) : 0, revNatIndex: id ? revnat.get(v.revNatIndex as number) : 0 }]);
      }),
    ),
    backends: [...backends.values()].filter((v) => ((v.flags as number) & BE_F_GONE) === 0).map((v) => JSON.stringify(v)),
    members: [...dp.map('lbMembers').entries()].map(([k]) => `${table(k.table as number)} ${be(k.backendId as number)}`),
    maglev: [...maglev.keysRaw()].map((key) => {
      const raw = maglev.lookupRaw(key)!;
      const slots = new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
      return `${table(new DataView(key.buffer).getUint32(0, true))} ${Array.from(slots, be).join(' ')}`;
    }),
    sourceRanges: (['lb4SourceRanges', 'lb6SourceRanges'] as const).flatMap((map) =>
      [...dp.map(map).entries()].map(([k]) => JSON.stringify({ ...k, serviceId: name(k.serviceId as number) })),
    ),
    nodeIps: [...keys('nodeIps4'), ...keys('nodeIps6')],
    serviceRanges: [...keys('serviceRanges4'), ...keys('serviceRanges6')],
    // A fresh load has no frontend that went: compared apart (removedFrontends).
    config: [JSON.stringify(withoutRemovedFrontends(dp.map('config').at(0)!))],
  };
}

function withoutRemovedFrontends(config: StructValue): StructValue {
  return { ...config, flags: (config.flags as number) & ~CFG_F.REMOVED_FRONTENDS };
}

/** Whether the datapath's config says a frontend went, as read through the map API. */
const removedFrontends = (dp: Datapath) => ((dp.map('config').at(0)!.flags as number) & CFG_F.REMOVED_FRONTENDS) !== 0;

const sorted = (maps: Record<string, string[]>) => Object.fromEntries(Object.entries(maps).map(([k, v]) => [k, [...v].sort()]));

async function expectSameAsFullCompile(live: LiveProgram, state: ClusterState, round: number): Promise<void> {
  const full = inputs(state);
  const reference = await loadProgram(full.compiled, CT);
  const frames = traffic(round, live.compiled, full.compiled);
  expect(decisions(runFrames(live.dp, frames), live.compiled)).toEqual(decisions(runFrames(reference, frames), full.compiled));
  expect(sorted(namedMaps(live.dp, live.compiled))).toEqual(sorted(namedMaps(reference, full.compiled)));
  // The live compiled form describes the maps: loaded afresh, it makes the same ones.
  expect(sorted(namedMaps(await loadProgram(live.compiled, CT), live.compiled))).toEqual(sorted(namedMaps(reference, full.compiled)));
}

const idsByName = (c: Compiled) => new Map(c.services.filter((cs) => !cs.removed).map((cs) => [cs.name, cs.id]));

describe('applying state changes in place', () => {
  it('decides new flows as a fresh load of the new state, change after change, keeping the ids that stay', async () => {
    let state = INITIAL;
    let live = await loaded(
      state,
      STEPS.flatMap(([, events]) => events),
    );
    await expectSameAsFullCompile(live, state, 0);
    const changes: Record<string, StateChange> = {};
    const flagged: Record<string, boolean> = {};
    expect(removedFrontends(live.dp)).toBe(false);
    for (const [i, [step, events]] of STEPS.entries()) {
      for (const e of events) state = applyEvent(state, e);
      const ids = idsByName(live.compiled);
      const backendIds = new Map([...live.backends].map(([key, r]) => [key, r.backend.id]));
      const applied = applyStateChange(live, state);
      live = applied.live;
      changes[step] = applied.change;
      flagged[step] = removedFrontends(live.dp);
      await expectSameAsFullCompile(live, state, i + 1);
      // Service ports and backends that stay keep their ids.
      for (const [name, id] of idsByName(live.compiled)) if (ids.has(name)) expect(id, step).toBe(ids.get(name));
      for (const [key, r] of live.backends) if (backendIds.has(key)) expect(r.backend.id, step).toBe(backendIds.get(key));
    }

    // Service changes compile those Services alone; Node and KubeProxyConfiguration changes, the whole state.
    expect(Object.fromEntries(Object.entries(changes).map(([step, c]) => [step, c.path]))).toEqual({
      'a Service and its slice are added': 'services',
      'a Service gains a port': 'services',
      'a ClusterIP Service becomes a NodePort': 'services',
      'its externalTrafficPolicy becomes Local': 'services',
      'a Node gains an ExternalIP (inside the LoadBalancer source ranges)': 'rebase',
      "the Node's zone label changes": 'rebase',
      'the KubeProxyConfiguration changes': 'rebase',
      'a Service is deleted': 'services',
      'a slice changes (only)': 'endpoints',
      'the deleted Service comes back': 'services',
      "a LoadBalancer's IP and source ranges change": 'services',
    });
    expect(changes['a Service and its slice are added']).toMatchObject({
      services: { added: ['default/extra:http'], removed: [], modified: [] },
      endpoints: [{ service: 'default/extra:http', added: ['10.244.7.1:8080', '10.244.7.2:8080'], removed: [], terminating: [] }],
      removedBackendIds: [],
    });
    expect(changes['a Service gains a port'].services).toEqual({ added: ['default/web:metrics'], removed: [], modified: [] });
    expect(changes['a ClusterIP Service becomes a NodePort'].services.modified).toEqual(['default/api:http']);
    expect(changes['its externalTrafficPolicy becomes Local'].services.modified).toEqual(['default/api:http']);
    // NodePorts stay on the primary address (the nftables mode's default); a node address inside the source
    // ranges lets the load-balancer IP through from itself.
    expect(changes['a Node gains an ExternalIP (inside the LoadBalancer source ranges)']).toMatchObject({
      services: { modified: [] },
      byMap: { nodeIps4: 1, lb4SourceRanges: 1 },
    });
    // nodePortAddresses now takes in the new address: every NodePort gets a frontend there.
    expect(changes['the KubeProxyConfiguration changes']).toMatchObject({
      services: { modified: ['default/api:http', 'default/lb:http'] },
      byMap: { config: 1, lb4Services: 2, lb4Revnat: 2 },
    });
    const deleted = changes['a Service is deleted'];
    expect(deleted.services.removed).toEqual(['default/extra:http']);
    expect(deleted.endpoints).toEqual([
      { service: 'default/extra:http', added: [], removed: ['10.244.7.1:8080', '10.244.7.2:8080'], terminating: [] },
    ]);
    expect(deleted.removedBackendIds).toHaveLength(2);
    // One backend out, one in (its counters zeroed), one member each way, the cluster table; the NodePort's
    // local table keeps its one endpoint, and the service entries their counts.
    expect(changes['a slice changes (only)']).toMatchObject({
      path: 'endpoints',
      services: { added: [], removed: [], modified: [] },
      endpoints: [{ service: 'default/api:http', added: ['10.244.3.9:8080'], removed: ['10.244.3.2:8080'], terminating: [] }],
      byMap: { lb4Backends: 2, backendStats: 1, lbMembers: 2, maglev: 1 },
    });
    expect(changes['the deleted Service comes back'].services.added).toEqual(['default/extra:http']);
    // The steps before the deletion only add or change frontends; from the deletion on, the flag stays (its flows may).
    const deletion = STEPS.findIndex(([step]) => step === 'a Service is deleted');
    expect(Object.values(flagged)).toEqual(STEPS.map((_, i) => i >= deletion));
  });

  it('keeps a deleted Service at its id, its backends as tombstones and its reverse NAT for its established flows', async () => {
    const withExtra = applyEvent(applyEvent(INITIAL, event('ADDED', 'Service', EXTRA)), event('ADDED', 'EndpointSlice', EXTRA_A));
    const removal = event('DELETED', 'Service', EXTRA);
    let live = await loaded(withExtra, [removal]);
    const id = idsByName(live.compiled).get('default/extra:http')!;
    const [opened] = runFrames(live.dp, [tcp('10.244.9.9', 40000, '10.96.0.70', 80, ['SYN'])]);
    const backend = decodeFrame(opened.out).ipv4!.dst;
    expect(opened.serviceId).toBe(id);
    const reply = () => runFrames(live.dp, [tcp(backend, 8080, '10.244.9.9', 40000, ['SYN', 'ACK'])])[0];
    const before = reply();

    const after = applyEvent(withExtra, removal);
    live = applyStateChange(live, after).live;
    await expectSameAsFullCompile(live, after, 1);
    const cs = live.compiled.services[id - 1];
    expect(cs).toMatchObject({ name: 'default/extra:http', removed: true, cluster: { backendIds: [] } });
    const gone = [...live.dp.map('lb4Backends').entries()].filter(([, v]) => ((v.flags as number) & BE_F_GONE) !== 0);
    expect(gone.map(([, v]) => v.address).sort()).toEqual(['10.244.7.1', '10.244.7.2']);
    // The backend's replies are still translated back to the Service's address, as before.
    const later = reply();
    expect([later.verdict, later.reason, later.serviceId]).toEqual([before.verdict, before.reason, id]);
    const out = decodeFrame(later.out);
    expect([out.ipv4!.src, out.tcp!.sport]).toEqual(['10.96.0.70', 80]);
    // New flows to the deleted Service's address are no Service's, as the address is in the service range.
    expect(runFrames(live.dp, [tcp('10.244.9.9', 40001, '10.96.0.70', 80, ['SYN'])])[0].reason).toBe('UNALLOCATED_IP');
  });

  it('takes the slice path for slices derived from Pods, and no path when no slice changes', async () => {
    const pod = (name: string, ip: string, labels: Record<string, string>): Pod => ({
      origin: origin(`Pod default/${name}`),
      namespace: 'default',
      name,
      labels,
      podIPs: [ip],
      nodeName: 'node-b',
      phase: 'Running',
      ready: true,
      terminating: false,
      containerPorts: [],
    });
    const app = makeService('default', 'app', '10.96.0.80', [http], { selector: { app: 'app' } });
    const events = [
      event('ADDED', 'Pod', pod('app-2', '10.244.8.2', { app: 'app' })),
      event('ADDED', 'Pod', pod('other', '10.244.8.9', { app: 'other' })),
      // Still passing its readiness probe while it drains: serving, terminating, not ready.
      event('MODIFIED', 'Pod', { ...pod('app-1', '10.244.8.1', { app: 'app' }), terminating: true }),
    ];
    let state = applyEvent(
      applyEvent({ ...INITIAL, services: [...INITIAL.services, app], pods: [] }, event('ADDED', 'Service', app)),
      event('ADDED', 'Pod', pod('app-1', '10.244.8.1', { app: 'app' })),
    );
    let live = await loaded(state, events);
    const results: StateChange[] = [];
    for (const [i, e] of events.entries()) {
      state = applyEvent(state, e);
      const applied = applyStateChange(live, state);
      live = applied.live;
      results.push(applied.change);
      await expectSameAsFullCompile(live, state, i + 1);
    }
    // A Pod no Service selects changes nothing the datapath uses.
    expect(results.map((r) => r.path)).toEqual(['endpoints', 'none', 'endpoints']);
    expect(results[0].endpoints).toEqual([{ service: 'default/app:http', added: ['10.244.8.2:8080'], removed: [], terminating: [] }]);
    expect(results[1]).toMatchObject({ endpoints: [], touched: 0 });
    expect(results[2].endpoints).toEqual([{ service: 'default/app:http', added: [], removed: [], terminating: ['10.244.8.1:8080'] }]);
  });

  it('keeps the backend of an endpoint that moves from one slice of its Service to another in the same sync', async () => {
    const webB = slice('web-b', 'web', [['10.244.1.4', 'node-b', 'zone-b']]);
    let state = applyEvent(INITIAL, event('ADDED', 'EndpointSlice', webB));
    const moves = [
      event('MODIFIED', 'EndpointSlice', { ...webB, endpoints: [...webB.endpoints, WEB_A.endpoints[2]] }),
      event('MODIFIED', 'EndpointSlice', { ...WEB_A, endpoints: WEB_A.endpoints.slice(0, 2) }),
    ];
    const live = await loaded(state, moves);
    const idOf = (l: LiveProgram, ip: string) => [...l.backends.values()].find((r) => r.backend.ip === ip)!.backend.id;
    const id = idOf(live, '10.244.1.3');
    for (const e of moves) state = applyEvent(state, e);
    const { live: next, change } = applyStateChange(live, state);
    expect(change).toMatchObject({ path: 'endpoints', endpoints: [], removedBackendIds: [], touched: 0 });
    expect(idOf(next, '10.244.1.3')).toBe(id);
    await expectSameAsFullCompile(next, state, 1);
  });

  it('does the same for a dual-stack Service, in both families', async () => {
    const node = { ...NODE_A, addresses: [...NODE_A.addresses, { type: 'InternalIP', address: 'fd00:1::10' }] };
    const dual = makeService('default', 'dual', '10.96.0.90', [{ ...http, nodePort: 30095 }], {
      type: 'NodePort',
      clusterIPs: ['10.96.0.90', 'fd00:96::90'],
      ipFamilies: ['IPv4', 'IPv6'],
    });
    const v4 = slice('dual-v4', 'dual', [
      ['10.244.10.1', 'node-a'],
      ['10.244.10.2', 'node-b'],
    ]);
    const v6: EndpointSlice = {
      ...slice('dual-v6', 'dual', [
        ['fd00:244:10::1', 'node-a'],
        ['fd00:244:10::2', 'node-b'],
      ]),
      addressType: 'IPv6',
    };
    let state = applyEvent(INITIAL, event('MODIFIED', 'Node', node));
    const steps = [
      [event('ADDED', 'Service', dual), event('ADDED', 'EndpointSlice', v4), event('ADDED', 'EndpointSlice', v6)],
      [event('MODIFIED', 'Service', { ...dual, externalTrafficPolicy: 'Local' })],
      [event('MODIFIED', 'EndpointSlice', { ...v6, endpoints: [v6.endpoints[1], { ...v6.endpoints[0], addresses: ['fd00:244:10::3'] }] })],
      [event('DELETED', 'Service', dual)],
    ];
    let live = await loaded(state, steps.flat());
    for (const [i, events] of steps.entries()) {
      for (const e of events) state = applyEvent(state, e);
      live = applyStateChange(live, state).live;
      await expectSameAsFullCompile(live, state, i + 1);
    }
    // The deleted Service's IPv6 frontends keep their reverse NAT.
    const revnat6 = [...live.dp.map('lb6Revnat').entries()].map(([, v]) => `${v.address} ${v.port}`);
    expect(revnat6).toEqual(expect.arrayContaining(['fd00:96::90 80', 'fd00:1::10 30095']));
  });

  it('applies the bundled rolling update event by event, on the slice path, in the room roomFor leaves', async () => {
    const samples = join(PROJECT_ROOT, 'traces', 'samples');
    let state = loadClusterState([join(samples, 'cluster.yaml')]);
    const { events, error } = readEvents(join(samples, 'rolling-update.events.jsonl'), state);
    expect(error).toBeUndefined();
    const resolved = resolveServices(state).services;
    const opts = { ...OPTS, node: 'node-a' };
    const compiled = compile(state, resolved, opts);
    let live = trackProgram(await loadProgram(compiled, { ...CT, room: roomFor(state, events) }), { state, resolved, compiled, opts });
    const paths = new Set<string>();
    for (const e of events) {
      state = applyEvent(state, e);
      const applied = applyStateChange(live, state);
      live = applied.live;
      paths.add(applied.change.path);
    }
    expect([...paths]).toEqual(['endpoints']);
    const full = compile(state, resolveServices(state).services, opts);
    const reference = await loadProgram(full, CT);
    expect(sorted(namedMaps(live.dp, live.compiled))).toEqual(sorted(namedMaps(reference, full)));
  });

  it('refuses a change the maps have no room for, changing nothing', async () => {
    const from = inputs(INITIAL);
    const live = trackProgram(await loadProgram(from.compiled, CT), from);
    const counts = () => (['lb4Services', 'lb4Backends', 'lb4Revnat', 'lbMembers', 'maglev'] as const).map((m) => live.dp.map(m).count());
    const before = counts();
    const after = applyEvent(applyEvent(INITIAL, event('ADDED', 'Service', EXTRA)), event('ADDED', 'EndpointSlice', EXTRA_A));
    expect(() => applyStateChange(live, after)).toThrow(NeedsReloadError);
    expect(counts()).toEqual(before);
    await expectSameAsFullCompile(live, INITIAL, 1);
  });

  it('gives room for every change of the events', () => {
    const room = roomFor(
      INITIAL,
      STEPS.flatMap(([, events]) => events),
    );
    // extra: 2 addresses x 1 port; web: 3 x 2 (http, metrics); api, lb: 3 and 2 addresses x 1; dns: 2 x 2.
    expect(room.backends).toBe(2 + 6 + 3 + 2 + 4);
    expect(room.members).toBe(2 * room.backends);
    expect(room.serviceIds).toBe(1 + 2 + 1 + 2 + 1);
    expect(room.tables).toBe(4 * room.serviceIds!);
    expect(room.nodeIps).toBe(2);
  });
});

// ---------------------------------------------------------------------------
// The narrower paths against the general one

/** Every map through the map API, raw bytes: ids and all. */
function rawMaps(dp: Datapath): Record<string, string[]> {
  const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : '-');
  const maps: Record<string, string[]> = {};
  for (const name of Object.keys(MAPS) as MapName[]) {
    let map: ReturnType<Datapath['map']>;
    try {
      map = dp.map(name);
    } catch {
      continue; // not created for this program (the steer map of a sharded worker)
    }
    maps[name] = [...map.keysRaw()].map((k) => `${hex(k)}=${hex(map.lookupRaw(k))}`).sort();
  }
  return maps;
}

const withoutOrigin = (value: unknown) =>
  JSON.stringify(value, (k, v) => (k === 'origin' ? undefined : v instanceof Uint32Array ? [...v] : v));

/** What a live program holds: its ids, compiled form and resolution, as comparable text. */
function liveForm(l: LiveProgram) {
  const { entries, services, backends, skipped, notes, ...rest } = l.compiled;
  const list = (items: readonly unknown[]) => items.map(withoutOrigin).sort();
  const family = (f: 'v4' | 'v6') => Object.fromEntries(Object.entries(entries[f]).map(([k, v]) => [k, list(v)]));
  return {
    services: services.map(withoutOrigin),
    backends: backends.map(withoutOrigin),
    skipped,
    notes: [...notes].sort(),
    rest: withoutOrigin(rest),
    entries: {
      config: entries.config,
      maglev: list(entries.maglev),
      lbMembers: list(entries.lbMembers),
      v4: family('v4'),
      v6: family('v6'),
    },
    resolved: l.resolved.map(withoutOrigin),
    places: [...l.services],
    inUse: [...l.backends].map(([key, r]) => `${key}=${withoutOrigin(r)}`).sort(),
    tombstones: [...l.tombstones.keys()].sort((a, b) => a - b),
    free: l.freeIds.peek(1 << 20),
  };
}

/** A seeded generator (mulberry32): the same sequence on every run. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The Services the churn changes: those of INITIAL, and others in three namespaces. */
const NAMES = [
  'default/web',
  'default/api',
  'default/dns',
  'default/lb',
  'default/alpha',
  'default/beta',
  'kube-system/dns',
  'other/alpha',
  'other/b',
];
const PORTS = [
  { name: 'http', protocol: 'TCP' as const, port: 80, targetPort: 8080 },
  { name: 'metrics', protocol: 'TCP' as const, port: 9090, targetPort: 9090 },
  { name: 'dns', protocol: 'UDP' as const, port: 53, targetPort: 53 },
];

/**
 * A sequence of syncs, each a few events, mostly of Services (added, changed
 * into anything, deleted), with their slices or legacy Endpoints, changes of
 * nothing the datapath reads, and now and then a Node or KubeProxyConfiguration;
 * cluster IPs, external IPs and load-balancer IPs are drawn from small pools,
 * so that Services now and then share one. Each sync has the path it must take.
 */
function serviceChurn(seed: number, initial: ClusterState, syncs: number): Array<{ events: ClusterEvent[]; path: StateChange['path'] }> {
  const rand = seeded(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)];
  const at = (name: string) => NAMES.indexOf(name);
  let line = 0;
  const origin = () => ({ file: 'churn', object: `line ${++line}` });
  const service = (key: string): Service => {
    const i = at(key);
    const [namespace, name] = key.split('/');
    const v4 = `10.96.1.${10 + (rand() < 0.05 ? Math.floor(rand() * NAMES.length) : i)}`;
    const roll = rand();
    const type = roll < 0.5 ? 'ClusterIP' : roll < 0.7 ? 'NodePort' : 'LoadBalancer';
    const headless = rand() < 0.1;
    const dual = !headless && rand() < 0.25;
    const ports = PORTS.filter(() => rand() < 0.5);
    if (ports.length === 0) ports.push(pick(PORTS));
    return {
      ...makeService(
        namespace,
        name,
        v4,
        ports.map((p, j) => (type === 'ClusterIP' ? p : { ...p, nodePort: 30000 + 10 * i + j })),
        {
          type,
          clusterIPs: headless ? ['None'] : dual ? [v4, `fd00:96::${10 + i}`] : [v4],
          ipFamilies: dual ? ['IPv4', 'IPv6'] : ['IPv4'],
          externalIPs: rand() < 0.2 ? [`198.51.100.${rand() < 0.1 ? 1 : 10 + i}`] : [],
          loadBalancerIngress: type === 'LoadBalancer' ? [{ ip: `203.0.113.${rand() < 0.1 ? 1 : 10 + i}` }] : [],
          loadBalancerSourceRanges: type === 'LoadBalancer' && rand() < 0.5 ? [pick(['172.16.0.0/12', '192.168.0.0/16'])] : [],
          sessionAffinity: rand() < 0.3 ? 'ClientIP' : 'None',
          externalTrafficPolicy: rand() < 0.4 ? 'Local' : 'Cluster',
          internalTrafficPolicy: rand() < 0.2 ? 'Local' : 'Cluster',
          ...(rand() < 0.2 ? { trafficDistribution: 'PreferClose' } : {}),
        },
      ),
      origin: origin(),
    };
  };
  const endpointList = (i: number, v6: boolean): Endpoint[] =>
    [1, 2, 3, 4, 5]
      .filter(() => rand() < 0.5)
      .map((k) => {
        const roll = rand();
        const nodeName = pick(['node-a', 'node-b']);
        return {
          addresses: [v6 ? `fd00:244:${i}::${k}` : `10.244.${i}.${k}`],
          nodeName,
          conditions:
            roll < 0.75
              ? READY
              : roll < 0.9
                ? { ready: false, serving: true, terminating: true }
                : { ready: false, serving: false, terminating: false },
          ...(rand() < 0.3 ? { hints: { forZones: [nodeName === 'node-a' ? 'zone-a' : 'zone-b'], forNodes: [] } } : {}),
        };
      });
  const slicesOf = (s: Service): EndpointSlice[] => {
    const i = at(keyOf(s));
    const ports = PORTS.filter(() => rand() < 0.8).map((p) => ({ name: p.name, protocol: p.protocol, port: p.targetPort }));
    return (s.clusterIPs.some((ip) => ip.includes(':')) ? ['IPv4', 'IPv6'] : ['IPv4']).map((family) => ({
      origin: origin(),
      namespace: s.namespace,
      name: `${s.name}-${family === 'IPv4' ? 'v4' : 'v6'}`,
      serviceName: s.name,
      addressType: family as 'IPv4' | 'IPv6',
      endpoints: endpointList(i, family === 'IPv6'),
      ports,
    }));
  };
  const legacy = (): LegacyEndpoints => ({
    origin: origin(),
    namespace: 'default',
    name: 'legacy',
    subsets: [
      {
        addresses: [1, 2, 3].filter(() => rand() < 0.6).map((k) => ({ ip: `10.244.99.${k}`, nodeName: pick(['node-a', 'node-b']) })),
        notReadyAddresses: rand() < 0.3 ? [{ ip: '10.244.99.9', nodeName: 'node-b' }] : [],
        ports: PORTS.map((p) => ({ name: p.name, protocol: p.protocol, port: p.targetPort })),
      },
    ],
  });
  const same = (a: unknown, b: unknown) => withoutOrigin(a) === withoutOrigin(b);
  const sortedBy = <T extends { namespace: string; name: string }>(list: readonly T[]) =>
    [...list].sort((x, y) => keyOf(x).localeCompare(keyOf(y)));
  const keyOf = (o: { namespace: string; name: string }) => `${o.namespace}/${o.name}`;
  let state = initial;
  const out: Array<{ events: ClusterEvent[]; path: StateChange['path'] }> = [];
  while (out.length < syncs) {
    const events: ClusterEvent[] = [];
    const start = state;
    const add = (e: ClusterEvent) => {
      events.push(e);
      state = applyEvent(state, e);
    };
    for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) {
      const present = state.services.filter((s) => s.name !== 'legacy');
      const absent = NAMES.filter((k) => !present.some((s) => keyOf(s) === k));
      const roll = rand();
      if (roll < 0.3 && present.length > 0) {
        const was = pick(present);
        let now = service(keyOf(was));
        while (same(now, was)) now = service(keyOf(was));
        add(event('MODIFIED', 'Service', now));
        if (rand() < 0.5) for (const s of slicesOf(now)) add(event('ADDED', 'EndpointSlice', s));
      } else if (roll < 0.45 && absent.length > 0) {
        const now = service(pick(absent));
        add(event('ADDED', 'Service', now));
        for (const s of slicesOf(now)) add(event('ADDED', 'EndpointSlice', s));
      } else if (roll < 0.57 && present.length > 0) {
        const was = pick(present);
        add(event('DELETED', 'Service', was));
        if (rand() < 0.5) {
          for (const s of state.endpointSlices.filter((x) => x.namespace === was.namespace && x.serviceName === was.name))
            add(event('DELETED', 'EndpointSlice', s));
        }
      } else if (roll < 0.72 && present.length > 0) {
        const s = pick(present);
        for (const x of slicesOf(s)) add(event('MODIFIED', 'EndpointSlice', x));
      } else if (roll < 0.82) {
        // kubectl's MODIFIED of a status or an annotation: the same validated object, read elsewhere.
        const s = pick([...present, ...state.nodes.map((node) => ({ node }))]);
        if ('node' in s) add(event('MODIFIED', 'Node', { ...s.node, origin: origin() }));
        else add(event('MODIFIED', 'Service', { ...s, origin: origin() }));
      } else if (roll < 0.9) {
        add(event('MODIFIED', 'Endpoints', legacy()));
      } else if (roll < 0.95) {
        const node = state.nodes[0];
        add(event('MODIFIED', 'Node', { ...node, origin: origin(), zone: node.zone === 'zone-a' ? 'zone-b' : 'zone-a' }));
      } else {
        add(event('MODIFIED', 'KubeProxyConfiguration', { ...PROXY, origin: origin(), conntrack: { udpTimeout: 30 + out.length } }));
      }
    }
    // The path the net change of the sync calls for, by what differs (where objects were read aside).
    const differs = (pick: (s: ClusterState) => unknown) => !same(pick(start), pick(state));
    const path = differs((s) => [s.nodes, s.proxyConfig])
      ? 'rebase'
      : differs((s) => [sortedBy(s.services), sortedBy(s.legacyEndpoints ?? [])])
        ? 'services'
        : differs((s) => sortedBy(s.endpointSlices))
          ? 'endpoints'
          : 'none';
    out.push({ events, path });
  }
  return out;
}

function forgetAffinity(dp: Datapath): void {
  for (const name of ['lb4Affinity', 'lb6Affinity'] as const) {
    const map = dp.map(name);
    for (const key of [...map.keysRaw()]) map.deleteRaw(key);
  }
}

/** Whether two frontend entries of a full compile have one key: the loader refuses such a state. */
function sharesFrontends(state: ClusterState): boolean {
  const { entries } = inputs(state).compiled;
  const keys = (['v4', 'v6'] as const).flatMap((f) => entries[f].services.map(({ key }) => JSON.stringify(key)));
  return new Set(keys).size < keys.length;
}

describe('the narrower paths give what compiling the whole state gives', () => {
  const LEGACY_SVC = makeService('default', 'legacy', '10.96.1.99', PORTS);
  const LEGACY_EP: LegacyEndpoints = {
    origin: origin('Endpoints default/legacy'),
    namespace: 'default',
    name: 'legacy',
    subsets: [
      {
        addresses: [{ ip: '10.244.99.1', nodeName: 'node-a' }],
        notReadyAddresses: [],
        ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
      },
    ],
  };
  const START: ClusterState = { ...INITIAL, services: [...INITIAL.services, LEGACY_SVC], legacyEndpoints: [LEGACY_EP] };

  it('over a seeded sequence of Service changes: the same maps, ids, compiled form and StateChange, sync after sync', async () => {
    const syncs = serviceChurn(1, START, 80);
    const events = syncs.flatMap((s) => s.events);
    const [narrow, general] = [await loaded(START, events), await loaded(START, events)];
    let [a, b] = [narrow, general];
    let state = START;
    const paths: Record<string, number> = {};
    for (const [i, { events: batch, path }] of syncs.entries()) {
      for (const e of batch) state = applyEvent(state, e);
      const viaNarrow = applyStateChange(a, state);
      // Slice updates (update.ts) release the ids of the backends that go in another order than the general path: both
      // take them, so as to go on in step (they are compared with a fresh compile, up to ids, above and below).
      const viaGeneral = path === 'endpoints' ? applyStateChange(b, state) : rebaseState(b, state);
      [a, b] = [viaNarrow.live, viaGeneral.live];
      const step = `sync ${i}: ${batch.map((e) => `${e.type} ${e.kind} ${e.name}`).join(', ')}`;
      expect(viaNarrow.change.path, step).toBe(path);
      expect({ ...viaNarrow.change, path: '-' }, step).toEqual({ ...viaGeneral.change, path: '-' });
      expect(rawMaps(a.dp), step).toEqual(rawMaps(b.dp));
      expect(liveForm(a), step).toEqual(liveForm(b));
      paths[path] = (paths[path] ?? 0) + 1;
      // New flows decided as a fresh load of the state decides them (one that loads: no frontend two Services
      // share); the same traffic through both keeps their maps alike.
      // ClientIP affinity from the rounds before is forgotten: a fresh load has none.
      if (i % 10 === 9 && !sharesFrontends(state)) {
        for (const l of [a, b]) {
          forgetAffinity(l.dp);
          await expectSameAsFullCompile(l, state, i + 1);
        }
      }
    }
    // The sequence exercises every path, mostly the Services one.
    expect(paths).toEqual({
      services: expect.any(Number),
      endpoints: expect.any(Number),
      none: expect.any(Number),
      rebase: expect.any(Number),
    });
    expect(paths.services).toBeGreaterThan(40);
  });

  it('compiles only the Services that changed, in a state with the same Nodes, configuration and ranges', async () => {
    const changed = { ...API, sessionAffinity: 'ClientIP' as const, origin: origin('line 2') };
    const after = applyEvent(START, event('MODIFIED', 'Service', changed));
    const live = await loaded(START, []);
    vi.mocked(compile).mockClear();
    const { change } = applyStateChange(live, after);
    expect(change).toMatchObject({ path: 'services', services: { modified: ['default/api:http'] }, byMap: { lb4Services: 1 } });
    expect(vi.mocked(compile).mock.calls).toHaveLength(1);
    const [state] = vi.mocked(compile).mock.calls[0];
    expect(state.services).toEqual([changed]);
    expect(state.endpointSlices).toEqual([API_A]);
    expect(state.legacyEndpoints).toEqual([]);
    expect([state.nodes, state.proxyConfig, state.serviceRanges]).toEqual([START.nodes, START.proxyConfig, START.serviceRanges]);
  });

  it('touches and compiles nothing for a MODIFIED that changes nothing the datapath reads', async () => {
    let state = START;
    let live = await loaded(START, []);
    const maps = rawMaps(live.dp);
    // kubectl prints MODIFIED for a status, an annotation, a resourceVersion: the validated object is the same, read elsewhere.
    const moved = <T extends { origin: unknown }>(o: T): T => ({ ...o, origin: origin('watch line 9') });
    const noops = [
      event('MODIFIED', 'Service', moved(WEB)),
      event('MODIFIED', 'EndpointSlice', moved(WEB_A)),
      event('MODIFIED', 'Endpoints', moved(LEGACY_EP)),
      event('MODIFIED', 'Node', moved(NODE_B)),
      event('MODIFIED', 'KubeProxyConfiguration', moved(PROXY)),
      { time: 9n, line: 9, type: 'MODIFIED', kind: 'ServiceCIDR', name: 'kubernetes', object: undefined } satisfies ClusterEvent,
    ];
    for (const e of noops) {
      state = applyEvent(state, e);
      vi.mocked(compile).mockClear();
      const applied = applyStateChange(live, state);
      expect(applied.change, e.kind).toEqual({
        path: 'none',
        services: { added: [], removed: [], modified: [] },
        endpoints: [],
        removedBackendIds: [],
        touched: 0,
        byMap: {},
      });
      expect(applied.live, e.kind).toBe(live);
      expect(vi.mocked(compile).mock.calls, e.kind).toHaveLength(0);
      live = applied.live;
    }
    expect(rawMaps(live.dp)).toEqual(maps);
    // The general path agrees: nothing to write.
    expect(rebaseState(live, state).change).toMatchObject({
      touched: 0,
      services: { added: [], removed: [], modified: [] },
      endpoints: [],
    });
    // A change after them is still seen against the state they left.
    state = applyEvent(state, event('MODIFIED', 'Service', { ...moved(WEB), sessionAffinity: 'ClientIP' }));
    expect(applyStateChange(live, state).change).toMatchObject({ path: 'services', services: { modified: ['default/web:http'] } });
  });

  it('takes the general path when the service ranges change', async () => {
    const live = await loaded(START, []);
    const after = { ...START, serviceRanges: { ...RANGES, cidrs: ['10.96.0.0/12'] } };
    expect(applyStateChange(live, after).change).toMatchObject({ path: 'rebase', byMap: { serviceRanges4: 2 } });
  });

  it('keeps a cluster IP two Services share, and a frontend key, for the first in compile order', async () => {
    // Refused in one manifest set, but events are validated one by one.
    const twin = makeService('default', 'aaa', '10.96.0.10', [{ name: 'other', port: 81, targetPort: 8081 }], {
      externalIPs: ['10.96.0.20'],
    });
    const steps: ClusterEvent[][] = [
      [
        event('ADDED', 'Service', twin),
        event(
          'ADDED',
          'EndpointSlice',
          slice('aaa-a', 'aaa', [['10.244.11.1', 'node-a']], [{ name: 'other', protocol: 'TCP', port: 8081 }]),
        ),
      ],
      // Its external IP on port 80: api's cluster IP frontend, which "aaa" now comes before.
      [event('MODIFIED', 'Service', { ...twin, ports: [{ ...twin.ports[0], port: 80 }], origin: origin('line 3') })],
      [event('DELETED', 'Service', WEB)],
      [event('DELETED', 'Service', twin)],
      [event('ADDED', 'Service', WEB)],
    ];
    let state = START;
    const events = steps.flat();
    let [a, b] = [await loaded(START, events), await loaded(START, events)];
    for (const [i, batch] of steps.entries()) {
      for (const e of batch) state = applyEvent(state, e);
      const viaNarrow = applyStateChange(a, state);
      const viaGeneral = rebaseState(b, state);
      [a, b] = [viaNarrow.live, viaGeneral.live];
      expect(viaNarrow.change.path, `step ${i}`).toBe('services');
      expect({ ...viaNarrow.change, path: '-' }, `step ${i}`).toEqual({ ...viaGeneral.change, path: '-' });
      expect(rawMaps(a.dp), `step ${i}`).toEqual(rawMaps(b.dp));
      expect(liveForm(a), `step ${i}`).toEqual(liveForm(b));
      const wildcard = a.dp.map('lb4Services').lookup({ address: '10.96.0.10', port: 0, proto: 0, scope: 0 });
      const apiFrontend = a.dp.map('lb4Services').lookup({ address: '10.96.0.20', port: 80, proto: 6, scope: 0 });
      const owner = apiFrontend && a.compiled.services[(apiFrontend.serviceId as number) - 1].name;
      // Web's cluster IP keeps its wildcard while either Service has it; api's frontend is aaa's while aaa serves port 80 there.
      expect([!!wildcard, owner], `step ${i}`).toEqual(
        [
          [true, 'default/api:http'],
          [true, 'default/aaa:other'],
          [true, 'default/aaa:other'],
          [false, 'default/api:http'],
          [true, 'default/api:http'],
        ][i],
      );
    }
  });
});
