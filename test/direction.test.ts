// Captures taken on a node, as `tcpdump -i any` (Linux cooked v1 and v2) and
// dumpcap (pcapng with epb_flags) make them: every forwarded packet twice, as
// it arrived and as the node sent it on after its own NAT, which masquerades
// with an interface's address and a random port. The copies the node sent
// are PASS OUTGOING and make no flow; they teach svcpath the tuples the node
// masqueraded flows to, so that the backends' replies to those tuples are
// the flows' replies. The arrivals are decided as an Ethernet capture of
// them alone is, with those replies addressed to svcpath's own tuples
// instead; the node's copies are compared with svcpath's rewrites, and the
// tuples counted, as computed here from how each copy was built. The
// zero-copy walker and the JavaScript reader, one worker and two, and the
// reference model all agree on these captures; and on a real one, taken on
// a node made of network namespaces (test/fixtures/node-masquerade).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { compile } from '../control/compile/compiler.js';
import { Batch } from '../control/runtime/datapath.js';
import {
  CT4_TUPLE,
  DESC_F_SNAT,
  LINKTYPES,
  NODE_MASQ,
  NODE_MASQ_KEY,
  REASONS,
  SNAT4_ORIGIN,
  VERDICTS,
  decode,
} from '../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { loadProgram } from '../control/runtime/loader.js';
import { replay, type PacketDecision, type ReplayOptions } from '../control/runtime/replay.js';
import { readCounters } from '../control/runtime/summary.js';
import { clientHash, flowHash } from '../model/flow-hash.js';
import { ReferenceDatapath } from '../model/reference-datapath.js';
import { buildFrame, decodeCaptured, decodeFrame, toLinkType, verifyCapturedChecksums, type L4Spec } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { maglevChooser } from '../traces/synth/predict.js';
import { cli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-direction-'));
const NODE_IP = '192.168.0.10';
const VIP = '10.96.0.10';
const NODE_PORT = 30080;
/** svcpath masquerades from these ports; the node from any port, at random. */
const SNAT_PORTS = '40000-40999';
const CLUSTER = join(tmp, 'cluster.yaml');
writeFileSync(
  CLUSTER,
  `apiVersion: v1
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
`,
);
const ARGS = ['--cluster', CLUSTER, '--node', 'node-a', '--snat-port-range', SNAT_PORTS];
const BACKENDS = ['10.244.1.5', '10.244.2.5', '10.244.3.5'];

const state = loadClusterState([CLUSTER]);
const compiled = compile(state, resolveServices(state).services, {
  node: 'node-a',
  seed: 0,
  maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
  snatPortRange: [40000, 40999],
});
/** svcpath's backend for a new flow, computed outside the datapath. */
const choose = maglevChooser(compiled, 0);

/** One frame of the capture, Ethernet-framed: which way it went, on which device, and when (its place in the capture). */
interface Captured {
  eth: Uint8Array;
  way: 'in' | 'out' | 'other-host';
  loopback?: boolean;
  at: number;
  /**
   * A reply to the node's masquerade tuple of a flow svcpath masqueraded,
   * addressed instead to svcpath's own tuple of the flow: how svcpath must
   * see it, for the capture of the arrivals alone to decide it alike.
   */
  svcpathView?: Uint8Array;
}

/** What the capture was built to hold: the node's copies of rewritten packets, by how they compare, and the tuples they teach. */
interface Expected {
  reproduced: number;
  otherBackend: number;
  /** Differ but for masquerading, */
  differ: number;
  /** and differ only in that the node masqueraded a request svcpath did not. */
  differMasquerade: number;
  learnedTuples: number;
  takenTuples: number;
}

interface Endpoint {
  ip: string;
  port: number;
}

const text = (e: Endpoint) => `${e.ip}:${e.port}`;

/**
 * How the node treats a flow, against what svcpath does: it agrees; it picks
 * another backend; it masquerades a pod's flow, which svcpath does not; it
 * sends the flow to an address that is no backend; it sends it on untouched,
 * to the frontend (a Service its kube-proxy has not synced yet).
 */
type NodeChoice = 'agrees' | 'other-backend' | 'masquerades' | 'not-a-backend' | 'untouched';

/** A flow of the capture: what the client sent to, where the node sent it from and to, and what svcpath does with it. */
interface Flow {
  protocol: 'TCP' | 'UDP';
  client: Endpoint;
  frontend: Endpoint;
  nodeSource: Endpoint;
  nodeBackend: Endpoint;
  choice: NodeChoice;
  /** svcpath's backend, by its Maglev table. */
  ours: Endpoint;
  /** svcpath's masquerade port, when it masquerades the flow (README: Masquerading), computed here. */
  svcpathPort?: number;
  /** The node's masquerade port svcpath's NAT entry of the flow has learned; 0 none. */
  nodePort: number;
  closing: boolean;
}

/** svcpath's masquerade ports: 40000-40999, two classes of 500 (README: Masquerading). */
const SNAT_MIN = 40000;
const SNAT_MAX = 40999;
const SNAT_CLASSES = 2;
/** The salt of the masquerade port hash (datapath/snat.ts), so that it does not follow the Maglev hash. */
const PORT_HASH_SALT = 0x9e3779b9;
const bytesOf = (ip: string) => Uint8Array.from(ip.split('.').map(Number));
const IPPROTO_OF = { TCP: 6, UDP: 17 } as const;

/**
 * svcpath's masquerade port for a new flow, from the README: of the client's
 * class (its client hash modulo the classes), from the seeded flow hash of
 * (client, backend, ports, protocol), past the ports a live flow to the same
 * backend holds (`taken`, "backend port").
 */
function svcpathPort(client: Endpoint, backend: Endpoint, protocol: 'TCP' | 'UDP', taken: Set<string>): number {
  const first = SNAT_MIN + (clientHash(bytesOf(client.ip)) % SNAT_CLASSES);
  const size = Math.floor((SNAT_MAX - first) / SNAT_CLASSES) + 1;
  const start =
    flowHash((0 ^ PORT_HASH_SALT) >>> 0, bytesOf(client.ip), bytesOf(backend.ip), client.port, backend.port, IPPROTO_OF[protocol]) % size;
  for (let i = 0; i < size; i++) {
    const port = first + ((start + i) % size) * SNAT_CLASSES;
    if (!taken.has(`${text(backend)} ${port}`)) return port;
  }
  throw new Error('no svcpath masquerade port left in the test');
}

/** A tuple the node masqueraded a flow to, the flow svcpath learns it for (the first that showed it, or the one after a closing one). */
interface Tuple {
  flow: Flow;
  closing: boolean;
}

/** A reply to a node's masquerade tuple svcpath decides as its flow's: back to the client from the frontend it used. */
interface ExpectedReply {
  at: number;
  client: Endpoint;
  frontend: Endpoint;
  backend: Endpoint;
}

/**
 * Builds the capture a node running kube-proxy would give, keeping count of
 * what each copy should compare as and of the node's masquerade tuples
 * svcpath should learn from the copies (README, Captures): the node
 * masquerades with the address of the interface the packet leaves by (its
 * overlay's, 10.244.0.0, or its own) and a random port, as MASQUERADE
 * fully-random does; the backend replies to that tuple.
 */
class NodeCapture {
  readonly frames: Captured[] = [];
  readonly expected: Expected = { reproduced: 0, otherBackend: 0, differ: 0, differMasquerade: 0, learnedTuples: 0, takenTuples: 0 };
  /** The replies svcpath decides as a flow's, by the tuple the node masqueraded it to. */
  readonly replies: ExpectedReply[] = [];
  /** Frames to a node's masquerade tuple that are no reply of svcpath's flows: PASS NO_SERVICE. */
  readonly notReplies: number[] = [];
  /** The node's masquerade tuples, "backend > node proto": what svcpath's node_masq map must hold at the end. */
  readonly tuples = new Map<string, Tuple>();
  /** svcpath's flows, by client and frontend. */
  readonly flows = new Map<string, Flow>();
  private readonly svcpathPorts = new Set<string>();
  private readonly nodePorts = new Set<string>();
  private ipId = 100;
  private random = 0x5eed;
  private nodeAddress = 0;

  private push(f: Omit<Captured, 'at'>): number {
    this.frames.push({ ...f, at: this.frames.length });
    return this.frames.length - 1;
  }

  private frame(from: Endpoint, to: Endpoint, l4: L4Spec, id: number, payload: Uint8Array, ttl: number): Uint8Array {
    return buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: from.ip, dst: to.ip, id, ttl, dontFragment: true },
      l4,
      payload,
    }).slice();
  }

  /** A tuple the node masquerades a new flow to: the next interface address in turn, a random port not in use. */
  private masqueradeTuple(avoid?: number): Endpoint {
    const ip = ['10.244.0.0', NODE_IP][this.nodeAddress++ % 2];
    for (;;) {
      this.random = (Math.imul(this.random, 1103515245) + 12345) >>> 0;
      const port = 1024 + ((this.random >>> 8) % (65536 - 1024));
      if (port === avoid || port === NODE_PORT || this.nodePorts.has(`${ip}:${port}`)) continue;
      this.nodePorts.add(`${ip}:${port}`);
      return { ip, port };
    }
  }

  /**
   * A packet that arrives and that the node sends on: the arrival from `from`
   * to `to`, then the node's copy from `nodeFrom` to `nodeTo`, with what NAT
   * keeps (identification, TCP numbers, payload) and the TTL one lower.
   */
  private forwarded(
    from: Endpoint,
    to: Endpoint,
    nodeFrom: Endpoint,
    nodeTo: Endpoint,
    l4: (sport: number, dport: number) => L4Spec,
    payload: Uint8Array,
    compares?: keyof Expected,
    svcpathTo?: Endpoint,
  ): number {
    const id = this.ipId++;
    const at = this.push({
      eth: this.frame(from, to, l4(from.port, to.port), id, payload, 64),
      way: 'in',
      svcpathView: svcpathTo && this.frame(from, svcpathTo, l4(from.port, svcpathTo.port), id, payload, 64),
    });
    this.push({ eth: this.frame(nodeFrom, nodeTo, l4(nodeFrom.port, nodeTo.port), id, payload, 63), way: 'out' });
    if (compares) this.expected[compares]++;
    return at;
  }

  /** The node sends its last copy out once more (from a bridge, then from the bridge's port): it compares once. */
  sentTwice(): void {
    const last = this.frames[this.frames.length - 1];
    this.push({ eth: last.eth, way: 'out' });
  }

  /** A new flow: svcpath's backend and masquerade port for it, and what the node does with it. */
  private flow(
    protocol: 'TCP' | 'UDP',
    client: Endpoint,
    frontend: Endpoint,
    choice: NodeChoice,
    svcpathMasquerades: boolean,
    nodeSource?: Endpoint,
  ): Flow {
    const ours = choose({ clientIp: client.ip, clientPort: client.port, vip: frontend.ip, vport: frontend.port, protocol } as never)!;
    const nodeBackend = choice === 'untouched' ? { ...frontend } : this.nodeBackend(ours, choice);
    const port = svcpathMasquerades ? svcpathPort(client, ours, protocol, this.svcpathPorts) : undefined;
    if (port !== undefined) this.svcpathPorts.add(`${text(ours)} ${port}`);
    const masquerades = svcpathMasquerades || choice === 'masquerades';
    const flow: Flow = {
      protocol,
      client,
      frontend,
      nodeBackend,
      choice,
      ours,
      svcpathPort: port,
      nodePort: 0,
      closing: false,
      nodeSource: nodeSource ?? (masquerades ? this.masqueradeTuple(port) : client),
    };
    this.flows.set(`${text(client)} ${text(frontend)}`, flow);
    return flow;
  }

  /**
   * The node's copy of a request of `flow` (`fin`: one that ends it): when
   * the node masqueraded it to a backend, svcpath learns the tuple for the
   * flow, unless another flow that is not closing holds it; a flow svcpath
   * masqueraded to that same backend takes the node's port as its current
   * one, and a tuple newly learned for it is counted.
   */
  private learn(flow: Flow, fin: boolean): void {
    const masqueradedByNode = text(flow.nodeSource) !== text(flow.client);
    if (!masqueradedByNode || !BACKENDS.includes(flow.nodeBackend.ip) || flow.nodeBackend.port !== flow.ours.port) return;
    const key = `${text(flow.nodeBackend)} > ${text(flow.nodeSource)} ${IPPROTO_OF[flow.protocol]}`;
    const held = this.tuples.get(key);
    const usable = flow.svcpathPort !== undefined && text(flow.ours) === text(flow.nodeBackend);
    if (held && held.flow !== flow && !held.closing) {
      if (!usable) return;
      if (flow.nodePort !== flow.nodeSource.port) this.expected.takenTuples++; // once for the flow
      flow.nodePort = flow.nodeSource.port;
      return;
    }
    if (!held || held.flow !== flow) {
      this.tuples.set(key, { flow, closing: fin });
      if (usable) this.expected.learnedTuples++;
    } else if (fin) {
      held.closing = true;
    }
    if (usable) flow.nodePort = flow.nodeSource.port;
  }

  /** A request of `flow`, arriving and sent on by the node. */
  private request(flow: Flow, l4: (sport: number, dport: number) => L4Spec, payload: Uint8Array, fin = false): void {
    this.forwarded(flow.client, flow.frontend, flow.nodeSource, flow.nodeBackend, l4, payload, this.requestOutcome(flow.choice));
    this.learn(flow, fin);
  }

  /**
   * The backend's answer to a request of `flow`: it comes to where the node
   * sent the flow from, and leaves un-NATed to the client. svcpath decides it
   * as the reply of the flow that holds the node's tuple, when svcpath
   * masqueraded that flow to the backend it comes from and the tuple is the
   * one it learned last; as a reply of its own when the node did not
   * masquerade and svcpath sent the flow to that backend; else it is no reply.
   */
  private reply(flow: Flow, l4: (sport: number, dport: number) => L4Spec, payload: Uint8Array, fin = false): void {
    if (text(flow.nodeSource) === text(flow.client)) {
      this.forwarded(
        flow.nodeBackend,
        flow.nodeSource,
        flow.frontend,
        flow.client,
        l4,
        payload,
        flow.choice === 'agrees' ? 'reproduced' : undefined,
      );
      return;
    }
    const held = this.tuples.get(`${text(flow.nodeBackend)} > ${text(flow.nodeSource)} ${IPPROTO_OF[flow.protocol]}`);
    const owner = held?.flow;
    const isReply =
      owner?.svcpathPort !== undefined && text(owner.ours) === text(flow.nodeBackend) && owner.nodePort === flow.nodeSource.port;
    if (held && fin) held.closing = true;
    if (!isReply) {
      this.notReplies.push(this.forwarded(flow.nodeBackend, flow.nodeSource, flow.frontend, flow.client, l4, payload));
      return;
    }
    const at = this.forwarded(
      flow.nodeBackend,
      flow.nodeSource,
      flow.frontend,
      flow.client,
      l4,
      payload,
      owner === flow ? 'reproduced' : 'differ',
      { ip: NODE_IP, port: owner!.svcpathPort! },
    );
    this.replies.push({ at, client: owner!.client, frontend: owner!.frontend, backend: flow.nodeBackend });
  }

  /**
   * A TCP flow from `client` to `frontend`: SYN, SYN-ACK, then ACK with
   * data. The node sends it to its backend from its masquerade tuple
   * (`nodeSource`, or one of its own) or from the client.
   */
  tcpFlow(client: Endpoint, frontend: Endpoint, choice: NodeChoice, svcpathMasquerades = false, nodeSource?: Endpoint): Flow {
    const flow = this.flow('TCP', client, frontend, choice, svcpathMasquerades, nodeSource);
    this.handshake(flow);
    return flow;
  }

  private seq = 0;

  private handshake(flow: Flow): void {
    const seq = 1000 * this.ipId;
    const ackSeq = 7000 * this.ipId;
    this.request(flow, tcp(['SYN'], seq, 0), new Uint8Array(0));
    this.reply(flow, tcp(['SYN', 'ACK'], ackSeq, seq + 1), new Uint8Array(0));
    const data = new TextEncoder().encode(`GET /${this.ipId} HTTP/1.1\r\n`);
    this.request(flow, tcp(['ACK', 'PSH'], seq + 1, ackSeq + 1), data);
    this.seq = seq + 1 + data.length;
  }

  /** The client ends `flow`: FIN, the backend's FIN-ACK, the last ACK. */
  close(flow: Flow): void {
    const ackSeq = 9000 * this.ipId;
    this.request(flow, tcp(['FIN', 'ACK'], this.seq, ackSeq), new Uint8Array(0), true);
    this.reply(flow, tcp(['FIN', 'ACK'], ackSeq, this.seq + 1), new Uint8Array(0), true);
    this.request(flow, tcp(['ACK'], this.seq + 1, ackSeq + 1), new Uint8Array(0));
    flow.closing = true;
  }

  /**
   * The client opens `flow`'s tuple again after closing it: svcpath ends the
   * old flow and starts a new one (the same backend and masquerade port, by
   * the same hashes), the node masquerades the new connection to a new
   * tuple; a late segment of the old connection to the old tuple is no
   * reply of the new flow's, and the new tuple's replies are.
   */
  reopen(old: Flow): Flow {
    this.svcpathPorts.delete(`${text(old.ours)} ${old.svcpathPort}`);
    const flow = this.flow('TCP', old.client, old.frontend, old.choice, old.svcpathPort !== undefined);
    const late = this.ipId++;
    const seq = 1000 * this.ipId;
    this.request(flow, tcp(['SYN'], seq, 0), new Uint8Array(0));
    this.notReplies.push(
      this.push({
        eth: this.frame(
          old.nodeBackend,
          old.nodeSource,
          tcp(['ACK'], 42, 43)(old.nodeBackend.port, old.nodeSource.port),
          late,
          new Uint8Array(0),
          64,
        ),
        way: 'in',
      }),
    );
    this.reply(flow, tcp(['SYN', 'ACK'], 7000 * this.ipId, seq + 1), new Uint8Array(0));
    return flow;
  }

  /** DNS queries and their answers, from one socket of `client` to the cluster IP. */
  udpFlow(client: Endpoint, frontend: Endpoint, choice: 'agrees' | 'other-backend', svcpathMasquerades = false, queries = 1): Flow {
    const flow = this.flow('UDP', client, frontend, choice, svcpathMasquerades);
    const udp = (sport: number, dport: number): L4Spec => ({ kind: 'udp', sport, dport });
    for (let q = 0; q < queries; q++) {
      this.request(flow, udp, new Uint8Array([this.ipId >> 8, this.ipId & 0xff, 1, 0, 0, 1]));
      this.reply(flow, udp, new Uint8Array([this.ipId >> 8, this.ipId & 0xff, 0x81, 0x80]));
    }
    return flow;
  }

  /** A pod talking to a pod elsewhere: forwarded untouched, no Service's; its copy compares with nothing. */
  podToPod(): void {
    const tcpSyn = (sport: number, dport: number): L4Spec => ({ kind: 'tcp', sport, dport, seq: this.ipId, flags: ['SYN'] });
    this.forwarded(
      { ip: '10.244.0.7', port: 33000 },
      { ip: '10.244.1.9', port: 9000 },
      { ip: '10.244.0.7', port: 33000 },
      { ip: '10.244.1.9', port: 9000 },
      tcpSyn,
      new Uint8Array(0),
    );
  }

  /** The loopback device shows the node's local packet going out and coming back in. */
  loopback(): void {
    const eth = this.frame(
      { ip: '127.0.0.1', port: 41000 },
      { ip: '127.0.0.1', port: 10250 },
      { kind: 'tcp', sport: 41000, dport: 10250, flags: ['SYN'] },
      this.ipId++,
      new Uint8Array(0),
      64,
    );
    this.push({ eth, way: 'out', loopback: true });
    this.push({ eth, way: 'in', loopback: true });
  }

  /** A bridge port's copy of a frame for the bridge's own address (promiscuous port): seen before the bridge takes it. */
  bridgePortCopy(client: Endpoint, frontend: Endpoint): void {
    const eth = this.frame(
      client,
      frontend,
      { kind: 'tcp', sport: client.port, dport: frontend.port, seq: 5, flags: ['SYN'] },
      this.ipId++,
      new Uint8Array(0),
      64,
    );
    this.push({ eth, way: 'other-host' });
  }

  private nodeBackend(ours: Endpoint, choice: NodeChoice): Endpoint {
    if (choice === 'other-backend') return { ip: BACKENDS.find((b) => b !== ours.ip)!, port: ours.port };
    if (choice === 'not-a-backend') return { ip: '10.244.9.9', port: ours.port };
    return ours;
  }

  private requestOutcome(choice: NodeChoice): keyof Expected {
    if (choice === 'masquerades') return 'differMasquerade';
    return choice === 'agrees' ? 'reproduced' : choice === 'other-backend' ? 'otherBackend' : 'differ';
  }
}

/** TCP segments with these flags and numbers, between any ports. */
const tcp =
  (flags: Array<'SYN' | 'ACK' | 'PSH' | 'FIN'>, seq: number, ack: number) =>
  (sport: number, dport: number): L4Spec => ({ kind: 'tcp', sport, dport, seq, ack, flags });

/** A client port from `from` up whose flow to the NodePort svcpath sends to `backend` (by its Maglev table). */
function portTo(client: string, from: number, backend: Endpoint): number {
  for (let port = from; ; port++) {
    const ours = choose({ clientIp: client, clientPort: port, vip: NODE_IP, vport: NODE_PORT, protocol: 'TCP' } as never)!;
    if (text(ours) === text(backend)) return port;
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
  // From outside to the NodePort: both masquerade, the node to tuples of its own, which svcpath learns.
  const fromOutside: Flow[] = [];
  for (let i = 0; i < 4; i++) fromOutside.push(c.tcpFlow({ ip: '172.16.0.5', port: 52000 + i }, nodePort, 'agrees', true));
  for (let i = 0; i < 4; i++) c.tcpFlow({ ip: '10.244.0.22', port: 53000 + i }, http, 'other-backend');
  c.podToPod();
  for (let i = 0; i < 2; i++) c.tcpFlow({ ip: '10.244.0.23', port: 54000 + i }, http, 'masquerades');
  for (let i = 0; i < 2; i++) c.tcpFlow({ ip: '10.244.0.24', port: 55000 + i }, http, 'not-a-backend');
  c.tcpFlow({ ip: '10.244.0.25', port: 56000 }, http, 'untouched');
  // Both masquerade, the node to another backend: its replies come from a backend svcpath did not choose.
  c.tcpFlow({ ip: '172.16.0.7', port: 57000 }, nodePort, 'other-backend', true);
  // An outside client's DNS queries to the cluster IP, from one socket: masqueraded by both, the tuple taught once.
  c.udpFlow({ ip: '172.16.0.6', port: 5300 }, dns, 'agrees', true, 2);
  // The node shows a tuple a live flow holds for another flow: not learned, and its replies are the first flow's.
  const holder = fromOutside[0];
  c.tcpFlow({ ip: '172.16.0.10', port: portTo('172.16.0.10', 40000, holder.ours) }, nodePort, 'agrees', true, holder.nodeSource);
  // A closed flow's tuple may be taken by the next one (the kernel frees it long before svcpath's closing timeout).
  const closed = c.tcpFlow({ ip: '172.16.0.8', port: 58000 }, nodePort, 'agrees', true);
  c.close(closed);
  c.tcpFlow({ ip: '172.16.0.11', port: portTo('172.16.0.11', 40000, closed.ours) }, nodePort, 'agrees', true, closed.nodeSource);
  // A flow reopened after closing: the node's new tuple is the flow's, its old one no longer.
  const reopened = c.tcpFlow({ ip: '172.16.0.9', port: 59000 }, nodePort, 'agrees', true);
  c.close(reopened);
  c.reopen(reopened);
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

/**
 * The arrivals svcpath decides, alone, on Ethernet, with the replies to the
 * node's masquerade tuples addressed to svcpath's own tuples of their flows:
 * what the cooked captures' arrivals must be decided as.
 */
const arrivals = capture.frames.filter((f) => f.way === 'in' && !f.loopback).map((f) => ({ ...f, eth: f.svcpathView ?? f.eth }));
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
  block(
    0x0a0d0d0a,
    Buffer.concat([
      shb,
      option(2, Buffer.from('x86_64')),
      option(3, Buffer.from('Linux 6.8.0')),
      option(4, Buffer.from('Dumpcap (Wireshark) 4.2.2')),
      endOfOptions,
    ]),
  );
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
    lines: readFileSync(verdicts, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as VerdictLine),
    verdictBytes: readFileSync(verdicts, 'utf8'),
    summary: JSON.parse(readFileSync(summary, 'utf8')),
    output,
    outputBytes: readFileSync(out),
  };
}

const withoutN = ({ n: _n, ...rest }: VerdictLine) => rest;
const OUTGOING = { verdict: 'PASS', reason: 'OUTGOING', service: null, backend: null, snat: false };
const outgoingFrames = capture.frames.filter((f) => f.way === 'out' || f.loopback).length;

const { reproduced, otherBackend, differMasquerade, learnedTuples, takenTuples } = capture.expected;
const differ = capture.expected.differ + differMasquerade;
const CONFORMANCE = {
  outgoing: outgoingFrames,
  nodeRewrites: reproduced + otherBackend + differ,
  reproduced,
  otherBackend,
  differ,
  differMasquerade,
  learnedTuples,
  takenTuples,
};

/** The flow an arrival from `eth`'s source to its destination belongs to, if it is a request of one. */
function flowOf(eth: Uint8Array): Flow | undefined {
  const d = decodeFrame(eth);
  const l4 = d.tcp ?? d.udp!;
  return capture.flows.get(`${d.ipv4!.src}:${l4.sport} ${d.ipv4!.dst}:${l4.dport}`);
}

/**
 * The input frame of each output frame: the k-th output record is the k-th
 * TX or REDIRECT verdict's (README, --out).
 */
function outputsByFrame(
  lines: VerdictLine[],
  output: Array<{ linktype: number; data: Uint8Array }>,
): Map<number, { linktype: number; data: Uint8Array }> {
  const sent = lines.map((l, i) => [l, i] as const).filter(([l]) => l.verdict === 'TX' || l.verdict === 'REDIRECT');
  expect(sent.length).toBe(output.length);
  return new Map(sent.map(([, i], k) => [i, output[k]]));
}

/** The replies to the node's tuples: REPLY, back to their flow's client from its frontend, every checksum right (decoded here). */
function expectRepliesRestored(
  lines: VerdictLine[],
  output: Array<{ linktype: number; data: Uint8Array }>,
  lineOf: (at: number) => number,
): void {
  const outputs = outputsByFrame(lines, output);
  expect(capture.replies.length).toBeGreaterThan(0);
  for (const r of capture.replies) {
    const i = lineOf(r.at);
    const service = r.backend.port === 53 ? 'default/web:dns' : 'default/web:http';
    expect(withoutN(lines[i]), `frame ${r.at + 1}`).toEqual({
      verdict: 'TX',
      reason: 'REPLY',
      service,
      backend: text(r.backend),
      snat: true,
    });
    const out = outputs.get(i)!;
    const d = decodeCaptured(out.linktype, out.data);
    const l4 = d.tcp ?? d.udp!;
    expect([d.ipv4!.src, l4.sport, d.ipv4!.dst, l4.dport], `frame ${r.at + 1}`).toEqual([
      r.frontend.ip,
      r.frontend.port,
      r.client.ip,
      r.client.port,
    ]);
    expect(verifyCapturedChecksums(out.linktype, out.data), `frame ${r.at + 1}`).toEqual({ ipv4: true, l4: true });
  }
  for (const at of capture.notReplies) expect(withoutN(lines[lineOf(at)]), `frame ${at + 1}`).toEqual(NO_SERVICE);
}

const NO_SERVICE = { verdict: 'PASS', reason: 'NO_SERVICE', service: null, backend: null, snat: false };

describe("captures with the node's own copies", () => {
  const reference = replayCli(writePcap('arrivals.pcap', LINKTYPES.ETHERNET, arrivals, ethernet), 'arrivals');

  it('the capture was built as meant: arrivals decided as svcpath decides them by its Maglev table and masquerade ports', async () => {
    const { lines, output } = await reference;
    expect(lines.length).toBe(arrivals.length);
    // Every request goes to the backend the Maglev table names, and a masqueraded one from the port
    // svcpath's documented hash gives, both computed outside the datapath.
    const outputs = outputsByFrame(lines, output);
    let masqueraded = 0;
    lines.forEach((l, i) => {
      const flow = flowOf(arrivals[i].eth);
      if (!flow || l.reason !== 'SERVICE') return;
      expect([l.backend, l.snat], `arrival ${i + 1}`).toEqual([text(flow.ours), flow.svcpathPort !== undefined]);
      const d = decodeFrame(outputs.get(i)!.data);
      const l4 = d.tcp ?? d.udp!;
      expect([d.ipv4!.dst, l4.dport], `arrival ${i + 1}`).toEqual([flow.ours.ip, flow.ours.port]);
      if (flow.svcpathPort === undefined) return;
      expect([d.ipv4!.src, l4.sport], `arrival ${i + 1}`).toEqual([NODE_IP, flow.svcpathPort]);
      masqueraded++;
    });
    expect(masqueraded).toBeGreaterThan(0);
    // The replies: 8 pod flows' and 3 DNS answers' to the clients themselves, and those to the node's tuples.
    expect(lines.filter((l) => l.reason === 'REPLY').length).toBe(8 + 3 + capture.replies.length);
  });

  it.each([
    ['Linux cooked v1', LINKTYPES.LINUX_SLL],
    ['Linux cooked v2', LINKTYPES.LINUX_SLL2],
  ])(
    "%s: the node's copies are PASS OUTGOING and teach its masquerade tuples; the arrivals are decided as without them, their replies to those tuples as to svcpath's",
    async (_name, linktype) => {
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
      expect(got.output.map((o) => Buffer.from(o.data.subarray(header)).toString('hex'))).toEqual(
        want.output.map((o) => Buffer.from(o.data.subarray(14)).toString('hex')),
      );
      expect(got.output.every((o) => o.linktype === linktype)).toBe(true);
      expectRepliesRestored(got.lines, got.output, (at) => at);
      expect(got.summary.conformance).toEqual(CONFORMANCE);
      expect(got.summary.reasons.OUTGOING).toBe(outgoingFrames);
      expect(got.stdout).toContain(
        `Node's own rewrites in the capture: ${reproduced + otherBackend + differ} of the ${outgoingFrames} frames it sent`,
      );
      expect(got.stdout).toContain(`svcpath reproduced ${reproduced} (same backend and rewrite), ${otherBackend} went to another backend`);
      expect(got.stdout).toContain(
        `${differ} differ (${differMasquerade} only in masquerading the source: one of the node and svcpath did, ` +
          "the other did not; compare --cluster-cidr and --masquerade-all with the node's kube-proxy);",
      );
      expect(got.stdout).toContain(
        `learned ${learnedTuples} of the node's masquerade tuples (its address and port for a flow svcpath masqueraded), ` +
          `whose replies are the flow's; ${takenTuples} not learned, held by another live flow`,
      );
      expect(want.summary.conformance).toBeUndefined();
    },
  );

  it('the counts are what the capture was built to hold', () => {
    // Reproduced: 8 pod flows (3 requests and replies each), 3 DNS exchanges, 4 NodePort flows (3 each), 2 outside DNS
    // exchanges, the flow whose tuple is taken (2 requests; its reply went to the other flow's client), the closed
    // flow (6), the one that took its tuple (3), and the reopened one (6, then a SYN and its answer).
    // Another backend: 1 DNS query, 5 flows' 2 requests. Differ: 3 flows' 2 requests, and the reply of the flow
    // whose tuple was taken; only in masquerading: 2 flows' 2 requests. Learned: 4 NodePort flows, the outside DNS socket, the closed flow and the one after it,
    // the reopened flow twice; taken: 1 (its 2 copies showed it).
    expect(capture.expected).toEqual({
      reproduced: 8 * 3 + 3 * 2 + 4 * 3 + 2 * 2 + 2 + 6 + 3 + 8,
      otherBackend: 1 + 5 * 2,
      differ: 3 * 2 + 1,
      differMasquerade: 2 * 2,
      learnedTuples: 4 + 1 + 2 + 2,
      takenTuples: 1,
    });
    // Replies to the node's tuples: the 4 NodePort flows' answers, 2 DNS answers, the taken tuple's, the closed flow's 2,
    // the next one's, the reopened flow's 3. No reply: the 2 pod flows only the node masqueraded, the flow it sent to
    // another backend, and the reopened flow's late segment to its old tuple.
    expect(capture.replies.length).toBe(4 + 2 + 1 + 2 + 1 + 3);
    expect(capture.notReplies.length).toBe(2 + 1 + 1);
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
    expectRepliesRestored(got.lines, got.output, (at) => packets.findIndex((p) => p.at === at));
    const outgoing = packets.filter((p) => p.way === 'out').length;
    expect(got.summary.conformance).toEqual({ ...CONFORMANCE, outgoing });
  });

  it('without direction (an Ethernet pcap of every copy) nothing is OUTGOING, compared or learned', async () => {
    const got = await replayCli(
      writePcap(
        'both.pcap',
        LINKTYPES.ETHERNET,
        capture.frames.filter((f) => !f.loopback),
        ethernet,
      ),
      'both',
    );
    expect(got.summary.reasons.OUTGOING).toBeUndefined();
    expect(got.summary.conformance).toBeUndefined();
    for (const r of capture.replies)
      expect(withoutN(got.lines[capture.frames.filter((f) => !f.loopback).findIndex((f) => f.at === r.at)])).toEqual(NO_SERVICE);
  });
});

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
    [
      'an option past the block',
      (() => {
        const header = Buffer.alloc(4);
        header.writeUInt16LE(EPB_FLAGS, 0);
        header.writeUInt16LE(64, 2);
        return Buffer.concat([header, Buffer.alloc(4)]);
      })(),
      'options: option 2 claims 64 bytes, the block has 4 left',
    ],
  ])('%s stops the replay at its block, naming it, after what came before', async (_name, bad, message) => {
    const path = dumpcapPcapng(`bad-${bad.toString('hex')}.pcapng`, two, (f) => (f.way === 'out' ? bad : epbFlags(f)));
    const verdicts = join(tmp, `bad-${bad.toString('hex')}.jsonl`);
    const r = await cli(['replay', path, ...ARGS, '--verdicts', verdicts]);
    expect(r.code).toBe(1);
    // The section header, the interface and the arrival are blocks 1 to 3: the node's copy is block 4.
    expect(r.stderr).toMatch(new RegExp(`^svcpath: ${path}: block 4 \\(offset \\d+\\): ${message.replace(/[()]/g, '\\$&')}$`));
    expect(
      readFileSync(verdicts, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).reason),
    ).toEqual(['SERVICE']);
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
    return {
      result,
      decisions,
      out: readFileSync(out),
      verdicts: readFileSync(verdicts, 'utf8'),
      conformance: readCounters(dp, compiled).conformance,
    };
  }

  it("the node's copies make no flow: the maps hold what the arrivals alone leave, byte for byte, but for the tuples they taught", async () => {
    const stateAfter = async (file: string) => {
      const dp = await loadProgram(compiled);
      await replay(file, compiled, dp);
      const entries = (name: 'ct4' | 'snat4' | 'lb4Affinity' | 'frag4' | 'nodeMasq' | 'arrivals') => {
        const m = dp.map(name);
        return [...m.keysRaw()].map((k) => [k.slice(), m.lookupRaw(k)!.slice()] as const);
      };
      const hex = (list: ReturnType<typeof entries>) =>
        list.map(([k, v]) => `${Buffer.from(k).toString('hex')} ${Buffer.from(v).toString('hex')}`).sort();
      return {
        flows: { ct4: hex(entries('ct4')), lb4Affinity: hex(entries('lb4Affinity')), frag4: hex(entries('frag4')) },
        snat4: entries('snat4'),
        nodeMasq: entries('nodeMasq'),
        arrivals: entries('arrivals'),
      };
    };
    const withCopies = await stateAfter(sll2);
    // The arrivals alone, with the replies to the node's tuples sent to svcpath's own tuples instead.
    const alone = await stateAfter(writePcap('state-arrivals.pcap', LINKTYPES.ETHERNET, arrivals, ethernet));
    expect(withCopies.flows).toEqual(alone.flows);
    expect(withCopies.flows.ct4.length).toBe(2 * capture.flows.size); // every flow of the capture, both directions
    // NAT entries: the same, but that each flow svcpath masqueraded took the node's port it learned (0: none).
    const natEntries = (list: typeof alone.snat4, nodePort: (flow: Flow) => number) =>
      list
        .map(([k, v]) => {
          const key = decode(CT4_TUPLE, k);
          const flow = [...capture.flows.values()].find(
            (f) => f.svcpathPort === key.dport && text(f.ours) === `${key.saddr}:${key.sport}`,
          )!;
          expect(decode(SNAT4_ORIGIN, v), text(flow.client)).toEqual({
            address: flow.client.ip,
            port: flow.client.port,
            nodePort: nodePort(flow),
          });
          return text(flow.client);
        })
        .sort();
    const masqueraded = [...capture.flows.values()]
      .filter((f) => f.svcpathPort !== undefined)
      .map((f) => text(f.client))
      .sort();
    expect(natEntries(alone.snat4, () => 0)).toEqual(masqueraded);
    expect(natEntries(withCopies.snat4, (f) => f.nodePort)).toEqual(masqueraded);
    expect([...capture.flows.values()].filter((f) => f.nodePort !== 0).length).toBeGreaterThan(0);
    // The node's tuples: every one its copies masqueraded a flow to a backend with, and the flow.
    const mapped = (address: string | number) => ipaddr.IPv6.parse(String(address)).toIPv4Address().toString();
    const tuples = withCopies.nodeMasq
      .map(([k, v]) => {
        const key = decode(NODE_MASQ_KEY, k);
        const value = decode(NODE_MASQ, v);
        return (
          `${mapped(key.backend)}:${key.backendPort} > ${mapped(key.node)}:${key.nodePort} ${key.proto} ` +
          `${mapped(value.client)}:${value.clientPort} ${mapped(value.frontend)}:${value.frontendPort}`
        );
      })
      .sort();
    expect(tuples).toEqual([...capture.tuples].map(([key, { flow }]) => `${key} ${text(flow.client)} ${text(flow.frontend)}`).sort());
    expect(alone.nodeMasq).toEqual([]);
    // Every arrival kept for a copy found it.
    expect(withCopies.arrivals).toEqual([]);
  });

  it('the zero-copy walker and the JavaScript reader', async () => {
    const zeroCopy = await run(sll2, 'sll2', false);
    const jsReader = await run(sll2, 'sll2', true);
    expect(zeroCopy.decisions).toEqual(jsReader.decisions);
    expect(zeroCopy.verdicts).toBe(jsReader.verdicts);
    expect(Buffer.compare(zeroCopy.out, jsReader.out)).toBe(0);
    expect(zeroCopy.conformance).toEqual([
      reproduced,
      otherBackend,
      differ - differMasquerade,
      learnedTuples,
      takenTuples,
      differMasquerade,
    ]);
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
    expect(two.conformance.nodeRewrites).toBe(reproduced + otherBackend + differ);
    expect(two.conformance.learnedTuples).toBe(learnedTuples);
  });

  it("the capture has replies whose flow's client is on another worker than the node's masquerade address they are sent to", () => {
    // README, --workers: a client's worker is its client hash modulo the 64 classes, modulo N; a reply to an
    // address no rule knows would go to that address's worker. These reach their flow's by the node's tuple.
    const worker = (ip: string) => (clientHash(bytesOf(ip)) % 64) % 2;
    const across = capture.replies.filter((r) => worker(r.client.ip) !== worker(decodeFrame(capture.frames[r.at].eth).ipv4!.dst));
    expect(across.length).toBeGreaterThan(0);
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
        expect(
          [
            VERDICTS[batch.verdict(0)],
            REASONS[batch.reason(0)],
            batch.serviceId(0),
            batch.backendId(0),
            (batch.flags(0) & DESC_F_SNAT) !== 0,
          ],
          `frame ${k + 1}`,
        ).toEqual([m.verdict, m.reason, m.serviceId, m.backendId, m.snat]);
        expect(Buffer.from(batch.frame(0)).toString('hex'), `frame ${k + 1}`).toBe(Buffer.from(m.out).toString('hex'));
      });
    }
    // An Ethernet frame the capture says was sent: OUTGOING on both sides, whatever it is.
    const sent = capture.frames.find((f) => f.way === 'out')!.eth;
    batch.clear();
    batch.add(sent, sent.length, T0 + 500, 0, LINKTYPES.ETHERNET, false, 'outbound');
    batch.run();
    expect(REASONS[batch.reason(0)]).toBe('OUTGOING');
    expect(
      model.process(sent, { wireLen: sent.length, tsSec: T0 + 500, tsNsec: 0, linktype: LINKTYPES.ETHERNET, direction: 'outbound' }).reason,
    ).toBe('OUTGOING');
  });
});
