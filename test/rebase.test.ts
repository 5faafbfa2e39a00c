// State changes applied in place (control/runtime/rebase.ts): after each
// change, new flows are decided as by a datapath loaded from a full compile of
// the new state, the maps hold the same entries up to the ids, the ids that
// stay keep their numbers, established flows keep what they had, and
// EndpointSlice-only changes take the slice path.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { applyEvent, readEvents, type ClusterEvent } from '../control/cluster/events.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import type { ClusterState, Endpoint, EndpointSlice, Node, Pod, ProxyConfig, ServiceRanges } from '../control/cluster/state.js';
import { compile, type Compiled, type CompileOptions } from '../control/compile/compiler.js';
import { BE_F_GONE, CFG_F, hostPort, type StructValue } from '../control/compile/layout.js';
import type { Datapath } from '../control/runtime/datapath.js';
import { loadProgram } from '../control/runtime/loader.js';
import { applyStateChange, roomFor, type StateChange } from '../control/runtime/rebase.js';
import { NeedsReloadError, trackProgram, type LiveProgram } from '../control/runtime/update.js';
import { decodeFrame } from '../traces/frames.js';
import { READY, makeNode, makeService, runFrames, tcp, udp, type FrameResult } from './helpers.js';

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

    expect(changes['a Service and its slice are added']).toMatchObject({
      path: 'rebase',
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

  it('takes the slice path for slices derived from Pods, and touches nothing when no slice changes', async () => {
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
    expect(results.map((r) => r.path)).toEqual(['endpoints', 'endpoints', 'endpoints']);
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
