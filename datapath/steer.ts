// Sharding a replay over workers (svcpath replay --workers N), each with its
// own maps, as RSS spreads flows over CPUs with per-CPU maps. Every packet of
// a flow must reach the worker that holds its conntrack entries: both
// directions, the reply after DNAT (whose addresses differ from the
// request's), the masqueraded reply and ICMP errors about the flow. And every
// flow of one client must reach the same worker, since session affinity is
// per client. So a packet goes by its flow's client: the end that is neither
// a frontend nor a backend endpoint (MAP_STEER knows both). A masqueraded
// reply no longer names its client, but its port names the client's class
// (datapath/snat.ts), and a worker holds whole classes: client class modulo
// workers, which the control plane makes a divisor of the classes.
//
// A frame the node sent (OUTGOING) changes no state and is decided by
// worker 0, but every worker looks it up among the packets it rewrote
// (datapath/conformance.ts): its addresses are the node's rewrite, whose
// masquerade port names no client class, so it cannot be steered to the
// worker holding its entry; exactly one worker holds it.
//
// The node's own masquerade tuples (datapath/node_masq.ts) name no client
// class either, but every worker learns each of them from the frames, in
// the same order, with the client of its flow: a reply to a live one (or
// an error quoting one) goes to that client's worker, before any other rule
// (the node's address may be svcpath's masquerade address too). So that
// the order is the same, the walker leaves frames whose direction the
// capture says to process_batch, which steers them one by one.
//
// Known limit: a later fragment of a masqueraded reply carries no port and
// goes by its addresses instead.

import { clientHash6, hash32 } from './hash';
import { liveNodeTuple, nodeTuplesKnown } from './node_masq';
import { parseQuotedPacket, quoteDaddr, quoteDaddr6, quoteDport, quoteProto, quoteSaddr, quoteSaddr6, quoteSport } from './icmp_related';
import {
  CONFIG_SHARD, CONFIG_SHARDS, REASON_FRAGMENT, REASON_OUTGOING, STEER_CLASS_FLAGS, STEER_F_BACKEND, STEER_F_FRONTEND, STEER_KEY_SIZE, STEER_PORT,
  STEER_PROTO,
} from './layout';
import { mapPeek } from './maps';
import { daddr, daddr6, dport, family, isIcmpError, laterFragment, proto, saddr, saddr6, sport } from './parse';
import { steer } from './registry';
import { MAX_PORT_CLASSES, hasSnatAddress6, portClasses, snatAddress, snatAddress6, snatPortMax, snatPortMin } from './snat';

let shard: u32 = 0;
let shards: u32 = 1;

export function configureSteering(cfg: usize): void {
  shard = load<u16>(cfg + CONFIG_SHARD);
  shards = max<u32>(load<u16>(cfg + CONFIG_SHARDS), 1);
}

@inline export function sharded(): bool {
  return shards > 1;
}

/** Frames decided without state (turned away by the parser, sent by the node) are worker 0's. */
@inline export function decidesStatelessFrames(): bool {
  return shard == 0;
}

// The flow being steered, both families as IPv6 (IPv4 mapped).
const src = memory.data(16);
const dst = memory.data(16);
let srcPort: u16 = 0; // network order
let dstPort: u16 = 0;
let flowProto: u8 = 0;
/** The flow is the packet an ICMP error quotes: sent towards the backend, not from it. */
let quoted: bool = false;
const key = memory.data(STEER_KEY_SIZE);

@inline function mapped4(to: usize, addr: u32): void {
  store<u64>(to, 0);
  store<u32>(to, 0xffff0000, 8);
  store<u32>(to, addr, 12);
}

@inline function isMapped4(a: usize): bool {
  return load<u64>(a) == 0 && load<u32>(a, 8) == 0xffff0000;
}

function setFlow4(s: u32, d: u32, sp: u16, dp: u16, p: u8): void {
  mapped4(src, s);
  mapped4(dst, d);
  srcPort = sp;
  dstPort = dp;
  flowProto = p;
}

function setFlow6(s: usize, d: usize, sp: u16, dp: u16, p: u8): void {
  memory.copy(src, s, 16);
  memory.copy(dst, d, 16);
  srcPort = sp;
  dstPort = dp;
  flowProto = p;
}

/** STEER_F_* of an endpoint (16-byte address, IPv4 mapped); port and protocol 0 ask about the address alone. */
export function endpointClass(addr: usize, port: u16, p: u8): u32 {
  memory.copy(key, addr, 16);
  store<u16>(key + STEER_PORT, port);
  store<u16>(key + STEER_PROTO, <u16>p); // and the padding byte
  const value = mapPeek(steer, key);
  return value == 0 ? 0 : load<u32>(value + STEER_CLASS_FLAGS);
}

/** The masquerade address of the flow's family, with a port from the SNAT range. */
function isSnatEndpoint(addr: usize, port: u16): bool {
  const p = <u32>bswap<u16>(port);
  if (p < snatPortMin() || p > snatPortMax()) return false;
  if (isMapped4(addr)) return snatAddress != 0 && load<u32>(addr, 12) == snatAddress;
  return hasSnatAddress6 && load<u64>(addr) == load<u64>(snatAddress6) && load<u64>(addr, 8) == load<u64>(snatAddress6, 8);
}

/** The worker of the client whose masquerade port this is. */
function snatPortShard(port: u16): u32 {
  const classes = portClasses(snatPortMax() - snatPortMin() + 1);
  return ((<u32>bswap<u16>(port) - snatPortMin()) % classes) % shards;
}

/** The worker of a client: its class of the most masquerade port classes, then modulo workers. */
@inline function clientShard(client: usize): u32 {
  return (clientHash6(client) % MAX_PORT_CLASSES) % shards;
}

/** Whether this worker holds the flows of `client` (16 bytes, IPv4 mapped): always, unsharded. */
export function ownsClient(client: usize): bool {
  return shards <= 1 || clientShard(client) == shard;
}

/** Classes of the two ends, by endpoint (port > 0) or by address alone. */
function shardByClasses(srcClass: u32, dstClass: u32): i64 {
  if ((dstClass & STEER_F_FRONTEND) != 0) return clientShard(src);
  if ((srcClass & STEER_F_FRONTEND) != 0) return clientShard(dst);
  const srcBackend = (srcClass & STEER_F_BACKEND) != 0;
  const dstBackend = (dstClass & STEER_F_BACKEND) != 0;
  if (srcBackend && !dstBackend) return clientShard(dst);
  if (dstBackend && !srcBackend) return clientShard(src);
  return -1;
}

/** The worker of the flow in src/dst, with as few lookups as the common packets allow. */
function flowShard(now: u64): u32 {
  if (srcPort != 0 || dstPort != 0) {
    if (nodeTuplesKnown()) {
      const held = quoted
        ? liveNodeTuple(dst, dstPort, src, srcPort, flowProto, now)
        : liveNodeTuple(src, srcPort, dst, dstPort, flowProto, now);
      if (held != 0) return clientShard(held); // the tuple's flow starts with its client
    }
    // A masqueraded reply first: the masquerade address may be a frontend too (NodePorts).
    if (isSnatEndpoint(dst, dstPort) && (endpointClass(src, srcPort, flowProto) & STEER_F_BACKEND) != 0) return snatPortShard(dstPort);
    if (isSnatEndpoint(src, srcPort) && (endpointClass(dst, dstPort, flowProto) & STEER_F_BACKEND) != 0) return snatPortShard(srcPort);
    const dstClass = endpointClass(dst, dstPort, flowProto);
    if ((dstClass & STEER_F_FRONTEND) != 0) return clientShard(src); // a request: one lookup
    const byEndpoint = shardByClasses(endpointClass(src, srcPort, flowProto), dstClass);
    if (byEndpoint >= 0) return <u32>byEndpoint;
  }
  const byAddress = shardByClasses(endpointClass(src, 0, 0), endpointClass(dst, 0, 0));
  if (byAddress >= 0) return <u32>byAddress;
  // Neither end is known: any symmetric choice keeps the flow on one worker.
  return (hash32(src, 16) + hash32(dst, 16)) % shards;
}

/**
 * Whether the parsed frame is this worker's. `parsed` is parsePacket's
 * result: frames it turned away are decided without state, by worker 0;
 * frames the node sent are every worker's to look up (processFrame leaves
 * their verdict to worker 0). An ICMP error goes where the packet it quotes
 * goes. `now` is the frame's time, by which node tuples live.
 */
export function isOwnPacket(parsed: u8, data: usize, len: u32, now: u64): bool {
  if (parsed == REASON_OUTGOING) return true;
  if (parsed != 0 && parsed != REASON_FRAGMENT) return decidesStatelessFrames();
  quoted = isIcmpError() && !laterFragment && parseQuotedPacket(data, len);
  if (quoted) {
    if (family == 6) setFlow6(quoteSaddr6, quoteDaddr6, quoteSport, quoteDport, quoteProto);
    else setFlow4(quoteSaddr, quoteDaddr, quoteSport, quoteDport, quoteProto);
  } else if (family == 6) {
    setFlow6(saddr6, daddr6, sport, dport, proto);
  } else {
    setFlow4(saddr, daddr, sport, dport, proto);
  }
  return flowShard(now) == shard;
}
