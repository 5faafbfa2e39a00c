// The node's own masquerade tuples. The node masquerades a flow with the
// address of the interface the packet leaves by and a random port (kube-proxy's
// MASQUERADE fully-random), not with the tuple svcpath chose, so in a capture
// taken on the node the backend's replies are addressed to the node's tuple.
// The node's outgoing copy of a request shows that tuple: found by the
// request's NAT-invariant identity (datapath/conformance.ts) among the
// arrivals for frontends (MAP_ARRIVALS), it teaches the tuple (MAP_NODE_MASQ:
// backend and the node's address and port -> the flow's client and frontend).
//
// A tuple has a clock of its own, kept by the node's frames on it (its copies
// of the flow's requests, the backend's replies to it) with conntrack's
// timeouts, and a tuple a live flow holds is not taken by another one (a
// closing one's may be: the kernel frees a closed connection's tuple long
// before svcpath's closing timeout). A reply to a live tuple is decided by it
// alone (datapath/index.ts): it is the flow's reply when svcpath masqueraded
// that flow, to that backend, and the tuple is the one the flow's copies
// showed last (SNAT4_NODE_PORT in its NAT entry: a reopened flow's old tuple
// is not its own); otherwise it is no reply of svcpath's. svcpath's own
// masquerade tuple, should it be the same, gives way: the replies go to the node's.
//
// Every frame of a capture with direction is followed before it is decided,
// and with --workers every worker follows every such frame in order (the
// walker leaves them for process_batch to steer), so these maps are the same
// on every worker and a reply to a node's tuple is steered to the worker of
// its flow's client (datapath/steer.ts). Only that worker holds the flow, so
// only it stamps the flow's NAT entry and counts what was learned. Lookups
// made to decide or steer a packet leave the maps' LRU order alone.
//
// Nothing here runs for a capture without direction: no arrival is kept and
// no tuple learned, and the decisions pay one test of an empty map.

import { countConformance, identity } from './conformance';
import { ctIsLive, ctLookup4, ctLookup6, isLive, touch } from './conntrack';
import {
  ARRIVAL_CLIENT, ARRIVAL_CLIENT_PORT, ARRIVAL_FRONTEND, ARRIVAL_FRONTEND_PORT, ARRIVAL_SIZE, BPF_ANY, CONFORM_LEARNED,
  CONFORM_TAKEN, CT_BACKEND_ID, CT_DIR_ORIGINAL, CT_F_CLOSING, CT_F_SNAT, CT_FLAGS, CT_SNAT_PORT, LB4_BE_ADDRESS, LB4_BE_PORT,
  LB6_BE_ADDRESS, LB6_BE_PORT, NM_FLAGS, NM_KEY_BACKEND, NM_KEY_BACKEND_PORT, NM_KEY_NODE, NM_KEY_NODE_PORT, NM_KEY_PROTO,
  NM_KEY_SIZE, NM_LAST_SEEN, NM_SIZE, SNAT4_ADDRESS, SNAT4_NODE_PORT, SNAT4_PORT, SNAT6_ADDRESS, SNAT6_NODE_PORT, SNAT6_PORT,
  STEER_F_BACKEND, STEER_F_FRONTEND,
} from './layout';
import { lookupBackend4, lookupBackend6 } from './lb';
import { mapDelete, mapLookup, mapPeek, mapUpdate } from './maps';
import {
  daddr, daddr6, dport, family, hasPorts, laterFragment, packetReason, proto, saddr, saddr6, sentByNode, sport, tcpFlags,
} from './parse';
import { arrivals, nodeMasq } from './registry';
import { lookupSnat4, lookupSnat6, snatAddress, snatAddress6 } from './snat';
import { endpointClass, ownsClient } from './steer';

const tupleKey = memory.data(NM_KEY_SIZE);
const tupleValue = memory.data(NM_SIZE);
/** The arrival the node's copy being followed is a copy of. */
const flow = memory.data(ARRIVAL_SIZE);
const source = memory.data(16);
const destination = memory.data(16);

/** Whether the node's copies taught any tuple: without one, no lookup is made. */
@inline export function nodeTuplesKnown(): bool {
  return nodeMasq.count != 0;
}

/**
 * Follows a parsed frame of a capture with direction, before it is decided
 * or steered: an arrival for a frontend is kept by its identity, the node's
 * copy of one teaches the tuple the node masqueraded its flow to, and any
 * other frame on a known tuple keeps the tuple's clock.
 */
export function followNodeMasquerade(data: usize, len: u32, now: u64): void {
  if (packetReason != 0 || laterFragment || !hasPorts(proto)) return;
  storeEnds();
  if (sentByNode) followCopy(data, len, now);
  else followArrival(data, len, now);
}

/** The parsed packet's source and destination, as 16 bytes each (IPv4 mapped). */
function storeEnds(): void {
  if (family == 6) {
    memory.copy(source, saddr6, 16);
    memory.copy(destination, daddr6, 16);
  } else {
    storeMapped4(source, saddr);
    storeMapped4(destination, daddr);
  }
}

@inline function storeMapped4(to: usize, v4: u32): void {
  store<u64>(to, 0);
  store<u32>(to, 0xffff0000, 8);
  store<u32>(to, v4, 12);
}

@inline function sameAddress(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8);
}

function followArrival(data: usize, len: u32, now: u64): void {
  if (nodeTuplesKnown()) keepClock(fillKey(source, sport, destination, dport), now, true);
  if ((endpointClass(destination, dport, proto) & STEER_F_FRONTEND) == 0) return;
  const id = identity(data, len);
  if (id == 0) return;
  memory.copy(flow + ARRIVAL_CLIENT, source, 16);
  memory.copy(flow + ARRIVAL_FRONTEND, destination, 16);
  store<u16>(flow + ARRIVAL_CLIENT_PORT, sport);
  store<u16>(flow + ARRIVAL_FRONTEND_PORT, dport);
  mapUpdate(arrivals, id, flow, BPF_ANY);
}

/**
 * The node's frame: a copy of an arrival teaches its tuple when the node
 * masqueraded it (the copy's source is not the client's) and sent it to a
 * backend. An arrival is copied once (a packet the node sends twice, from a
 * bridge and then its port, teaches once).
 */
function followCopy(data: usize, len: u32, now: u64): void {
  const key = fillKey(destination, dport, source, sport);
  const id = identity(data, len);
  const arrival = id != 0 ? mapLookup(arrivals, id) : 0;
  if (arrival != 0) {
    memory.copy(flow, arrival, ARRIVAL_SIZE);
    mapDelete(arrivals, id);
    const masqueraded = !sameAddress(source, flow + ARRIVAL_CLIENT) || sport != load<u16>(flow + ARRIVAL_CLIENT_PORT);
    if (masqueraded && (endpointClass(destination, dport, proto) & STEER_F_BACKEND) != 0) {
      learn(key, now);
      return;
    }
  }
  if (nodeTuplesKnown()) keepClock(key, now, false);
}

/** The tuple key of backend:backendPort -> node:nodePort (16-byte addresses) and the parsed protocol, in scratch memory. */
function fillKey(backend: usize, backendPort: u16, node: usize, nodePort: u16): usize {
  memory.copy(tupleKey + NM_KEY_BACKEND, backend, 16);
  memory.copy(tupleKey + NM_KEY_NODE, node, 16);
  store<u16>(tupleKey + NM_KEY_BACKEND_PORT, backendPort);
  store<u16>(tupleKey + NM_KEY_NODE_PORT, nodePort);
  store<u32>(tupleKey + NM_KEY_PROTO, <u32>proto); // and the padding
  return tupleKey;
}

/** A frame on a known tuple: its clock goes on, or a tuple timed out is forgotten. */
function keepClock(key: usize, now: u64, isReply: bool): void {
  const held = mapLookup(nodeMasq, key);
  if (held == 0) return;
  if (isLive(load<u64>(held + NM_LAST_SEEN), load<u16>(held + NM_FLAGS), now, proto)) {
    touch(held + NM_LAST_SEEN, held + NM_FLAGS, now, proto, tcpFlags, isReply);
  } else {
    mapDelete(nodeMasq, key);
  }
}

// What a copy did to its tuple.
const KEPT: u8 = 0; // the flow holds it already
const LEARNED: u8 = 1; // learned for the flow
const TAKEN: u8 = 2; // another live flow holds it

/**
 * The tuple `key` for the flow in `flow`: kept going when the flow holds it
 * already; left alone when another live flow that is not closing holds it;
 * else learned, with a clock from now.
 */
function learn(key: usize, now: u64): void {
  const held = mapLookup(nodeMasq, key);
  if (held != 0 && memory.compare(held, flow, ARRIVAL_SIZE) == 0) {
    touch(held + NM_LAST_SEEN, held + NM_FLAGS, now, proto, tcpFlags, false);
    stampFlow(key, now, KEPT);
    return;
  }
  if (held != 0) {
    const heldFlags = load<u16>(held + NM_FLAGS);
    if (isLive(load<u64>(held + NM_LAST_SEEN), heldFlags, now, proto) && (heldFlags & CT_F_CLOSING) == 0) {
      stampFlow(key, now, TAKEN);
      return;
    }
  }
  memory.copy(tupleValue, flow, ARRIVAL_SIZE);
  store<u16>(tupleValue + NM_FLAGS, 0);
  store<u16>(tupleValue + NM_FLAGS + 2, 0);
  store<u64>(tupleValue + NM_LAST_SEEN, now);
  touch(tupleValue + NM_LAST_SEEN, tupleValue + NM_FLAGS, now, proto, tcpFlags, false);
  mapUpdate(nodeMasq, key, tupleValue, BPF_ANY);
  stampFlow(key, now, LEARNED);
}

/**
 * On the worker that holds the flow, when svcpath masqueraded it to the
 * tuple's backend: its NAT entry takes the node's port as the one its copies
 * show now, and a tuple that is not svcpath's own is counted, learned (each
 * time it is), or taken (once for the flow).
 */
function stampFlow(key: usize, now: u64, outcome: u8): void {
  if (!ownsClient(flow + ARRIVAL_CLIENT)) return;
  const origin = flowOfTuple(key, now);
  if (origin == 0) return;
  const stamp = origin + (family == 6 ? SNAT6_NODE_PORT : SNAT4_NODE_PORT);
  const nodePort = load<u16>(key + NM_KEY_NODE_PORT);
  const shownBefore = load<u16>(stamp) == nodePort;
  store<u16>(stamp, nodePort);
  if (!differsFromOwn(key)) return;
  if (outcome == LEARNED) countConformance(CONFORM_LEARNED);
  else if (outcome == TAKEN && !shownBefore) countConformance(CONFORM_TAKEN);
}

/** The flow `flow` names, by the tuple's backend and protocol (see flowOfNodeTuple4). */
function flowOfTuple(key: usize, now: u64): usize {
  const backendPort = load<u16>(key + NM_KEY_BACKEND_PORT);
  if (family == 6) return flowOfNodeTuple6(flow, key + NM_KEY_BACKEND, backendPort, proto, now);
  return flowOfNodeTuple4(flow, load<u32>(key + NM_KEY_BACKEND, 12), backendPort, proto, now);
}

/** The node's tuple is not the one svcpath masqueraded the flow to (found by flowOfTuple). */
function differsFromOwn(key: usize): bool {
  if (load<u16>(key + NM_KEY_NODE_PORT) != load<u16>(nodeTupleFlow + CT_SNAT_PORT)) return true;
  if (family == 6) return !sameAddress(key + NM_KEY_NODE, snatAddress6);
  return load<u32>(key + NM_KEY_NODE, 12) != snatAddress;
}

// --- for decisions and steering -----------------------------------------------

const lookupKey = memory.data(NM_KEY_SIZE);

/**
 * The live tuple from backend:backendPort to the node's node:nodePort (IPv4
 * mapped, 16 bytes), or 0. Not counted as a use of the entry.
 */
export function liveNodeTuple(backend: usize, backendPort: u16, node: usize, nodePort: u16, p: u8, now: u64): usize {
  memory.copy(lookupKey + NM_KEY_BACKEND, backend, 16);
  memory.copy(lookupKey + NM_KEY_NODE, node, 16);
  store<u16>(lookupKey + NM_KEY_BACKEND_PORT, backendPort);
  store<u16>(lookupKey + NM_KEY_NODE_PORT, nodePort);
  store<u32>(lookupKey + NM_KEY_PROTO, <u32>p);
  const held = mapPeek(nodeMasq, lookupKey);
  if (held == 0 || !isLive(load<u64>(held + NM_LAST_SEEN), load<u16>(held + NM_FLAGS), now, p)) return 0;
  return held;
}

const mapped = memory.data(32);

/** liveNodeTuple with IPv4 addresses. */
export function liveNodeTuple4(backend: u32, backendPort: u16, node: u32, nodePort: u16, p: u8, now: u64): usize {
  storeMapped4(mapped, backend);
  storeMapped4(mapped + 16, node);
  return liveNodeTuple(mapped, backendPort, mapped + 16, nodePort, p, now);
}

/** The original-direction conntrack entry of the flow the last flowOfNodeTuple4/6 found. */
export let nodeTupleFlow: usize = 0;

/**
 * The flow a node tuple (or an arrival: both start with the client and the
 * frontend) names, when its replies from backend:backendPort are svcpath's
 * to reverse-NAT: the flow is live, svcpath masqueraded it, to that
 * backend. Returns its NAT entry (the client; SNAT4_NODE_PORT its current
 * node port), its conntrack entry in nodeTupleFlow; or 0.
 */
export function flowOfNodeTuple4(named: usize, backend: u32, backendPort: u16, p: u8, now: u64): usize {
  const client = load<u32>(named + ARRIVAL_CLIENT, 12);
  const clientPort = load<u16>(named + ARRIVAL_CLIENT_PORT);
  const entry = ctLookup4(client, load<u32>(named + ARRIVAL_FRONTEND, 12), clientPort, load<u16>(named + ARRIVAL_FRONTEND_PORT), p, CT_DIR_ORIGINAL);
  if (entry == 0 || !ctIsLive(entry, now, p) || (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) == 0) return 0;
  const be = lookupBackend4(load<u32>(entry + CT_BACKEND_ID));
  if (be == 0 || load<u32>(be + LB4_BE_ADDRESS) != backend || load<u16>(be + LB4_BE_PORT) != backendPort) return 0;
  const origin = lookupSnat4(backend, backendPort, load<u16>(entry + CT_SNAT_PORT), p);
  if (origin == 0 || load<u32>(origin + SNAT4_ADDRESS) != client || load<u16>(origin + SNAT4_PORT) != clientPort) return 0;
  nodeTupleFlow = entry;
  return origin;
}

/** flowOfNodeTuple4 for IPv6: the backend by pointer. */
export function flowOfNodeTuple6(named: usize, backend: usize, backendPort: u16, p: u8, now: u64): usize {
  const client = named + ARRIVAL_CLIENT;
  const clientPort = load<u16>(named + ARRIVAL_CLIENT_PORT);
  const entry = ctLookup6(client, named + ARRIVAL_FRONTEND, clientPort, load<u16>(named + ARRIVAL_FRONTEND_PORT), p, CT_DIR_ORIGINAL);
  if (entry == 0 || !ctIsLive(entry, now, p) || (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) == 0) return 0;
  const be = lookupBackend6(load<u32>(entry + CT_BACKEND_ID));
  if (be == 0 || !sameAddress(be + LB6_BE_ADDRESS, backend) || load<u16>(be + LB6_BE_PORT) != backendPort) return 0;
  const origin = lookupSnat6(backend, backendPort, load<u16>(entry + CT_SNAT_PORT), p);
  if (origin == 0 || !sameAddress(origin + SNAT6_ADDRESS, client) || load<u16>(origin + SNAT6_PORT) != clientPort) return 0;
  nodeTupleFlow = entry;
  return origin;
}

/**
 * A live node tuple's flow, for a reply to it from backend:backendPort or an
 * error quoting it: the flow's NAT entry when the replies are svcpath's to
 * reverse-NAT and the tuple is the flow's current one (see flowOfNodeTuple4); or 0.
 */
export function nodeTupleReplyOrigin4(held: usize, backend: u32, backendPort: u16, nodePort: u16, p: u8, now: u64): usize {
  const origin = flowOfNodeTuple4(held, backend, backendPort, p, now);
  return origin != 0 && load<u16>(origin + SNAT4_NODE_PORT) == nodePort ? origin : 0;
}

/** nodeTupleReplyOrigin4 for IPv6. */
export function nodeTupleReplyOrigin6(held: usize, backend: usize, backendPort: u16, nodePort: u16, p: u8, now: u64): usize {
  const origin = flowOfNodeTuple6(held, backend, backendPort, p, now);
  return origin != 0 && load<u16>(origin + SNAT6_NODE_PORT) == nodePort ? origin : 0;
}
