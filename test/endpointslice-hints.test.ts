// The EndpointSlice controller's topology hints (control/cluster/endpointslice-controller.ts,
// topologyHints): for topology mode Auto, the topology cache's allocation in proportion to
// each zone's allocatable CPU and the cases where it gives up; for trafficDistribution,
// each endpoint's own zone (and node). Every expected hint below is worked out by hand in
// the comment beside it. Then the "done when": a state of Pods and Nodes gives the
// same slices, hints and compiled backends on every node as the same state with the
// controller's slices written by hand (test/fixtures/hints).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { endpointSlicesFor } from '../control/cluster/endpointslice-controller.js';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import type { ClusterState, Node, Pod, Service } from '../control/cluster/state.js';
import { compile } from '../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { createPcapWriter } from '../traces/pcap.js';
import { cli, makeService, tcp } from './helpers.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'hints');
const CLUSTER = join(FIXTURES, 'cluster.yaml');

function node(name: string, zone: string | undefined, milliCPU: number | undefined): Node {
  return {
    origin: { file: 'test', object: `Node ${name}` },
    name,
    addresses: [],
    ...(zone !== undefined && { zone }),
    ...(milliCPU !== undefined && { allocatableMilliCPU: milliCPU }),
  };
}

/** Pods p1, p2, ... on the given nodes, in that (name) order; `false` marks one not ready. */
function pods(...placement: Array<string | [string, false]>): Pod[] {
  return placement.map((where, i) => ({
    origin: { file: 'test', object: `Pod default/p${i + 1}` },
    namespace: 'default',
    name: `p${i + 1}`,
    labels: { app: 'web' },
    podIPs: [`10.244.0.${i + 1}`],
    nodeName: typeof where === 'string' ? where : where[0],
    ready: typeof where === 'string',
    terminating: false,
    containerPorts: [],
  }));
}

const web = (extra: Partial<Service> = {}): Service =>
  makeService('default', 'web', '10.96.0.10', [{ port: 80, targetPort: 8080 }], { selector: { app: 'web' }, ...extra });
const AUTO = { topologyAnnotation: 'Auto' };

/** The hints the controller sets, per Pod: "zone" or "zone node", '-' for none; and what it says. */
function hints(service: Service, podList: Pod[], nodes: Node[]): { hints: string[]; events: string[] } {
  const events: string[] = [];
  const slices = endpointSlicesFor(service, podList, { nodes, recordEvent: (m) => events.push(m) });
  const endpoints = slices.flatMap((s) => s.endpoints);
  expect(endpoints.map((e) => e.targetRef?.name)).toEqual(podList.map((p) => p.name));
  return {
    hints: endpoints.map((e) => (e.hints ? [...e.hints.forZones, ...e.hints.forNodes].join(' ') : '-')),
    events,
  };
}

describe("topology mode Auto: hints in proportion to each zone's allocatable CPU", () => {
  const threeEqual = [node('n-a', 'a', 4000), node('n-b', 'b', 4000), node('n-c', 'c', 4000)];

  it('balanced: each zone a third of the CPU and of the endpoints, so each endpoint stays in its zone', () => {
    // 6 endpoints, share 2 per zone (minimum ceil(2 / 1.2) = 2): nothing to move.
    expect(hints(web(AUTO), pods('n-a', 'n-a', 'n-b', 'n-b', 'n-c', 'n-c'), threeEqual)).toEqual({
      hints: ['a', 'a', 'b', 'b', 'c', 'c'],
      events: [],
    });
  });

  it('unbalanced: zone a has 3/4 of the CPU, so it gets 6 of 8 endpoints, the first two of zone b', () => {
    // a: share 6, minimum ceil(6 / 1.2) = 5; b: share 2, minimum ceil(2 / 1.2) = 2; 7 <= 8.
    // Own zones give a 4 and b 4; b is 2 over, a 2 under: b's first two endpoints go to a.
    const nodes = [node('n-a1', 'a', 4000), node('n-a2', 'a', 2000), node('n-b', 'b', 2000)];
    expect(hints(web(AUTO), pods('n-a1', 'n-b', 'n-a2', 'n-b', 'n-a1', 'n-b', 'n-a2', 'n-b'), nodes).hints).toEqual([
      'a',
      'a',
      'a',
      'a',
      'a',
      'b',
      'a',
      'b',
    ]);
  });

  it('a zone without endpoints receives its share from the others', () => {
    // 6 endpoints, 3 in a and 3 in b, none in c; each zone's share is 2. a and b are each
    // 1 over, c 2 under: a gives first (equal amounts go by zone name), then b.
    expect(hints(web(AUTO), pods('n-a', 'n-a', 'n-a', 'n-b', 'n-b', 'n-b'), threeEqual).hints).toEqual(['c', 'a', 'a', 'c', 'b', 'b']);
  });

  it('counts ready endpoints only; those not ready get no hint', () => {
    // 2 ready endpoints, 2 equal zones: one each, in place.
    const nodes = [node('n-a', 'a', 2000), node('n-b', 'b', 2000)];
    expect(hints(web(AUTO), pods('n-a', ['n-b', false], 'n-b'), nodes)).toEqual({ hints: ['a', '-', 'b'], events: [] });
  });

  it("overloaded: no hints when the zones' minimum shares exceed the endpoints, and says so", () => {
    // a: share 9/10 * 2 = 1.8, minimum ceil(1.8 / 1.2) = 2; b: share 0.2, minimum 1; 3 > 2.
    const nodes = [node('n-a', 'a', 9000), node('n-b', 'b', 1000)];
    const { hints: set, events } = hints(web(AUTO), pods('n-a', 'n-b'), nodes);
    expect(set).toEqual(['-', '-']);
    expect(events).toEqual([
      "test: Service default/web: IPv4 endpoints: no topology hints: the EndpointSlice controller's event TopologyAwareHintsDisabled: " +
        'Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (2 endpoints, 2 zones)',
    ]);
  });

  it('fewer ready endpoints than zones: no hints', () => {
    const { hints: set, events } = hints(web(AUTO), pods('n-a', 'n-b', ['n-c', false]), threeEqual);
    expect(set).toEqual(['-', '-', '-']);
    expect(events).toEqual([
      expect.stringMatching(/TopologyAwareHintsDisabled: Insufficient number of endpoints \(2 endpoints, 3 zones\)$/),
    ]);
  });

  it('a Node without zone or CPU, or all Nodes in one zone: no hints, and the note says which', () => {
    const noZone = [node('n-a', 'a', 4000), node('n-b', 'b', 4000), node('n-c', undefined, 4000)];
    const noCPU = [node('n-a', 'a', 4000), node('n-b', 'b', 4000), node('n-c', 'c', undefined)];
    const oneZone = [node('n-a', 'a', 4000), node('n-b', 'a', 4000), node('n-c', 'a', 4000)];
    const insufficient =
      'TopologyAwareHintsDisabled: Insufficient Node information: allocatable CPU or zone not specified on one or more nodes';
    for (const [nodes, why] of [
      [noZone, 'Node n-c has no topology.kubernetes.io/zone label'],
      [noCPU, 'Node n-c has no status.allocatable.cpu'],
      [oneZone, 'every Ready Node without a control-plane role is in zone a'],
      [[], 'the state has no Nodes'],
    ] as const) {
      const { hints: set, events } = hints(web(AUTO), pods('n-a', 'n-b', 'n-c'), [...nodes]);
      expect(set).toEqual(['-', '-', '-']);
      expect(events).toHaveLength(1);
      expect(events[0].endsWith(`${insufficient} (${why})`)).toBe(true);
    }
  });

  it('Nodes with a control-plane role label or not Ready are left out of the zones, as the topology cache does', async () => {
    // Workers: a 4000m, b 4000m. Left out: a control-plane node in zone c (either label), a NotReady
    // worker in zone c, and in zone a one without zone or CPU (which would stop hints if counted).
    // Counted, zones a and b share 4 endpoints 2 and 2: each endpoint stays in its own zone.
    const yamlNode = (name: string, labels: string, status: string) =>
      `apiVersion: v1\nkind: Node\nmetadata:\n  name: ${name}\n  labels: {${labels}}\nstatus:\n${status}\n---\n`;
    const ready = (cpu: string, ok = 'True') => `  allocatable: {cpu: "${cpu}"}\n  conditions:\n  - {type: Ready, status: "${ok}"}`;
    const zone = (z: string) => `topology.kubernetes.io/zone: ${z}`;
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-hints-nodes-'));
    const file = join(dir, 'nodes.yaml');
    try {
      writeFileSync(
        file,
        yamlNode('n-a', zone('a'), ready('4')) +
          yamlNode('n-b', zone('b'), ready('4000m')) +
          yamlNode('cp-1', `${zone('c')}, node-role.kubernetes.io/control-plane: ""`, ready('8')) +
          yamlNode('cp-2', `${zone('c')}, node-role.kubernetes.io/master: ""`, ready('8')) +
          yamlNode('down', zone('c'), ready('8', 'False')) +
          yamlNode('cp-3', 'node-role.kubernetes.io/control-plane: ""', '  conditions: [{type: Ready, status: "True"}]'),
      );
      const { nodes } = await loadClusterState([file]);
      expect(nodes.map((n) => [n.name, n.controlPlane ?? false, n.notReady ?? false])).toEqual([
        ['n-a', false, false],
        ['n-b', false, false],
        ['cp-1', true, false],
        ['cp-2', true, false],
        ['down', false, true],
        ['cp-3', true, false],
      ]);
      expect(hints(web(AUTO), pods('n-a', 'n-b', 'n-a', 'n-b'), nodes)).toEqual({ hints: ['a', 'b', 'a', 'b'], events: [] });
      // Counted, the NotReady node's zone c would take a share: 3 zones, 4 endpoints, minimums 1, 1, 2 (c has 8 of 16 CPUs).
      const counted = nodes.map((n) => (n.name === 'down' ? { ...n, notReady: undefined } : n));
      expect(hints(web(AUTO), pods('n-a', 'n-b', 'n-a', 'n-b'), counted).hints).not.toEqual(['a', 'b', 'a', 'b']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a ready endpoint without a zone (its Node unknown): no hints for any', () => {
    const nodes = [node('n-a', 'a', 4000), node('n-b', 'b', 4000)];
    // 4 endpoints, 2 equal zones: shares 2, minimums 2, allocatable; then the unknown Node's endpoint stops it.
    const { hints: set, events } = hints(web(AUTO), pods('n-a', 'n-b', 'n-a', 'elsewhere'), nodes);
    expect(set).toEqual(['-', '-', '-', '-']);
    expect(events).toEqual([expect.stringMatching(/TopologyAwareHintsDisabled: One or more endpoints do not have a zone specified$/)]);
  });

  it('decides per IP family: a family with too few endpoints gets none while the other gets its hints', () => {
    // p1..p3 dual-stack, p4 IPv4 only. IPv4: 4 endpoints, 2 equal zones, shares 2, minimums ceil(2 / 1.2) = 2,
    // in place. IPv6: 3 endpoints, shares 1.5, minimums ceil(1.5 / 1.2) = 2 each, 4 > 3: overloaded.
    const nodes = [node('n-a', 'a', 2000), node('n-b', 'b', 2000)];
    const dual = web({ ...AUTO, ipFamilies: ['IPv4', 'IPv6'], clusterIPs: ['10.96.0.10', 'fd00:96::10'] });
    const podList = pods('n-a', 'n-b', 'n-a', 'n-b').map((p, i) => (i < 3 ? { ...p, podIPs: [...p.podIPs, `fd00:244::${i + 1}`] } : p));
    const events: string[] = [];
    const slices = endpointSlicesFor(dual, podList, { nodes, recordEvent: (m) => events.push(m) });
    const zonesOf = (family: string) =>
      slices.filter((s) => s.addressType === family).flatMap((s) => s.endpoints.map((e) => e.hints?.forZones.join(' ') ?? '-'));
    expect(zonesOf('IPv4')).toEqual(['a', 'b', 'a', 'b']);
    expect(zonesOf('IPv6')).toEqual(['-', '-', '-']);
    expect(events).toEqual([expect.stringMatching(/: IPv6 endpoints: .*exceeding overload threshold \(3 endpoints, 2 zones\)$/)]);
  });

  it('the annotation "auto" too; "Disabled", or none, sets no hints, and Auto wins over trafficDistribution', () => {
    const nodes = [node('n-a', 'a', 2000), node('n-b', 'b', 2000)];
    const two = pods('n-a', 'n-b');
    expect(hints(web({ topologyAnnotation: 'auto' }), two, nodes).hints).toEqual(['a', 'b']);
    expect(hints(web({ topologyAnnotation: 'Disabled' }), two, nodes)).toEqual({ hints: ['-', '-'], events: [] });
    expect(hints(web(), two, nodes)).toEqual({ hints: ['-', '-'], events: [] });
    // PreferSameNode would add node hints; Auto's hints have none.
    expect(hints(web({ ...AUTO, trafficDistribution: 'PreferSameNode' }), two, nodes).hints).toEqual(['a', 'b']);
  });
});

describe('trafficDistribution: each ready endpoint hinted for its own zone (and node)', () => {
  // Zone b has almost no CPU: trafficDistribution does not weigh zones.
  const nodes = [node('n-a', 'a', 8000), node('n-b', 'b', 100), node('n-x', undefined, 4000)];

  it('PreferClose and PreferSameZone: its zone; not ready: none', () => {
    for (const trafficDistribution of ['PreferClose', 'PreferSameZone']) {
      expect(hints(web({ trafficDistribution }), pods('n-a', 'n-b', 'n-b', ['n-a', false]), nodes)).toEqual({
        hints: ['a', 'b', 'b', '-'],
        events: [],
      });
    }
  });

  it('PreferSameNode: its zone and its node', () => {
    expect(hints(web({ trafficDistribution: 'PreferSameNode' }), pods('n-a', 'n-b'), nodes).hints).toEqual(['a n-a', 'b n-b']);
  });

  it('an endpoint whose Node has no zone gets no zone hint, and a note says kube-proxy will then ignore the zones', () => {
    const close = hints(web({ trafficDistribution: 'PreferClose' }), pods('n-a', 'n-x'), nodes);
    expect(close.hints).toEqual(['a', '-']);
    expect(close.events).toEqual([
      'test: Service default/web: IPv4 endpoints: 1 of 2 ready endpoints get no zone hint for PreferClose: ' +
        "their Pod's Node has no topology.kubernetes.io/zone label (or is not among the Nodes)",
    ]);
    // PreferSameNode still hints it for its node.
    expect(hints(web({ trafficDistribution: 'PreferSameNode' }), pods('n-a', 'n-x'), nodes).hints).toEqual(['a n-a', 'n-x']);
  });

  it('a value the controller does not know sets no hints', () => {
    expect(hints(web({ trafficDistribution: 'PreferFarAway' }), pods('n-a', 'n-b'), nodes)).toEqual({ hints: ['-', '-'], events: [] });
  });
});

describe('svcpath endpoints prints the hints as kubectl does', () => {
  it('-o json and -o yaml: hints between conditions and nodeName, each list of {name}, empty lists left out', async () => {
    const args = ['endpoints', '--cluster', CLUSTER, '--cluster', join(FIXTURES, 'pods.yaml')];
    const json = await cli([...args, '-o', 'json']);
    expect(json.code).toBe(0);
    const yaml = await cli([...args, '-o', 'yaml']);
    expect(yaml.code).toBe(0);
    for (const list of [JSON.parse(json.stdout), parse(yaml.stdout)]) {
      const endpointsOf = (service: string) =>
        list.items.find(
          (i: { metadata: { labels: Record<string, string> } }) => i.metadata.labels['kubernetes.io/service-name'] === service,
        ).endpoints;
      const api = endpointsOf('api');
      expect(Object.keys(api[1])).toEqual(['addresses', 'conditions', 'hints', 'nodeName', 'targetRef', 'zone']);
      expect(api.map((e: { hints: unknown }) => e.hints)).toEqual([
        { forZones: [{ name: 'zone-a' }] },
        { forZones: [{ name: 'zone-a' }] },
        { forZones: [{ name: 'zone-b' }] },
        { forZones: [{ name: 'zone-c' }] },
      ]);
      expect(endpointsOf('cache')[0].hints).toEqual({ forNodes: [{ name: 'node-a' }], forZones: [{ name: 'zone-a' }] });
      expect(endpointsOf('plain').every((e: object) => !('hints' in e))).toBe(true);
    }
  });
});

/** What each node's proxy uses of each Service, by the hints worked out by hand in slices.yaml. */
const EXPECTED: Record<string, Record<string, { ips: string[]; filter: string }>> = {
  'node-a': {
    web: { ips: ['10.244.1.11', '10.244.1.14'], filter: 'zone' },
    api: { ips: ['10.244.1.21', '10.244.2.22'], filter: 'zone' },
    cache: { ips: ['10.244.1.31'], filter: 'node' },
    plain: { ips: ['10.244.1.41', '10.244.3.42'], filter: 'none' },
  },
  'node-b': {
    web: { ips: ['10.244.2.12'], filter: 'zone' },
    api: { ips: ['10.244.2.23'], filter: 'zone' },
    cache: { ips: ['10.244.2.32'], filter: 'node' },
    plain: { ips: ['10.244.1.41', '10.244.3.42'], filter: 'none' },
  },
  'node-c': {
    web: { ips: ['10.244.3.13'], filter: 'zone' },
    api: { ips: ['10.244.3.24'], filter: 'zone' },
    cache: { ips: ['10.244.3.33'], filter: 'node' },
    plain: { ips: ['10.244.1.41', '10.244.3.42'], filter: 'none' },
  },
};

describe("a Pods-only state with topology asked for decides as the same state with the controller's hinted slices", () => {
  const fromPods = loadClusterState([CLUSTER, join(FIXTURES, 'pods.yaml')]);
  const fromSlices = loadClusterState([CLUSTER, join(FIXTURES, 'slices.yaml')]);

  /** Per Service, each endpoint's address, node, zone, readiness and hints. */
  function endpointFacts(state: ClusterState): Record<string, unknown[]> {
    const facts: Record<string, unknown[]> = {};
    for (const slice of state.endpointSlices) {
      facts[slice.serviceName] = slice.endpoints.map((e) => ({
        address: e.addresses[0],
        nodeName: e.nodeName,
        zone: e.zone,
        ready: e.conditions.ready,
        forZones: e.hints?.forZones ?? [],
        forNodes: e.hints?.forNodes ?? [],
      }));
    }
    return facts;
  }

  /** Per Service, the endpoints new flows may reach from this node, and the topology filter that chose them. */
  function decisions(state: ClusterState, nodeName: string): Record<string, { ips: string[]; filter: string }> {
    const compiled = compile(state, resolveServices(state).services, {
      node: nodeName,
      seed: 0,
      maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
    });
    const ipOf = new Map(compiled.backends.map((b) => [b.id, b.ip]));
    return Object.fromEntries(
      compiled.services.map((cs) => [
        cs.service.name,
        { ips: cs.cluster.backendIds.map((id) => ipOf.get(id)!).sort(), filter: cs.topology.v4.filter },
      ]),
    );
  }

  it('the same endpoints with the same hints', () => {
    expect(fromPods.endpointSlices.every((s) => s.derived)).toBe(true);
    expect(endpointFacts(fromPods)).toEqual(endpointFacts(fromSlices));
    expect(fromPods.notes.filter((n) => n.includes('topology'))).toEqual([]);
  });

  it('the same backends on every node, those the hints worked out by hand choose', () => {
    for (const [nodeName, services] of Object.entries(EXPECTED)) {
      expect(decisions(fromSlices, nodeName)).toEqual(services);
      expect(decisions(fromPods, nodeName)).toEqual(services);
    }
  });

  it('the same verdicts replaying a capture through the CLI on every node', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-hints-'));
    try {
      const capture = join(dir, 'capture.pcap');
      const w = createPcapWriter(capture, { linktype: 1 });
      let t = 1_800_000_000;
      let port = 20000;
      for (const [ip, p] of [
        ['10.96.0.20', 80],
        ['10.96.0.21', 80],
        ['10.96.0.22', 6379],
        ['10.96.0.23', 80],
      ] as const) {
        for (let i = 0; i < 32; i++) w.write(t++, 0, tcp('10.244.9.9', port++, ip, p, ['SYN']));
      }
      w.close();
      for (const [nodeName, services] of Object.entries(EXPECTED)) {
        const verdicts: Record<string, Array<Record<string, unknown>>> = {};
        for (const kind of ['pods', 'slices']) {
          const out = join(dir, `${kind}-${nodeName}.jsonl`);
          const run = await cli([
            'replay',
            capture,
            '--cluster',
            CLUSTER,
            '--cluster',
            join(FIXTURES, `${kind}.yaml`),
            '--node',
            nodeName,
            '--verdicts',
            out,
          ]);
          expect(run.code).toBe(0);
          verdicts[kind] = readFileSync(out, 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l));
        }
        expect(verdicts.pods).toHaveLength(4 * 32);
        expect(verdicts.pods).toEqual(verdicts.slices);
        for (const [service, { ips }] of Object.entries(services)) {
          // 32 flows reach every backend of a set of at most 2 (a miss has odds below 2^-30).
          const reached = new Set(
            verdicts.pods.filter((v) => String(v.service).startsWith(`default/${service}:`)).map((v) => String(v.backend).split(':')[0]),
          );
          expect([...reached].sort()).toEqual(ips);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
