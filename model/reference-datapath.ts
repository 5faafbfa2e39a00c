/**
 * A reference model of the datapath's decisions, written from the README's
 * "Verdicts", "Reason codes" and "What is emulated" for clarity rather than
 * speed: plain Maps for conntrack, the masquerade (SNAT) map and session
 * affinity, and a straightforward reading of each frame. It takes the same
 * compiled map entries as the WebAssembly datapath and must decide every
 * frame as it does, byte for byte (test/model.test.ts checks that).
 *
 * Scope: Ethernet (linktype 1), Linux cooked (113, 276) and raw IPv4 and
 * IPv6 (228, 229) frames captured whole, with up to two VLAN tags, carrying
 * IPv4 (fragments included) or IPv6 (no extension headers)
 * with TCP, UDP or an ICMP message that is not an error; non-IP frames.
 * Anything else throws OutsideModelScope, except a frame the node sent,
 * which is OUTGOING whatever it is and teaches nothing when it is outside
 * that scope. Conntrack, NAT, affinity, fragment and node tuple maps never
 * fill up here: the model has no LRU eviction, so callers keep the
 * datapath's maps far from full.
 */
import { IPPROTO, SVC_F, type FlowChange, type Reason, type Verdict } from '../control/compile/layout.js';
import type { Direction as CaptureDirection } from '../traces/pcap.js';
import { addressText, sameAddress, type Family } from './addresses.js';
import { clientHash, flowHash } from './flow-hash.js';
import {
  IPPROTO_TCP,
  OutsideModelScope,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  packetIdentity,
  parseFrame,
  parseLinkLayer,
  portUnreachable,
  rewriteEnd,
  type IpPacket,
} from './packet.js';
import { sourceClass, trafficPolicy } from './policy.js';
import { CompiledTables, type Backend, type Frontend } from './tables.js';
import type { Compiled } from '../control/compile/compiler.js';

export { OutsideModelScope } from './packet.js';

export interface FrameOptions {
  wireLen: number;
  tsSec: number;
  tsNsec: number;
  linktype: number;
  /** What the capture says of the frame (pcapng epb_flags). */
  direction?: CaptureDirection;
}

export interface ModelOutcome {
  verdict: Verdict;
  reason: Reason;
  /** 0 when the frame concerns no service port. */
  serviceId: number;
  /** The backend the frame was sent to, or came from for a reply; 0 when none. */
  backendId: number;
  /** Whether the flow's source is masqueraded (both directions). */
  snat: boolean;
  /** The frame as it leaves: rewritten, replaced by an ICMP error, or as it came. */
  out: Uint8Array;
  /** What a cluster change (sync) did to the frame's flow, when it did anything. */
  flowChange?: FlowChange;
}

/**
 * kube-proxy's stale UDP flush, as the control plane decides it: whether the
 * flow from a client to this frontend (address as addresses.ts writes it,
 * port), sent to a backend at this address, lost its endpoint (true: flush).
 */
export type StaleUdpTest = (frontendAddress: string, frontendPort: number, backendAddress: string) => boolean;

/** One direction's conntrack entry; a flow has one per direction, each aging on its own. */
interface ConntrackEntry {
  direction: Direction;
  /** The flow as its client sent it. */
  flow: FlowEnds & { family: Family; protocol: number };
  /** The original entry of a flow the control plane flushed (kube-proxy's stale UDP flush): over at its next packet. */
  flushed: boolean;
  serviceId: number;
  backendId: number;
  revNatIndex: number;
  /** The masquerade port, when the flow's source was masqueraded. */
  masqueradePort?: number;
  closing: boolean;
  seenReply: boolean;
  /** Packet time, nanoseconds. */
  lastSeen: bigint;
}

interface Endpoint {
  address: Uint8Array;
  port: number;
}

/** A flow by its two ends as the client sent it. */
interface FlowEnds {
  client: Endpoint;
  frontend: Endpoint;
}

/** A flow's timeout state: conntrack's, or a node tuple's own clock. */
interface Clock {
  closing: boolean;
  seenReply: boolean;
  /** Packet time, nanoseconds. */
  lastSeen: bigint;
}

/** A tuple the node masqueraded a flow to: the flow, and a clock kept by the node's frames on the tuple. */
type NodeTuple = FlowEnds & Clock;

/** The client behind a masqueraded flow's reply tuple, and the node's masquerade port learned for the flow. */
type NatOrigin = Endpoint & { nodePort?: number };

const NS_PER_SECOND = 1_000_000_000n;
/** Salts the SNAT port hash so that port choice and Maglev's backend choice do not correlate (datapath/snat.ts). */
const SNAT_PORT_HASH_SALT = 0x9e3779b9;

type Direction = 'original' | 'reply';

function tupleKey(direction: Direction, proto: number, from: Endpoint, to: Endpoint): string {
  return `${direction} ${proto} ${addressText(from.address)}:${from.port} > ${addressText(to.address)}:${to.port}`;
}

/** A node tuple's key: the backend, then the node's masquerade address and port, as its replies arrive. */
const nodeTupleKey = (proto: number, backend: Endpoint, node: Endpoint) => tupleKey('reply', proto, backend, node);

const sameEndpoint = (a: Endpoint, b: Endpoint) => sameAddress(a.address, b.address) && a.port === b.port;

const isClosing = (packet: IpPacket) => packet.protocol === IPPROTO_TCP && (packet.tcpFlags & (TCP_FIN | TCP_RST)) !== 0;

export class ReferenceDatapath {
  private tables: CompiledTables;
  private readonly conntrack = new Map<string, ConntrackEntry>();
  /** Reply tuple of a masqueraded flow -> the client its replies go back to. */
  private readonly natOrigins = new Map<string, NatOrigin>();
  /** "client serviceId" -> the client's backend and the time of its last new connection. */
  private readonly affinities = new Map<string, { backendId: number; lastUsed: bigint }>();
  /** (source, destination, identification, protocol) of a service flow's fragmented datagram -> its ports. */
  private readonly fragmentPorts = new Map<string, { source: number; destination: number }>();
  /** In a capture with direction, requests that arrived for a frontend, by identity (packetIdentity): their flows. */
  private readonly arrivals = new Map<string, FlowEnds>();
  /** The tuples the node masqueraded flows to (nodeTupleKey), learned from its copies of their requests. */
  private readonly nodeTuples = new Map<string, NodeTuple>();
  /**
   * Every frontend and every backend endpoint of any Service since the first
   * state, "address port protocol": what the node's copies are classed by.
   * A sync only adds to them: the flows of a frontend or backend that went
   * outlive it, and the node's copies of their requests still teach its tuples.
   */
  private readonly frontendEndpoints = new Set<string>();
  private readonly backendEndpoints = new Set<string>();

  constructor(compiled: Compiled) {
    this.tables = new CompiledTables(compiled);
    this.learnEndpoints(compiled);
  }

  private learnEndpoints(compiled: Compiled): void {
    for (const svc of compiled.services)
      for (const f of svc.frontends) this.frontendEndpoints.add(endpointText(f.address, f.port, f.protocol));
    for (const b of compiled.backends) this.backendEndpoints.add(endpointText(b.ip, b.port, b.protocol));
  }

  /**
   * A cluster change reaching the datapath: the tables become those of the
   * new compiled entries (whose ids are the old ones where they name the same
   * things: the control plane keeps them), and conntrack, NAT, affinity and
   * the rest stay. With `flush` (kube-proxy's semantics), the UDP flows it
   * says lost their endpoint are flushed: their original entry is marked, so
   * that their next packet starts a new flow, and their reply entry and NAT
   * origin go. Flows already over are marked too, which changes nothing: a
   * packet of one starts a new flow anyway.
   */
  sync(compiled: Compiled, flush?: StaleUdpTest): void {
    const before = this.tables;
    this.tables = new CompiledTables(compiled);
    this.learnEndpoints(compiled);
    if (!flush) return;
    for (const entry of this.conntrack.values()) {
      const { flow } = entry;
      if (entry.direction !== 'original' || flow.protocol !== IPPROTO.UDP || entry.flushed) continue;
      const backend = before.backend(flow.family, entry.backendId);
      if (!backend || !flush(addressText(flow.frontend.address), flow.frontend.port, addressText(backend.address))) continue;
      entry.flushed = true;
      this.forgetReply(entry);
    }
  }

  process(frame: Uint8Array, opts: FrameOptions): ModelOutcome {
    if (opts.wireLen !== frame.length) throw new OutsideModelScope('a frame captured shorter than the wire carried it');
    const now = BigInt(opts.tsSec) * NS_PER_SECOND + BigInt(opts.tsNsec);
    const out = frame.slice();
    // A frame the node sent is no arrival, and one for another host never reaches its IP layer: neither makes a flow.
    if (opts.direction === 'outbound') {
      this.followSent(out, opts.linktype, now);
      return outcome('PASS', 'OUTGOING', out);
    }
    const link = parseLinkLayer(out, opts.linktype);
    if (link.direction === 'sent') {
      this.followSent(out, opts.linktype, now);
      return outcome('PASS', 'OUTGOING', out);
    }
    if (link.direction === 'other-host') return outcome('PASS', 'OTHER_HOST', out);
    const packet = parseFrame(out, link);
    if (!packet) return outcome('PASS', 'NON_IP', out);
    if (link.saysDirection || opts.direction === 'inbound') this.followArrival(out, packet, now);
    if (packet.fragment?.position === 'later') return this.laterFragment(out, packet, now);
    return this.decide(out, packet, now);
  }

  /**
   * An arrival in a capture with direction, before it is decided: a frame on
   * a node tuple keeps the tuple's clock (or, timed out, forgets it); a
   * request for a frontend, or one that went (its established flows outlive
   * it), is kept by identity for the node's copy of it.
   */
  private followArrival(frame: Uint8Array, packet: IpPacket, now: bigint): void {
    if (!packet.ports || packet.fragment?.position === 'later') return;
    const source = { address: packet.source, port: packet.ports.source };
    const destination = { address: packet.destination, port: packet.ports.destination };
    this.keepClock(nodeTupleKey(packet.protocol, source, destination), packet, now, true);
    if (!this.frontendEndpoints.has(endpointText(addressText(destination.address), destination.port, packet.protocol))) return;
    const id = packetIdentity(frame, packet);
    if (id !== undefined) this.arrivals.set(id, { client: source, frontend: destination });
  }

  /**
   * A frame the node sent: its copy of a request that arrived teaches the
   * tuple it masqueraded the flow to, when it did masquerade it (the source
   * is not the client's) and sent it to a backend; otherwise a frame on a
   * node tuple keeps the tuple's clock. A frame outside the model's scope
   * teaches nothing.
   */
  private followSent(frame: Uint8Array, linktype: number, now: bigint): void {
    let packet: IpPacket | undefined;
    try {
      packet = parseFrame(frame, parseLinkLayer(frame, linktype));
    } catch (e) {
      if (e instanceof OutsideModelScope) return;
      throw e;
    }
    if (!packet?.ports || packet.fragment?.position === 'later') return;
    const source = { address: packet.source, port: packet.ports.source };
    const backend = { address: packet.destination, port: packet.ports.destination };
    const key = nodeTupleKey(packet.protocol, backend, source);
    const id = packetIdentity(frame, packet);
    const flow = id === undefined ? undefined : this.arrivals.get(id);
    if (flow) {
      this.arrivals.delete(id!);
      const toBackend = this.backendEndpoints.has(endpointText(addressText(backend.address), backend.port, packet.protocol));
      if (!sameEndpoint(source, flow.client) && toBackend) {
        this.learn(key, flow, packet, now);
        return;
      }
    }
    this.keepClock(key, packet, now, false);
  }

  /** A frame on a node tuple: the tuple's clock goes on, or a tuple timed out is forgotten. */
  private keepClock(key: string, packet: IpPacket, now: bigint, isReply: boolean): void {
    const held = this.nodeTuples.get(key);
    if (!held) return;
    if (this.isLive(held, packet.protocol, now)) touch(held, packet, now, isReply);
    else this.nodeTuples.delete(key);
  }

  /**
   * The node's tuple `key` for `flow`: kept going when the flow holds it
   * already, left to another live flow that is not closing, else learned
   * with a clock from now. The flow's NAT entry (when svcpath masqueraded
   * it to the tuple's backend) takes the node's port as the one its copies show now.
   */
  private learn(key: string, flow: FlowEnds, packet: IpPacket, now: bigint): void {
    const held = this.nodeTuples.get(key);
    const backend = { address: packet.destination, port: packet.ports!.destination };
    if (held && sameEndpoint(held.client, flow.client) && sameEndpoint(held.frontend, flow.frontend)) {
      touch(held, packet, now, false);
    } else if (!held || !this.isLive(held, packet.protocol, now) || held.closing) {
      this.nodeTuples.set(key, { ...flow, closing: isClosing(packet), seenReply: false, lastSeen: now });
    }
    const found = this.masqueradedFlow(packet, flow, backend, now);
    if (found) found.origin.nodePort = packet.ports!.source;
  }

  /**
   * svcpath's flow `flow`, when its replies from `backend` are svcpath's to
   * reverse-NAT: live, masqueraded, to that backend, its NAT entry naming its client.
   */
  private masqueradedFlow(packet: IpPacket, flow: FlowEnds, backend: Endpoint, now: bigint) {
    const { family, protocol } = packet;
    const original = this.conntrack.get(tupleKey('original', protocol, flow.client, flow.frontend));
    if (!original || !this.isLive(original, protocol, now) || original.masqueradePort === undefined) return undefined;
    const chosen = this.tables.backend(family, original.backendId);
    if (!chosen || !sameEndpoint(chosen, backend)) return undefined;
    const replyKey = this.replyKey(original, chosen);
    const origin = this.natOrigins.get(replyKey);
    if (!origin || !sameEndpoint(origin, flow.client)) return undefined;
    return { original, replyKey, origin };
  }

  private decide(frame: Uint8Array, packet: IpPacket, now: bigint): ModelOutcome {
    if (!packet.ports) return this.notAServiceFlow(frame, packet);
    const decided = this.reply(frame, packet, now) ?? this.toFrontend(frame, packet, now) ?? this.withoutFrontend(frame, packet, now);
    // The first fragment of a service flow's datagram leaves its ports for the later ones.
    if (packet.fragment?.position === 'first' && (decided.reason === 'SERVICE' || decided.reason === 'REPLY')) {
      this.fragmentPorts.set(fragmentKey(packet), packet.ports);
    }
    return decided;
  }

  /**
   * A later fragment follows its datagram's first fragment, with the ports
   * that one carried, when that was a service flow's; otherwise it is
   * passed, except to a cluster IP, where nothing but service traffic goes.
   */
  private laterFragment(frame: Uint8Array, packet: IpPacket, now: bigint): ModelOutcome {
    const ports = this.fragmentPorts.get(fragmentKey(packet));
    if (ports) return this.decide(frame, { ...packet, ports }, now);
    if (this.tables.isClusterIP(packet.family, packet.destination)) return outcome('DROP', 'FRAGMENT_UNTRACKED', frame);
    return outcome('PASS', 'FRAGMENT', frame);
  }

  /**
   * A backend's reply to a tracked flow: conntrack decides before any
   * service rule, as the kernel's conntrack does for kube-proxy — a packet
   * whose tuple is a live flow's reply tuple is that flow's reply, even when
   * it happens to be addressed to a frontend too (the README does not say
   * which comes first). Its source goes back to the frontend the client
   * used, and a masqueraded flow's destination back to the client.
   */
  private reply(frame: Uint8Array, packet: IpPacket, now: bigint): ModelOutcome | undefined {
    const ports = packet.ports!;
    const source = { address: packet.source, port: ports.source };
    const destination = { address: packet.destination, port: ports.destination };
    const held = this.nodeTuples.get(nodeTupleKey(packet.protocol, source, destination));
    // A live tuple the node masqueraded a flow to decides alone: svcpath's own tuple, if the same, gives way.
    if (held && this.isLive(held, packet.protocol, now)) return this.replyToNodeTuple(frame, packet, held, now);
    const key = tupleKey('reply', packet.protocol, source, destination);
    const entry = this.conntrack.get(key);
    if (!entry) return undefined;
    if (!this.isLive(entry, packet.protocol, now)) {
      this.conntrack.delete(key);
      return undefined;
    }
    return this.reverseNat(frame, packet, entry, entry.masqueradePort !== undefined ? this.natOrigins.get(key) : destination, now);
  }

  /**
   * A reply to the node's tuple of a flow svcpath masqueraded to the
   * backend it comes from, the tuple being the one the flow last learned:
   * reverse-NATed as a reply to svcpath's own tuple of the flow is.
   */
  private replyToNodeTuple(frame: Uint8Array, packet: IpPacket, held: NodeTuple, now: bigint): ModelOutcome | undefined {
    const ports = packet.ports!;
    const found = this.masqueradedFlow(packet, held, { address: packet.source, port: ports.source }, now);
    if (!found || found.origin.nodePort !== ports.destination) return undefined;
    const reply = this.conntrack.get(found.replyKey);
    const sameFlow =
      reply &&
      reply.serviceId === found.original.serviceId &&
      reply.revNatIndex === found.original.revNatIndex &&
      reply.backendId === found.original.backendId;
    return this.reverseNat(frame, packet, sameFlow ? reply : found.original, found.origin, now);
  }

  /** A backend's reply to the flow of `entry`, back to `client` from the frontend the client used. */
  private reverseNat(frame: Uint8Array, packet: IpPacket, entry: ConntrackEntry, client: Endpoint | undefined, now: bigint): ModelOutcome {
    const { serviceId, backendId } = entry;
    const masqueraded = entry.masqueradePort !== undefined;
    const frontend = this.tables.reverseNat(packet.family, entry.revNatIndex);
    if (!frontend || !client) return outcome('DROP', 'STATE_MISMATCH', frame, { serviceId, backendId });
    touch(entry, packet, now, true);
    const original = this.conntrack.get(tupleKey('original', packet.protocol, client, frontend));
    if (original) touch(original, packet, now, true);
    rewriteEnd(frame, packet, 'source', frontend.address, frontend.port);
    if (masqueraded) rewriteEnd(frame, packet, 'destination', client.address, client.port);
    return outcome('TX', 'REPLY', frame, { serviceId, backendId, snat: masqueraded });
  }

  /** A packet to a service frontend: DNAT to its flow's backend, chosen now for a new flow. */
  private toFrontend(frame: Uint8Array, packet: IpPacket, now: bigint): ModelOutcome | undefined {
    const { family } = packet;
    const ports = packet.ports!;
    const frontend = this.tables.frontend(family, packet.destination, ports.destination, packet.protocol);
    if (!frontend) return undefined;
    const { serviceId } = frontend;
    if (frontend.flags & SVC_F.SOURCE_RANGE && !this.tables.sourceAllowed(family, serviceId, packet.source)) {
      return outcome('DROP', 'SOURCE_RANGE', frame, { serviceId });
    }
    const client = { address: packet.source, port: ports.source };
    const originalKey = tupleKey('original', packet.protocol, client, { address: packet.destination, port: ports.destination });
    let { known, change } = this.trackedFlow(originalKey, packet, now);
    const backend = known && this.tables.backend(family, known.backendId);
    // A backend that went (a tombstone): kept, as kube-proxy's conntrack keeps the DNAT, or, under Cilium's semantics, chosen again.
    if (known && backend?.gone) {
      if (this.tables.settings.reselectGone) {
        change = 'RESELECTED';
        // The old flow ends first, so that a choice that fails leaves no flow to choose again.
        this.endFlow(originalKey, known);
        known = undefined;
      } else {
        change = 'STALE_BACKEND';
      }
    }
    if (known && backend) return this.follow(frame, packet, known, backend, serviceId, change, now);
    const started = this.newFlow(frame, packet, frontend, now, change);
    if ('verdict' in started) return started;
    this.conntrack.set(originalKey, started.entry);
    const replyKey = this.replyKey(started.entry, started.backend);
    this.conntrack.set(replyKey, { ...started.entry, direction: 'reply' });
    if (started.entry.masqueradePort !== undefined) this.natOrigins.set(replyKey, { ...client });
    return this.sendToBackend(frame, packet, started.entry, started.backend, serviceId, started.change);
  }

  /**
   * A packet to no frontend. It may be one of an established flow to a
   * frontend that went (a deleted Service, a removed external IP or port):
   * the kernel's conntrack entry outlives kube-proxy's rules and keeps the
   * DNAT (STALE_BACKEND when the backend went too); under Cilium's semantics
   * the flow chooses again, finds no frontend and ends (RESELECTED). Anything
   * else, a flow that is over included, is decided as no flow's. (The
   * datapath looks only once the control plane says a frontend went,
   * CFG_F.REMOVED_FRONTENDS; before that, no entry can match.)
   */
  private withoutFrontend(frame: Uint8Array, packet: IpPacket, now: bigint): ModelOutcome {
    const ports = packet.ports!;
    const client = { address: packet.source, port: ports.source };
    const originalKey = tupleKey('original', packet.protocol, client, { address: packet.destination, port: ports.destination });
    const { known, change } = this.trackedFlow(originalKey, packet, now);
    if (!known) return this.notAServiceFlow(frame, packet, change);
    if (this.tables.settings.reselectGone) {
      this.endFlow(originalKey, known);
      return this.notAServiceFlow(frame, packet, 'RESELECTED');
    }
    const backend = this.tables.backend(packet.family, known.backendId);
    if (!backend) return this.notAServiceFlow(frame, packet);
    return this.follow(frame, packet, known, backend, known.serviceId, backend.gone ? 'STALE_BACKEND' : undefined, now);
  }

  /**
   * The packet's live flow, unless it is over: a flow the control plane
   * flushed (marked FLUSHED) or one a bare SYN reopens ends, and the packet
   * starts a new one.
   */
  private trackedFlow(originalKey: string, packet: IpPacket, now: bigint): { known?: ConntrackEntry; change?: FlowChange } {
    const known = this.conntrack.get(originalKey);
    if (!known || !this.isLive(known, packet.protocol, now)) return {};
    if (!known.flushed && !reopens(known, packet)) return { known };
    this.endFlow(originalKey, known);
    return known.flushed ? { change: 'FLUSHED' } : {};
  }

  /** A packet of a tracked flow: both of its entries see it, and it goes to the flow's backend. */
  private follow(
    frame: Uint8Array,
    packet: IpPacket,
    entry: ConntrackEntry,
    backend: Backend,
    serviceId: number,
    change: FlowChange | undefined,
    now: bigint,
  ): ModelOutcome {
    touch(entry, packet, now, false);
    const reply = this.conntrack.get(this.replyKey(entry, backend));
    if (reply) touch(reply, packet, now, false);
    return this.sendToBackend(frame, packet, entry, backend, serviceId, change);
  }

  /** DNAT to the flow's backend, and SNAT to its masquerade port if it has one. */
  private sendToBackend(
    frame: Uint8Array,
    packet: IpPacket,
    entry: ConntrackEntry,
    backend: Backend,
    serviceId: number,
    change: FlowChange | undefined,
  ): ModelOutcome {
    rewriteEnd(frame, packet, 'destination', backend.address, backend.port);
    if (entry.masqueradePort !== undefined)
      rewriteEnd(frame, packet, 'source', this.tables.settings.masqueradeAddress[packet.family]!, entry.masqueradePort);
    return outcome(backend.local ? 'REDIRECT' : 'TX', 'SERVICE', frame, {
      serviceId,
      backendId: entry.backendId,
      snat: entry.masqueradePort !== undefined,
      flowChange: change,
    });
  }

  /**
   * A new flow: the backend set and masquerading its traffic policy and
   * source call for, the client's affinity backend or Maglev's choice, and a
   * masquerade port when needed. Returns the flow's (not yet stored) entry
   * and what a change did to it (`change`, the flow's own, or else an
   * affinity reset), or the outcome of a flow that cannot start, with that.
   */
  private newFlow(
    frame: Uint8Array,
    packet: IpPacket,
    frontend: Frontend,
    now: bigint,
    change: FlowChange | undefined,
  ): { entry: ConntrackEntry; backend: Backend; change?: FlowChange } | ModelOutcome {
    const { family } = packet;
    const { serviceId } = frontend;
    if (frontend.backendCount === 0)
      return outcome('TX', 'NO_ENDPOINTS', portUnreachable(frame, packet), { serviceId, flowChange: change });
    const policy = trafficPolicy(this.tables, family, frontend.flags, sourceClass(this.tables, family, packet.source));
    const local = policy.backends === 'local';
    if ((local ? frontend.localBackendCount : frontend.backendCount) === 0)
      return outcome('DROP', 'NO_LOCAL_ENDPOINTS', frame, { serviceId, flowChange: change });
    const table = 4 * serviceId + (family === 6 ? 2 : 0) + (local ? 1 : 0);
    const affine = (frontend.flags & SVC_F.AFFINITY) !== 0;
    const affinity = affine ? this.affinityBackend(packet.source, frontend, table, now) : undefined;
    if (affinity === 'reset') change ??= 'AFFINITY_RESET';
    const backendId = typeof affinity === 'number' ? affinity : this.maglevBackend(table, packet);
    const backend = this.tables.backend(family, backendId);
    if (!backend) return outcome('DROP', 'STATE_MISMATCH', frame, { serviceId, flowChange: change });
    let masqueradePort: number | undefined;
    // A client reaching itself through the service (hairpin) must not see its own address as the source.
    if (policy.masquerade || sameAddress(backend.address, packet.source)) {
      masqueradePort = this.masqueradePort(packet, backend, now);
      // No backend in the verdict: the packet goes nowhere ("backend ... null when none").
      if (masqueradePort === undefined) return outcome('DROP', 'SNAT_EXHAUSTED', frame, { serviceId, flowChange: change });
    }
    if (affine) this.affinities.set(`${addressText(packet.source)} ${serviceId}`, { backendId, lastUsed: now });
    const ports = packet.ports!;
    return {
      backend,
      change,
      entry: {
        direction: 'original',
        flow: {
          family,
          protocol: packet.protocol,
          client: { address: packet.source, port: ports.source },
          frontend: { address: packet.destination, port: ports.destination },
        },
        flushed: false,
        serviceId,
        backendId,
        revNatIndex: frontend.revNatIndex,
        masqueradePort,
        closing: isClosing(packet),
        seenReply: false,
        lastSeen: now,
      },
    };
  }

  /**
   * The client's affinity backend while it holds: not expired, and still in
   * the set the flow may use; 'reset' when it has not expired but its
   * backend is no longer in that set (it left, or takes no new flows). "Expiring after timeoutSeconds" leaves the
   * boundary open; datapath/affinity.ts keeps a record exactly that old.
   */
  private affinityBackend(client: Uint8Array, frontend: Frontend, table: number, now: bigint): number | 'reset' | undefined {
    const record = this.affinities.get(`${addressText(client)} ${frontend.serviceId}`);
    if (!record || now - record.lastUsed > BigInt(frontend.affinityTimeoutSeconds) * NS_PER_SECOND) return undefined;
    return this.tables.tableHolds(table, record.backendId) ? record.backendId : 'reset';
  }

  /** Maglev: the table's slot at flow hash mod M; 0 (no backend) when the table does not exist. */
  private maglevBackend(table: number, packet: IpPacket): number {
    const slots = this.tables.maglevTable(table);
    if (!slots) return 0;
    const ports = packet.ports!;
    return slots[
      flowHash(this.tables.settings.seed, packet.source, packet.destination, ports.source, ports.destination, packet.protocol) %
        slots.length
    ];
  }

  /**
   * The masquerade port of a new flow. The range is split into C classes (C
   * the largest power of two up to 64 leaving every class 256 ports or more),
   * port min + c + k * C being of class c; the client's class is its client
   * hash modulo C. Within it: from a seeded hash of (client, backend, ports,
   * protocol), then the class's next ports in turn (wrapping around) past
   * those whose reply tuple a live flow owns; undefined when all are taken
   * or the family has no masquerade address.
   */
  private masqueradePort(packet: IpPacket, backend: Backend, now: bigint): number | undefined {
    const { min, max } = this.tables.settings.snatPorts;
    const address = this.tables.settings.masqueradeAddress[packet.family];
    if (!address || min === 0 || max < min) return undefined;
    let classes = 1;
    while (classes < 64 && Math.floor((max - min + 1) / (classes * 2)) >= 256) classes *= 2;
    const first = min + (clientHash(packet.source) % classes);
    const size = Math.floor((max - first) / classes) + 1;
    const ports = packet.ports!;
    const seed = (this.tables.settings.seed ^ SNAT_PORT_HASH_SALT) >>> 0;
    const start = flowHash(seed, packet.source, backend.address, ports.source, backend.port, packet.protocol) % size;
    for (let i = 0; i < size; i++) {
      const port = first + ((start + i) % size) * classes;
      const owner = this.conntrack.get(tupleKey('reply', packet.protocol, backend, { address, port }));
      if (!owner || !this.isLive(owner, packet.protocol, now)) return port;
    }
    return undefined;
  }

  /**
   * A bare SYN on a closing flow's tuple starts a new flow; the old one is
   * over, both its entries and its masquerade binding. The README only says
   * "a SYN on a closed flow's tuple starts a new flow"; the kernel's
   * conntrack, which kube-proxy relies on, kills the old connection first
   * (nf_conntrack_proto_tcp: "Attempt to reopen a closed/aborted connection.
   * Delete this connection and try again."), so its reply tuple and port are
   * free for the new flow.
   */
  private endFlow(originalKey: string, entry: ConntrackEntry): void {
    this.conntrack.delete(originalKey);
    this.forgetReply(entry);
  }

  /**
   * A flow's reply entry and NAT origin, when they are still its own: gone
   * already when the control plane flushed it, or another flow's by now.
   */
  private forgetReply(entry: ConntrackEntry): void {
    const backend = this.tables.backend(entry.flow.family, entry.backendId);
    if (!backend) return;
    const replyKey = this.replyKey(entry, backend);
    const reply = this.conntrack.get(replyKey);
    if (reply && reply.serviceId === entry.serviceId && reply.revNatIndex === entry.revNatIndex && reply.backendId === entry.backendId) {
      this.conntrack.delete(replyKey);
      this.natOrigins.delete(replyKey);
    }
  }

  /** The reply tuple of a flow: backend -> client, or -> the masquerade address and port. */
  private replyKey(entry: ConntrackEntry, backend: Backend): string {
    const { family, protocol, client } = entry.flow;
    const to =
      entry.masqueradePort !== undefined
        ? { address: this.tables.settings.masqueradeAddress[family]!, port: entry.masqueradePort }
        : client;
    return tupleKey('reply', protocol, backend, to);
  }

  /**
   * Timeouts on the packet clock: TCP established, or closing once a FIN or
   * RST was seen; UDP, or the longer stream timeout once a reply was seen.
   * The README does not say whether an entry exactly `timeout` old is still
   * live; datapath/conntrack.ts says it is (age <= timeout), and a clock
   * that steps back keeps entries live.
   */
  private isLive(entry: Clock, proto: number, now: bigint): boolean {
    const s = this.tables.settings;
    const seconds = proto === IPPROTO_TCP ? (entry.closing ? s.tcpClosing : s.tcpEstablished) : entry.seenReply ? s.udpStream : s.udp;
    return now - entry.lastSeen <= BigInt(seconds) * NS_PER_SECOND;
  }

  /**
   * Not for a frontend and no reply: kube-proxy rejects anything else sent to
   * a cluster IP (any port, any protocol), drops what goes to an unallocated
   * address of the service range, and leaves the rest to the host.
   * `flowChange`: what a cluster change did to a flow of the packet's that just ended.
   */
  private notAServiceFlow(frame: Uint8Array, packet: IpPacket, flowChange?: FlowChange): ModelOutcome {
    const { family, destination } = packet;
    if (this.tables.isClusterIP(family, destination)) return outcome('TX', 'UNSERVED_PORT', portUnreachable(frame, packet), { flowChange });
    if (this.tables.inServiceRange(family, destination)) return outcome('DROP', 'UNALLOCATED_IP', frame, { flowChange });
    return outcome('PASS', 'NO_SERVICE', frame, { flowChange });
  }
}

/** An endpoint as frontendEndpoints and backendEndpoints hold it; `protocol` by name or number. */
const endpointText = (address: string, port: number, protocol: keyof typeof IPPROTO | number) =>
  `${address} ${port} ${typeof protocol === 'number' ? protocol : IPPROTO[protocol]}`;

const fragmentKey = (p: IpPacket) => `${addressText(p.source)} > ${addressText(p.destination)} id ${p.fragment!.id} proto ${p.protocol}`;

/** A bare SYN (no ACK) on a flow that was closing starts a new flow on the same tuple. */
function reopens(entry: ConntrackEntry, packet: IpPacket): boolean {
  return packet.protocol === IPPROTO_TCP && (packet.tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN && entry.closing;
}

function touch(entry: Clock, packet: IpPacket, now: bigint, isReply: boolean): void {
  if (now > entry.lastSeen) entry.lastSeen = now;
  if (isReply) entry.seenReply = true;
  if (isClosing(packet)) entry.closing = true;
}

function outcome(
  verdict: Verdict,
  reason: Reason,
  out: Uint8Array,
  flow: { serviceId?: number; backendId?: number; snat?: boolean; flowChange?: FlowChange } = {},
): ModelOutcome {
  const decided = { verdict, reason, serviceId: flow.serviceId ?? 0, backendId: flow.backendId ?? 0, snat: flow.snat ?? false, out };
  return flow.flowChange ? { ...decided, flowChange: flow.flowChange } : decided;
}
