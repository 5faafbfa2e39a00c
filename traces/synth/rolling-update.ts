/**
 * The bundled rolling-update capture: traffic on node-a to the sample
 * cluster's web Service, and to cluster DNS, while CoreDNS and then the
 * Deployment behind web roll as traces/samples/rolling-update.events.jsonl
 * records it (make-events-sample.ts), so that a replay with those events
 * shows what each change did to the flows. Deterministic: `npm run make-rolling-update`
 * rewrites rolling-update.pcap, and test/rolling-update-sample.test.ts checks
 * the committed file is exactly what this builds.
 *
 * Closed loop, as the sample is (sample.ts): every reply comes from the
 * backend kube-proxy's datapath (the default semantics) gives its flow. The
 * events reach the datapath in kube-proxy's syncs (control/runtime/
 * sync-schedule.ts, with the default minSyncPeriod: the sample's
 * KubeProxyConfiguration sets none); a new flow is load-balanced over the
 * state of the last sync before it, by predict.ts's maglevChooser over a full
 * compile of that state (an incremental update decides alike, update.ts); an
 * established TCP flow keeps its backend, even one that is gone, as kube-proxy
 * never flushes TCP conntrack; a UDP flow whose backend stopped serving was
 * flushed, so its next datagram is load-balanced again.
 *
 * The story, on web (10.96.0.10:80, TCP only): short connections all along,
 * which move to each new pod as it becomes ready and leave each old pod as it
 * starts terminating; per old pod, a keep-alive connection the pod closes on
 * SIGTERM (the client reconnects, to a pod ready then), and a stream the pod
 * never closes, answered until the pod is removed and retransmitted into the
 * void after (under kube-proxy it stays DNATed to the removed pod; under
 * Cilium its next packet picks another). On kube-dns (10.96.0.53:53/UDP,
 * whose pods CoreDNS's rollout replaces, starting before web's): lookups from
 * fresh ports, each to a pod ready when it starts, so the later ones to the
 * new pods; and a resolver that keeps one socket, on its old pod while that
 * pod terminates but still serves, until the sync that drains the pod flushes
 * the socket's conntrack entry: its next query is load-balanced again, to a
 * new pod.
 */
import { join } from 'node:path';
import { applyEvent, readEvents } from '../../control/cluster/events.js';
import { loadClusterState, resolveServices } from '../../control/cluster/index.js';
import type { ClusterState, EndpointConditions } from '../../control/cluster/state.js';
import { compile } from '../../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../../control/compile/maglev.js';
import { Mulberry32 } from '../../control/common/random.js';
import { DEFAULT_MIN_SYNC_PERIOD_NS, scheduleSyncs } from '../../control/runtime/sync-schedule.js';
import { buildFrame, ipv4ToBytes, TCP_FLAGS, type L4Spec } from '../frames.js';
import { createPcapWriter } from '../pcap.js';
import { EPHEMERAL_PORTS, NODE_MAC, type BackendChooser, type FlowKey, type GeneratedPacket } from './generate.js';
import { maglevChooser } from './predict.js';
import { SAMPLE_CLUSTER, SAMPLE_DIR, SAMPLE_NODE, SAMPLE_SEED } from './sample.js';

export const ROLLING_UPDATE_TRACE = join(SAMPLE_DIR, 'rolling-update.pcap');
export const ROLLING_UPDATE_EVENTS = join(SAMPLE_DIR, 'rolling-update.events.jsonl');
/** Seeds the traffic's own choices (times, ports, sizes); the Maglev seed is the sample's. */
export const ROLLING_UPDATE_SEED = 1205;

/**
 * What a flow is in the story: `short`, a connection for one request;
 * `keep-alive`, a connection its pod closes on SIGTERM (the client then opens
 * another, of the same role); `stream`, a connection its pod never closes,
 * answered until the pod is removed; `lookup`, a DNS lookup (A and AAAA) from
 * a fresh port; `resolver`, a resolver's one socket, a query now and then.
 */
export type FlowRole = 'short' | 'keep-alive' | 'stream' | 'lookup' | 'resolver';

export interface Backend {
  ip: string;
  port: number;
}

export interface StoryPacket extends GeneratedPacket {
  flow: FlowKey;
  direction: 'request' | 'reply';
  /** Where kube-proxy's datapath sends the packet's flow at this packet: a reply's source, or where a request goes. */
  backend: Backend;
  role: FlowRole;
}

/** The watch's initial list is at 1733412345.18, its first change 1.2 s after that second: the capture starts before both. */
const CAPTURE_START_US = 1_733_412_345_050_000;
/** The capture goes on this long after the last sync. */
const CAPTURE_TAIL_US = 2_000_000;
/**
 * A client starts nothing (a connection, a request, a datagram) this close to
 * a sync, so that the state it meets does not hang on how a replay rounds
 * times; more than a reply takes, so a request's reply is in its state too.
 */
const SYNC_GUARD_US = 5_000;

interface Frontend {
  vip: string;
  port: number;
  protocol: 'TCP' | 'UDP';
}
const WEB: Frontend = { vip: '10.96.0.10', port: 80, protocol: 'TCP' };
const DNS: Frontend = { vip: '10.96.0.53', port: 53, protocol: 'UDP' };
/** Pods on node-a, where the capture is. */
const CLIENTS = Array.from({ length: 8 }, (_, i) => `10.244.0.${100 + i}`);
/** The client whose resolver keeps one socket. */
const RESOLVER_CLIENT = 7;
const LOOKUP_NAME = 'web.default.svc.cluster.local';

const { SYN, ACK, PSH, FIN } = TCP_FLAGS;
const MSS_1460_OPTION = Uint8Array.of(2, 4, 0x05, 0xb4);
const CLIENT_WINDOW = 64240;
const BACKEND_WINDOW = 65160;
const MS = 1_000;
/** Linux's delayed ACK, and its retransmission timeout after short round trips (the minimum). */
const DELAYED_ACK_US = 40 * MS;
const MIN_RTO_US = 200 * MS;

/** The cluster as the datapath has it from one sync until the next. */
interface Epoch {
  /** When it comes into force, µs since the Unix epoch; the initial state's is -Infinity. */
  from: number;
  /** When the API made the changes this sync applies, µs; none for the initial state. */
  changes: number[];
  choose: BackendChooser;
  /** Per frontend (frontendKey), its endpoints' conditions by "ip:port". */
  endpoints: Map<string, Map<string, EndpointConditions>>;
}

const frontendKey = (vip: string, port: number, protocol: string) => `${vip} ${port} ${protocol}`;
const WEB_KEY = frontendKey(WEB.vip, WEB.port, WEB.protocol);
const backendKey = (b: Backend) => `${b.ip}:${b.port}`;
function toBackend(key: string): Backend {
  const [ip, port] = key.split(':');
  return { ip: ip!, port: Number(port) };
}

function epochOf(state: ClusterState, from: number, changes: number[]): Epoch {
  const resolved = resolveServices(state).services;
  const compiled = compile(state, resolved, { node: SAMPLE_NODE, seed: SAMPLE_SEED, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });
  const endpoints = new Map<string, Map<string, EndpointConditions>>();
  for (const rs of resolved) {
    for (const rp of rs.ports) {
      const byBackend = new Map(rp.endpoints.map((e) => [backendKey(e), e.conditions]));
      for (const vip of rs.service.clusterIPs) endpoints.set(frontendKey(vip, rp.port.port, rp.port.protocol), byBackend);
    }
  }
  return { from, changes, choose: maglevChooser(compiled, SAMPLE_SEED), endpoints };
}

/** The initial state, then the state after each of the events' syncs. */
function loadEpochs(): Epoch[] {
  let state = loadClusterState([SAMPLE_CLUSTER]);
  const read = readEvents(ROLLING_UPDATE_EVENTS, state);
  if (read.error) throw read.error;
  const list = [epochOf(state, Number.NEGATIVE_INFINITY, [])];
  for (const sync of scheduleSyncs(read.events, DEFAULT_MIN_SYNC_PERIOD_NS)) {
    for (const event of sync.changes) state = applyEvent(state, event);
    list.push(
      epochOf(
        state,
        Number(sync.at / 1000n),
        sync.changes.map((e) => Number(e.time / 1000n)),
      ),
    );
  }
  return list;
}

/** One flow: its addresses, the backend it is on, and each side's IP ID and TCP sequence counters. */
interface Flow {
  key: FlowKey;
  role: FlowRole;
  clientMac: Uint8Array;
  clientIp: Uint8Array;
  vip: Uint8Array;
  backend: Backend;
  /** When the client last sent: a UDP flush after it moves the flow. */
  lastRequest: number;
  /** The backend's round trip as the node sees it. */
  rtt: number;
  clientIpId: number;
  backendIpId: number;
  /** TCP: the next sequence number each side sends. */
  clientSeq: number;
  backendSeq: number;
}

const text = (s: string) => new TextEncoder().encode(s);

function httpRequest(path: string): Uint8Array {
  return text(
    `GET ${path} HTTP/1.1\r\nHost: web.default.svc.cluster.local\r\nUser-Agent: shop-frontend/2.3\r\nAccept: application/json\r\n\r\n`,
  );
}

/** A response that names the pod's address, so a reader of the capture sees who answered. */
function httpResponse(backend: Backend, padding: number): Uint8Array {
  const body = `{"servedBy":"${backend.ip}","items":"${'x'.repeat(padding)}"}`;
  return text(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
}

const DNS_TYPE_A = 1;
const DNS_TYPE_AAAA = 28;

/** A query for LOOKUP_NAME, or CoreDNS's answer to it: web's cluster IP for A, no record for AAAA. */
function dnsMessage(id: number, type: number, response: boolean): Uint8Array {
  const question = [...LOOKUP_NAME.split('.').flatMap((label) => [label.length, ...text(label)]), 0, 0, type, 0, 1];
  const answers = response && type === DNS_TYPE_A ? 1 : 0;
  // Flags: a query asks for recursion; the answer is authoritative (cluster.local is CoreDNS's zone), recursion available.
  const flags = response ? 0x8580 : 0x0100;
  const header = [id >> 8, id & 0xff, flags >> 8, flags & 0xff, 0, 1, 0, answers, 0, 0, 0, 0];
  // The answer names the question by a pointer to offset 12; TTL 5 s, the kubernetes plugin's default.
  const answer = answers ? [0xc0, 12, 0, DNS_TYPE_A, 0, 1, 0, 0, 0, 5, 0, 4, ...ipv4ToBytes(WEB.vip)] : [];
  return Uint8Array.from([...header, ...question, ...answer]);
}

/** Builds the story's packets, in any order; `packets()` sorts them. */
class Story {
  private readonly rng = new Mulberry32(ROLLING_UPDATE_SEED);
  private readonly built: Array<{ us: number; order: number; packet: StoryPacket }> = [];
  /** Each client's next ephemeral port: Linux hands them out in turn from a random start. */
  private readonly nextPort: number[];
  readonly start = CAPTURE_START_US;
  readonly end: number;

  constructor(private readonly epochs: Epoch[]) {
    const last = epochs[epochs.length - 1]!.from;
    if (!(last > this.start)) throw new Error(`${ROLLING_UPDATE_EVENTS}: no change after the capture's start`);
    this.end = last + CAPTURE_TAIL_US;
    this.nextPort = CLIENTS.map(() => this.rng.int(EPHEMERAL_PORTS.min, EPHEMERAL_PORTS.max));
  }

  packets(): StoryPacket[] {
    return this.built.sort((a, b) => a.us - b.us || a.order - b.order).map((b) => b.packet);
  }

  int(min: number, max: number): number {
    return this.rng.int(min, max);
  }

  epochAt(us: number): Epoch {
    let i = this.epochs.length - 1;
    while (this.epochs[i]!.from > us) i--;
    return this.epochs[i]!;
  }

  /** The first sync after `after` that leaves the backend with no endpoint matching `gone`: its time, or Infinity. */
  firstSyncWhere(flow: Flow, after: number, gone: (conditions: EndpointConditions | undefined) => boolean): number {
    const key = frontendKey(flow.key.vip, flow.key.vport, flow.key.protocol);
    const e = this.epochs.find((e) => e.from > after && gone(e.endpoints.get(key)?.get(backendKey(flow.backend))));
    return e ? e.from : Number.POSITIVE_INFINITY;
  }

  /** `us`, or the end of the guard after a sync it is too close to. */
  clearOfSyncs(us: number): number {
    const near = this.epochs.find((e) => Math.abs(e.from - us) < SYNC_GUARD_US);
    return near ? near.from + SYNC_GUARD_US : us;
  }

  /** A new flow from client `c` at `us`, on a port the datapath sends to `target` when one is given. */
  open(us: number, c: number, to: Frontend, role: FlowRole, target?: Backend): Flow {
    const choose = this.epochAt(us).choose;
    for (let tries = 0; tries < 10_000; tries++) {
      const port = this.nextPort[c]!;
      this.nextPort[c] = port === EPHEMERAL_PORTS.max ? EPHEMERAL_PORTS.min : port + 1;
      const key: FlowKey = { clientIp: CLIENTS[c]!, clientPort: port, vip: to.vip, vport: to.port, protocol: to.protocol };
      const backend = choose(key);
      if (!backend) throw new Error(`${to.vip}:${to.port}/${to.protocol} has no endpoints at ${us} µs: the story needs some`);
      if (target && backendKey(backend) !== backendKey(target)) continue;
      const clientIp = ipv4ToBytes(key.clientIp);
      return {
        key,
        role,
        clientMac: Uint8Array.of(0x02, 0x42, ...clientIp),
        clientIp,
        vip: ipv4ToBytes(to.vip),
        backend,
        lastRequest: us,
        rtt: this.rng.int(60, 900),
        clientIpId: this.rng.int(0, 0xffff),
        backendIpId: this.rng.int(0, 0xffff),
        clientSeq: this.rng.next(),
        backendSeq: this.rng.next(),
      };
    }
    throw new Error(`no port of ${CLIENTS[c]} reaches ${target && backendKey(target)}`);
  }

  /** How long the backend takes to answer a request, as the node sees it. */
  replyDelay(flow: Flow): number {
    return flow.rtt + this.rng.int(100, 3 * MS);
  }

  private emit(flow: Flow, us: number, direction: 'request' | 'reply', l4: L4Spec, payload?: Uint8Array): void {
    const request = direction === 'request';
    if (request) {
      if (flow.key.protocol === 'UDP' && this.flushedSince(flow, us)) flow.backend = this.epochAt(us).choose(flow.key)!;
      flow.lastRequest = us;
    }
    const backendIp = ipv4ToBytes(flow.backend.ip);
    const data = buildFrame(
      request
        ? {
            dstMac: NODE_MAC,
            srcMac: flow.clientMac,
            ipv4: { src: flow.clientIp, dst: flow.vip, id: flow.clientIpId++ & 0xffff, dontFragment: true },
            l4,
            payload,
          }
        : {
            dstMac: flow.clientMac,
            srcMac: NODE_MAC,
            ipv4: { src: backendIp, dst: flow.clientIp, id: flow.backendIpId++ & 0xffff, dontFragment: true },
            l4,
            payload,
          },
    );
    const packet: StoryPacket = {
      tsSec: Math.floor(us / 1e6),
      tsNsec: (us % 1e6) * 1000,
      data,
      flow: flow.key,
      direction,
      backend: { ...flow.backend },
      role: flow.role,
    };
    this.built.push({ us, order: this.built.length, packet });
  }

  /** kube-proxy deleted the flow's UDP conntrack entry: a sync since its last datagram left its backend not serving. */
  private flushedSince(flow: Flow, us: number): boolean {
    const key = frontendKey(flow.key.vip, flow.key.vport, flow.key.protocol);
    return this.epochs.some(
      (e) => e.from > flow.lastRequest && e.from <= us && !e.endpoints.get(key)?.get(backendKey(flow.backend))?.serving,
    );
  }

  /** A TCP segment from the client (request) or the backend (reply), advancing that side's sequence number. */
  segment(flow: Flow, us: number, direction: 'request' | 'reply', flags: number, payload?: Uint8Array, seq?: number): void {
    const request = direction === 'request';
    const l4: L4Spec = {
      kind: 'tcp',
      sport: request ? flow.key.clientPort : flow.backend.port,
      dport: request ? flow.key.vport : flow.key.clientPort,
      seq: seq ?? (request ? flow.clientSeq : flow.backendSeq),
      ack: flags & ACK ? (request ? flow.backendSeq : flow.clientSeq) : 0,
      flags,
      window: request ? CLIENT_WINDOW : BACKEND_WINDOW,
      options: flags & SYN ? MSS_1460_OPTION : undefined,
    };
    this.emit(flow, us, direction, l4, payload);
    if (seq !== undefined) return; // a retransmission
    const length = (payload?.length ?? 0) + (flags & (SYN | FIN) ? 1 : 0);
    if (request) flow.clientSeq = (flow.clientSeq + length) >>> 0;
    else flow.backendSeq = (flow.backendSeq + length) >>> 0;
  }

  datagram(flow: Flow, us: number, direction: 'request' | 'reply', payload: Uint8Array): void {
    const request = direction === 'request';
    const l4: L4Spec = request
      ? { kind: 'udp', sport: flow.key.clientPort, dport: flow.key.vport }
      : { kind: 'udp', sport: flow.backend.port, dport: flow.key.clientPort };
    this.emit(flow, us, direction, l4, payload);
  }
}

/** Opens a connection to web at `us`: SYN, SYN-ACK, ACK. Returns the flow and when its ACK went. */
function connect(story: Story, us: number, c: number, role: FlowRole, target?: Backend): { flow: Flow; at: number } {
  const flow = story.open(us, c, WEB, role, target);
  story.segment(flow, us, 'request', SYN);
  const synAck = us + flow.rtt;
  story.segment(flow, synAck, 'reply', SYN | ACK);
  const at = synAck + story.int(20, 200);
  story.segment(flow, at, 'request', ACK);
  return { flow, at };
}

/** A GET and its response; returns when the response came. */
function exchange(story: Story, flow: Flow, us: number, path: string): number {
  story.segment(flow, us, 'request', PSH | ACK, httpRequest(path));
  const answered = us + story.replyDelay(flow);
  story.segment(flow, answered, 'reply', PSH | ACK, httpResponse(flow.backend, story.int(20, 400)));
  return answered;
}

/** A connection for one request from a random client at `us`: handshake, GET, response, the client's close. */
function shortConnection(story: Story, us: number, target?: Backend): void {
  const { flow, at } = connect(story, us, story.int(0, CLIENTS.length - 1), 'short', target);
  const answered = exchange(story, flow, at + story.int(5, 40), `/api/items/${story.int(1, 999)}`);
  const fin = answered + story.int(50, 1 * MS);
  story.segment(flow, fin, 'request', FIN | ACK);
  story.segment(flow, fin + flow.rtt, 'reply', FIN | ACK);
  story.segment(flow, fin + flow.rtt + story.int(20, 200), 'request', ACK);
}

/** Short connections, a few a second, for the whole capture. */
function shortConnections(story: Story): void {
  for (let us = story.clearOfSyncs(story.start + story.int(0, 100 * MS)); us < story.end; ) {
    shortConnection(story, us);
    us = story.clearOfSyncs(us + story.int(150 * MS, 450 * MS));
  }
}

/**
 * One short connection to each pod a sync takes out of web's table, opened
 * after the last change that sync applies and before the sync: the API
 * already said the pod is terminating, kube-proxy has not applied it yet (its
 * minSyncPeriod), so the connection still goes there.
 */
function lateConnections(story: Story, epochs: Epoch[]): void {
  for (const [i, epoch] of epochs.entries()) {
    const changed = epoch.changes.at(-1);
    if (changed === undefined || epoch.from - changed < 4 * SYNC_GUARD_US) continue;
    const before = epochs[i - 1]!.endpoints.get(WEB_KEY)!;
    const after = epoch.endpoints.get(WEB_KEY)!;
    for (const [b, conditions] of before) {
      if (conditions.ready && !after.get(b)?.ready)
        shortConnection(story, story.clearOfSyncs(Math.round((changed + epoch.from) / 2)), toBackend(b));
    }
  }
}

/** Polls web over one connection a second or so; when the pod starts terminating it closes the connection, and the next poll opens another. */
function keepAliveClient(story: Story, us: number, c: number, target: Backend): void {
  let conn: { flow: Flow; closes: number } | undefined;
  let last = us;
  for (let poll = 0; us < story.end; poll++) {
    if (conn && conn.closes < us) {
      // The server's graceful shutdown closes idle keep-alive connections: FIN from the pod, the client's ACK and FIN.
      const { flow } = conn;
      const fin = Math.max(conn.closes, last + 1 * MS);
      story.segment(flow, fin, 'reply', FIN | ACK);
      story.segment(flow, fin + story.int(20, 200), 'request', ACK);
      const clientFin = fin + story.int(300, 2 * MS);
      story.segment(flow, clientFin, 'request', FIN | ACK);
      story.segment(flow, clientFin + flow.rtt, 'reply', ACK);
      conn = undefined;
    }
    let at = us;
    if (!conn) {
      const opened = connect(story, us, c, 'keep-alive', poll === 0 ? target : undefined);
      at = opened.at + story.int(5, 40);
      // SIGTERM comes as the pod starts terminating; the server closes its idle connections a moment later.
      const sigterm = story.firstSyncWhere(opened.flow, us, (conditions) => !conditions || conditions.terminating);
      conn = { flow: opened.flow, closes: sigterm + story.int(500 * MS, 2_000 * MS) };
    }
    const answered = exchange(story, conn.flow, at, '/api/status');
    last = answered + DELAYED_ACK_US;
    story.segment(conn.flow, last, 'request', ACK);
    us = story.clearOfSyncs(us + story.int(800 * MS, 2_000 * MS));
  }
}

/**
 * Long-polls web over one connection its pod never closes: answered until the
 * pod is removed, then the next poll is retransmitted (Linux's backoff,
 * doubling from its minimum timeout) until the capture ends.
 */
function streamClient(story: Story, us: number, c: number, target: Backend): void {
  const { flow, at } = connect(story, us, c, 'stream', target);
  const removed = story.firstSyncWhere(flow, us, (conditions) => !conditions);
  for (let poll = 0; us < story.end; poll++) {
    const sent = poll === 0 ? at + story.int(5, 40) : us;
    const request = httpRequest(`/api/watch?since=${poll}`);
    if (sent >= removed) {
      const seq = flow.clientSeq;
      story.segment(flow, sent, 'request', PSH | ACK, request);
      for (let rto = MIN_RTO_US, t = sent + rto; t < story.end; rto *= 2, t += rto) {
        story.segment(flow, t, 'request', PSH | ACK, request, seq);
      }
      return;
    }
    story.segment(flow, sent, 'request', PSH | ACK, request);
    const answered = sent + story.replyDelay(flow);
    story.segment(flow, answered, 'reply', PSH | ACK, httpResponse(flow.backend, story.int(20, 400)));
    story.segment(flow, answered + DELAYED_ACK_US, 'request', ACK);
    us = story.clearOfSyncs(us + story.int(800 * MS, 2_000 * MS));
  }
}

/** Lookups of web's name from any client, each from a fresh port: A and AAAA together, as glibc asks. */
function lookups(story: Story): void {
  for (let us = story.clearOfSyncs(story.start + story.int(0, 200 * MS)); us < story.end; ) {
    const flow = story.open(us, story.int(0, CLIENTS.length - 1), DNS, 'lookup');
    for (const [i, type] of [DNS_TYPE_A, DNS_TYPE_AAAA].entries()) {
      const id = story.int(0, 0xffff);
      const asked = us + i * story.int(20, 200);
      story.datagram(flow, asked, 'request', dnsMessage(id, type, false));
      story.datagram(flow, asked + story.replyDelay(flow), 'reply', dnsMessage(id, type, true));
    }
    us = story.clearOfSyncs(us + story.int(300 * MS, 900 * MS));
  }
}

/**
 * A resolver that keeps one socket to kube-dns for the whole capture (a
 * node-local cache, say): its queries stay on one pod until kube-proxy
 * flushes the entry (Story.emit chooses again).
 */
function resolver(story: Story): void {
  let us = story.clearOfSyncs(story.start + story.int(0, 500 * MS));
  const flow = story.open(us, RESOLVER_CLIENT, DNS, 'resolver');
  for (; us < story.end; us = story.clearOfSyncs(us + story.int(1_000 * MS, 3_000 * MS))) {
    const id = story.int(0, 0xffff);
    story.datagram(flow, us, 'request', dnsMessage(id, DNS_TYPE_A, false));
    story.datagram(flow, us + story.replyDelay(flow), 'reply', dnsMessage(id, DNS_TYPE_A, true));
  }
}

/**
 * web's pods that serve new flows once the first changes are in and are
 * removed by the last: the old ReplicaSet's. Returns them with when the
 * long-lived clients open their connections to them.
 */
function oldPods(epochs: Epoch[]): { pods: Backend[]; open: number } {
  const final = epochs[epochs.length - 1]!.endpoints.get(WEB_KEY)!;
  const chosen = (e: Epoch) => [...e.endpoints.get(WEB_KEY)!].filter(([b, conditions]) => conditions.ready && !final.has(b));
  // The first state in which the most of them are ready: every old pod then takes new flows.
  const most = Math.max(...epochs.map((e) => chosen(e).length));
  const at = epochs.find((e) => chosen(e).length === most)!;
  return {
    pods: chosen(at).map(([b]) => toBackend(b)),
    open: Math.max(at.from, CAPTURE_START_US) + 300 * MS,
  };
}

export function buildRollingUpdate(): StoryPacket[] {
  const epochs = loadEpochs();
  const story = new Story(epochs);
  const { pods, open } = oldPods(epochs);
  // One keep-alive and one stream client per old pod, each its own client pod, opened 200 ms apart.
  pods.forEach((pod, i) => {
    keepAliveClient(story, story.clearOfSyncs(open + 2 * i * 200 * MS), 2 * i, pod);
    streamClient(story, story.clearOfSyncs(open + (2 * i + 1) * 200 * MS), 2 * i + 1, pod);
  });
  shortConnections(story);
  lateConnections(story, epochs);
  lookups(story);
  resolver(story);
  return story.packets();
}

/** Writes the capture as the sample is written: Ethernet, microsecond pcap. Returns its packet count. */
export function writeRollingUpdate(path = ROLLING_UPDATE_TRACE): number {
  const packets = buildRollingUpdate();
  const w = createPcapWriter(path, { linktype: 1 });
  for (const p of packets) w.write(p.tsSec, p.tsNsec, p.data);
  w.close();
  return packets.length;
}
