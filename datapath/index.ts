// svcpath's datapath: an XDP-style program over batches of frames.
//
// The host (control/runtime/datapath.ts) creates the maps through the bpf(2)-shaped
// exports below, fills them, lays a batch of frames and their descriptors in
// linear memory and calls process_batch once per batch: JS and WebAssembly
// cross once per batch, never per packet. Per frame the program parses,
// decides, rewrites in place and writes its verdict into the descriptor.
// Time is the packet's own timestamp; nothing here allocates.

export * from './layout';

import { copyRuns, pcapEmit, pcapWalk, verdictsEmit } from './capture';
import { compareWithRewrite, rememberRewrite } from './conformance';
import { affinityBackend4, affinityBackend6, affinityLapsed, recordAffinity4, recordAffinity6 } from './affinity';
import {
  ctCreate4, ctCreate6, ctDelete4, ctDelete6, ctIsFlushed, ctIsLive, ctIsReopen, ctLookup4, ctLookup6, ctTouchFlow4, ctTouchFlow6, configureTimeouts,
} from './conntrack';
import {
  BE_F_GONE, BE_F_LOCAL, CONFIG_CT_TCP_CLOSING, CONFIG_CT_TCP_ESTABLISHED, CONFIG_CT_UDP, CONFIG_CT_UDP_STREAM, CONFIG_SEED,
  CT_BACKEND_ID, CT_DIR_ORIGINAL, CT_DIR_REPLY, CT_F_SNAT, CT_FLAGS, CT_REV_NAT_INDEX, CT_SERVICE_ID, CT_SNAT_PORT,
  DESC_BACKEND_ID, DESC_CAPACITY, DESC_DATA, DESC_F_AFFINITY_RESET, DESC_F_FLUSHED, DESC_F_NEW_FLOW, DESC_F_OTHER_SHARD, DESC_F_RESELECTED, DESC_F_SNAT,
  DESC_F_STALE_BACKEND, DESC_F_STEERED, DESC_F_TRACE, DESC_FLAGS, DESC_LEN, DESC_LINKTYPE, DESC_REASON, DESC_SERVICE_ID,
  DESC_SIZE, DESC_TS_NSEC, DESC_TS_SEC_HI, DESC_TS_SEC_LO, DESC_VERDICT, DESC_WIRE_LEN, EINVAL, ENOENT,
  LB4_BE_ADDRESS, LB4_BE_FLAGS, LB4_BE_PORT, LB4_REVNAT_ADDRESS, LB4_REVNAT_PORT, LB4_SVC_AFFINITY_TIMEOUT,
  LB4_SVC_FLAGS, LB4_SVC_REV_NAT_INDEX, LB4_SVC_SERVICE_ID, REASON_MALFORMED, REASON_NO_ENDPOINTS,
  REASON_NO_LOCAL_ENDPOINTS, REASON_NO_ROOM, REASON_NO_SERVICE, REASON_REPLY, REASON_SERVICE, REASON_SNAT_EXHAUSTED,
  REASON_SOURCE_RANGE, REASON_STATE_MISMATCH, REASON_TRUNCATED, REASON_UNALLOCATED_IP, REASON_UNSERVED_PORT,
  REASON_FRAGMENT, REASON_FRAGMENT_UNTRACKED, REASON_ICMP_RELATED, REASON_OUTGOING, FRAG4_DPORT, FRAG4_SPORT,
  SNAT4_ADDRESS, SNAT4_PORT, SNAT6_ADDRESS, SNAT6_PORT, LB6_BE_ADDRESS, LB6_BE_FLAGS, LB6_BE_PORT, LB6_REVNAT_ADDRESS,
  LB6_REVNAT_PORT, SVC_F_AFFINITY, SVC_F_CLUSTER_IP, SVC_F_SOURCE_RANGE, XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT,
  XDP_TX,
} from './layout';
import {
  backendCount, isClusterIP4, isClusterIP6, lookupBackend4, lookupBackend6, lookupRevNat4, lookupRevNat6, lookupService4,
  lookupService6, maglevBackend4, maglevBackend6, tableId,
} from './lb';
import { mapCount, mapDelete, mapGetNextKey, mapLookup, mapLookupBatch, mapPeek, mapUpdate } from './maps';
import { reserve, reservedTop } from './memory';
import { WARM_WINDOW, warmingPays, warmWindow } from './prewarm';
import { finishRewrite, rewriteDestination4, rewriteDestination6, rewriteSource4, rewriteSource6 } from './nat';
import {
  IPPROTO_SCTP, adoptFragmentPorts, daddr, daddr6, datagramCaptured, directionKnown, dport, family, firstFragment, fragId6,
  hasEthernetAddresses, hasPorts, ipId, isIcmpError, laterFragment, packetReason, parsePacket, proto, saddr, saddr6, sport,
  tcpFlags,
} from './parse';
import { lookupFragment4, lookupFragment6, recordFragment4, recordFragment6 } from './fragment';
import {
  relatedBackendId, relatedMasqueraded, relatedServiceId, relatedToBackendFlags, translateIcmpError4, translateIcmpError6,
} from './icmp_related';
import {
  choosePolicy, classifySource4, classifySource6, configurePolicy, flowsOutliveFrontends, masquerade, reselectsGoneBackends,
  useLocalBackends,
} from './policy';
import { allMapsCreated, configMap, createNamedMap, mapById } from './registry';
import { buildPortUnreachable4, buildPortUnreachable6 } from './reject';
import {
  configureSnat, deleteSnat4, deleteSnat6, lookupSnat4, lookupSnat6, pickSnatPort4, pickSnatPort6, recordSnat4, recordSnat6, snatAddress,
  snatAddress6,
} from './snat';
import { configureServiceRanges, inServiceRange4, inServiceRange6 } from './service_range';
import { sourceAllowed4, sourceAllowed6 } from './source_range';
import { configureSteering, decidesStatelessFrames, isOwnPacket, sharded } from './steer';
import {
  followNodeMasquerade, liveNodeTuple, liveNodeTuple4, nodeTupleFlow, nodeTupleReplyOrigin4, nodeTupleReplyOrigin6, nodeTuplesKnown,
} from './node_masq';
import { countFlowChange, countFlowPacket, countVerdict } from './stats';
import { censusFlows, censusMasqueraded, takeCensus } from './census';
import { configureTrace, traceCount, traceFrame, traceVerdict, tracing } from './trace';

// --- bpf(2)-shaped map API for the control plane ------------------------------

export function map_create(id: u32, type: u32, keySize: u32, valueSize: u32, maxEntries: u32): i32 {
  return createNamedMap(id, type, keySize, valueSize, maxEntries);
}

/** Copies the value of `key` to `valueOut`: 0 or -ENOENT. */
export function map_lookup(id: u32, key: usize, valueOut: usize): i32 {
  const m = mapById(id);
  if (m === null) return -EINVAL;
  const value = mapPeek(m, key);
  if (value == 0) return -ENOENT;
  memory.copy(valueOut, value, m.valueSize);
  return 0;
}

export function map_update(id: u32, key: usize, value: usize, flags: u32): i32 {
  const m = mapById(id);
  return m === null ? -EINVAL : mapUpdate(m, key, value, flags);
}

export function map_delete(id: u32, key: usize): i32 {
  const m = mapById(id);
  return m === null ? -EINVAL : mapDelete(m, key);
}

/** `key` 0 asks for the first key. */
export function map_get_next_key(id: u32, key: usize, next: usize): i32 {
  const m = mapById(id);
  return m === null ? -EINVAL : mapGetNextKey(m, key, next);
}

/** BPF_MAP_LOOKUP_BATCH: up to `max` entries from the position at `cursor` (maps.ts mapLookupBatch); how many, or a negative errno. */
export function map_lookup_batch(id: u32, cursor: usize, keysOut: usize, valuesOut: usize, max: u32): i32 {
  const m = mapById(id);
  return m === null ? -EINVAL : mapLookupBatch(m, cursor, keysOut, valuesOut, max);
}

/** Entries in use, or a negative errno. */
export function map_count(id: u32): i32 {
  const m = mapById(id);
  return m === null ? -EINVAL : <i32>mapCount(m);
}

/**
 * The live flows of the conntrack maps at `now` (nanoseconds of the capture's
 * clock), and of them the masqueraded ones: two u32 at `out` (datapath/census.ts).
 */
export function ct_census(now: u64, out: usize): void {
  takeCensus(now);
  store<u32>(out, censusFlows());
  store<u32>(out, censusMasqueraded(), 4);
}

/** Where trace records go: `records` slots of TRACE_RECORD_SIZE at `base` (0 turns tracing off). */
export function trace_configure(base: usize, records: u32): void {
  configureTrace(base, records);
}

/** Trace records written since trace_configure. */
export function trace_count(): u32 {
  return traceCount();
}

/** Reserves host-owned linear memory (scratch, batch area): address or 0. */
export function memory_reserve(bytes: u32): usize {
  return reserve(bytes);
}

export function memory_top(): usize {
  return reservedTop();
}

// --- the program ------------------------------------------------------------------

let seed: u32 = 0;
const configKey = memory.data(4);

/** Reads the config map, once per batch, as a program reads its config at load. */
function loadConfig(): bool {
  store<u32>(configKey, 0);
  const cfg = mapLookup(configMap, configKey);
  if (cfg == 0) return false;
  seed = load<u32>(cfg + CONFIG_SEED);
  configureTimeouts(
    load<u32>(cfg + CONFIG_CT_TCP_ESTABLISHED), load<u32>(cfg + CONFIG_CT_TCP_CLOSING),
    load<u32>(cfg + CONFIG_CT_UDP), load<u32>(cfg + CONFIG_CT_UDP_STREAM),
  );
  configurePolicy(cfg);
  configureServiceRanges();
  configureSnat(cfg);
  configureSteering(cfg);
  return true;
}

// The outcome of the frame being processed.
let verdict: u8 = 0;
let reason: u8 = 0;
let serviceId: u32 = 0;
let backendId: u32 = 0;
let outLen: u32 = 0;
let snatApplied: bool = false;
let linktype: u32 = 0;
/** What a cluster change did to the packet's flow: a DESC_F_* flow change flag, or 0. */
let flowChange: u16 = 0;
/** The packet made its flow's conntrack entry: DESC_F_NEW_FLOW, or 0. */
let flowCreated: u16 = 0;

@inline function decide(v: u8, r: u8): void {
  verdict = v;
  reason = r;
}

/** The first change found is the one the packet shows (at most one per packet). */
@inline function markFlowChange(flag: u16): void {
  if (flowChange == 0) flowChange = flag;
}

/**
 * Whether a live tracked flow is over and this packet starts a new one on its
 * tuple: a flow the control plane flushed (kube-proxy's stale UDP flush:
 * marked FLUSHED), or a bare SYN on a closing connection (a reopen).
 */
@inline function flowEnds(entry: usize): bool {
  if (ctIsFlushed(entry)) {
    markFlowChange(DESC_F_FLUSHED);
    return true;
  }
  return ctIsReopen(entry, proto, tcpFlags);
}

/**
 * Whether a tracked flow keeps its backend that went since the flow started
 * (a tombstone): kube-proxy's conntrack keeps the DNAT (STALE_BACKEND); Cilium
 * revalidates the backend, and the flow chooses again (RESELECTED).
 */
function keepsGoneBackend(): bool {
  if (reselectsGoneBackends()) {
    markFlowChange(DESC_F_RESELECTED);
    return false;
  }
  markFlowChange(DESC_F_STALE_BACKEND);
  return true;
}

/**
 * Whether a tracked flow whose frontend went chooses again: Cilium looks the
 * frontend up before conntrack, finds none, and the flow ends (RESELECTED);
 * kube-proxy's rules go, but the kernel's conntrack entry stays and keeps the DNAT.
 */
function reselectsWithoutFrontend(): bool {
  if (!reselectsGoneBackends()) return false;
  markFlowChange(DESC_F_RESELECTED);
  return true;
}

/** The verdict for a frame the parser turned away. */
function verdictForParseReason(r: u8): u8 {
  if (r == REASON_MALFORMED) return XDP_DROP;
  if (r == REASON_TRUNCATED) return XDP_ABORTED;
  return XDP_PASS; // REASON_NON_IP, REASON_NO_SERVICE, REASON_UNSUPPORTED_LINKTYPE, REASON_OTHER_HOST
}

/**
 * A CRC over the whole SCTP packet can only be recomputed when the whole
 * datagram is in this frame: not when the capture cut it, not for fragments.
 */
@inline function cannotRewrite(data: usize, len: u32): bool {
  return proto == IPPROTO_SCTP && (firstFragment || laterFragment || !datagramCaptured(data, len));
}

/** The first fragment of a service flow's datagram leaves its ports for the later ones. */
@inline function rememberFragmentPorts(): void {
  if (firstFragment) recordFragment4(saddr, daddr, ipId, proto, sport, dport);
}

/**
 * The Maglev table a new flow picks its backend from, by traffic policy and
 * source; or -1 when the flow is decided already: REJECTed for a service
 * without usable backends, DROPped when the policy's set is empty.
 */
function backendTable(svc: usize, flags: u32, source: u8, v6: bool, data: usize, len: u32, capacity: u32, wireLen: u32): i64 {
  if (backendCount(svc, false) == 0) {
    rejectPacket(data, len, capacity, REASON_NO_ENDPOINTS);
    countFlowPacket(serviceId, 0, wireLen, false);
    return -1;
  }
  choosePolicy(flags, source, v6);
  if (backendCount(svc, useLocalBackends) == 0) {
    decide(XDP_DROP, REASON_NO_LOCAL_ENDPOINTS);
    countFlowPacket(serviceId, 0, wireLen, false);
    return -1;
  }
  return tableId(svc, v6, useLocalBackends);
}

/**
 * A packet to a service frontend. A tracked flow keeps its backend and its
 * masquerade port; a new flow gets the backend set and masquerading its
 * traffic policy and source call for, the client's affinity backend or the
 * Maglev choice, and a masquerade port if needed. Then DNAT (and SNAT).
 */
function handleServicePacket(svc: usize, data: usize, len: u32, capacity: u32, wireLen: u32, now: u64): void {
  serviceId = load<u32>(svc + LB4_SVC_SERVICE_ID);
  const flags = load<u32>(svc + LB4_SVC_FLAGS);
  if ((flags & SVC_F_SOURCE_RANGE) != 0 && !sourceAllowed4(serviceId, saddr)) {
    decide(XDP_DROP, REASON_SOURCE_RANGE);
    countFlowPacket(serviceId, 0, wireLen, false);
    return;
  }
  if (cannotRewrite(data, len)) {
    decide(XDP_ABORTED, REASON_TRUNCATED);
    return;
  }
  let be: usize = 0;
  let snatPort: u16 = 0;
  let entry = ctLookup4(saddr, daddr, sport, dport, proto, CT_DIR_ORIGINAL);
  if (entry != 0 && !ctIsLive(entry, now, proto)) entry = 0;
  if (entry != 0 && flowEnds(entry)) {
    endFlow4(entry);
    entry = 0;
  }
  if (entry != 0) {
    backendId = load<u32>(entry + CT_BACKEND_ID);
    be = lookupBackend4(backendId);
    if ((load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0) snatPort = load<u16>(entry + CT_SNAT_PORT);
    // A flow that chooses again ends first, so that a choice that fails leaves no flow to choose again.
    if (be != 0 && (load<u8>(be + LB4_BE_FLAGS) & BE_F_GONE) != 0 && !keepsGoneBackend()) {
      endFlow4(entry);
      be = 0;
    }
  }
  const newFlow = be == 0;
  if (newFlow) {
    // A stale entry's backend and port are not this flow's.
    backendId = 0;
    snatPort = 0;
    const chosen = backendTable(svc, flags, classifySource4(saddr), false, data, len, capacity, wireLen);
    if (chosen < 0) return;
    const table = <u32>chosen;
    const affinity = (flags & SVC_F_AFFINITY) != 0;
    backendId = affinity ? affinityBackend4(saddr, serviceId, table, load<u32>(svc + LB4_SVC_AFFINITY_TIMEOUT), now) : 0;
    if (affinity && affinityLapsed) markFlowChange(DESC_F_AFFINITY_RESET);
    if (backendId == 0) backendId = maglevBackend4(table, seed, saddr, daddr, sport, dport, proto);
    be = lookupBackend4(backendId);
    if (be == 0) {
      decide(XDP_DROP, REASON_STATE_MISMATCH);
      return;
    }
    // A client reaching itself through the service must not see its own address as source.
    if (masquerade || load<u32>(be + LB4_BE_ADDRESS) == saddr) {
      snatPort = pickSnatPort4(seed, saddr, sport, load<u32>(be + LB4_BE_ADDRESS), load<u16>(be + LB4_BE_PORT), proto, now);
      if (snatPort == 0) {
        backendId = 0; // no flow was made: the verdict names no backend
        decide(XDP_DROP, REASON_SNAT_EXHAUSTED);
        countFlowPacket(serviceId, 0, wireLen, false);
        return;
      }
    }
    if (affinity) recordAffinity4(saddr, serviceId, backendId, now);
  }
  if (newFlow) {
    const beAddr = load<u32>(be + LB4_BE_ADDRESS);
    const bePort = load<u16>(be + LB4_BE_PORT);
    ctCreate4(saddr, daddr, sport, dport, proto, tcpFlags, beAddr, bePort, snatAddress, snatPort,
      backendId, load<u32>(svc + LB4_SVC_REV_NAT_INDEX), serviceId, now);
    if (snatPort != 0) recordSnat4(beAddr, bePort, snatPort, proto, saddr, sport);
  } else {
    touchFlow4(entry, be, snatPort, now);
  }
  sendToBackend4(be, snatPort, wireLen, newFlow);
}

/** A packet of a tracked flow: both of its entries see it (the reply entry lives as long as the flow does). */
@inline function touchFlow4(entry: usize, be: usize, snatPort: u16, now: u64): void {
  const replyDst = snatPort != 0 ? snatAddress : saddr;
  const replyDport = snatPort != 0 ? snatPort : sport;
  ctTouchFlow4(entry, CT_DIR_ORIGINAL, load<u32>(be + LB4_BE_ADDRESS), replyDst, load<u16>(be + LB4_BE_PORT), replyDport, CT_DIR_REPLY,
    now, proto, tcpFlags, false);
}

/** DNAT to the flow's backend, and SNAT to its masquerade port if it has one: the packet goes to the backend. */
@inline function sendToBackend4(be: usize, snatPort: u16, wireLen: u32, newFlow: bool): void {
  const beAddr = load<u32>(be + LB4_BE_ADDRESS);
  const bePort = load<u16>(be + LB4_BE_PORT);
  rememberFragmentPorts();
  const portChanged = bePort != dport || (snatPort != 0 && snatPort != sport);
  rewriteDestination4(beAddr, bePort);
  if (snatPort != 0) {
    rewriteSource4(snatAddress, snatPort);
    snatApplied = true;
  }
  finishRewrite(portChanged);
  decide((load<u8>(be + LB4_BE_FLAGS) & BE_F_LOCAL) != 0 ? XDP_REDIRECT : XDP_TX, REASON_SERVICE);
  countFlowPacket(serviceId, backendId, wireLen, newFlow);
  if (newFlow) flowCreated = DESC_F_NEW_FLOW;
}

/**
 * A packet to no frontend, once a sync removed frontends (a deleted Service, a
 * removed external IP or port): it may belong to an established flow to one
 * that went, whose conntrack entry outlives kube-proxy's rules and keeps its
 * DNAT (STALE_BACKEND when its backend went too; its replies are still
 * reverse-NATed, the control plane keeping the frontend's reverse-NAT entry).
 * Under Cilium's semantics the flow chooses again, finds no frontend, and
 * ends (RESELECTED). A flow that is over ends as at a frontend (a flushed one
 * marked FLUSHED). Returns false when the packet is to be decided as one of
 * no flow.
 */
function followFlowWithoutFrontend4(data: usize, len: u32, wireLen: u32, now: u64): bool {
  const entry = ctLookup4(saddr, daddr, sport, dport, proto, CT_DIR_ORIGINAL);
  if (entry == 0 || !ctIsLive(entry, now, proto)) return false;
  if (cannotRewrite(data, len)) {
    decide(XDP_ABORTED, REASON_TRUNCATED);
    return true;
  }
  if (flowEnds(entry) || reselectsWithoutFrontend()) {
    endFlow4(entry);
    return false;
  }
  const be = lookupBackend4(load<u32>(entry + CT_BACKEND_ID));
  if (be == 0) return false;
  serviceId = load<u32>(entry + CT_SERVICE_ID);
  backendId = load<u32>(entry + CT_BACKEND_ID);
  if ((load<u8>(be + LB4_BE_FLAGS) & BE_F_GONE) != 0) markFlowChange(DESC_F_STALE_BACKEND);
  const snatPort = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0 ? load<u16>(entry + CT_SNAT_PORT) : <u16>0;
  touchFlow4(entry, be, snatPort, now);
  sendToBackend4(be, snatPort, wireLen, false);
  return true;
}

/** True when two ct_entry values belong to the same flow (the reply tuple may have been taken over since). */
@inline function sameFlow(a: usize, b: usize): bool {
  return load<u32>(a + CT_BACKEND_ID) == load<u32>(b + CT_BACKEND_ID)
    && load<u32>(a + CT_REV_NAT_INDEX) == load<u32>(b + CT_REV_NAT_INDEX)
    && load<u32>(a + CT_SERVICE_ID) == load<u32>(b + CT_SERVICE_ID);
}

/**
 * A bare SYN on a closing flow's tuple ends that flow before a new one is
 * made, as the kernel's conntrack does ("Attempt to reopen a closed/aborted
 * connection"): its entries and masquerade port are freed, so the old reply
 * entry no longer reverse-NATs and the port can serve the new flow. A flushed
 * flow ends alike; its reply entry and masquerade record are already gone
 * (the control plane deleted them), or another flow's by now: left alone.
 */
function endFlow4(entry: usize): void {
  const old = lookupBackend4(load<u32>(entry + CT_BACKEND_ID));
  if (old != 0) {
    const beAddr = load<u32>(old + LB4_BE_ADDRESS);
    const bePort = load<u16>(old + LB4_BE_PORT);
    const snatPort = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0 ? load<u16>(entry + CT_SNAT_PORT) : <u16>0;
    const replyDst = snatPort != 0 ? snatAddress : saddr;
    const replyDport = snatPort != 0 ? snatPort : sport;
    const reply = ctLookup4(beAddr, replyDst, bePort, replyDport, proto, CT_DIR_REPLY);
    if (reply != 0 && sameFlow(reply, entry)) {
      ctDelete4(beAddr, replyDst, bePort, replyDport, proto, CT_DIR_REPLY);
      if (snatPort != 0) deleteSnat4(beAddr, bePort, snatPort, proto);
    }
  }
  ctDelete4(saddr, daddr, sport, dport, proto, CT_DIR_ORIGINAL);
}

/** endFlow4 for IPv6. */
function endFlow6(entry: usize): void {
  const old = lookupBackend6(load<u32>(entry + CT_BACKEND_ID));
  if (old != 0) {
    const beAddr = old + LB6_BE_ADDRESS;
    const bePort = load<u16>(old + LB6_BE_PORT);
    const snatPort = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0 ? load<u16>(entry + CT_SNAT_PORT) : <u16>0;
    const replyDst = snatPort != 0 ? snatAddress6 : saddr6;
    const replyDport = snatPort != 0 ? snatPort : sport;
    const reply = ctLookup6(beAddr, replyDst, bePort, replyDport, proto, CT_DIR_REPLY);
    if (reply != 0 && sameFlow(reply, entry)) {
      ctDelete6(beAddr, replyDst, bePort, replyDport, proto, CT_DIR_REPLY);
      if (snatPort != 0) deleteSnat6(beAddr, bePort, snatPort, proto);
    }
  }
  ctDelete6(saddr6, daddr6, sport, dport, proto, CT_DIR_ORIGINAL);
}

/** REJECT: the frame becomes an ICMP port unreachable back to its sender. */
function rejectPacket(data: usize, len: u32, capacity: u32, why: u8): void {
  const icmpLen = family == 6
    ? buildPortUnreachable6(data, len, capacity, hasEthernetAddresses(linktype))
    : buildPortUnreachable4(data, len, capacity, hasEthernetAddresses(linktype));
  if (icmpLen == 0) {
    decide(XDP_ABORTED, REASON_NO_ROOM);
  } else {
    outLen = icmpLen;
    decide(XDP_TX, why);
  }
}

/**
 * A packet matching a tracked flow's reply entry is a backend's reply: its
 * source goes back to the frontend the client talked to, and a masqueraded
 * flow's destination back to the client. A packet to a live tuple the node
 * masqueraded a flow to is decided by that tuple alone (datapath/node_masq.ts).
 * Returns false when it is not such a reply.
 */
function handleReply(data: usize, len: u32, wireLen: u32, now: u64): bool {
  if (nodeTuplesKnown()) {
    const held = liveNodeTuple4(saddr, sport, daddr, dport, proto, now);
    if (held != 0) return replyToNodeTuple4(held, data, len, wireLen, now);
  }
  const entry = ctLookup4(saddr, daddr, sport, dport, proto, CT_DIR_REPLY);
  if (entry == 0) return false;
  if (!ctIsLive(entry, now, proto)) {
    ctDelete4(saddr, daddr, sport, dport, proto, CT_DIR_REPLY);
    return false;
  }
  return reverseNat4(entry, CT_DIR_REPLY, 0, data, len, wireLen, now);
}

/**
 * A reply to the node's masquerade tuple of a flow svcpath masqueraded:
 * reverse-NATed as a reply to svcpath's own tuple of the flow would be.
 */
function replyToNodeTuple4(held: usize, data: usize, len: u32, wireLen: u32, now: u64): bool {
  const origin = nodeTupleReplyOrigin4(held, saddr, sport, dport, proto, now);
  if (origin == 0) return false;
  const original = nodeTupleFlow;
  const reply = ctLookup4(saddr, snatAddress, sport, load<u16>(original + CT_SNAT_PORT), proto, CT_DIR_REPLY);
  if (reply != 0 && sameFlow(reply, original)) return reverseNat4(reply, CT_DIR_REPLY, origin, data, len, wireLen, now);
  return reverseNat4(original, CT_DIR_ORIGINAL, origin, data, len, wireLen, now);
}

/**
 * Reverse NAT of a backend's reply to the flow of conntrack entry `entry`
 * (found as its `entryDir` key), back to the client: the packet's destination, or for a masqueraded flow
 * the one its NAT entry names (`knownOrigin`, or the one of the packet's
 * own tuple when 0). Both of the flow's entries see the reply.
 */
function reverseNat4(entry: usize, entryDir: u8, knownOrigin: usize, data: usize, len: u32, wireLen: u32, now: u64): bool {
  serviceId = load<u32>(entry + CT_SERVICE_ID);
  backendId = load<u32>(entry + CT_BACKEND_ID);
  const revnat = lookupRevNat4(load<u32>(entry + CT_REV_NAT_INDEX));
  const masqueraded = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0;
  const origin = !masqueraded ? 0 : knownOrigin != 0 ? knownOrigin : lookupSnat4(saddr, sport, dport, proto);
  if (revnat == 0 || (masqueraded && origin == 0)) {
    decide(XDP_DROP, REASON_STATE_MISMATCH);
    return true;
  }
  if (cannotRewrite(data, len)) {
    decide(XDP_ABORTED, REASON_TRUNCATED);
    return true;
  }
  const frontAddr = load<u32>(revnat + LB4_REVNAT_ADDRESS);
  const frontPort = load<u16>(revnat + LB4_REVNAT_PORT);
  const client = masqueraded ? load<u32>(origin + SNAT4_ADDRESS) : daddr;
  const clientPort = masqueraded ? load<u16>(origin + SNAT4_PORT) : dport;
  ctTouchFlow4(entry, entryDir, client, frontAddr, clientPort, frontPort, CT_DIR_ORIGINAL, now, proto, tcpFlags, true);
  rememberFragmentPorts();
  const portChanged = frontPort != sport || clientPort != dport;
  rewriteSource4(frontAddr, frontPort);
  if (masqueraded) {
    rewriteDestination4(client, clientPort);
    snatApplied = true;
  }
  finishRewrite(portChanged);
  decide(XDP_TX, REASON_REPLY);
  countFlowPacket(serviceId, backendId, wireLen, false);
  return true;
}

/**
 * Not a reply and not a frontend: a cluster IP's unserved port is rejected
 * (kube-proxy rejects everything else sent to a cluster IP), an unallocated
 * address of the service range dropped, anything else passed.
 */
function handleOther(data: usize, len: u32, capacity: u32): void {
  if (isClusterIP()) {
    if (isIcmpError()) decide(XDP_DROP, REASON_UNSERVED_PORT);
    else rejectPacket(data, len, capacity, REASON_UNSERVED_PORT);
  } else if (family == 6 ? inServiceRange6(daddr6) : inServiceRange4(daddr)) {
    decide(XDP_DROP, REASON_UNALLOCATED_IP);
  } else {
    decide(XDP_PASS, REASON_NO_SERVICE);
  }
}

/** A parsed packet: for a frontend, a reply to a tracked flow, an error about one, a flow's whose frontend went, or something else. */
function handlePacket(data: usize, len: u32, capacity: u32, wireLen: u32, now: u64): void {
  if (!hasPorts(proto)) {
    if (!isIcmpError() || laterFragment || !handleIcmpError(data, len, wireLen, now)) handleOther(data, len, capacity);
    return;
  }
  // Conntrack first, as in the kernel: a tracked reply stays a reply even
  // when its addresses also match a frontend (a backend that is itself a
  // node address, a masquerade port that is also a NodePort). A cluster IP is
  // no client's address, so no reply goes to one: for a cluster-IP frontend,
  // the most common by far, the reply lookup is skipped.
  if (family == 6) {
    const svc = lookupService6(daddr6, dport, proto);
    if (!isClusterIPFrontend(svc) && handleReply6(data, len, wireLen, now)) return;
    if (svc != 0) handleServicePacket6(svc, data, len, capacity, wireLen, now);
    else if (!flowsOutliveFrontends() || !followFlowWithoutFrontend6(data, len, wireLen, now)) handleOther(data, len, capacity);
  } else {
    const svc = lookupService4(daddr, dport, proto);
    if (!isClusterIPFrontend(svc) && handleReply(data, len, wireLen, now)) return;
    if (svc != 0) handleServicePacket(svc, data, len, capacity, wireLen, now);
    else if (!flowsOutliveFrontends() || !followFlowWithoutFrontend4(data, len, wireLen, now)) handleOther(data, len, capacity);
  }
}

@inline function isClusterIPFrontend(svc: usize): bool {
  return svc != 0 && (load<u32>(svc + LB4_SVC_FLAGS) & SVC_F_CLUSTER_IP) != 0;
}

/** True when the packet is addressed to a cluster IP (of its family). */
@inline function isClusterIP(): bool {
  return family == 6 ? isClusterIP6(daddr6) : isClusterIP4(daddr);
}

/** An ICMP error about a translated flow goes where its flow goes, translated. */
function handleIcmpError(data: usize, len: u32, wireLen: u32, now: u64): bool {
  if (!(family == 6 ? translateIcmpError6(data, len, now) : translateIcmpError4(data, len, now))) return false;
  serviceId = relatedServiceId;
  backendId = relatedBackendId;
  snatApplied = relatedMasqueraded;
  const toLocalBackend = relatedToBackendFlags != 0xff && (relatedToBackendFlags & BE_F_LOCAL) != 0;
  decide(toLocalBackend ? XDP_REDIRECT : XDP_TX, REASON_ICMP_RELATED);
  countFlowPacket(serviceId, backendId, wireLen, false);
  return true;
}

/**
 * A fragment after the first follows its datagram when the first one was a
 * service flow's; otherwise it is passed, unless it is addressed to a cluster
 * IP, where nothing but service traffic may go.
 */
function handleLaterFragment(data: usize, len: u32, capacity: u32, wireLen: u32, now: u64): void {
  let ports: usize = 0;
  if (hasPorts(proto)) ports = family == 6 ? lookupFragment6(saddr6, daddr6, fragId6, proto) : lookupFragment4(saddr, daddr, ipId, proto);
  if (ports != 0) {
    adoptFragmentPorts(load<u16>(ports + FRAG4_SPORT), load<u16>(ports + FRAG4_DPORT));
    handlePacket(data, len, capacity, wireLen, now);
  } else if (isClusterIP()) {
    decide(XDP_DROP, REASON_FRAGMENT_UNTRACKED);
  } else {
    decide(XDP_PASS, REASON_FRAGMENT);
  }
}

// --- IPv6: the same decisions over the lb6/ct6 maps, addresses by pointer ----------

@inline function sameAddress6(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8);
}


/** handleServicePacket for IPv6. */
function handleServicePacket6(svc: usize, data: usize, len: u32, capacity: u32, wireLen: u32, now: u64): void {
  serviceId = load<u32>(svc + LB4_SVC_SERVICE_ID);
  const flags = load<u32>(svc + LB4_SVC_FLAGS);
  if ((flags & SVC_F_SOURCE_RANGE) != 0 && !sourceAllowed6(serviceId, saddr6)) {
    decide(XDP_DROP, REASON_SOURCE_RANGE);
    countFlowPacket(serviceId, 0, wireLen, false);
    return;
  }
  if (cannotRewrite(data, len)) {
    decide(XDP_ABORTED, REASON_TRUNCATED);
    return;
  }
  let be: usize = 0;
  let snatPort: u16 = 0;
  let entry = ctLookup6(saddr6, daddr6, sport, dport, proto, CT_DIR_ORIGINAL);
  if (entry != 0 && !ctIsLive(entry, now, proto)) entry = 0;
  if (entry != 0 && flowEnds(entry)) {
    endFlow6(entry);
    entry = 0;
  }
  if (entry != 0) {
    backendId = load<u32>(entry + CT_BACKEND_ID);
    be = lookupBackend6(backendId);
    if ((load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0) snatPort = load<u16>(entry + CT_SNAT_PORT);
    if (be != 0 && (load<u8>(be + LB6_BE_FLAGS) & BE_F_GONE) != 0 && !keepsGoneBackend()) {
      endFlow6(entry);
      be = 0;
    }
  }
  const newFlow = be == 0;
  if (newFlow) {
    backendId = 0;
    snatPort = 0;
    const chosen = backendTable(svc, flags, classifySource6(saddr6), true, data, len, capacity, wireLen);
    if (chosen < 0) return;
    const table = <u32>chosen;
    const affinity = (flags & SVC_F_AFFINITY) != 0;
    backendId = affinity ? affinityBackend6(saddr6, serviceId, table, load<u32>(svc + LB4_SVC_AFFINITY_TIMEOUT), now) : 0;
    if (affinity && affinityLapsed) markFlowChange(DESC_F_AFFINITY_RESET);
    if (backendId == 0) backendId = maglevBackend6(table, seed, saddr6, daddr6, sport, dport, proto);
    be = lookupBackend6(backendId);
    if (be == 0) {
      decide(XDP_DROP, REASON_STATE_MISMATCH);
      return;
    }
    if (masquerade || sameAddress6(be + LB6_BE_ADDRESS, saddr6)) {
      snatPort = pickSnatPort6(seed, saddr6, sport, be + LB6_BE_ADDRESS, load<u16>(be + LB6_BE_PORT), proto, now);
      if (snatPort == 0) {
        backendId = 0; // no flow was made: the verdict names no backend
        decide(XDP_DROP, REASON_SNAT_EXHAUSTED);
        countFlowPacket(serviceId, 0, wireLen, false);
        return;
      }
    }
    if (affinity) recordAffinity6(saddr6, serviceId, backendId, now);
  }
  if (newFlow) {
    const beAddr = be + LB6_BE_ADDRESS;
    const bePort = load<u16>(be + LB6_BE_PORT);
    ctCreate6(saddr6, daddr6, sport, dport, proto, tcpFlags, beAddr, bePort, snatAddress6, snatPort,
      backendId, load<u32>(svc + LB4_SVC_REV_NAT_INDEX), serviceId, now);
    if (snatPort != 0) recordSnat6(beAddr, bePort, snatPort, proto, saddr6, sport);
  } else {
    touchFlow6(entry, be, snatPort, now);
  }
  sendToBackend6(be, snatPort, wireLen, newFlow);
}

/** touchFlow4 for IPv6. */
@inline function touchFlow6(entry: usize, be: usize, snatPort: u16, now: u64): void {
  const replyDst = snatPort != 0 ? snatAddress6 : saddr6;
  const replyDport = snatPort != 0 ? snatPort : sport;
  ctTouchFlow6(entry, CT_DIR_ORIGINAL, be + LB6_BE_ADDRESS, replyDst, load<u16>(be + LB6_BE_PORT), replyDport, CT_DIR_REPLY,
    now, proto, tcpFlags, false);
}

/** sendToBackend4 for IPv6. */
@inline function sendToBackend6(be: usize, snatPort: u16, wireLen: u32, newFlow: bool): void {
  const beAddr = be + LB6_BE_ADDRESS;
  const bePort = load<u16>(be + LB6_BE_PORT);
  if (firstFragment) recordFragment6(saddr6, daddr6, fragId6, proto, sport, dport);
  const portChanged = bePort != dport || (snatPort != 0 && snatPort != sport);
  rewriteDestination6(beAddr, bePort);
  if (snatPort != 0) {
    rewriteSource6(snatAddress6, snatPort);
    snatApplied = true;
  }
  finishRewrite(portChanged);
  decide((load<u8>(be + LB6_BE_FLAGS) & BE_F_LOCAL) != 0 ? XDP_REDIRECT : XDP_TX, REASON_SERVICE);
  countFlowPacket(serviceId, backendId, wireLen, newFlow);
  if (newFlow) flowCreated = DESC_F_NEW_FLOW;
}

/** followFlowWithoutFrontend4 for IPv6. */
function followFlowWithoutFrontend6(data: usize, len: u32, wireLen: u32, now: u64): bool {
  const entry = ctLookup6(saddr6, daddr6, sport, dport, proto, CT_DIR_ORIGINAL);
  if (entry == 0 || !ctIsLive(entry, now, proto)) return false;
  if (cannotRewrite(data, len)) {
    decide(XDP_ABORTED, REASON_TRUNCATED);
    return true;
  }
  if (flowEnds(entry) || reselectsWithoutFrontend()) {
    endFlow6(entry);
    return false;
  }
  const be = lookupBackend6(load<u32>(entry + CT_BACKEND_ID));
  if (be == 0) return false;
  serviceId = load<u32>(entry + CT_SERVICE_ID);
  backendId = load<u32>(entry + CT_BACKEND_ID);
  if ((load<u8>(be + LB6_BE_FLAGS) & BE_F_GONE) != 0) markFlowChange(DESC_F_STALE_BACKEND);
  const snatPort = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0 ? load<u16>(entry + CT_SNAT_PORT) : <u16>0;
  touchFlow6(entry, be, snatPort, now);
  sendToBackend6(be, snatPort, wireLen, false);
  return true;
}

/** handleReply for IPv6. */
function handleReply6(data: usize, len: u32, wireLen: u32, now: u64): bool {
  if (nodeTuplesKnown()) {
    const held = liveNodeTuple(saddr6, sport, daddr6, dport, proto, now);
    if (held != 0) return replyToNodeTuple6(held, data, len, wireLen, now);
  }
  const entry = ctLookup6(saddr6, daddr6, sport, dport, proto, CT_DIR_REPLY);
  if (entry == 0) return false;
  if (!ctIsLive(entry, now, proto)) {
    ctDelete6(saddr6, daddr6, sport, dport, proto, CT_DIR_REPLY);
    return false;
  }
  return reverseNat6(entry, CT_DIR_REPLY, 0, data, len, wireLen, now);
}

/** replyToNodeTuple4 for IPv6. */
function replyToNodeTuple6(held: usize, data: usize, len: u32, wireLen: u32, now: u64): bool {
  const origin = nodeTupleReplyOrigin6(held, saddr6, sport, dport, proto, now);
  if (origin == 0) return false;
  const original = nodeTupleFlow;
  const reply = ctLookup6(saddr6, snatAddress6, sport, load<u16>(original + CT_SNAT_PORT), proto, CT_DIR_REPLY);
  if (reply != 0 && sameFlow(reply, original)) return reverseNat6(reply, CT_DIR_REPLY, origin, data, len, wireLen, now);
  return reverseNat6(original, CT_DIR_ORIGINAL, origin, data, len, wireLen, now);
}

/** reverseNat4 for IPv6. */
function reverseNat6(entry: usize, entryDir: u8, knownOrigin: usize, data: usize, len: u32, wireLen: u32, now: u64): bool {
  serviceId = load<u32>(entry + CT_SERVICE_ID);
  backendId = load<u32>(entry + CT_BACKEND_ID);
  const revnat = lookupRevNat6(load<u32>(entry + CT_REV_NAT_INDEX));
  const masqueraded = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0;
  const origin = !masqueraded ? 0 : knownOrigin != 0 ? knownOrigin : lookupSnat6(saddr6, sport, dport, proto);
  if (revnat == 0 || (masqueraded && origin == 0)) {
    decide(XDP_DROP, REASON_STATE_MISMATCH);
    return true;
  }
  if (cannotRewrite(data, len)) {
    decide(XDP_ABORTED, REASON_TRUNCATED);
    return true;
  }
  const frontAddr = revnat + LB6_REVNAT_ADDRESS;
  const frontPort = load<u16>(revnat + LB6_REVNAT_PORT);
  const client = masqueraded ? origin + SNAT6_ADDRESS : daddr6;
  const clientPort = masqueraded ? load<u16>(origin + SNAT6_PORT) : dport;
  ctTouchFlow6(entry, entryDir, client, frontAddr, clientPort, frontPort, CT_DIR_ORIGINAL, now, proto, tcpFlags, true);
  if (firstFragment) recordFragment6(saddr6, daddr6, fragId6, proto, sport, dport);
  const portChanged = frontPort != sport || clientPort != dport;
  rewriteSource6(frontAddr, frontPort);
  if (masqueraded) {
    rewriteDestination6(client, clientPort);
    snatApplied = true;
  }
  finishRewrite(portChanged);
  decide(XDP_TX, REASON_REPLY);
  countFlowPacket(serviceId, backendId, wireLen, false);
  return true;
}



// The frame being processed, as its descriptor gives it.
let frameData: usize = 0;
let frameLen: u32 = 0;
let frameWireLen: u32 = 0;
let frameNow: u64 = 0;

/** Reads a descriptor into the frame* globals and parses its frame: parsePacket's result. */
function parseFrame(desc: usize): u8 {
  frameData = <usize>load<u32>(desc + DESC_DATA);
  frameLen = load<u32>(desc + DESC_LEN);
  frameWireLen = max<u32>(load<u32>(desc + DESC_WIRE_LEN), frameLen);
  const sec = (<u64>load<u32>(desc + DESC_TS_SEC_HI) << 32) | <u64>load<u32>(desc + DESC_TS_SEC_LO);
  frameNow = sec * 1_000_000_000 + <u64>load<u32>(desc + DESC_TS_NSEC);
  linktype = load<u32>(desc + DESC_LINKTYPE);
  return parsePacket(frameData, frameLen, frameWireLen, linktype, load<u16>(desc + DESC_FLAGS));
}

function markOtherShard(desc: usize): void {
  store<u8>(desc + DESC_VERDICT, 0);
  store<u8>(desc + DESC_REASON, 0);
  store<u16>(desc + DESC_FLAGS, DESC_F_OTHER_SHARD);
  store<u32>(desc + DESC_SERVICE_ID, 0);
  store<u32>(desc + DESC_BACKEND_ID, 0);
}

/** What svcpath does to a packet that the node's own copy of it can be compared with. */
@inline function isRewrite(r: u8): bool {
  return r == REASON_SERVICE || r == REASON_REPLY || r == REASON_ICMP_RELATED;
}

/** Decides the frame parseFrame read from `desc` (`parsed` its result) and writes the outcome into the descriptor. */
function processFrame(desc: usize, parsed: u8): void {
  const data = frameData;
  const len = frameLen;
  const wireLen = frameWireLen;
  const now = frameNow;
  const capacity = load<u32>(desc + DESC_CAPACITY);
  serviceId = 0;
  backendId = 0;
  outLen = len;
  snatApplied = false;
  flowChange = 0;
  flowCreated = 0;

  if (parsed == REASON_OUTGOING) {
    // The node's own frame makes no flow: it is compared with what svcpath sent (and taught its tuple, if any).
    if (packetReason == 0) compareWithRewrite(data, len);
    if (!decidesStatelessFrames()) {
      markOtherShard(desc);
      return;
    }
    decide(XDP_PASS, REASON_OUTGOING);
  } else if (parsed == 0) {
    handlePacket(data, len, capacity, wireLen, now);
  } else if (parsed == REASON_FRAGMENT) {
    handleLaterFragment(data, len, capacity, wireLen, now);
  } else {
    decide(verdictForParseReason(parsed), parsed);
  }
  // Only a capture that tells arrivals from departures can hold the node's copies to compare.
  if (directionKnown && isRewrite(reason)) rememberRewrite(data, len, reason, snatApplied);

  if (tracing) traceVerdict(verdict, reason);
  store<u8>(desc + DESC_VERDICT, verdict);
  store<u8>(desc + DESC_REASON, reason);
  store<u16>(desc + DESC_FLAGS, (snatApplied ? DESC_F_SNAT : 0) | flowChange | flowCreated);
  store<u32>(desc + DESC_SERVICE_ID, serviceId);
  store<u32>(desc + DESC_BACKEND_ID, backendId);
  store<u32>(desc + DESC_LEN, outLen);
  countVerdict(reason, verdict, wireLen);
  if (flowChange != 0) countFlowChange(flowChange);
}

// --- zero-copy replay (datapath/capture.ts) --------------------------------------

export function pcap_walk(
  chunk: usize, len: u32, format: u32, snaplen: u32, linktype: u32,
  descs: usize, count: u32, maxFrames: u32, frames: usize, framesCapacity: u32, state: usize, stopAt: u64,
): u32 {
  // The walker steers when the replay is sharded, which the config says.
  if (allMapsCreated()) loadConfig();
  return pcapWalk(chunk, len, format, snaplen, linktype, descs, count, maxFrames, frames, framesCapacity, state, stopAt);
}

export function pcap_emit(descs: usize, from: u32, count: u32, nanosecond: bool, out: usize, capacity: u32, written: usize): u32 {
  return pcapEmit(descs, from, count, nanosecond, out, capacity, written);
}

export function verdicts_emit(
  descs: usize, from: u32, count: u32, firstN: u64, tables: usize, maxLine: u32, out: usize, capacity: u32, written: usize, lengths: usize,
  state: i32,
): u32 {
  return verdictsEmit(descs, from, count, firstN, tables, maxLine, out, capacity, written, lengths, state);
}

export function copy_runs(runs: usize, count: u32, out: usize): u32 {
  return copyRuns(runs, count, out);
}

/**
 * Processes `count` frames whose descriptors start at `descs`.
 * Returns 0, or -EINVAL when the maps are not all created and configured.
 */
export function process_batch(descs: usize, count: u32): i32 {
  if (!allMapsCreated() || !loadConfig()) return -EINVAL;
  const warm = warmingPays();
  for (let i: u32 = 0; i < count; i++) {
    if (warm && i % WARM_WINDOW == 0) warmWindow(descs, i, min(WARM_WINDOW, count - i));
    const desc = descs + <usize>i * DESC_SIZE;
    const flags = load<u16>(desc + DESC_FLAGS);
    if (sharded() && (flags & DESC_F_OTHER_SHARD) != 0) continue; // the walker found it another worker's
    traceFrame(i, (flags & DESC_F_TRACE) != 0);
    const parsed = parseFrame(desc);
    // Every worker follows every frame whose direction is known, in order (datapath/node_masq.ts).
    if (directionKnown) followNodeMasquerade(frameData, frameLen, frameNow);
    if (sharded() && (flags & DESC_F_STEERED) == 0 && !isOwnPacket(parsed, frameData, frameLen, frameNow)) {
      markOtherShard(desc);
      continue;
    }
    processFrame(desc, parsed);
  }
  traceFrame(0, false);
  return 0;
}
