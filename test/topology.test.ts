// Topology-aware routing, as kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go)
// decides it. Every case of kube-proxy's table test (TestCategorizeEndpoints, with the
// same-node and traffic-distribution cases topology.go's rules imply) is written here
// as a fact: a node, a Service port, endpoints with conditions, place and hints, and the
// sets kube-proxy uses, spelled out by hand. Each fact is checked three ways: the pure
// function; the compiled maps in the WASM datapath (the backends new flows get); and the
// CLI, `svcpath replay` of a capture against the fact written as a cluster's manifests
// (Nodes, Service, EndpointSlice), its verdicts held to the same sets and its summary and
// `svcpath services` to the same filter. One fact no manifests can state says why at the
// fact. An EKS-shaped state, over UDP and TCP, goes through `svcpath trace` and `services`.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { categorizeEndpoints } from '../control/compile/topology.js';
import { loadClusterState } from '../control/cluster/index.js';
import { formatServicesTable, serviceRows } from '../control/cli/services-table.js';
import type { EndpointConditions, ResolvedEndpoint, TrafficPolicy } from '../control/cluster/state.js';
import { createPcapWriter } from '../traces/pcap.js';
import { decodeFrame } from '../traces/frames.js';
import { stringify } from 'yaml';
import { cli, makeNode, makeService, program, READY, resolvedService, runFrames, tcp, udp } from './helpers.js';

const NODE = 'node-a';
const OTHER = 'node-b';
const NOT_READY: EndpointConditions = { ready: false, serving: false, terminating: false };
const TERMINATING: EndpointConditions = { ready: false, serving: true, terminating: true };

interface Ep {
  ip: string;
  conditions?: EndpointConditions;
  /** On the emulated node. */
  local?: boolean;
  zones?: string[];
  nodes?: string[];
}

interface Fact {
  name: string;
  /** The emulated node's zone label; undefined: no label. */
  zone?: string;
  itp?: TrafficPolicy;
  etp?: TrafficPolicy;
  /** Has a NodePort (and so is reached from outside). */
  external?: boolean;
  trafficDistribution?: string;
  topologyAnnotation?: string;
  endpoints: Ep[];
  /** The cluster-wide set; null: the port never uses it (kube-proxy's nil). */
  cluster: string[] | null;
  /** The Local policy's set; null: the port never uses it. */
  local: string[] | null;
  /** Both together; default the one that is not null. */
  all?: string[];
  /** Usable endpoints exist somewhere though none is reachable from this node. */
  onlyRemote?: boolean;
  filter?: 'node' | 'zone' | 'none';
  whyNot?: RegExp;
  /** The topology annotation is the older service.kubernetes.io/topology-aware-hints, not topology-mode. */
  olderAnnotation?: boolean;
  /** Why no manifests can state the fact (the API server refuses them): it is not checked through the CLI. */
  notInManifests?: string;
}

const four = (zones: Array<string[] | undefined>, extra: Partial<Ep>[] = []): Ep[] =>
  zones.map((z, i) => ({ ip: `10.1.2.${i + 3}`, ...(z ? { zones: z } : {}), ...extra[i] }));

const FACTS: Fact[] = [
  // Zone hints on every ready endpoint, the node labelled, endpoints for its zone: the zone's endpoints only.
  {
    name: 'zone hints on every endpoint and some for the node zone: only those',
    zone: 'zone-a',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']]),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'externalTrafficPolicy Local: topology filters the cluster set, not the local one',
    zone: 'zone-a',
    etp: 'Local',
    external: true,
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']], [{ local: true }, { local: true }]),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: ['10.1.2.3', '10.1.2.4'],
    all: ['10.1.2.3', '10.1.2.4', '10.1.2.6'],
    filter: 'zone',
  },
  {
    name: 'internalTrafficPolicy Local with a NodePort: topology filters the cluster set, not the local one',
    zone: 'zone-a',
    itp: 'Local',
    external: true,
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']], [{ local: true }, { local: true }]),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: ['10.1.2.3', '10.1.2.4'],
    all: ['10.1.2.3', '10.1.2.4', '10.1.2.6'],
    filter: 'zone',
  },
  {
    name: 'node without a zone label: hints ignored',
    endpoints: [{ ip: '10.1.2.3', zones: ['zone-a'] }],
    cluster: ['10.1.2.3'],
    local: null,
    filter: 'none',
    whyNot: /the node has no topology\.kubernetes\.io\/zone label/,
  },
  {
    name: 'node with an empty zone label: hints ignored',
    zone: '',
    endpoints: [{ ip: '10.1.2.3', zones: ['zone-a'] }],
    cluster: ['10.1.2.3'],
    local: null,
    filter: 'none',
    whyNot: /no topology\.kubernetes\.io\/zone label/,
  },
  {
    name: 'node in a zone no endpoint is hinted for: hints ignored',
    zone: 'zone-b',
    endpoints: [{ ip: '10.1.2.3', zones: ['zone-a'] }],
    cluster: ['10.1.2.3'],
    local: null,
    filter: 'none',
    whyNot: /no endpoint is hinted for zone zone-b/,
  },
  {
    name: 'an unready endpoint of the zone is left out',
    zone: 'zone-a',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']], [{}, {}, {}, { conditions: NOT_READY }]),
    cluster: ['10.1.2.3'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'only unready endpoints for the zone: hints ignored, every ready endpoint used',
    zone: 'zone-a',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']], [{ conditions: NOT_READY }, {}, {}, { conditions: NOT_READY }]),
    cluster: ['10.1.2.4', '10.1.2.5'],
    local: null,
    filter: 'none',
    whyNot: /no endpoint is hinted for zone zone-a/,
  },
  {
    name: 'a ready endpoint without a zone hint: hints ignored',
    zone: 'zone-a',
    endpoints: four([['zone-a'], ['zone-b'], undefined, ['zone-a']]),
    cluster: ['10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6'],
    local: null,
    filter: 'none',
    whyNot: /1 of 4 ready endpoints have no zone hint/,
  },
  {
    name: 'several zones per endpoint: every endpoint hinted for the node zone among them',
    zone: 'zone-c',
    endpoints: four([['zone-a', 'zone-b', 'zone-c'], ['zone-b', 'zone-c'], ['zone-b', 'zone-d'], ['zone-c']]),
    cluster: ['10.1.2.3', '10.1.2.4', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'topology and localness disagree (externalTrafficPolicy Local): both sets reachable',
    zone: 'zone-a',
    etp: 'Local',
    external: true,
    endpoints: [
      { ip: '10.0.0.10', zones: ['zone-a'], local: true },
      { ip: '10.0.0.11', zones: ['zone-b'], local: true },
      { ip: '10.0.0.12', zones: ['zone-a'] },
      { ip: '10.0.0.13', zones: ['zone-b'] },
    ],
    cluster: ['10.0.0.10', '10.0.0.12'],
    local: ['10.0.0.10', '10.0.0.11'],
    all: ['10.0.0.10', '10.0.0.11', '10.0.0.12'],
    filter: 'zone',
  },
  {
    name: 'internalTrafficPolicy Local without endpoints',
    itp: 'Local',
    endpoints: [],
    cluster: null,
    local: [],
  },
  {
    name: 'internalTrafficPolicy Local, every endpoint on another node',
    itp: 'Local',
    endpoints: [{ ip: '10.0.0.10' }, { ip: '10.0.0.11' }],
    cluster: null,
    local: [],
    onlyRemote: true,
  },
  {
    name: 'internalTrafficPolicy Local, every endpoint on this node',
    itp: 'Local',
    endpoints: [
      { ip: '10.0.0.10', local: true },
      { ip: '10.0.0.11', local: true },
    ],
    cluster: null,
    local: ['10.0.0.10', '10.0.0.11'],
  },
  {
    name: 'internalTrafficPolicy Local, some endpoints on this node',
    itp: 'Local',
    endpoints: [{ ip: '10.0.0.10', local: true }, { ip: '10.0.0.11' }],
    cluster: null,
    local: ['10.0.0.10'],
  },
  {
    name: 'Cluster policy, no endpoint ready',
    endpoints: [
      { ip: '10.0.0.10', conditions: NOT_READY },
      { ip: '10.0.0.11', conditions: NOT_READY },
    ],
    cluster: [],
    local: null,
  },
  {
    name: 'Cluster policy, some endpoints ready',
    endpoints: [{ ip: '10.0.0.10', conditions: NOT_READY }, { ip: '10.0.0.11' }],
    cluster: ['10.0.0.11'],
    local: null,
  },
  {
    name: 'Cluster policy, every endpoint terminating: the serving terminating ones',
    endpoints: [
      { ip: '10.0.0.10', conditions: TERMINATING, local: true },
      { ip: '10.0.0.11', conditions: TERMINATING },
    ],
    cluster: ['10.0.0.10', '10.0.0.11'],
    local: null,
  },
  {
    name: 'internal Local, external Cluster, some endpoints local',
    itp: 'Local',
    external: true,
    endpoints: [{ ip: '10.0.0.10', local: true }, { ip: '10.0.0.11' }],
    cluster: ['10.0.0.10', '10.0.0.11'],
    local: ['10.0.0.10'],
    all: ['10.0.0.10', '10.0.0.11'],
  },
  {
    name: 'internal Cluster, external Local, some endpoints local',
    etp: 'Local',
    external: true,
    endpoints: [{ ip: '10.0.0.10', local: true }, { ip: '10.0.0.11' }],
    cluster: ['10.0.0.10', '10.0.0.11'],
    local: ['10.0.0.10'],
    all: ['10.0.0.10', '10.0.0.11'],
  },
  {
    name: 'internal Local, external Local, some endpoints local',
    itp: 'Local',
    etp: 'Local',
    external: true,
    endpoints: [{ ip: '10.0.0.10', local: true }, { ip: '10.0.0.11' }],
    cluster: ['10.0.0.10', '10.0.0.11'],
    local: ['10.0.0.10'],
    all: ['10.0.0.10', '10.0.0.11'],
  },
  {
    name: 'internal Local, external Local, every endpoint remote',
    itp: 'Local',
    etp: 'Local',
    external: true,
    endpoints: [{ ip: '10.0.0.10' }, { ip: '10.0.0.11' }],
    cluster: ['10.0.0.10', '10.0.0.11'],
    local: [],
    all: ['10.0.0.10', '10.0.0.11'],
  },
  {
    name: 'internal Local, external Local, every endpoint remote and terminating',
    itp: 'Local',
    etp: 'Local',
    external: true,
    endpoints: [
      { ip: '10.0.0.10', conditions: TERMINATING },
      { ip: '10.0.0.11', conditions: TERMINATING },
    ],
    cluster: ['10.0.0.10', '10.0.0.11'],
    local: [],
    all: ['10.0.0.10', '10.0.0.11'],
    onlyRemote: true,
  },
  {
    name: 'internal Cluster, external Local, terminating endpoints: each set falls back on its own',
    etp: 'Local',
    external: true,
    endpoints: [
      { ip: '10.0.0.10' },
      { ip: '10.0.0.11', conditions: NOT_READY, local: true },
      { ip: '10.0.0.12', conditions: TERMINATING, local: true },
      { ip: '10.0.0.13', conditions: TERMINATING },
    ],
    cluster: ['10.0.0.10'],
    local: ['10.0.0.12'],
    all: ['10.0.0.10', '10.0.0.12'],
  },
  {
    name: 'externalTrafficPolicy Local without a way in from outside: ignored',
    etp: 'Local',
    // kube-proxy's table builds this port by hand; a Service saying it is refused by the API
    // server (validateServiceExternalTrafficPolicy), so no cluster's manifests hold one.
    notInManifests:
      'the API server refuses externalTrafficPolicy on a Service not reached from outside ("may only be set for externally-accessible services")',
    endpoints: [{ ip: '10.0.0.10' }, { ip: '10.0.0.11', local: true }],
    cluster: ['10.0.0.10', '10.0.0.11'],
    local: null,
  },
  {
    name: 'internalTrafficPolicy Local, internal only: no cluster set',
    itp: 'Local',
    endpoints: [{ ip: '10.0.0.10' }, { ip: '10.0.0.11', local: true }],
    cluster: null,
    local: ['10.0.0.11'],
  },
  // Same-node hints (PreferSameNode, Kubernetes 1.33 and later) come before zone hints.
  {
    name: 'node hints on every ready endpoint and one for this node: only those',
    zone: 'zone-a',
    trafficDistribution: 'PreferSameNode',
    endpoints: four(
      [['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']],
      [{ nodes: [NODE], local: true }, { nodes: ['node-2'] }, { nodes: ['node-3'] }, { nodes: ['node-4'] }],
    ),
    cluster: ['10.1.2.3'],
    local: null,
    filter: 'node',
  },
  {
    name: 'node hints, none for this node: zone hints decide',
    zone: 'zone-a',
    trafficDistribution: 'PreferSameNode',
    endpoints: four(
      [['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']],
      [{ nodes: ['node-1'] }, { nodes: ['node-2'] }, { nodes: ['node-3'] }, { nodes: ['node-4'] }],
    ),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'a ready endpoint without a node hint: zone hints decide',
    zone: 'zone-a',
    trafficDistribution: 'PreferSameNode',
    endpoints: four(
      [['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']],
      [{ nodes: [NODE] }, {}, { nodes: ['node-3'] }, { nodes: ['node-4'] }],
    ),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'an unready endpoint without hints does not stop the node filter',
    zone: 'zone-a',
    endpoints: four(
      [['zone-a'], ['zone-b'], undefined, ['zone-a']],
      [{ nodes: [NODE] }, { nodes: ['node-2'] }, { conditions: NOT_READY }, { nodes: [NODE] }],
    ),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'node',
  },
  {
    name: 'node hints for another node and no zone hints: hints ignored',
    zone: 'zone-a',
    endpoints: [
      { ip: '10.1.2.3', nodes: ['node-1'] },
      { ip: '10.1.2.4', nodes: ['node-2'] },
    ],
    cluster: ['10.1.2.3', '10.1.2.4'],
    local: null,
    filter: 'none',
    whyNot: /no endpoint has a zone hint/,
  },
  // The terminating fallback comes after topology: with no ready endpoint, every serving terminating one.
  {
    name: 'terminating endpoints are not used while a ready one is left for the zone',
    zone: 'zone-a',
    endpoints: four(
      [['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']],
      [{ conditions: TERMINATING }, { conditions: TERMINATING }, { conditions: NOT_READY }, {}],
    ),
    // 10.1.2.6 is ready and for zone-a: the zone filter applies and keeps it alone.
    cluster: ['10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'no ready endpoint at all: the serving terminating ones of every zone',
    zone: 'zone-a',
    endpoints: four(
      [['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']],
      [{ conditions: NOT_READY }, { conditions: TERMINATING }, { conditions: TERMINATING }, { conditions: NOT_READY }],
    ),
    cluster: ['10.1.2.4', '10.1.2.5'],
    local: null,
    filter: 'none',
    whyNot: /no ready endpoint/,
  },
  // kube-proxy reads the hints, not the Service's request: the EndpointSlice controller sets
  // hints only when trafficDistribution or the topology annotation asks, and removes them otherwise.
  {
    name: 'trafficDistribution PreferClose with zone hints',
    zone: 'zone-a',
    trafficDistribution: 'PreferClose',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']]),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'trafficDistribution PreferSameZone with zone hints',
    zone: 'zone-b',
    trafficDistribution: 'PreferSameZone',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']]),
    cluster: ['10.1.2.4'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'trafficDistribution PreferClose without hints: every endpoint',
    zone: 'zone-a',
    trafficDistribution: 'PreferClose',
    endpoints: four([undefined, undefined, undefined, undefined]),
    cluster: ['10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6'],
    local: null,
    filter: 'none',
    whyNot: /no endpoint has a zone hint/,
  },
  {
    name: 'topology annotation Auto with zone hints',
    zone: 'zone-a',
    topologyAnnotation: 'Auto',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']]),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'the older topology-aware-hints annotation, auto, with zone hints',
    zone: 'zone-a',
    topologyAnnotation: 'auto',
    olderAnnotation: true,
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']]),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'topology annotation Disabled, hints left on the slices: kube-proxy still follows them',
    zone: 'zone-a',
    topologyAnnotation: 'Disabled',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']]),
    cluster: ['10.1.2.3', '10.1.2.6'],
    local: null,
    filter: 'zone',
  },
  {
    name: 'trafficDistribution PreferClose with internalTrafficPolicy Local, internal only: the local set alone',
    zone: 'zone-a',
    itp: 'Local',
    trafficDistribution: 'PreferClose',
    endpoints: four([['zone-a'], ['zone-b'], ['zone-c'], ['zone-a']], [{}, { local: true }]),
    cluster: null,
    local: ['10.1.2.4'],
    filter: 'none',
    whyNot: /internalTrafficPolicy Local/,
  },
];

function resolvedEndpoints(f: Fact, port = 80): ResolvedEndpoint[] {
  return f.endpoints.map((e) => ({
    ip: e.ip,
    port,
    conditions: e.conditions ?? READY,
    nodeName: e.local ? NODE : OTHER,
    ...(e.zones || e.nodes ? { hints: { forZones: e.zones ?? [], forNodes: e.nodes ?? [] } } : {}),
  }));
}

const sorted = (ips: readonly string[]) => [...ips].sort();

describe('categorizeEndpoints: the facts of kube-proxy’s topology table', () => {
  for (const f of FACTS) {
    it(f.name, () => {
      const got = categorizeEndpoints(
        {
          internalTrafficPolicy: f.itp ?? 'Cluster',
          externalTrafficPolicy: f.etp ?? 'Cluster',
          trafficDistribution: f.trafficDistribution,
          topologyAnnotation: f.topologyAnnotation,
          externallyAccessible: f.external ?? false,
        },
        resolvedEndpoints(f),
        { name: NODE, zone: f.zone },
      );
      const ips = (eps: readonly ResolvedEndpoint[]) => sorted(eps.map((e) => e.ip));
      expect(got.usesCluster).toBe(f.cluster !== null);
      if (f.cluster !== null) expect(ips(got.cluster.endpoints)).toEqual(sorted(f.cluster));
      expect(got.local === undefined).toBe(f.local === null);
      if (f.local !== null) expect(ips(got.local!.endpoints)).toEqual(sorted(f.local));
      const all = f.all ?? f.cluster ?? f.local ?? [];
      expect(ips(got.allReachable)).toEqual(sorted(all));
      expect(got.hasAnyEndpoints).toBe(all.length > 0 || (f.onlyRemote ?? false));
      if (f.filter) expect(got.topology.filter).toBe(f.filter);
      if (f.filter === 'zone') expect(got.topology.for).toBe(f.zone);
      if (f.filter === 'node') expect(got.topology.for).toBe(NODE);
      if (f.whyNot) expect(got.topology.whyNot).toMatch(f.whyNot);
      if (f.filter && f.filter !== 'none') expect(got.topology.whyNot).toBeUndefined();
    });
  }

  it('reports what the Service asks for beside what the hints allow', () => {
    const svc = { internalTrafficPolicy: 'Cluster', externalTrafficPolicy: 'Cluster', externallyAccessible: false } as const;
    const eps = resolvedEndpoints(FACTS[0]);
    expect(categorizeEndpoints({ ...svc, trafficDistribution: 'PreferClose' }, eps, { name: NODE }).topology.requested).toBe('PreferClose');
    expect(categorizeEndpoints({ ...svc, topologyAnnotation: 'Auto' }, eps, { name: NODE }).topology.requested).toMatch(/Auto/);
    expect(categorizeEndpoints({ ...svc, topologyAnnotation: 'Disabled' }, eps, { name: NODE }).topology.requested).toBeUndefined();
    expect(categorizeEndpoints(svc, eps, { name: NODE }).topology.requested).toBeUndefined();
  });
});

/** Distinct client flows: enough that Maglev spreads them over every backend of a set of four. */
const FLOWS = 96;
const VIP = '10.96.0.10';
const NODE_IP = '192.168.0.10';
const OTHER_IP = '192.168.0.11';
const NODE_PORT = 30080;

/** A pod's new flows to the cluster IP, which take the internal policy's set. */
const podFlows = Array.from({ length: FLOWS }, (_, i) => tcp('10.244.9.9', 20000 + i, VIP, 80, ['SYN']));
/** An outside client's new flows to the NodePort on the node's InternalIP, which take the external policy's set. */
const outsideFlows = Array.from({ length: FLOWS }, (_, i) => tcp('203.0.113.7', 20000 + i, NODE_IP, NODE_PORT, ['SYN']));

/** What one new flow got: the backend address it was sent to, or null and the reason it was refused. */
interface FlowOutcome {
  reason: string;
  backend: string | null;
}

/**
 * The set a fact's flows from `from` must spread over, and how they are refused when it is
 * empty: a Local policy with usable endpoints on other nodes drops (NO_LOCAL_ENDPOINTS); a
 * Service with none usable anywhere answers with a port unreachable (NO_ENDPOINTS).
 */
function expectedFlows(f: Fact, from: 'pod' | 'outside'): { set: readonly string[]; refusal: string } {
  const local = from === 'pod' ? f.itp === 'Local' : f.etp === 'Local';
  const set = local ? f.local! : f.cluster!;
  const elsewhere = (f.all ?? f.cluster ?? f.local ?? []).length > 0 || (f.onlyRemote ?? false);
  return { set, refusal: local && elsewhere ? 'NO_LOCAL_ENDPOINTS' : 'NO_ENDPOINTS' };
}

/** Every flow went to a member of the fact's set, and every member got some; all refused when the set is empty. */
function expectSpread(got: readonly FlowOutcome[], f: Fact, from: 'pod' | 'outside'): void {
  const { set, refusal } = expectedFlows(f, from);
  if (set.length === 0) {
    expect(new Set(got.map((o) => `${o.reason} ${o.backend}`))).toEqual(new Set([`${refusal} null`]));
    return;
  }
  expect(got.every((o) => o.reason === 'SERVICE')).toBe(true);
  expect(sorted([...new Set(got.map((o) => o.backend!))])).toEqual(sorted(set));
}

/** The outcomes of frames run through the datapath, the backend read from the rewritten frame's destination. */
function outcomes(results: ReturnType<typeof runFrames>): FlowOutcome[] {
  return results.map((r) => ({ reason: r.reason, backend: r.reason === 'SERVICE' ? decodeFrame(r.out).ipv4!.dst : null }));
}

describe('the datapath sends new flows only to the set topology chose', () => {
  for (const f of FACTS) {
    it(f.name, async () => {
      const svc = makeService('default', 'web', VIP, [{ port: 80, ...(f.external ? { nodePort: NODE_PORT } : {}) }], {
        type: f.external ? 'NodePort' : 'ClusterIP',
        internalTrafficPolicy: f.itp ?? 'Cluster',
        externalTrafficPolicy: f.etp ?? 'Cluster',
        trafficDistribution: f.trafficDistribution,
        topologyAnnotation: f.topologyAnnotation,
      });
      const node = { ...makeNode(NODE, NODE_IP), ...(f.zone !== undefined ? { zone: f.zone } : {}) };
      const { dp, compiled } = await program([resolvedService(svc, [resolvedEndpoints(f)])], {
        node: NODE,
        nodes: [node, makeNode(OTHER, OTHER_IP)],
      });
      expectSpread(outcomes(runFrames(dp, podFlows)), f, 'pod');
      if (f.external) expectSpread(outcomes(runFrames(dp, outsideFlows)), f, 'outside');
      const topology = compiled.services[0].topology.v4;
      if (f.filter) expect(topology.filter).toBe(f.filter);
      if (f.whyNot) expect(topology.whyNot).toMatch(f.whyNot);
    });
  }
});

const ZONE_LABEL = 'topology.kubernetes.io/zone';
const SERVICE = 'default/web:http';

/** A Node as `kubectl get node -o yaml` shows what svcpath reads of it: labels and InternalIP. */
function nodeManifest(name: string, ip: string, zone?: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(zone !== undefined && { [ZONE_LABEL]: zone }) } },
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
  };
}

/** A fact as the manifests of a cluster: the emulated Node, the other Node, the Service and its EndpointSlice. */
function manifests(f: Fact): string {
  const annotation = f.olderAnnotation ? 'service.kubernetes.io/topology-aware-hints' : 'service.kubernetes.io/topology-mode';
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'web',
      namespace: 'default',
      ...(f.topologyAnnotation !== undefined && { annotations: { [annotation]: f.topologyAnnotation } }),
    },
    spec: {
      type: f.external ? 'NodePort' : 'ClusterIP',
      clusterIP: VIP,
      clusterIPs: [VIP],
      ipFamilies: ['IPv4'],
      selector: { app: 'web' },
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 80, ...(f.external && { nodePort: NODE_PORT }) }],
      internalTrafficPolicy: f.itp ?? 'Cluster',
      // The API server keeps externalTrafficPolicy only on a Service reached from outside.
      ...(f.external && { externalTrafficPolicy: f.etp ?? 'Cluster' }),
      ...(f.trafficDistribution !== undefined && { trafficDistribution: f.trafficDistribution }),
    },
  };
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'web-7xk2p',
      namespace: 'default',
      labels: { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
    endpoints: f.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: e.conditions ?? READY,
      nodeName: e.local ? NODE : OTHER,
      ...((e.zones || e.nodes) && {
        hints: {
          ...(e.zones && { forZones: e.zones.map((name) => ({ name })) }),
          ...(e.nodes && { forNodes: e.nodes.map((name) => ({ name })) }),
        },
      }),
    })),
  };
  return [nodeManifest(NODE, NODE_IP, f.zone), nodeManifest(OTHER, OTHER_IP), service, slice]
    .map((doc) => stringify(doc, { aliasDuplicateObjects: false }))
    .join('---\n');
}

/** What the Service asks for, as the summary names it: trafficDistribution, else an Auto topology annotation. */
function requestOf(f: Fact): string | undefined {
  if (f.trafficDistribution !== undefined) return f.trafficDistribution;
  return f.topologyAnnotation?.toLowerCase() === 'auto' ? `topology annotation ${f.topologyAnnotation}` : undefined;
}

/** The summary's `topology` for a fact that states its filter: spelled out from the fact; absent when nothing is asked for and no hints are used. */
function expectSummaryTopology(topology: string | undefined, f: Fact): void {
  const requested = requestOf(f);
  if (f.filter === 'zone' || f.filter === 'node') {
    expect(topology).toBe(`${requested ?? 'hints'}: ${f.filter} ${f.filter === 'zone' ? f.zone : NODE}`);
  } else if (requested === undefined) {
    expect(topology).toBeUndefined();
  } else {
    expect(topology?.startsWith(`${requested}: no hints used (`) && topology.endsWith(')')).toBe(true);
    if (f.whyNot) expect(topology).toMatch(f.whyNot);
  }
}

/** The verdicts' outcomes, each checked to be of the fact's Service port. */
function readOutcomes(verdicts: string): FlowOutcome[] {
  return readFileSync(verdicts, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const v = JSON.parse(line) as { service: string | null; backend: string | null; reason: string };
      expect(v.service).toBe(SERVICE);
      if (v.backend === null) return { reason: v.reason, backend: null };
      const [ip, port] = v.backend.split(':');
      expect(port).toBe('80');
      return { reason: v.reason, backend: ip };
    });
}

describe('the CLI from each fact’s manifests and a capture sends flows only to the set topology chose', () => {
  const dir = mkdtempSync(join(tmpdir(), 'svcpath-topology-facts-'));
  const writeCapture = (name: string, frames: Uint8Array[]) => {
    const path = join(dir, name);
    const w = createPcapWriter(path, { linktype: 1 });
    frames.forEach((frame, i) => w.write(1_700_000_000 + i, 0, frame));
    w.close();
    return path;
  };
  const fromPods = writeCapture('pods.pcap', podFlows);
  const fromPodsAndOutside = writeCapture('pods-and-outside.pcap', [...podFlows, ...outsideFlows]);

  FACTS.forEach((f, i) => {
    // The facts no manifests can state say why at the fact (notInManifests).
    if (f.notInManifests) return;
    it(f.name, async () => {
      const cluster = join(dir, `fact-${i}.yaml`);
      writeFileSync(cluster, manifests(f));
      const verdicts = join(dir, `fact-${i}.jsonl`);
      const summary = join(dir, `fact-${i}.json`);
      const capture = f.external ? fromPodsAndOutside : fromPods;
      const replay = await cli(['replay', capture, '--cluster', cluster, '--node', NODE, '--verdicts', verdicts, '--summary', summary]);
      expect([replay.code, replay.stderr]).toEqual([0, '']);
      const got = readOutcomes(verdicts);
      expect(got).toHaveLength(f.external ? 2 * FLOWS : FLOWS);
      expectSpread(got.slice(0, FLOWS), f, 'pod');
      if (f.external) expectSpread(got.slice(FLOWS), f, 'outside');
      if (f.filter || f.whyNot) await expectFilterNamed(f, cluster, summary);
    });
  });

  /** The summary names the fact's filter; `svcpath services` names it too, and why no hints are used, which the summary leaves out when the Service asks for no topology. */
  async function expectFilterNamed(f: Fact, cluster: string, summary: string): Promise<void> {
    const services = (JSON.parse(readFileSync(summary, 'utf8')) as { services: Array<{ service: string; topology?: string }> }).services;
    expect(services.map((s) => s.service)).toEqual([SERVICE]);
    expectSummaryTopology(services[0].topology, f);
    const shown = await cli(['services', '--cluster', cluster, '--node', NODE, '--json']);
    expect([shown.code, shown.stderr]).toEqual([0, '']);
    const [row] = JSON.parse(shown.stdout) as Array<{
      topology: { node: string; filter: string; for: string | null; whyNot: string | null };
    }>;
    expect(row.topology).toMatchObject({ node: NODE, filter: f.filter ?? 'none' });
    expect(row.topology.for).toBe(f.filter === 'zone' ? f.zone : f.filter === 'node' ? NODE : null);
    if (f.whyNot) expect(row.topology.whyNot).toMatch(f.whyNot);
    else expect(row.topology.whyNot).toBeNull();
  }
});

// An EKS-shaped state: CoreDNS with trafficDistribution PreferClose, its slice hinted by zone,
// two Nodes in two zones. DNS from a pod on the node in us-east-1a stays in us-east-1a.
const EKS = (opts: { hints: boolean; zoneLabel: boolean; oneNode?: boolean }) => `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: ip-10-0-1-20.ec2.internal
    labels:
${opts.zoneLabel ? '      topology.kubernetes.io/zone: us-east-1a\n' : ''}      kubernetes.io/hostname: ip-10-0-1-20.ec2.internal
  status:
    addresses:
    - {type: InternalIP, address: 10.0.1.20}
    - {type: ExternalIP, address: 54.210.1.20}
${
  opts.oneNode
    ? ''
    : `- apiVersion: v1
  kind: Node
  metadata:
    name: ip-10-0-2-30.ec2.internal
    labels:
      topology.kubernetes.io/zone: us-east-1b
  status:
    addresses:
    - {type: InternalIP, address: 10.0.2.30}
`
}- apiVersion: v1
  kind: Service
  metadata:
    name: kube-dns
    namespace: kube-system
  spec:
    clusterIP: 172.20.0.10
    clusterIPs: [172.20.0.10]
    ipFamilies: [IPv4]
    selector: {k8s-app: kube-dns}
    trafficDistribution: PreferClose
    ports:
    - {name: dns, port: 53, protocol: UDP, targetPort: 53}
    - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: kube-dns-7xk2p
    namespace: kube-system
    labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}
  addressType: IPv4
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  endpoints:
${[
  ['10.0.1.41', 'ip-10-0-1-20.ec2.internal', 'us-east-1a'],
  ['10.0.1.87', 'ip-10-0-1-99.ec2.internal', 'us-east-1a'],
  ['10.0.2.15', 'ip-10-0-2-30.ec2.internal', 'us-east-1b'],
  ['10.0.2.64', 'ip-10-0-2-30.ec2.internal', 'us-east-1b'],
]
  .map(
    ([ip, node, zone]) =>
      `  - addresses: [${ip}]\n    conditions: {ready: true}\n    nodeName: ${node}\n    zone: ${zone}\n` +
      (opts.hints ? `    hints: {forZones: [{name: ${zone}}]}\n` : ''),
  )
  .join('')}`;

const ZONE_A = ['10.0.1.41', '10.0.1.87'];
const EVERY = ['10.0.1.41', '10.0.1.87', '10.0.2.15', '10.0.2.64'];

describe('the CLI from manifests and a capture', () => {
  const dir = mkdtempSync(join(tmpdir(), 'svcpath-topology-'));
  const capture = join(dir, 'dns.pcap');
  const w = createPcapWriter(capture, { linktype: 1 });
  for (let i = 0; i < FLOWS; i++) {
    w.write(1_700_000_000 + i, 0, udp('10.0.1.55', 30000 + i, '172.20.0.10', 53));
    w.write(1_700_000_000 + i, 500, tcp('10.0.1.55', 40000 + i, '172.20.0.10', 53, ['SYN']));
  }
  w.close();

  async function backendsOf(name: string, opts: { hints: boolean; zoneLabel: boolean }): Promise<Record<string, string[]>> {
    const cluster = join(dir, `${name}.yaml`);
    writeFileSync(cluster, EKS(opts));
    const verdicts = join(dir, `${name}.jsonl`);
    const r = await cli(['replay', capture, '--cluster', cluster, '--node', 'ip-10-0-1-20.ec2.internal', '--verdicts', verdicts]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const byService: Record<string, Set<string>> = {};
    for (const line of readFileSync(verdicts, 'utf8').trim().split('\n')) {
      const v = JSON.parse(line) as { service: string; backend: string | null; reason: string };
      expect(v.reason).toBe('SERVICE');
      (byService[v.service] ??= new Set()).add(v.backend!.replace(/:53$/, ''));
    }
    return Object.fromEntries(Object.entries(byService).map(([s, set]) => [s, sorted([...set])]));
  }

  it('PreferClose with zone hints and a zone label: DNS stays in the zone, over UDP and TCP', async () => {
    expect(await backendsOf('hinted', { hints: true, zoneLabel: true })).toEqual({
      'kube-system/kube-dns:dns': ZONE_A,
      'kube-system/kube-dns:dns-tcp': ZONE_A,
    });
  });

  it('without hints on the slice: DNS goes to every zone', async () => {
    expect(await backendsOf('unhinted', { hints: false, zoneLabel: true })).toEqual({
      'kube-system/kube-dns:dns': EVERY,
      'kube-system/kube-dns:dns-tcp': EVERY,
    });
  });

  it('the summary and svcpath trace name the topology filter', async () => {
    const hinted = join(dir, 'named.yaml');
    writeFileSync(hinted, EKS({ hints: true, zoneLabel: true }));
    const unhinted = join(dir, 'named-unhinted.yaml');
    writeFileSync(unhinted, EKS({ hints: false, zoneLabel: true }));
    const node = ['--node', 'ip-10-0-1-20.ec2.internal'];
    const summary = join(dir, 'named.json');
    const replay = await cli(['replay', capture, '--cluster', hinted, ...node, '--summary', summary]);
    expect(replay.code).toBe(0);
    const services = (JSON.parse(readFileSync(summary, 'utf8')) as { services: Array<{ service: string; topology?: string }> }).services;
    expect(services.map((s) => [s.service, s.topology])).toEqual([
      ['kube-system/kube-dns:dns', 'PreferClose: zone us-east-1a'],
      ['kube-system/kube-dns:dns-tcp', 'PreferClose: zone us-east-1a'],
    ]);
    expect(replay.stdout).toMatch(/kube-system\/kube-dns:dns .* topology PreferClose: zone us-east-1a {2}flows/);
    const noHints = await cli(['replay', capture, '--cluster', unhinted, ...node]);
    expect(noHints.stdout).toMatch(/kube-dns:dns .* topology PreferClose: no hints used \(no endpoint has a zone hint\) {2}flows/);

    const trace = await cli(['trace', capture, '--cluster', hinted, ...node, '--packet', '1']);
    expect([trace.code, trace.stderr]).toEqual([0, '']);
    expect(trace.stdout).toMatch(
      /maglev table \d+ slot \d+ {2}-> {2}backend \d+ \(10\.0\.1\.(41|87):53\) {2}topology PreferClose: zone us-east-1a/,
    );
  });

  it('svcpath diff names the topology change and counts the flows it keeps in the zone', async () => {
    const before = join(dir, 'diff-before.yaml');
    writeFileSync(before, EKS({ hints: false, zoneLabel: true }));
    const after = join(dir, 'diff-after.yaml');
    writeFileSync(after, EKS({ hints: true, zoneLabel: true }));
    const node = ['--node', 'ip-10-0-1-20.ec2.internal'];
    // What each replay decided per flow, read from its own verdicts: the independent count.
    const backendPerFlow = async (cluster: string, name: string) => {
      const verdicts = join(dir, name);
      expect((await cli(['replay', capture, '--cluster', cluster, ...node, '--verdicts', verdicts])).code).toBe(0);
      return readFileSync(verdicts, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { service: string; backend: string });
    };
    const was = await backendPerFlow(before, 'diff-before.jsonl');
    const now = await backendPerFlow(after, 'diff-after.jsonl');
    const inZoneB = (backend: string) => backend.startsWith('10.0.2.');
    const perService = (service: string) => {
      const flows = was.map((v, i) => [v, now[i]] as const).filter(([v]) => v.service === service);
      return {
        flows: flows.length,
        changed: flows.filter(([v, w]) => v.backend !== w.backend).length,
        crossZone: { before: flows.filter(([v]) => inZoneB(v.backend)).length, after: flows.filter(([, w]) => inZoneB(w.backend)).length },
      };
    };
    const dns = perService('kube-system/kube-dns:dns');
    expect(dns.crossZone.before).toBeGreaterThan(FLOWS / 4);
    expect(dns.crossZone.after).toBe(0);

    const json = await cli(['diff', capture, '--cluster', before, '--against', after, ...node, '--json']);
    expect([json.code, json.stderr]).toEqual([0, '']);
    const report = JSON.parse(json.stdout) as {
      flows: number;
      crossZone: { before: number; after: number };
      services: Array<{
        service: string;
        flows: number;
        changed: number;
        topology: object;
        crossZone: object;
        stayed: Record<string, number>;
      }>;
    };
    const topology = { before: 'PreferClose: no hints used (no endpoint has a zone hint)', after: 'PreferClose: zone us-east-1a' };
    const tcpDns = perService('kube-system/kube-dns:dns-tcp');
    expect(report.services).toEqual([
      {
        service: 'kube-system/kube-dns:dns',
        flows: dns.flows,
        changed: dns.changed,
        topology,
        crossZone: dns.crossZone,
        moves: expect.any(Object),
        stayed: expect.any(Object),
      },
      {
        service: 'kube-system/kube-dns:dns-tcp',
        flows: tcpDns.flows,
        changed: tcpDns.changed,
        topology,
        crossZone: tcpDns.crossZone,
        moves: expect.any(Object),
        stayed: expect.any(Object),
      },
    ]);
    expect(report.crossZone).toEqual({ before: dns.crossZone.before + tcpDns.crossZone.before, after: 0 });
    // Every flow either changed or stayed, the latter counted by its decision.
    for (const s of report.services) expect(Object.values(s.stayed).reduce((a, b) => a + b, 0) + s.changed).toBe(s.flows);

    const text = await cli(['diff', capture, '--cluster', before, '--against', after, ...node]);
    expect(text.stdout).toContain(`cross-zone flows ${report.crossZone.before} -> 0`);
    expect(text.stdout).toContain(
      `    topology: ${topology.before} -> ${topology.after}\n    cross-zone flows ${dns.crossZone.before} -> 0`,
    );
  });

  it('without a zone label on the emulated Node: hints ignored, DNS goes to every zone', async () => {
    expect(await backendsOf('unlabelled', { hints: true, zoneLabel: false })).toEqual({
      'kube-system/kube-dns:dns': EVERY,
      'kube-system/kube-dns:dns-tcp': EVERY,
    });
  });
});

describe('svcpath services shows the traffic distribution and whether hints are used on the node', () => {
  const dir = mkdtempSync(join(tmpdir(), 'svcpath-topology-services-'));
  const write = (name: string, opts: Parameters<typeof EKS>[0]) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, EKS(opts));
    return file;
  };

  it('PreferClose with hints for the node zone: the zone filter, in the wide table and in JSON', async () => {
    const cluster = write('hinted', { hints: true, zoneLabel: true, oneNode: true });
    const json = await cli(['services', '--cluster', cluster, '--json']);
    expect([json.code, json.stderr]).toEqual([0, '']);
    const dns = (JSON.parse(json.stdout) as Array<Record<string, unknown>>).find((r) => r.name === 'kube-dns');
    expect(dns).toMatchObject({
      trafficDistribution: 'PreferClose',
      topologyAnnotation: null,
      topology: { node: 'ip-10-0-1-20.ec2.internal', filter: 'zone', for: 'us-east-1a', whyNot: null },
    });
    const table = await cli(['services', '--cluster', cluster]);
    const [header, row] = table.stdout.split('\n');
    expect(header).toMatch(/ TOPOLOGY$/);
    expect(row).toMatch(/ PreferClose: zone us-east-1a$/);
  });

  it('PreferClose without hints: says so and why', async () => {
    const cluster = write('unhinted', { hints: false, zoneLabel: true, oneNode: true });
    const dns = (JSON.parse((await cli(['services', '--cluster', cluster, '--json'])).stdout) as Array<Record<string, unknown>>).find(
      (r) => r.name === 'kube-dns',
    );
    expect(dns).toMatchObject({ topology: { filter: 'none', for: null, whyNot: 'no endpoint has a zone hint' } });
    const [, row] = (await cli(['services', '--cluster', cluster])).stdout.split('\n');
    expect(row).toMatch(/ PreferClose: no hints used \(no endpoint has a zone hint\)$/);
  });

  it('several Nodes: decided for the one named, unknown without one', () => {
    const state = loadClusterState([write('two-nodes', { hints: true, zoneLabel: true })]);
    const rowOf = (node?: string) => serviceRows(state, { node }).find((r) => r.name === 'kube-dns')!;
    expect(rowOf().topology).toBeNull();
    expect(rowOf('ip-10-0-2-30.ec2.internal').topology).toEqual({
      node: 'ip-10-0-2-30.ec2.internal',
      filter: 'zone',
      for: 'us-east-1b',
      whyNot: null,
    });
    expect(formatServicesTable(state, { wide: true, node: 'ip-10-0-2-30.ec2.internal' })).toMatch(/ PreferClose: zone us-east-1b$/m);
  });
});
