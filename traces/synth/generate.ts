/**
 * Deterministic synthetic traffic, as captured on one Kubernetes node's
 * interface before the node's Service load balancer acts: clients send to a
 * Service VIP:port, and backend replies come back from the backend's own
 * IP:port (the load balancer's reverse NAT happens after the capture point).
 *
 * Makes the bundled sample trace, test traces and benchmark traces, so the
 * same spec and seed always give the same bytes: all randomness comes from
 * one seeded PRNG, and ties between flows break on flow start order.
 */
import { Mulberry32 } from '../../control/common/random.js';
import { buildFrame, ipv4ToBytes, parseMac, TCP_FLAGS, type FrameSpec, type L4Spec } from '../frames.js';
import { createPcapWriter } from '../pcap.js';

export interface GeneratorSpec {
  seed: number;
  /** Default DEFAULT_START_TIME. */
  startTime?: { sec: number; nsec: number };
  clients: Array<{
    ip: string;
    /** Default 02:42 followed by the four IP bytes, as Docker does. */
    mac?: string;
    /** 0, 1 or 2 VIDs, outermost first; replies to the client carry the same tags. */
    vlan?: number[];
  }>;
  services: Array<{ vip: string; port: number; protocol: 'TCP' | 'UDP'; weight?: number }>;
  /** Number of flows: TCP connections or UDP exchanges. */
  flows: number;
  /** Data segments per direction per TCP flow, min..max; default [1, 3]. Each request segment is answered by one. */
  tcpDataPackets?: [number, number];
  /** Payload bytes of each data segment or datagram, min..max; default [20, 400]. */
  payloadBytes?: [number, number];
  /** Fraction of client packets carrying IPv4 options (Router Alert or Record Route); default 0. */
  ipOptionsShare?: number;
  /** Fraction of all packets that go to no Service at all (NO_SERVICE traffic); default 0. */
  strayShare?: number;
  /** How many flows are in progress at once; default 16. */
  concurrency?: number;
  /** Zero-pad client frames shorter than 60 bytes, as they arrive from a NIC; default false. */
  padShortClientFrames?: boolean;
}

export interface FlowKey {
  clientIp: string;
  clientPort: number;
  vip: string;
  vport: number;
  protocol: 'TCP' | 'UDP';
}

/** Called once per flow, in flow start order; null: nobody answers (e.g. a Service with no endpoints). */
export type BackendChooser = (flow: FlowKey) => { ip: string; port: number } | null;

export interface GeneratedPacket {
  tsSec: number;
  tsNsec: number;
  /** An Ethernet frame. */
  data: Uint8Array;
  /** The Service flow the packet belongs to, shared by all of that flow's packets; absent for stray packets. */
  flow?: FlowKey;
  /** request: client → VIP; reply: backend → client. Absent for stray packets. */
  direction?: 'request' | 'reply';
}

/** 2026-01-01T00:00:00Z. */
export const DEFAULT_START_TIME = { sec: 1_767_225_600, nsec: 0 } as const;
/** The capturing node's own MAC: destination of client frames, source of replies. */
export const NODE_MAC = '02:00:00:00:00:01';
/** Linux's default net.ipv4.ip_local_port_range. */
export const EPHEMERAL_PORTS = { min: 32768, max: 60999 } as const;
/** Stray packets go to the benchmarking range (RFC 2544), which no real Service uses. */
const STRAY_NETWORK = [198, 18] as const;
const LINKTYPE_ETHERNET = 1;
/** Keeps every frame within a 1500-byte MTU even with 8 bytes of IPv4 options and a TCP header. */
const MAX_PAYLOAD_BYTES = 1452;

const MSS_1460_OPTION = Uint8Array.of(2, 4, 0x05, 0xb4);
/** Router Alert (RFC 2113), and Record Route with room for one address (RFC 791). */
const IP_OPTION_CHOICES = [Uint8Array.of(0x94, 0x04, 0x00, 0x00), Uint8Array.of(0x07, 0x07, 0x04, 0, 0, 0, 0)];
const CLIENT_WINDOW = 64240;
const BACKEND_WINDOW = 65160;
const SYN_RETRANSMIT_NS = 1_000_000_000;
const PAYLOAD_POOL_BYTES = 1 << 16;

const US = 1_000;
const MS = 1_000_000;

/** All the packets of `generatePackets`, in an array; prefer the generator for big traces. */
export function generateTraffic(spec: GeneratorSpec, chooseBackend: BackendChooser): GeneratedPacket[] {
  return Array.from(generatePackets(spec, chooseBackend));
}

/** Yields the trace's packets in timestamp order (non-decreasing), building each flow only when it starts. */
export function* generatePackets(spec: GeneratorSpec, chooseBackend: BackendChooser): Generator<GeneratedPacket> {
  const config = resolveSpec(spec);
  const rng = new Mulberry32(config.seed);
  const payloadPool = new Uint8Array(PAYLOAD_POOL_BYTES + MAX_PAYLOAD_BYTES);
  for (let i = 0; i < payloadPool.length; i++) payloadPool[i] = rng.next() & 0xff;
  const portCursors = config.clients.map(() => rng.int(EPHEMERAL_PORTS.min, EPHEMERAL_PORTS.max));
  const livePorts = new Set<string>();
  const totalWeight = config.services.reduce((sum, service) => sum + service.weight, 0);
  const serviceKeys = new Set(config.services.map((s) => `${s.vip}|${s.port}|${s.protocol}`));
  // Builds the object literal in one go: spreading a timestamp object into it costs more than the frame.
  const packetAt = (relativeNs: number, data: Uint8Array, flow?: FlowKey, direction?: 'request' | 'reply'): GeneratedPacket => {
    const ns = config.startTime.nsec + relativeNs;
    const tsSec = config.startTime.sec + Math.floor(ns / 1e9);
    const tsNsec = ns % 1e9;
    return flow ? { tsSec, tsNsec, data, flow, direction } : { tsSec, tsNsec, data };
  };

  const payload = (): Uint8Array => {
    const length = rng.int(config.payloadBytes[0], config.payloadBytes[1]);
    const offset = rng.int(0, PAYLOAD_POOL_BYTES);
    return payloadPool.subarray(offset, offset + length);
  };
  const clientIpOptions = (): Uint8Array | undefined =>
    rng.float() < config.ipOptionsShare ? IP_OPTION_CHOICES[rng.int(0, IP_OPTION_CHOICES.length - 1)] : undefined;

  const pickService = (): ResolvedService => {
    let ticket = rng.float() * totalWeight;
    for (const service of config.services) {
      ticket -= service.weight;
      if (ticket < 0) return service;
    }
    return config.services[config.services.length - 1]!;
  };

  const allocatePort = (clientIndex: number, service: ResolvedService): { port: number; key: string } => {
    const rangeSize = EPHEMERAL_PORTS.max - EPHEMERAL_PORTS.min + 1;
    // Sequential from a random start, as Linux does roughly: a port comes back only after the whole range was used.
    for (let tries = 0; tries < rangeSize; tries++) {
      const port = portCursors[clientIndex]!;
      portCursors[clientIndex] = port === EPHEMERAL_PORTS.max ? EPHEMERAL_PORTS.min : port + 1;
      const key = `${clientIndex}|${service.vip}|${service.port}|${port}`;
      if (!livePorts.has(key)) return { port, key };
    }
    throw new RangeError(`client ${config.clients[clientIndex]!.ip} has no free ephemeral port to ${service.vip}:${service.port}`);
  };

  let flowsStarted = 0;
  const startFlow = (startNs: number): LiveFlow => {
    const clientIndex = rng.int(0, config.clients.length - 1);
    const client = config.clients[clientIndex]!;
    const service = pickService();
    const { port: clientPort, key: portKey } = allocatePort(clientIndex, service);
    livePorts.add(portKey);
    const flow: FlowKey = {
      clientIp: client.ip,
      clientPort,
      vip: service.vip,
      vport: service.port,
      protocol: service.protocol,
    };
    const chosen = chooseBackend(flow);
    if (chosen && (!Number.isInteger(chosen.port) || chosen.port < 1 || chosen.port > 0xffff)) {
      throw new RangeError(`chooseBackend returned port ${chosen.port} for ${flowName(flow)}`);
    }
    const backend = chosen && { ip: ipv4ToBytes(chosen.ip), port: chosen.port };

    const live: LiveFlow = { order: flowsStarted++, times: [], packets: [], next: 0, portKey };
    let now = startNs;
    let clientIpId = rng.int(0, 0xffff);
    let backendIpId = rng.int(0, 0xffff);
    const emit = (gapNs: number, direction: 'request' | 'reply', l4: L4Spec, data?: Uint8Array) => {
      now += gapNs;
      const isRequest = direction === 'request';
      const frame: FrameSpec = isRequest
        ? {
            dstMac: config.nodeMac,
            srcMac: client.mac,
            vlans: client.vlan,
            ipv4: { src: client.ipBytes, dst: service.vipBytes, id: clientIpId, dontFragment: true, options: clientIpOptions() },
            l4,
            payload: data,
            padToMinimum: config.padShortClientFrames,
          }
        : {
            dstMac: client.mac,
            srcMac: config.nodeMac,
            vlans: client.vlan,
            ipv4: { src: backend!.ip, dst: client.ipBytes, id: backendIpId, dontFragment: true },
            l4,
            payload: data,
          };
      if (isRequest) clientIpId = (clientIpId + 1) & 0xffff;
      else backendIpId = (backendIpId + 1) & 0xffff;
      live.times.push(now);
      live.packets.push(packetAt(now, buildFrame(frame), flow, direction));
    };

    // Seen from the node: a reply follows its request by the backend's round trip plus its work.
    const rttNs = rng.int(50 * US, 2 * MS);
    const replyGap = () => rttNs + rng.int(10 * US, 300 * US);
    const clientGap = () => rng.int(10 * US, 2 * MS);
    const backToBack = () => rng.int(1 * US, 30 * US);

    if (service.protocol === 'UDP') {
      const udp = (direction: 'request' | 'reply'): L4Spec =>
        direction === 'request'
          ? { kind: 'udp', sport: clientPort, dport: service.port }
          : { kind: 'udp', sport: backend!.port, dport: clientPort };
      const exchanges = rng.int(1, 3);
      for (let i = 0; i < exchanges; i++) {
        emit(i === 0 ? 0 : clientGap(), 'request', udp('request'), payload());
        if (backend) emit(replyGap(), 'reply', udp('reply'), payload());
      }
      return live;
    }

    const request = (flags: number, seq: number, ack: number, options?: Uint8Array): L4Spec => ({
      kind: 'tcp',
      sport: clientPort,
      dport: service.port,
      seq,
      ack,
      flags,
      window: CLIENT_WINDOW,
      options,
    });
    const reply = (flags: number, seq: number, ack: number, options?: Uint8Array): L4Spec => ({
      kind: 'tcp',
      sport: backend!.port,
      dport: clientPort,
      seq,
      ack,
      flags,
      window: BACKEND_WINDOW,
      options,
    });
    const { SYN, ACK, PSH, FIN } = TCP_FLAGS;
    const clientIsn = rng.next();
    emit(0, 'request', request(SYN, clientIsn, 0, MSS_1460_OPTION));
    if (!backend) {
      if (rng.float() < 0.5) emit(SYN_RETRANSMIT_NS, 'request', request(SYN, clientIsn, 0, MSS_1460_OPTION));
      return live;
    }
    // Next sequence number each side sends, mod 2^32.
    let clientSeq = (clientIsn + 1) >>> 0;
    const backendIsn = rng.next();
    let backendSeq = (backendIsn + 1) >>> 0;
    emit(replyGap(), 'reply', reply(SYN | ACK, backendIsn, clientSeq, MSS_1460_OPTION));
    emit(clientGap(), 'request', request(ACK, clientSeq, backendSeq));
    const segments = rng.int(config.tcpDataPackets[0], config.tcpDataPackets[1]);
    for (let i = 0; i < segments; i++) {
      const requestData = payload();
      emit(i === 0 ? backToBack() : clientGap(), 'request', request(PSH | ACK, clientSeq, backendSeq), requestData);
      clientSeq = (clientSeq + requestData.length) >>> 0;
      const replyData = payload();
      emit(replyGap(), 'reply', reply(PSH | ACK, backendSeq, clientSeq), replyData);
      backendSeq = (backendSeq + replyData.length) >>> 0;
    }
    emit(clientGap(), 'request', request(FIN | ACK, clientSeq, backendSeq));
    clientSeq = (clientSeq + 1) >>> 0;
    emit(replyGap(), 'reply', reply(FIN | ACK, backendSeq, clientSeq));
    backendSeq = (backendSeq + 1) >>> 0;
    emit(clientGap(), 'request', request(ACK, clientSeq, backendSeq));
    return live;
  };

  const strayPacket = (nowNs: number): GeneratedPacket => {
    const client = config.clients[rng.int(0, config.clients.length - 1)]!;
    let dst: Uint8Array;
    let dport: number;
    let protocol: 'TCP' | 'UDP';
    do {
      dst = Uint8Array.of(STRAY_NETWORK[0], STRAY_NETWORK[1] + rng.int(0, 1), rng.int(0, 255), rng.int(1, 254));
      dport = rng.int(1, 0xffff);
      protocol = rng.float() < 0.5 ? 'TCP' : 'UDP';
    } while (serviceKeys.has(`${dst.join('.')}|${dport}|${protocol}`));
    const sport = rng.int(EPHEMERAL_PORTS.min, EPHEMERAL_PORTS.max);
    const l4: L4Spec =
      protocol === 'TCP'
        ? { kind: 'tcp', sport, dport, seq: rng.next(), flags: TCP_FLAGS.SYN, window: CLIENT_WINDOW, options: MSS_1460_OPTION }
        : { kind: 'udp', sport, dport };
    const data = buildFrame({
      dstMac: config.nodeMac,
      srcMac: client.mac,
      vlans: client.vlan,
      ipv4: { src: client.ipBytes, dst, id: rng.int(0, 0xffff), dontFragment: true, options: clientIpOptions() },
      l4,
      payload: protocol === 'UDP' ? payload() : undefined,
      padToMinimum: config.padShortClientFrames,
    });
    return packetAt(nowNs, data);
  };

  // Flows in progress, a min-heap on (time of next packet, start order).
  const heap = new FlowHeap();
  let startNs = 0;
  for (let i = 0; i < Math.min(config.concurrency, config.flows); i++) {
    heap.push(startFlow(startNs));
    startNs += rng.int(20 * US, 500 * US);
  }
  for (let flow = heap.pop(); flow; flow = heap.pop()) {
    const nowNs = flow.times[flow.next]!;
    // Expected strays per flow packet s/(1-s), so that strays are a share s of all packets.
    while (rng.float() < config.strayShare) yield strayPacket(nowNs);
    yield flow.packets[flow.next]!;
    flow.next++;
    if (flow.next < flow.packets.length) {
      heap.push(flow);
      continue;
    }
    livePorts.delete(flow.portKey);
    if (flowsStarted < config.flows) heap.push(startFlow(nowNs + rng.int(10 * US, 1 * MS)));
  }
}

/** Writes packets to a microsecond (default) or nanosecond pcap file; returns how many were written. */
export function writeTrace(path: string, packets: Iterable<GeneratedPacket>, opts: { nanosecond?: boolean } = {}): number {
  const writer = createPcapWriter(path, { linktype: LINKTYPE_ETHERNET, nanosecond: opts.nanosecond ?? false });
  let written = 0;
  try {
    for (const packet of packets) {
      writer.write(packet.tsSec, packet.tsNsec, packet.data);
      written++;
    }
  } finally {
    writer.close();
  }
  return written;
}

interface ResolvedClient {
  ip: string;
  ipBytes: Uint8Array;
  mac: Uint8Array;
  vlan: number[];
}

interface ResolvedService {
  vip: string;
  vipBytes: Uint8Array;
  port: number;
  protocol: 'TCP' | 'UDP';
  weight: number;
}

/** A flow's packets, built when it starts, and how many of them were yielded. */
interface LiveFlow {
  order: number;
  /** Relative to the trace start, ns, non-decreasing. */
  times: number[];
  packets: GeneratedPacket[];
  next: number;
  portKey: string;
}

/** The spec checked, its addresses parsed once, its defaults applied. */
function resolveSpec(spec: GeneratorSpec) {
  const fail = (field: string, problem: string): never => {
    throw new RangeError(`generator spec: ${field}: ${problem}`);
  };
  const checkRange = (field: string, range: [number, number], min: number, max: number): [number, number] => {
    const [low, high] = range;
    if (!Number.isInteger(low) || !Number.isInteger(high) || low < min || high > max || low > high) {
      fail(field, `[${low}, ${high}] is not a range within ${min}..${max}`);
    }
    return [low, high];
  };
  const checkShare = (field: string, share: number): number => {
    if (!(share >= 0 && share < 1)) fail(field, `${share} is outside [0, 1)`);
    return share;
  };
  if (!Number.isSafeInteger(spec.seed)) fail('seed', `${spec.seed} is not an integer`);
  const startTime = spec.startTime ?? DEFAULT_START_TIME;
  if (
    !Number.isInteger(startTime.sec) ||
    startTime.sec < 0 ||
    !Number.isInteger(startTime.nsec) ||
    startTime.nsec < 0 ||
    startTime.nsec >= 1e9
  ) {
    fail('startTime', `${startTime.sec} s ${startTime.nsec} ns is not a valid timestamp`);
  }
  if (spec.clients.length === 0) fail('clients', 'at least one client is needed');
  if (spec.services.length === 0) fail('services', 'at least one service is needed');
  if (!Number.isInteger(spec.flows) || spec.flows < 0) fail('flows', `${spec.flows} is not a count`);
  const concurrency = spec.concurrency ?? 16;
  if (!Number.isInteger(concurrency) || concurrency < 1) fail('concurrency', `${concurrency} is not a positive integer`);

  const clients: ResolvedClient[] = spec.clients.map((client, i) => {
    const ipBytes = ipv4ToBytes(client.ip);
    const vlan = client.vlan ?? [];
    if (vlan.length > 2 || vlan.some((vid) => !Number.isInteger(vid) || vid < 0 || vid > 4095)) {
      fail(`clients[${i}].vlan`, `${JSON.stringify(vlan)} is not 0 to 2 VIDs in 0..4095`);
    }
    const mac = client.mac ? parseMac(client.mac) : Uint8Array.of(0x02, 0x42, ...ipBytes);
    return { ip: client.ip, ipBytes, mac, vlan };
  });
  const services: ResolvedService[] = spec.services.map((service, i) => {
    if (!Number.isInteger(service.port) || service.port < 1 || service.port > 0xffff) {
      fail(`services[${i}].port`, `${service.port} is outside 1..65535`);
    }
    if (service.protocol !== 'TCP' && service.protocol !== 'UDP') {
      fail(`services[${i}].protocol`, `${String(service.protocol)} is not TCP or UDP`);
    }
    const weight = service.weight ?? 1;
    if (!(weight > 0 && Number.isFinite(weight))) fail(`services[${i}].weight`, `${weight} is not positive`);
    return { vip: service.vip, vipBytes: ipv4ToBytes(service.vip), port: service.port, protocol: service.protocol, weight };
  });
  return {
    seed: spec.seed,
    startTime,
    clients,
    services,
    flows: spec.flows,
    concurrency,
    tcpDataPackets: checkRange('tcpDataPackets', spec.tcpDataPackets ?? [1, 3], 0, 10_000),
    payloadBytes: checkRange('payloadBytes', spec.payloadBytes ?? [20, 400], 1, MAX_PAYLOAD_BYTES),
    ipOptionsShare: checkShare('ipOptionsShare', spec.ipOptionsShare ?? 0),
    strayShare: checkShare('strayShare', spec.strayShare ?? 0),
    padShortClientFrames: spec.padShortClientFrames ?? false,
    nodeMac: parseMac(NODE_MAC),
  };
}

function flowName(flow: FlowKey): string {
  return `${flow.protocol} ${flow.clientIp}:${flow.clientPort} -> ${flow.vip}:${flow.vport}`;
}

class FlowHeap {
  private readonly items: LiveFlow[] = [];

  push(flow: LiveFlow): void {
    const items = this.items;
    let i = items.push(flow) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): LiveFlow | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || !last) return top;
    items[0] = last;
    for (let i = 0; ; ) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < items.length && before(items[left]!, items[smallest]!)) smallest = left;
      if (right < items.length && before(items[right]!, items[smallest]!)) smallest = right;
      if (smallest === i) break;
      [items[i], items[smallest]] = [items[smallest]!, items[i]!];
      i = smallest;
    }
    return top;
  }
}

function before(a: LiveFlow, b: LiveFlow): boolean {
  const ta = a.times[a.next]!;
  const tb = b.times[b.next]!;
  return ta !== tb ? ta < tb : a.order < b.order;
}
