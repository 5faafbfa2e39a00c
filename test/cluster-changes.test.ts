// Cluster changes during a replay (--events), end to end through the CLI:
// manifests, a watch-events file and a capture built here, replayed, and
// the verdict lines checked packet by packet against what kube-proxy (the
// default) and Cilium do, as worked out from the schedule of changes alone:
// which backends a flow may be on in each phase, which packets are flagged.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPcapWriter } from '../traces/pcap.js';
import { cli, tcp, udp } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'svcpath-changes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Conditions = { ready: boolean; serving: boolean; terminating: boolean };
const READY: Conditions = { ready: true, serving: true, terminating: false };
const STARTING: Conditions = { ready: false, serving: false, terminating: false };
const TERMINATING: Conditions = { ready: false, serving: true, terminating: true };

interface PortSpec {
  name: string;
  port: number;
  targetPort: number;
  protocol: 'TCP' | 'UDP';
  nodePort?: number;
}

function node(name: string, ip: string) {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { addresses: [{ type: 'InternalIP', address: ip }] } };
}

function service(name: string, clusterIP: string, ports: PortSpec[], spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ports, ...spec },
  };
}

function slice(serviceName: string, ports: PortSpec[], endpoints: Array<[string, string, Conditions]>) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${serviceName}-abcde`, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: endpoints.map(([ip, nodeName, conditions]) => ({ addresses: [ip], nodeName, conditions })),
    ports: ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
  };
}

type Manifest = Record<string, unknown>;
type Event = [time: number, type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Manifest];
type Packet = { t: number; frame: Uint8Array };

let cases = 0;
interface Run {
  /** Verdict lines by packet number - 1. */
  lines: Array<Record<string, unknown>>;
  summary: Record<string, unknown>;
  stdout: string;
}

/** Replays `packets` on node-a of a cluster of `objects`, through `events`. */
async function replayWith(objects: Manifest[], events: Event[], packets: Packet[], flags: string[] = []): Promise<Run> {
  const at = join(dir, `case-${++cases}`);
  const cluster = `${at}-cluster.json`;
  writeFileSync(
    cluster,
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [node('node-a', '192.168.0.10'), node('node-b', '192.168.0.11'), ...objects] }),
  );
  const eventsFile = `${at}-events.jsonl`;
  writeFileSync(eventsFile, events.map(([time, type, object]) => `${JSON.stringify({ time, type, object })}\n`).join(''));
  const capture = `${at}.pcap`;
  const w = createPcapWriter(capture, { linktype: 1, nanosecond: true });
  for (const p of ordered(packets)) {
    // To the microsecond, as the times are written in the tests (tenths and hundredths of seconds).
    const micros = Math.round(p.t * 1e6);
    w.write(Math.floor(micros / 1e6), (micros % 1e6) * 1000, p.frame);
  }
  w.close();
  const verdicts = `${at}-verdicts.jsonl`;
  const summaryFile = `${at}-summary.json`;
  const { code, stdout, stderr } = await cli([
    'replay',
    capture,
    '--cluster',
    cluster,
    '--node',
    'node-a',
    '--service-cluster-ip-range',
    '10.96.0.0/12',
    '--events',
    eventsFile,
    '--verdicts',
    verdicts,
    '--summary',
    summaryFile,
    ...flags,
  ]);
  expect(stderr).toBe('');
  expect(code).toBe(0);
  const lines = readFileSync(verdicts, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, summary: JSON.parse(readFileSync(summaryFile, 'utf8')), stdout };
}

/** Packets sorted by time, as replayWith writes them, with what the test needs to know of each. */
function ordered<T extends Packet>(packets: T[]): T[] {
  return [...packets].sort((a, b) => a.t - b.t);
}

const backendIp = (line: Record<string, unknown>) => (typeof line.backend === 'string' ? line.backend.split(':')[0] : null);

// ---------------------------------------------------------------------------
// A rolling update of a 3-replica Deployment under steady TCP and UDP load

const WEB_PORTS: PortSpec[] = [
  { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
  { name: 'stats', port: 8125, targetPort: 8125, protocol: 'UDP' },
];
const WEB_IP = '10.96.0.10';
const OLD = ['10.244.1.1', '10.244.1.2', '10.244.1.3'];
const NEW = ['10.244.2.1', '10.244.2.2', '10.244.2.3'];
const NODE_OF = (ip: string) => (ip.endsWith('.1') ? 'node-a' : 'node-b');

/**
 * The slice through the rollout, one old pod replaced per step, every step
 * four changes 1 s apart from `start`: new pod added (not ready), ready, old
 * pod terminating, old pod removed (3 s after it started terminating).
 */
function rollout(start: number): {
  events: Event[];
  phases: Array<{ from: number; ready: string[]; gone: string[]; terminating: string[] }>;
} {
  const conditions = new Map<string, Conditions>(OLD.map((ip) => [ip, READY]));
  const events: Event[] = [];
  const phases: Array<{ from: number; ready: string[]; gone: string[]; terminating: string[] }> = [];
  const gone: string[] = [];
  const emit = (t: number) => {
    events.push([
      t,
      'MODIFIED',
      slice(
        'web',
        WEB_PORTS,
        [...conditions].map(([ip, c]) => [ip, NODE_OF(ip), c]),
      ),
    ]);
    phases.push({
      from: t,
      ready: [...conditions].filter(([, c]) => c.ready).map(([ip]) => ip),
      terminating: [...conditions].filter(([, c]) => c.terminating).map(([ip]) => ip),
      gone: [...gone],
    });
  };
  OLD.forEach((old, i) => {
    const t = start + 7 * i;
    conditions.set(NEW[i], STARTING);
    emit(t);
    conditions.set(NEW[i], READY);
    emit(t + 1);
    conditions.set(old, TERMINATING);
    emit(t + 2);
    conditions.delete(old);
    gone.push(old);
    emit(t + 5);
  });
  return { events, phases };
}

interface LoadPacket extends Packet {
  flow: string;
  kind: 'long-tcp' | 'udp' | 'new-tcp';
}

/**
 * Steady load from t0 to t1: 8 long TCP connections and 8 UDP flows (fixed
 * source ports) sending every 0.5 s, and a new TCP connection every 0.25 s.
 */
function load(t0: number, t1: number): LoadPacket[] {
  const packets: LoadPacket[] = [];
  for (let t = t0; t < t1; t += 0.5) {
    for (let c = 0; c < 8; c++) {
      const client = `10.0.0.${10 + c}`;
      const first = t === t0;
      packets.push({
        t: t + c * 0.01,
        flow: `tcp ${client}`,
        kind: 'long-tcp',
        frame: tcp(client, 40000, WEB_IP, 80, first ? ['SYN'] : ['ACK']),
      });
      packets.push({ t: t + 0.1 + c * 0.01, flow: `udp ${client}`, kind: 'udp', frame: udp(client, 50000, WEB_IP, 8125) });
    }
  }
  let n = 0;
  for (let t = t0 + 0.05; t < t1; t += 0.25) {
    const client = `10.0.1.${1 + (n % 200)}`;
    packets.push({ t, flow: `new ${n}`, kind: 'new-tcp', frame: tcp(client, 30000 + n, WEB_IP, 80, ['SYN']) });
    n++;
  }
  return ordered(packets);
}

describe('a rolling update of a 3-replica Deployment under TCP and UDP load', () => {
  const { events, phases } = rollout(1002);
  const packets = load(1000, 1026);
  const objects = [
    service('web', WEB_IP, WEB_PORTS),
    slice(
      'web',
      WEB_PORTS,
      OLD.map((ip) => [ip, NODE_OF(ip), READY]),
    ),
  ];
  /** The phase a packet at `t` is decided in: syncs at the events' own times (--min-sync-period 0). */
  const phaseAt = (t: number) => {
    let k = -1;
    phases.forEach((p, i) => {
      if (p.from <= t) k = i;
    });
    return k;
  };
  const readyAt = (t: number) => (phaseAt(t) < 0 ? OLD : phases[phaseAt(t)].ready);
  const goneAt = (t: number) => (phaseAt(t) < 0 ? [] : phases[phaseAt(t)].gone);

  for (const semantics of ['kube-proxy', 'cilium'] as const) {
    it(`${semantics}: each packet is decided under the state of its time, and flows move as ${semantics} moves them`, async () => {
      const run = await replayWith(objects, events, packets, ['--min-sync-period', '0', '--datapath-semantics', semantics]);
      expect(run.lines).toHaveLength(packets.length);
      const backendOf = new Map<string, string | null>();
      const seen = { stale: 0, flushed: 0, reselected: 0 };
      packets.forEach((p, i) => {
        const line = run.lines[i];
        const where = `packet ${i + 1} (${p.flow} at ${p.t})`;
        expect(line.state, where).toBe(phaseAt(p.t) + 1);
        expect(line.verdict, where).not.toBe('DROP');
        const ip = backendIp(line);
        const before = backendOf.get(p.flow);
        const change = line.flowChange as string | undefined;
        if (p.kind === 'new-tcp' || before === undefined) {
          // A new flow goes to a ready endpoint of its time, never to one starting, terminating or gone.
          expect(readyAt(p.t), where).toContain(ip);
          expect(change, where).toBeUndefined();
        } else if (before !== null && goneAt(p.t).includes(before) && (semantics === 'cilium' || p.kind === 'udp')) {
          // Its backend left: Cilium moves it; kube-proxy flushes UDP. Once: the next packet finds the new entry.
          expect(change, where).toBe(semantics === 'cilium' ? 'RESELECTED' : 'FLUSHED');
          expect(readyAt(p.t), where).toContain(ip);
          if (change === 'RESELECTED') seen.reselected++;
          else seen.flushed++;
        } else if (before !== null && goneAt(p.t).includes(before)) {
          // kube-proxy keeps an established TCP flow's DNAT to the pod that left.
          expect(ip, where).toBe(before);
          expect(change, where).toBe('STALE_BACKEND');
          seen.stale++;
        } else {
          // Still on its backend, also while that one terminates (it drains).
          expect(ip, where).toBe(before);
          expect(change, where).toBeUndefined();
        }
        if (p.kind !== 'new-tcp') backendOf.set(p.flow, ip);
      });
      // The load was spread over the three old pods, so flows were on each pod that left.
      if (semantics === 'kube-proxy') {
        expect(seen.stale).toBeGreaterThan(0);
        expect(seen.flushed).toBeGreaterThan(0);
        expect(seen.reselected).toBe(0);
      } else {
        expect(seen.reselected).toBeGreaterThan(0);
        expect(seen.stale + seen.flushed).toBe(0);
      }
      // The timeline: one sync per event, in order, each with its flows.
      const timeline = run.summary.changes as { syncs: Array<Record<string, unknown>>; semantics: string };
      expect(timeline.semantics).toBe(semantics);
      expect(timeline.syncs).toHaveLength(events.length);
      const sum = (flows: unknown) => Object.values(flows as Record<string, number>).reduce((a, b) => a + b, 0);
      timeline.syncs.forEach((s, i) => {
        const removed = (s.endpoints as Array<{ removed: string[] }>).flatMap((e) => e.removed);
        expect(removed, `sync ${i + 1}`).toEqual(i % 4 === 3 ? [`${OLD[(i - 3) / 4]}:8080`, `${OLD[(i - 3) / 4]}:8125`] : []);
        if (i % 4 !== 3) expect(sum(s.onRemovedBackends), `sync ${i + 1}`).toBe(0);
      });
      const kept = timeline.syncs.reduce((n, s) => n + sum(s.onRemovedBackends), 0);
      const flushed = timeline.syncs.reduce((n, s) => n + sum(s.flushed), 0);
      // Every flushed UDP flow sends again, and is flagged once; established flows on a pod that left are among those counted.
      expect(flushed).toBe(semantics === 'kube-proxy' ? seen.flushed : 0);
      expect(kept).toBeGreaterThanOrEqual(seen.reselected + seen.flushed);
      expect(run.stdout).toMatch(/Cluster changes \(.*: 12 events applied in 12 syncs; .* semantics, minSyncPeriod 0s\):/);
    });
  }
});

// ---------------------------------------------------------------------------

const DNS_PORTS: PortSpec[] = [{ name: 'dns', port: 53, targetPort: 53, protocol: 'UDP' }];
const DNS_IP = '10.96.0.53';

/** A client sending a datagram every 0.5 s from one source port, as a node-local cache does. */
function dnsLoad(t0: number, t1: number): Packet[] {
  const packets: Packet[] = [];
  for (let t = t0; t < t1; t += 0.5) packets.push({ t, frame: udp('10.0.0.99', 5353, DNS_IP, 53) });
  return packets;
}

describe('the UDP black hole: DNS to a Service scaled 1 -> 0 -> 1', () => {
  const objects = [service('dns', DNS_IP, DNS_PORTS), slice('dns', DNS_PORTS, [['10.244.1.53', 'node-a', READY]])];
  const events: Event[] = [
    [1003, 'MODIFIED', slice('dns', DNS_PORTS, [])],
    [1006, 'MODIFIED', slice('dns', DNS_PORTS, [['10.244.2.53', 'node-b', READY]])],
  ];
  const packets = dnsLoad(1000, 1010);

  it('kube-proxy: the flush ends the flow when the pod goes, so the datagrams reach the new pod', async () => {
    const run = await replayWith(objects, events, packets, ['--min-sync-period', '0']);
    packets.forEach((p, i) => {
      const line = run.lines[i];
      const where = `packet ${i + 1} at ${p.t}`;
      if (p.t < 1003) expect([line.reason, backendIp(line)], where).toEqual(['SERVICE', '10.244.1.53']);
      else if (p.t < 1006) {
        expect(line.reason, where).toBe('NO_ENDPOINTS');
        expect(line.flowChange, where).toBe(p.t === 1003 ? 'FLUSHED' : undefined);
      } else expect([line.reason, backendIp(line), line.flowChange], where).toEqual(['SERVICE', '10.244.2.53', undefined]);
    });
    const syncs = (run.summary.changes as { syncs: Array<{ flushed: Record<string, number> }> }).syncs;
    expect(syncs[0].flushed).toEqual({ 'default/dns:dns': 1 });
  });

  it('cilium: no flush; the flow chooses again when its backend goes', async () => {
    const run = await replayWith(objects, events, packets, ['--min-sync-period', '0', '--datapath-semantics', 'cilium']);
    packets.forEach((p, i) => {
      const line = run.lines[i];
      const where = `packet ${i + 1} at ${p.t}`;
      if (p.t < 1003) expect(backendIp(line), where).toBe('10.244.1.53');
      else if (p.t < 1006) {
        expect(line.reason, where).toBe('NO_ENDPOINTS');
        expect(line.flowChange, where).toBe(p.t === 1003 ? 'RESELECTED' : undefined);
      } else expect([line.reason, backendIp(line)], where).toEqual(['SERVICE', '10.244.2.53']);
    });
  });
});

describe('a Service deleted under UDP load', () => {
  const objects = [service('dns', DNS_IP, DNS_PORTS), slice('dns', DNS_PORTS, [['10.244.1.53', 'node-a', READY]])];
  const events: Event[] = [
    [1003, 'DELETED', service('dns', DNS_IP, DNS_PORTS)],
    [1003, 'DELETED', slice('dns', DNS_PORTS, [['10.244.1.53', 'node-a', READY]])],
  ];
  const packets = dnsLoad(1000, 1006);

  it('kube-proxy: its UDP entries are flushed, and its cluster IP then matches nothing', async () => {
    const run = await replayWith(objects, events, packets, ['--min-sync-period', '0']);
    packets.forEach((p, i) => {
      const line = run.lines[i];
      const where = `packet ${i + 1} at ${p.t}`;
      if (p.t < 1003) expect([line.reason, backendIp(line)], where).toEqual(['SERVICE', '10.244.1.53']);
      else {
        expect([line.verdict, line.reason], where).toEqual(['DROP', 'UNALLOCATED_IP']);
        expect(line.flowChange, where).toBe(p.t === 1003 ? 'FLUSHED' : undefined);
      }
    });
    const timeline = run.summary.changes as { syncs: Array<{ services: { removed: string[] }; flushed: Record<string, number> }> };
    expect(timeline.syncs[0].services.removed).toEqual(['default/dns:dns']);
    expect(timeline.syncs[0].flushed).toEqual({ 'default/dns:dns': 1 });
  });
});

describe('externalTrafficPolicy: Local, the last local endpoint leaving', () => {
  const ports: PortSpec[] = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 }];
  const objects = [
    service('shop', '10.96.0.80', ports, { type: 'NodePort', externalTrafficPolicy: 'Local' }),
    slice('shop', ports, [
      ['10.244.1.80', 'node-a', READY],
      ['10.244.2.80', 'node-b', READY],
    ]),
  ];
  const events: Event[] = [
    // The local pod terminates: new connections still reach it, the only local endpoint serving (KEP-1669).
    [
      1002,
      'MODIFIED',
      slice('shop', ports, [
        ['10.244.1.80', 'node-a', TERMINATING],
        ['10.244.2.80', 'node-b', READY],
      ]),
    ],
    [1004, 'MODIFIED', slice('shop', ports, [['10.244.2.80', 'node-b', READY]])],
  ];
  const packets: Array<Packet & { flow: string }> = [];
  for (let t = 1000; t < 1006; t += 0.5) {
    packets.push({ t, flow: 'long', frame: tcp('203.0.113.7', 41000, '192.168.0.10', 30080, t === 1000 ? ['SYN'] : ['ACK']) });
    const n = Math.round((t - 1000) * 2);
    packets.push({ t: t + 0.1, flow: `new ${n}`, frame: tcp('203.0.113.8', 42000 + n, '192.168.0.10', 30080, ['SYN']) });
  }

  for (const semantics of ['kube-proxy', 'cilium'] as const) {
    it(`${semantics}: external flows stay on the terminating local pod, then have nowhere to go`, async () => {
      const run = await replayWith(objects, events, packets, ['--min-sync-period', '0', '--datapath-semantics', semantics]);
      ordered(packets).forEach((p, i) => {
        const line = run.lines[i];
        const where = `packet ${i + 1} (${p.flow} at ${p.t})`;
        if (p.t < 1004) {
          expect([line.reason, backendIp(line)], where).toEqual(['SERVICE', '10.244.1.80']);
        } else if (p.flow !== 'long') {
          expect([line.verdict, line.reason], where).toEqual(['DROP', 'NO_LOCAL_ENDPOINTS']);
        } else if (semantics === 'kube-proxy') {
          expect([line.reason, backendIp(line), line.flowChange], where).toEqual(['SERVICE', '10.244.1.80', 'STALE_BACKEND']);
        } else {
          // Cilium chooses again for the established flow, and finds no local endpoint.
          expect([line.verdict, line.reason], where).toEqual(['DROP', 'NO_LOCAL_ENDPOINTS']);
          if (p.t === 1004) expect(line.flowChange, where).toBe('RESELECTED');
        }
      });
      const syncs = (run.summary.changes as { syncs: Array<{ observed: { rejected: number } }> }).syncs;
      expect(syncs[1].observed.rejected).toBe(semantics === 'kube-proxy' ? 4 : 8);
    });
  }
});

describe('session affinity across a backend removal', () => {
  const ports: PortSpec[] = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }];
  const pods = ['10.244.1.5', '10.244.1.6', '10.244.2.5', '10.244.2.6'];
  const objects = [
    service('cart', '10.96.0.90', ports, { sessionAffinity: 'ClientIP' }),
    slice(
      'cart',
      ports,
      pods.map((ip) => [ip, NODE_OF(ip), READY]),
    ),
  ];
  // One short connection per second from one client.
  const packets = Array.from({ length: 8 }, (_, i) => ({ t: 1000 + i, frame: tcp('10.0.0.7', 43000 + i, '10.96.0.90', 80, ['SYN']) }));

  it("the client's affinity backend leaves: its next connection is reset once, then sticks to the new backend", async () => {
    // Which pod the client is bound to is Maglev's choice: find it, then remove that pod.
    const first = await replayWith(objects, [], packets.slice(0, 1));
    const bound = backendIp(first.lines[0])!;
    const rest = pods.filter((ip) => ip !== bound);
    const events: Event[] = [
      [
        1003.5,
        'MODIFIED',
        slice(
          'cart',
          ports,
          rest.map((ip) => [ip, NODE_OF(ip), READY]),
        ),
      ],
    ];
    const run = await replayWith(objects, events, packets, ['--min-sync-period', '0']);
    const after = backendIp(run.lines[4]);
    run.lines.forEach((line, i) => {
      const where = `connection ${i + 1}`;
      if (i < 4) expect([backendIp(line), line.flowChange], where).toEqual([bound, undefined]);
      else {
        expect(rest, where).toContain(backendIp(line));
        expect(backendIp(line), where).toBe(after);
        expect(line.flowChange, where).toBe(i === 4 ? 'AFFINITY_RESET' : undefined);
      }
    });
  });
});

describe('minSyncPeriod: changes wait for the sync runner', () => {
  const ports: PortSpec[] = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }];
  const objects = [service('api', '10.96.0.70', ports), slice('api', ports, [['10.244.1.70', 'node-a', READY]])];
  const withPods = (...ips: string[]) =>
    slice(
      'api',
      ports,
      ips.map((ip) => [ip, NODE_OF(ip), READY]),
    );
  const events: Event[] = [
    [1001, 'MODIFIED', withPods('10.244.1.70', '10.244.1.71')],
    // 300 ms and 500 ms after that sync: both wait for 1002, 1 s after it, and apply together.
    [1001.3, 'MODIFIED', withPods('10.244.1.70', '10.244.1.71', '10.244.2.72')],
    [1001.5, 'MODIFIED', withPods('10.244.1.70', '10.244.1.71', '10.244.2.72', '10.244.2.73')],
  ];
  const packets = Array.from({ length: 40 }, (_, i) => ({
    t: 1000 + i * 0.1,
    frame: tcp(`10.0.2.${i + 1}`, 44000, '10.96.0.70', 80, ['SYN']),
  }));

  it('default (1 s): two changes 200 ms apart are applied together, 1 s after the sync before them', async () => {
    const run = await replayWith(objects, events, packets);
    const stateAt = (t: number) => {
      const tenths = Math.round(t * 10);
      return tenths < 10010 ? 0 : tenths < 10020 ? 1 : 2;
    };
    packets.forEach((p, i) => {
      const line = run.lines[i];
      expect(line.state, `packet at ${p.t}`).toBe(stateAt(p.t));
      const allowed = [[], ['10.244.1.71'], ['10.244.1.71', '10.244.2.72', '10.244.2.73']][stateAt(p.t)];
      expect(['10.244.1.70', ...allowed], `packet at ${p.t}`).toContain(backendIp(line));
    });
    const syncs = (run.summary.changes as { syncs: Array<{ at: string; events: unknown[] }> }).syncs;
    expect(syncs.map((s) => [s.at, s.events.length])).toEqual([
      ['1001.000000000', 1],
      ['1002.000000000', 2],
    ]);
  });

  it('0: each change applies at its own time', async () => {
    const run = await replayWith(objects, events, packets, ['--min-sync-period', '0']);
    const syncs = (run.summary.changes as { syncs: Array<{ at: string }> }).syncs;
    expect(syncs.map((s) => s.at)).toEqual(['1001.000000000', '1001.300000000', '1001.500000000']);
  });
});

// ---------------------------------------------------------------------------
// The flags, their mistakes, and the other commands

describe('--events on the command line', () => {
  const ports: PortSpec[] = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }];
  const objects = [service('api', '10.96.0.70', ports), slice('api', ports, [['10.244.1.70', 'node-a', READY]])];
  const packets = Array.from({ length: 6 }, (_, i) => ({ t: 1000 + i, frame: tcp(`10.0.3.${i + 1}`, 45000, '10.96.0.70', 80, ['SYN']) }));
  const files = (name: string, events: string, extra: Manifest[] = []) => {
    const at = join(dir, name);
    writeFileSync(
      `${at}-cluster.json`,
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [node('node-a', '192.168.0.10'), ...objects, ...extra] }),
    );
    writeFileSync(`${at}-events.jsonl`, events);
    const w = createPcapWriter(`${at}.pcap`, { linktype: 1 });
    for (const p of packets) w.write(p.t, 0, p.frame);
    w.close();
    return { cluster: `${at}-cluster.json`, events: `${at}-events.jsonl`, capture: `${at}.pcap` };
  };
  const added = (t: number) =>
    `${JSON.stringify({
      time: t,
      type: 'MODIFIED',
      object: slice('api', ports, [
        ['10.244.1.70', 'node-a', READY],
        ['10.244.1.71', 'node-a', READY],
      ]),
    })}\n`;

  it('a mistake in the events file: the events before it are applied, then the one-line error, exit status 1', async () => {
    const f = files('broken', `${added(1002)}{"time": 1003, "type": "BOOKMARK", "object": {}}\n`);
    const { code, stdout, stderr } = await cli(['replay', f.capture, '--cluster', f.cluster, '--events', f.events]);
    expect(code).toBe(1);
    expect(stderr).toBe(`svcpath: ${f.events}: line 2: type: must be ADDED, MODIFIED or DELETED, got "BOOKMARK"`);
    expect(stdout).toMatch(/6 packets replayed/);
    expect(stdout).toMatch(/1 event applied in 1 sync;/);
  });

  it.each([
    [['--datapath-semantics', 'calico'], '--datapath-semantics: must be kube-proxy or cilium, got "calico"'],
    [['--min-sync-period', '1 second'], '--min-sync-period: must be a duration like "1s", "500ms" or "0", got "1 second"'],
    [['--workers', '2'], '--workers: one worker only with --events: cluster changes are applied to the maps of one datapath'],
  ])('%j is refused in one line', async (flags, message) => {
    const f = files('flags', added(1002));
    const { code, stderr } = await cli(['replay', f.capture, '--cluster', f.cluster, '--events', f.events, ...flags]);
    expect([code, stderr]).toEqual([1, `svcpath: ${message}`]);
  });

  it('--datapath-semantics and --min-sync-period need --events; --events - needs the capture elsewhere', async () => {
    const f = files('alone', added(1002));
    for (const flag of ['--datapath-semantics', '--min-sync-period']) {
      const { code, stderr } = await cli(['replay', f.capture, '--cluster', f.cluster, flag, flag.endsWith('period') ? '0' : 'cilium']);
      expect([code, stderr]).toEqual([1, `svcpath: ${flag}: only with --events (it says how cluster changes apply)`]);
    }
    const { code, stderr } = await cli(['replay', '-', '--cluster', f.cluster, '--events', '-']);
    expect([code, stderr]).toEqual([1, 'svcpath: --events: standard input is the capture already; name a file']);
  });

  it("the KubeProxyConfiguration's minSyncPeriod of its mode is the default; the flag overrides it", async () => {
    const config = {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'nftables',
      nftables: { minSyncPeriod: '2500ms' },
      iptables: { minSyncPeriod: '7s' },
    };
    const events = added(1001) + added(1002).replace('10.244.1.71', '10.244.1.72');
    const f = files('config', events, [config]);
    const syncs = async (flags: string[]) => {
      const summary = join(dir, `config-${flags.length}.json`);
      const { code } = await cli(['replay', f.capture, '--cluster', f.cluster, '--events', f.events, '--summary', summary, ...flags]);
      expect(code).toBe(0);
      const changes = JSON.parse(readFileSync(summary, 'utf8')).changes as { minSyncPeriod: number; syncs: Array<{ at: string }> };
      return [changes.minSyncPeriod, changes.syncs.map((s) => s.at)];
    };
    expect(await syncs([])).toEqual([2.5, ['1001.000000000', '1003.500000000']]);
    expect(await syncs(['--min-sync-period', '0'])).toEqual([0, ['1001.000000000', '1002.000000000']]);
  });

  it('trace shows the state a packet was decided under and the syncs that led to it', async () => {
    const f = files('trace', added(1002.5));
    const { code, stdout } = await cli([
      'trace',
      f.capture,
      '--cluster',
      f.cluster,
      '--events',
      f.events,
      '--packet',
      '2',
      '--packet',
      '4',
      '--json',
    ]);
    expect(code).toBe(0);
    const traces = JSON.parse(stdout) as Array<{
      packet: number;
      state: { index: number; syncs: Array<{ at: string; events: Array<{ line: number }> }> };
    }>;
    expect(traces.map((t) => [t.packet, t.state.index, t.state.syncs.map((s) => [s.at, s.events.map((e) => e.line)])])).toEqual([
      [2, 0, []],
      [4, 1, [['1002.500000000', [1]]]],
    ]);
  });
});

describe('a regression case with events.jsonl', () => {
  it('is replayed through its changes: recorded, passes, and fails when the changes differ', async () => {
    const ports: PortSpec[] = [{ name: 'dns', port: 53, targetPort: 53, protocol: 'UDP' }];
    const at = join(dir, 'case-with-events');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(at);
    const cluster = [
      node('node-a', '192.168.0.10'),
      service('dns', DNS_IP, ports),
      slice('dns', ports, [['10.244.1.53', 'node-a', READY]]),
    ];
    writeFileSync(join(at, 'cluster.yaml'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: cluster }));
    const moved = (ip: string) =>
      `${JSON.stringify({ time: 1002, type: 'MODIFIED', object: slice('dns', ports, [[ip, 'node-a', READY]]) })}\n`;
    writeFileSync(join(at, 'events.jsonl'), moved('10.244.2.53'));
    const w = createPcapWriter(join(at, 'input.pcap'), { linktype: 1 });
    for (const p of dnsLoad(1000, 1004)) w.write(Math.floor(p.t), (p.t % 1) * 1e9, p.frame);
    w.close();
    expect((await cli(['test', at, '--update'])).code).toBe(0);
    const recorded = readFileSync(join(at, 'expected', 'verdicts.jsonl'), 'utf8')
      .trim()
      .split('\n');
    expect(recorded.map((l) => [JSON.parse(l).state, JSON.parse(l).flowChange ?? null, backendIp(JSON.parse(l))])).toEqual([
      [0, null, '10.244.1.53'],
      [0, null, '10.244.1.53'],
      [0, null, '10.244.1.53'],
      [0, null, '10.244.1.53'],
      [1, 'FLUSHED', '10.244.2.53'],
      [1, null, '10.244.2.53'],
      [1, null, '10.244.2.53'],
      [1, null, '10.244.2.53'],
    ]);
    expect((await cli(['test', at])).stdout).toMatch(/^PASS case-with-events/);
    writeFileSync(join(at, 'events.jsonl'), moved('10.244.3.53'));
    const failed = await cli(['test', at]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(
      /FAIL case-with-events.*\npacket 5: verdict differs\n +field +expected +actual\n +backend +"10.244.2.53:53" +"10.244.3.53:53"\n/,
    );
  });
});
