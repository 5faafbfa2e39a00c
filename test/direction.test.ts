// Captures taken on a node, as `tcpdump -i any` (Linux cooked v1 and v2) and
// dumpcap (pcapng with epb_flags) make them: every forwarded packet twice, as
// it arrived and as the node sent it on after its own NAT. The copies the
// node sent are PASS OUTGOING and change no state (the same capture without
// them decides the arrivals identically); the arrivals are decided as an
// Ethernet capture of them alone is; and the node's copies are compared with
// svcpath's rewrites, in counts computed here from how each copy was built.
// The zero-copy walker and the JavaScript reader, one worker and two, and the
// reference model all agree on these captures.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { compile } from '../control/compiler.js';
import { Batch } from '../control/datapath.js';
import { DESC_F_SNAT, LINKTYPES, REASONS, VERDICTS } from '../control/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/maglev.js';
import { loadProgram } from '../control/program.js';
import { replay, type PacketDecision, type ReplayOptions } from '../control/replay.js';
import { readCounters } from '../control/summary.js';
import { ReferenceDatapath } from '../model/reference-datapath.js';
import { buildFrame, toLinkType, type L4Spec } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { maglevChooser } from '../traces/predict.js';
import { cli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-direction-'));
const NODE_IP = '192.168.0.10';
const VIP = '10.96.0.10';
const NODE_PORT = 30080;
/** svcpath masquerades from these ports; the node, in this capture, from 60000 up, so that no reply to it is svcpath's. */
const SNAT_PORTS = '40000-40999';
const CLUSTER = join(tmp, 'cluster.yaml');
writeFileSync(CLUSTER, `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: node-a}, status: {addresses: [{type: InternalIP, address: ${NODE_IP}}]}}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    type: NodePort
    clusterIP: ${VIP}
    ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: ${NODE_PORT}}
    - {name: dns, port: 53, protocol: UDP, targetPort: 53}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints:
  - {addresses: [10.244.1.5], nodeName: node-b}
  - {addresses: [10.244.2.5], nodeName: node-c}
  - {addresses: [10.244.3.5], nodeName: node-d}
  ports:
  - {name: http, port: 8080, protocol: TCP}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.244.0.0/16
`);
const ARGS = ['--cluster', CLUSTER, '--node', 'node-a', '--snat-port-range', SNAT_PORTS];
const BACKENDS = ['10.244.1.5', '10.244.2.5', '10.244.3.5'];

const state = loadClusterState([CLUSTER]);
const compiled = compile(state, resolveServices(state).services, {
  node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE, snatPortRange: [40000, 40999],
});
/** svcpath's backend for a new flow, computed outside the datapath. */
const choose = maglevChooser(compiled, 0);

/** One frame of the capture, Ethernet-framed: which way it went, on which device, and when (its place in the capture). */
interface Captured {
  eth: Uint8Array;
  way: 'in' | 'out' | 'other-host';
  loopback?: boolean;
  at: number;
}

/** What the capture was built to hold: the node's copies of rewritten packets, by how they compare. */
interface Expected {
  reproduced: number;
  otherBackend: number;
  differ: number;
}

interface Endpoint {
  ip: string;
  port: number;
}

/**
 * How the node treats a flow, against what svcpath does: it agrees; it picks
 * another backend; it masquerades a pod's flow, which svcpath does not; it
 * sends the flow to an address that is no backend; it sends it on untouched,
 * to the frontend (a Service its kube-proxy has not synced yet).
 */
type NodeChoice = 'agrees' | 'other-backend' | 'masquerades' | 'not-a-backend' | 'untouched';

/** Builds the capture a node running kube-proxy would give, keeping count of what each copy should compare as. */
class NodeCapture {
  readonly frames: Captured[] = [];
  readonly expected: Expected = { reproduced: 0, otherBackend: 0, differ: 0 };
  private ipId = 100;
  private nodePort = 60000;

  private push(f: Omit<Captured, 'at'>): void {
    this.frames.push({ ...f, at: this.frames.length });
  }

  private frame(from: Endpoint, to: Endpoint, l4: L4Spec, id: number, payload: Uint8Array, ttl: number): Uint8Array {
    return buildFrame({
      srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', ipv4: { src: from.ip, dst: to.ip, id, ttl, dontFragment: true }, l4, payload,
    }).slice();
  }

  /**
   * A packet that arrives and that the node sends on: the arrival from `from`
   * to `to`, then the node's copy from `nodeFrom` to `nodeTo`, with what NAT
   * keeps (identification, TCP numbers, payload) and the TTL one lower.
   */
  private forwarded(
    from: Endpoint, to: Endpoint, nodeFrom: Endpoint, nodeTo: Endpoint, l4: (sport: number, dport: number) => L4Spec, payload: Uint8Array,
    compares?: keyof Expected,
  ): void {
    const id = this.ipId++;
    this.push({ eth: this.frame(from, to, l4(from.port, to.port), id, payload, 64), way: 'in' });
    this.push({ eth: this.frame(nodeFrom, nodeTo, l4(nodeFrom.port, nodeTo.port), id, payload, 63), way: 'out' });
    if (compares) this.expected[compares]++;
  }

  /** The node sends its last copy out once more (from a bridge, then from the bridge's port): it compares once. */
  sentTwice(): void {
    const last = this.frames[this.frames.length - 1];
    this.push({ eth: last.eth, way: 'out' });
  }

  /**
   * A TCP flow from `client` to `frontend`: SYN, SYN-ACK, then ACK with
   * data. The node sends it to `nodeBackend`, from `nodeSource` (its
   * masquerade, or the client). svcpath decides each arrival; its reply
   * entry is the backend it chose, so a reply from another backend, or to
   * the node's own masquerade port, is no reply of svcpath's flow.
   */
  tcpFlow(client: Endpoint, frontend: Endpoint, choice: NodeChoice, svcpathMasquerades = false): void {
    const ours = choose({ clientIp: client.ip, clientPort: client.port, vip: frontend.ip, vport: frontend.port, protocol: 'TCP' } as never)!;
    const nodeBackend = choice === 'untouched' ? { ...frontend } : this.nodeBackend(ours, choice);
    const masquerades = svcpathMasquerades || choice === 'masquerades';
    const nodeSource = masquerades ? { ip: NODE_IP, port: this.nodePort++ } : client;
    const request = this.requestOutcome(choice);
    const seq = 1000 * this.ipId;
    const ackSeq = 7000 * this.ipId;
    const tcp = (flags: Array<'SYN' | 'ACK' | 'PSH'>, s: number, a: number) => (sport: number, dport: number): L4Spec => ({ kind: 'tcp', sport, dport, seq: s, ack: a, flags });
    this.forwarded(client, frontend, nodeSource, nodeBackend, tcp(['SYN'], seq, 0), new Uint8Array(0), request);
    // The backend's answer comes back to where the node sent the flow from, and leaves un-NATed to the client.
    const replyCounts = choice === 'agrees' && !masquerades ? 'reproduced' : undefined;
    this.forwarded(nodeBackend, nodeSource, frontend, client, tcp(['SYN', 'ACK'], ackSeq, seq + 1), new Uint8Array(0), replyCounts);
    const data = new TextEncoder().encode(`GET /${this.ipId} HTTP/1.1\r\n`);
    this.forwarded(client, frontend, nodeSource, nodeBackend, tcp(['ACK', 'PSH'], seq + 1, ackSeq + 1), data, request);
  }

  /** A DNS query and its answer, from a pod to the cluster IP. */
  udpFlow(client: Endpoint, frontend: Endpoint, choice: 'agrees' | 'other-backend'): void {
    const ours = choose({ clientIp: client.ip, clientPort: client.port, vip: frontend.ip, vport: frontend.port, protocol: 'UDP' } as never)!;
    const nodeBackend = this.nodeBackend(ours, choice);
    const udp = (sport: number, dport: number): L4Spec => ({ kind: 'udp', sport, dport });
    this.forwarded(client, frontend, client, nodeBackend, udp, new Uint8Array([this.ipId >> 8, this.ipId & 0xff, 1, 0, 0, 1]), this.requestOutcome(choice));
    this.forwarded(nodeBackend, client, frontend, client, udp, new Uint8Array([this.ipId >> 8, this.ipId & 0xff, 0x81, 0x80]),
      choice === 'agrees' ? 'reproduced' : undefined);
  }

  /** A pod talking to a pod elsewhere: forwarded untouched, no Service's; its copy compares with nothing. */
  podToPod(): void {
    const tcp = (sport: number, dport: number): L4Spec => ({ kind: 'tcp', sport, dport, seq: this.ipId, flags: ['SYN'] });
    this.forwarded({ ip: '10.244.0.7', port: 33000 }, { ip: '10.244.1.9', port: 9000 }, { ip: '10.244.0.7', port: 33000 }, { ip: '10.244.1.9', port: 9000 }, tcp, new Uint8Array(0));
  }

  /** The loopback device shows the node's local packet going out and coming back in. */
  loopback(): void {
    const eth = this.frame({ ip: '127.0.0.1', port: 41000 }, { ip: '127.0.0.1', port: 10250 }, { kind: 'tcp', sport: 41000, dport: 10250, flags: ['SYN'] }, this.ipId++, new Uint8Array(0), 64);
    this.push({ eth, way: 'out', loopback: true });
    this.push({ eth, way: 'in', loopback: true });
  }

  /** A bridge port's copy of a frame for the bridge's own address (promiscuous port): seen before the bridge takes it. */
  bridgePortCopy(client: Endpoint, frontend: Endpoint): void {
    const eth = this.frame(client, frontend, { kind: 'tcp', sport: client.port, dport: frontend.port, seq: 5, flags: ['SYN'] }, this.ipId++, new Uint8Array(0), 64);
    this.push({ eth, way: 'other-host' });
  }

  private nodeBackend(ours: Endpoint, choice: NodeChoice): Endpoint {
    if (choice === 'other-backend') return { ip: BACKENDS.find((b) => b !== ours.ip)!, port: ours.port };
    if (choice === 'not-a-backend') return { ip: '10.244.9.9', port: ours.port };
    return ours;
  }

  private requestOutcome(choice: NodeChoice): keyof Expected {
    return choice === 'agrees' ? 'reproduced' : choice === 'other-backend' ? 'otherBackend' : 'differ';
  }
}

function buildCapture(): NodeCapture {
  const c = new NodeCapture();
  const http = { ip: VIP, port: 80 };
  const dns = { ip: VIP, port: 53 };
  const nodePort = { ip: NODE_IP, port: NODE_PORT };
  c.loopback();
  for (let i = 0; i < 8; i++) c.tcpFlow({ ip: '10.244.0.20', port: 50000 + i }, http, 'agrees');
  c.sentTwice();
  c.bridgePortCopy({ ip: '10.244.0.21', port: 51000 }, http);
  for (let i = 0; i < 4; i++) c.udpFlow({ ip: '10.244.0.21', port: 51000 + i }, dns, i < 3 ? 'agrees' : 'other-backend');
  // From outside to the NodePort: both masquerade (the node from its own ports), which agrees.
  for (let i = 0; i < 4; i++) c.tcpFlow({ ip: '172.16.0.5', port: 52000 + i }, nodePort, 'agrees', true);
  for (let i = 0; i < 4; i++) c.tcpFlow({ ip: '10.244.0.22', port: 53000 + i }, http, 'other-backend');
  c.podToPod();
  for (let i = 0; i < 2; i++) c.tcpFlow({ ip: '10.244.0.23', port: 54000 + i }, http, 'masquerades');
  for (let i = 0; i < 2; i++) c.tcpFlow({ ip: '10.244.0.24', port: 55000 + i }, http, 'not-a-backend');
  c.tcpFlow({ ip: '10.244.0.25', port: 56000 }, http, 'untouched');
  c.loopback();
  return c;
}

const capture = buildCapture();
const T0 = 1_800_000_000;
/** Packet k's time: 1 ms apart, whole microseconds, so that every format holds it exactly. */
const timeOf = (k: number) => ({ tsSec: T0 + Math.floor(k / 1000), tsNsec: (k % 1000) * 1_000_000 });

const PACKET_TYPE = { in: 0, 'other-host': 3, out: 4 } as const;
const ARPHRD_LOOPBACK = 772;

function cooked(f: Captured, linktype: number): Uint8Array {
  return toLinkType(f.eth, linktype, false, { packetType: PACKET_TYPE[f.way], deviceType: f.loopback ? ARPHRD_LOOPBACK : 1 });
}

/** A classic pcap of `frames`, each at its time in the whole capture. */
function writePcap(name: string, linktype: number, frames: Captured[], framing: (f: Captured) => Uint8Array): string {
  const path = join(tmp, name);
  const w = createPcapWriter(path, { linktype });
  for (const f of frames) {
    const { tsSec, tsNsec } = timeOf(f.at);
    w.write(tsSec, tsNsec, framing(f));
  }
  w.close();
  return path;
}

const ethernet = (f: Captured) => f.eth;

/** The arrivals svcpath decides, alone, on Ethernet: what the cooked captures' arrivals must be decided as. */
const arrivals = capture.frames.filter((f) => f.way === 'in' && !f.loopback);
/** What dumpcap on the node's Ethernet interfaces gives: no loopback device, no promiscuous bridge port. */
const dumpcapFrames = () => capture.frames.filter((f) => !f.loopback && f.way !== 'other-host');

/** A pcapng option: code, length, value padded to 4 bytes. */
function option(code: number, value: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16LE(code, 0);
  header.writeUInt16LE(value.length, 2);
  return Buffer.concat([header, value, Buffer.alloc(-value.length & 3)]);
}

const endOfOptions = Buffer.alloc(4);
const EPB_FLAGS = 2;

/** epb_flags with `bits` in its direction bits (1 inbound, 2 outbound), and a reception type (unicast) above them as dumpcap may set. */
function flagsOption(bits: number): Buffer {
  const value = Buffer.alloc(4);
  value.writeUInt32LE((1 << 2) | bits, 0);
  return Buffer.concat([option(EPB_FLAGS, value), endOfOptions]);
}

const epbFlags = (f: Captured) => flagsOption(f.way === 'in' ? 1 : 2);

/**
 * pcapng as dumpcap writes it, assembled here byte by byte: a section header
 * with the writer's options, an Ethernet interface with if_name and
 * if_tsresol, one Enhanced Packet Block per frame with its epb_flags
 * direction (or the options `options` gives for it), and interface statistics at the end.
 */
function dumpcapPcapng(name: string, frames: Captured[], options: (f: Captured) => Buffer = epbFlags): string {
  const parts: Buffer[] = [];
  const block = (type: number, body: Buffer) => {
    const length = 12 + body.length;
    const head = Buffer.alloc(8);
    head.writeUInt32LE(type, 0);
    head.writeUInt32LE(length, 4);
    const tail = Buffer.alloc(4);
    tail.writeUInt32LE(length, 0);
    parts.push(head, body, tail);
  };
  const shb = Buffer.alloc(16);
  shb.writeUInt32LE(0x1a2b3c4d, 0);
  shb.writeUInt16LE(1, 4);
  shb.writeBigInt64LE(-1n, 8);
  block(0x0a0d0d0a, Buffer.concat([shb, option(2, Buffer.from('x86_64')), option(3, Buffer.from('Linux 6.8.0')),
    option(4, Buffer.from('Dumpcap (Wireshark) 4.2.2')), endOfOptions]));
  const idb = Buffer.alloc(8);
  idb.writeUInt16LE(LINKTYPES.ETHERNET, 0);
  idb.writeUInt32LE(262144, 4);
  block(1, Buffer.concat([idb, option(2, Buffer.from('eth0')), option(9, Buffer.from([6])), endOfOptions]));
  for (const f of frames) {
    const data = f.eth;
    const { tsSec, tsNsec } = timeOf(f.at);
    const micros = BigInt(tsSec) * 1_000_000n + BigInt(tsNsec / 1000);
    const epb = Buffer.alloc(20);
    epb.writeUInt32LE(0, 0);
    epb.writeUInt32LE(Number(micros >> 32n), 4);
    epb.writeUInt32LE(Number(micros & 0xffffffffn), 8);
    epb.writeUInt32LE(data.length, 12);
    epb.writeUInt32LE(data.length, 16);
    block(6, Buffer.concat([epb, Buffer.from(data), Buffer.alloc(-data.length & 3), options(f)]));
  }
  const isb = Buffer.alloc(12);
  block(5, Buffer.concat([isb, endOfOptions]));
  const path = join(tmp, name);
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

interface VerdictLine {
  n: number;
  verdict: string;
  reason: string;
  service: string | null;
  backend: string | null;
  snat: boolean;
}

async function replayCli(trace: string, name: string, extra: string[] = []) {
  const verdicts = join(tmp, `${name}.jsonl`);
  const summary = join(tmp, `${name}.json`);
  const out = join(tmp, `${name}.out.${trace.endsWith('.pcapng') ? 'pcapng' : 'pcap'}`);
  const r = await cli(['replay', trace, ...ARGS, '--verdicts', verdicts, '--summary', summary, '--out', out, ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const reader = openCapture(out);
  const output = Array.from(reader.records(), (rec) => ({ linktype: rec.linktype, data: rec.data.slice() }));
  reader.close();
  return {
    stdout: r.stdout,
    lines: readFileSync(verdicts, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as VerdictLine),
    verdictBytes: readFileSync(verdicts, 'utf8'),
    summary: JSON.parse(readFileSync(summary, 'utf8')),
    output,
    outputBytes: readFileSync(out),
  };
}

const withoutN = ({ n: _n, ...rest }: VerdictLine) => rest;
const OUTGOING = { verdict: 'PASS', reason: 'OUTGOING', service: null, backend: null, snat: false };
const outgoingFrames = capture.frames.filter((f) => f.way === 'out' || f.loopback).length;

describe('captures with the node\'s own copies', () => {
  const reference = replayCli(writePcap('arrivals.pcap', LINKTYPES.ETHERNET, arrivals, ethernet), 'arrivals');

  it('the capture was built as meant: arrivals decided as svcpath decides them by its Maglev table', async () => {
    const { lines } = await reference;
    expect(lines.length).toBe(arrivals.length);
    // Every SYN to the frontends goes to the backend the Maglev table names, computed outside the datapath.
    const byClient = new Map<string, string>();
    for (const f of arrivals) {
      const ip = f.eth.subarray(14);
      const dport = (ip[22] << 8) | ip[23];
      if (ip[9] !== 6 || (ip[33] & 0x02) === 0 || (ip[33] & 0x10) !== 0 || (dport !== 80 && dport !== NODE_PORT)) continue;
      const client = { clientIp: ip.subarray(12, 16).join('.'), clientPort: (ip[20] << 8) | ip[21], vip: ip.subarray(16, 20).join('.'), vport: dport, protocol: 'TCP' };
      byClient.set(`${client.clientIp}:${client.clientPort}`, `${choose(client as never)!.ip}:8080`);
    }
    const syns = lines.filter((l, i) => byClient.has(sourceOf(arrivals[i].eth)) && l.reason === 'SERVICE');
    expect(syns.length).toBeGreaterThanOrEqual(byClient.size);
    lines.forEach((l, i) => {
      const want = byClient.get(sourceOf(arrivals[i].eth));
      if (want && l.reason === 'SERVICE') expect(l.backend, `arrival ${i + 1}`).toBe(want);
    });
    expect(lines.filter((l) => l.reason === 'REPLY').length).toBe(8 + 3);
    expect(lines.filter((l) => l.reason === 'SERVICE' && l.snat).length).toBe(4 * 2);
  });

  it.each([
    ['Linux cooked v1', LINKTYPES.LINUX_SLL],
    ['Linux cooked v2', LINKTYPES.LINUX_SLL2],
  ])('%s: the node\'s copies are PASS OUTGOING, arrivals decided as without them, and the node\'s rewrites compared', async (name, linktype) => {
    const trace = writePcap(`cooked-${linktype}.pcap`, linktype, capture.frames, (f) => cooked(f, linktype));
    const got = await replayCli(trace, `cooked-${linktype}`);
    const want = await reference;
    expect(got.lines.length).toBe(capture.frames.length);
    const arrived: VerdictLine[] = [];
    capture.frames.forEach((f, i) => {
      const line = got.lines[i];
      if (f.way === 'out' || f.loopback) expect(withoutN(line), `frame ${i + 1}`).toEqual(OUTGOING);
      else if (f.way === 'other-host') expect(withoutN(line), `frame ${i + 1}`).toEqual({ ...OUTGOING, reason: 'OTHER_HOST' });
      else arrived.push(line);
    });
    expect(arrived.map(withoutN)).toEqual(want.lines.map(withoutN));
    // The same rewrites, each frame keeping its cooked header.
    const header = linktype === LINKTYPES.LINUX_SLL ? 16 : 20;
    expect(got.output.map((o) => Buffer.from(o.data.subarray(header)).toString('hex')))
      .toEqual(want.output.map((o) => Buffer.from(o.data.subarray(14)).toString('hex')));
    expect(got.output.every((o) => o.linktype === linktype)).toBe(true);
    const { reproduced, otherBackend, differ } = capture.expected;
    expect(got.summary.conformance).toEqual({ outgoing: outgoingFrames, nodeRewrites: reproduced + otherBackend + differ, reproduced, otherBackend, differ });
    expect(got.summary.reasons.OUTGOING).toBe(outgoingFrames);
    expect(got.stdout).toContain(`Node's own rewrites in the capture: ${reproduced + otherBackend + differ} of the ${outgoingFrames} frames it sent`);
    expect(got.stdout).toContain(`svcpath reproduced ${reproduced} (same backend and rewrite), ${otherBackend} went to another backend`);
    expect(want.summary.conformance).toBeUndefined();
  });

  it('the counts are what the capture was built to hold', () => {
    // 8 pod flows (3 requests and replies each), 3 DNS exchanges, 4 NodePort flows (2 requests each) agree;
    // 1 DNS query and 4 flows' 2 requests went to another backend; 5 flows' 2 requests differ.
    expect(capture.expected).toEqual({ reproduced: 8 * 3 + 3 * 2 + 4 * 2, otherBackend: 1 + 4 * 2, differ: 5 * 2 });
  });

  it('a dumpcap pcapng on Ethernet: epb_flags outbound frames are PASS OUTGOING, compared as the cooked ones', async () => {
    const packets = dumpcapFrames();
    const got = await replayCli(dumpcapPcapng('dumpcap.pcapng', packets), 'dumpcap');
    const want = await reference;
    const arrived = got.lines.filter((_, i) => packets[i].way === 'in');
    got.lines.forEach((l, i) => {
      if (packets[i].way === 'out') expect(withoutN(l), `frame ${i + 1}`).toEqual(OUTGOING);
    });
    expect(arrived.map(withoutN)).toEqual(want.lines.map(withoutN));
    expect(got.output.map((o) => Buffer.from(o.data).toString('hex'))).toEqual(want.output.map((o) => Buffer.from(o.data).toString('hex')));
    const { reproduced, otherBackend, differ } = capture.expected;
    const outgoing = packets.filter((p) => p.way === 'out').length;
    expect(got.summary.conformance).toEqual({ outgoing, nodeRewrites: reproduced + otherBackend + differ, reproduced, otherBackend, differ });
  });

  it('without direction (an Ethernet pcap of every copy) nothing is OUTGOING and nothing is compared', async () => {
    const got = await replayCli(writePcap('both.pcap', LINKTYPES.ETHERNET, capture.frames.filter((f) => !f.loopback), ethernet), 'both');
    expect(got.summary.reasons.OUTGOING).toBeUndefined();
    expect(got.summary.conformance).toBeUndefined();
  });
});

/** "ip:port" of an Ethernet frame's IPv4 source. */
function sourceOf(eth: Uint8Array): string {
  const ip = eth.subarray(14);
  return `${ip.subarray(12, 16).join('.')}:${(ip[20] << 8) | ip[21]}`;
}

describe('pcapng epb_flags', () => {
  const first = capture.frames.findIndex((f) => !f.loopback);
  const two = capture.frames.slice(first, first + 2); // an arrival and the node's copy of it
  const third = capture.frames[first + 2];

  it('records carry the direction; a block without the option has none', () => {
    const path = dumpcapPcapng('flags.pcapng', [...two, third], (f) => (f === third ? endOfOptions : epbFlags(f)));
    const reader = openCapture(path);
    expect([...reader.records()].map((r) => r.direction)).toEqual(['inbound', 'outbound', undefined]);
    reader.close();
  });

  it.each([
    ['direction bits 3', flagsOption(3), 'epb_flags: direction bits are 3, which means nothing (0 unknown, 1 inbound, 2 outbound)'],
    ['a 2-byte epb_flags', Buffer.concat([option(EPB_FLAGS, Buffer.alloc(2)), endOfOptions]), 'epb_flags: option length is 2, not 4'],
    ['an option past the block', (() => {
      const header = Buffer.alloc(4);
      header.writeUInt16LE(EPB_FLAGS, 0);
      header.writeUInt16LE(64, 2);
      return Buffer.concat([header, Buffer.alloc(4)]);
    })(), 'options: option 2 claims 64 bytes, the block has 4 left'],
  ])('%s stops the replay at its block, naming it, after what came before', async (_name, bad, message) => {
    const path = dumpcapPcapng(`bad-${bad.toString('hex')}.pcapng`, two, (f) => (f.way === 'out' ? bad : epbFlags(f)));
    const verdicts = join(tmp, `bad-${bad.toString('hex')}.jsonl`);
    const r = await cli(['replay', path, ...ARGS, '--verdicts', verdicts]);
    expect(r.code).toBe(1);
    // The section header, the interface and the arrival are blocks 1 to 3: the node's copy is block 4.
    expect(r.stderr).toMatch(new RegExp(`^svcpath: ${path}: block 4 \\(offset \\d+\\): ${message.replace(/[()]/g, '\\$&')}$`));
    expect(readFileSync(verdicts, 'utf8').trim().split('\n').map((l) => JSON.parse(l).reason)).toEqual(['SERVICE']);
  });
});

describe('the same decisions and counts by every path', () => {
  const sll2 = writePcap('paths-sll2.pcap', LINKTYPES.LINUX_SLL2, capture.frames, (f) => cooked(f, LINKTYPES.LINUX_SLL2));

  /** A replay through the API; `reader` forces the JavaScript reader (tracing takes it). */
  async function run(file: string, name: string, reader: boolean) {
    const dp = await loadProgram(compiled);
    const decisions: PacketDecision[] = [];
    const out = join(tmp, `${name}-${reader}.pcap`);
    const verdicts = join(tmp, `${name}-${reader}.jsonl`);
    const opts: ReplayOptions = { out, verdicts, onDecision: (d) => decisions.push(d) };
    if (reader) opts.trace = { select: () => false, onPacket: () => {} };
    const result = await replay(file, compiled, dp, opts);
    return { result, decisions, out: readFileSync(out), verdicts: readFileSync(verdicts, 'utf8'), conformance: readCounters(dp, compiled).conformance };
  }

  it('the node\'s copies change no state: afterwards the maps hold what the arrivals alone leave, byte for byte', async () => {
    const stateAfter = async (file: string) => {
      const dp = await loadProgram(compiled);
      await replay(file, compiled, dp);
      const entries = (name: 'ct4' | 'snat4' | 'lb4Affinity' | 'frag4') => {
        const m = dp.map(name);
        return [...m.keysRaw()].map((k) => Buffer.from(k).toString('hex') + ' ' + Buffer.from(m.lookupRaw(k)!).toString('hex')).sort();
      };
      return { ct4: entries('ct4'), snat4: entries('snat4'), lb4Affinity: entries('lb4Affinity'), frag4: entries('frag4') };
    };
    const withCopies = await stateAfter(sll2);
    expect(withCopies).toEqual(await stateAfter(writePcap('state-arrivals.pcap', LINKTYPES.ETHERNET, arrivals, ethernet)));
    expect(withCopies.ct4.length).toBe(2 * 25); // every flow of the capture, both directions
    expect(withCopies.snat4.length).toBe(4);
  });

  it('the zero-copy walker and the JavaScript reader', async () => {
    const zeroCopy = await run(sll2, 'sll2', false);
    const jsReader = await run(sll2, 'sll2', true);
    expect(zeroCopy.decisions).toEqual(jsReader.decisions);
    expect(zeroCopy.verdicts).toBe(jsReader.verdicts);
    expect(Buffer.compare(zeroCopy.out, jsReader.out)).toBe(0);
    const { reproduced, otherBackend, differ } = capture.expected;
    expect(zeroCopy.conformance).toEqual([reproduced, otherBackend, differ]);
    expect(jsReader.conformance).toEqual(zeroCopy.conformance);
  });

  it.each([
    ['Linux cooked v2 pcap (walked in the datapath)', () => sll2],
    ['dumpcap pcapng (the JavaScript reader)', () => dumpcapPcapng('workers.pcapng', dumpcapFrames())],
  ])('--workers 2 as one worker: %s', async (name, file) => {
    const trace = file();
    const single = await replayCli(trace, `single-${name.length}`);
    const sharded = await replayCli(trace, `sharded-${name.length}`, ['--workers', '2']);
    expect(sharded.verdictBytes).toBe(single.verdictBytes);
    expect(Buffer.compare(sharded.outputBytes, single.outputBytes)).toBe(0);
    const { notes: _a, ...one } = single.summary;
    const { notes: _b, ...two } = sharded.summary;
    expect(two).toEqual(one);
    expect(two.conformance.nodeRewrites).toBe(capture.expected.reproduced + capture.expected.otherBackend + capture.expected.differ);
  });

  it('the reference model decides every frame as the datapath does', async () => {
    const dp = await loadProgram(compiled);
    const model = new ReferenceDatapath(compiled);
    const batch = dp.createBatch(1, Batch.footprint(2048));
    for (const linktype of [LINKTYPES.LINUX_SLL, LINKTYPES.LINUX_SLL2]) {
      capture.frames.forEach((f, k) => {
        const frame = cooked(f, linktype);
        const { tsSec, tsNsec } = timeOf(k + (linktype === LINKTYPES.LINUX_SLL ? 0 : 100_000));
        batch.clear();
        batch.add(frame, frame.length, tsSec, tsNsec, linktype);
        batch.run();
        const m = model.process(frame, { wireLen: frame.length, tsSec, tsNsec, linktype });
        expect([VERDICTS[batch.verdict(0)], REASONS[batch.reason(0)], batch.serviceId(0), batch.backendId(0), (batch.flags(0) & DESC_F_SNAT) !== 0], `frame ${k + 1}`)
          .toEqual([m.verdict, m.reason, m.serviceId, m.backendId, m.snat]);
        expect(Buffer.from(batch.frame(0)).toString('hex'), `frame ${k + 1}`).toBe(Buffer.from(m.out).toString('hex'));
      });
    }
    // An Ethernet frame the capture says was sent: OUTGOING on both sides, whatever it is.
    const sent = capture.frames.find((f) => f.way === 'out')!.eth;
    batch.clear();
    batch.add(sent, sent.length, T0 + 500, 0, LINKTYPES.ETHERNET, false, 'outbound');
    batch.run();
    expect(REASONS[batch.reason(0)]).toBe('OUTGOING');
    expect(model.process(sent, { wireLen: sent.length, tsSec: T0 + 500, tsNsec: 0, linktype: LINKTYPES.ETHERNET, direction: 'outbound' }).reason).toBe('OUTGOING');
  });
});
