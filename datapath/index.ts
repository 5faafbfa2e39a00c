// svcpath's datapath: an XDP-style program over batches of frames.
//
// The host (control/datapath.ts) creates the maps through the bpf(2)-shaped
// exports below, fills them, lays a batch of frames and their descriptors in
// linear memory and calls process_batch once per batch: JS and WebAssembly
// cross once per batch, never per packet. Per frame the program parses,
// decides, rewrites in place and writes its verdict into the descriptor.
// Time is the packet's own timestamp; nothing here allocates.

export * from './layout';

import { ctCreate4, ctDelete4, ctIsLive, ctIsReopen, ctLookup4, ctTouch, configureTimeouts } from './conntrack';
import {
  BE_F_LOCAL, CONFIG_CT_TCP_CLOSING, CONFIG_CT_TCP_ESTABLISHED, CONFIG_CT_UDP, CONFIG_CT_UDP_STREAM, CONFIG_SEED,
  CT_BACKEND_ID, CT_DIR_ORIGINAL, CT_DIR_REPLY, CT_REV_NAT_INDEX, CT_SERVICE_ID,
  DESC_BACKEND_ID, DESC_CAPACITY, DESC_DATA, DESC_FLAGS, DESC_LEN, DESC_REASON, DESC_SERVICE_ID, DESC_SIZE,
  DESC_TS_NSEC, DESC_TS_SEC_HI, DESC_TS_SEC_LO, DESC_VERDICT, DESC_WIRE_LEN, EINVAL, ENOENT,
  LB4_BE_ADDRESS, LB4_BE_FLAGS, LB4_BE_PORT, LB4_REVNAT_ADDRESS, LB4_REVNAT_PORT, LB4_SVC_REV_NAT_INDEX,
  LB4_SVC_SERVICE_ID, REASON_FRAGMENT, REASON_MALFORMED, REASON_NON_IP, REASON_NO_ENDPOINTS, REASON_NO_ROOM,
  REASON_NO_SERVICE, REASON_REPLY, REASON_SERVICE, REASON_STATE_MISMATCH, REASON_TRUNCATED,
  XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX,
} from './layout';
import { lookupBackend4, lookupRevNat4, lookupService4, maglevBackend4, serviceHasNoBackends } from './lb';
import { mapCount, mapDelete, mapGetNextKey, mapLookup, mapPeek, mapUpdate } from './maps';
import { reserve, reservedTop } from './memory';
import { rewriteDestination4, rewriteSource4 } from './nat';
import { IPPROTO_TCP, IPPROTO_UDP, daddr, dport, parsePacket, proto, saddr, sport, tcpFlags } from './parse';
import { allMapsCreated, configMap, createNamedMap, mapById } from './registry';
import { buildPortUnreachable4 } from './reject';
import { countFlowPacket, countVerdict } from './stats';

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

/** Entries in use, or a negative errno. */
export function map_count(id: u32): i32 {
  const m = mapById(id);
  return m === null ? -EINVAL : <i32>mapCount(m);
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
  return true;
}

// The outcome of the frame being processed.
let verdict: u8 = 0;
let reason: u8 = 0;
let serviceId: u32 = 0;
let backendId: u32 = 0;
let outLen: u32 = 0;

@inline function decide(v: u8, r: u8): void {
  verdict = v;
  reason = r;
}

/** The verdict for a frame the parser turned away. */
function verdictForParseReason(r: u8): u8 {
  if (r == REASON_MALFORMED) return XDP_DROP;
  if (r == REASON_TRUNCATED) return XDP_ABORTED;
  return XDP_PASS; // REASON_NON_IP, REASON_FRAGMENT, REASON_NO_SERVICE
}

/**
 * A packet to a service frontend: the tracked backend of its flow, or for a
 * new flow the Maglev choice; then DNAT. Without backends: REJECT.
 */
function handleServicePacket(svc: usize, data: usize, len: u32, capacity: u32, wireLen: u32, now: u64): void {
  serviceId = load<u32>(svc + LB4_SVC_SERVICE_ID);
  let be: usize = 0;
  const entry = ctLookup4(saddr, daddr, sport, dport, proto, CT_DIR_ORIGINAL);
  if (entry != 0 && ctIsLive(entry, now, proto) && !ctIsReopen(entry, proto, tcpFlags)) {
    backendId = load<u32>(entry + CT_BACKEND_ID);
    // A backend removed since the flow started: choose again, as for a new flow.
    be = lookupBackend4(backendId);
  }
  const newFlow = be == 0;
  if (newFlow) {
    if (serviceHasNoBackends(svc)) {
      rejectPacket(data, len, capacity, wireLen);
      return;
    }
    backendId = maglevBackend4(svc, seed, saddr, daddr, sport, dport, proto);
    be = lookupBackend4(backendId);
    if (be == 0) {
      decide(XDP_DROP, REASON_STATE_MISMATCH);
      return;
    }
  }
  const beAddr = load<u32>(be + LB4_BE_ADDRESS);
  const bePort = load<u16>(be + LB4_BE_PORT);
  if (newFlow) {
    ctCreate4(saddr, daddr, sport, dport, proto, tcpFlags, beAddr, bePort,
      backendId, load<u32>(svc + LB4_SVC_REV_NAT_INDEX), serviceId, now);
  } else {
    ctTouch(entry, now, proto, tcpFlags, false);
    // The reply entry lives as long as the flow does.
    const reply = ctLookup4(beAddr, saddr, bePort, sport, proto, CT_DIR_REPLY);
    if (reply != 0) ctTouch(reply, now, proto, tcpFlags, false);
  }
  rewriteDestination4(beAddr, bePort);
  decide((load<u8>(be + LB4_BE_FLAGS) & BE_F_LOCAL) != 0 ? XDP_REDIRECT : XDP_TX, REASON_SERVICE);
  countFlowPacket(serviceId, backendId, wireLen, newFlow);
}

function rejectPacket(data: usize, len: u32, capacity: u32, wireLen: u32): void {
  const icmpLen = buildPortUnreachable4(data, len, capacity);
  if (icmpLen == 0) {
    decide(XDP_ABORTED, REASON_NO_ROOM);
  } else {
    outLen = icmpLen;
    decide(XDP_TX, REASON_NO_ENDPOINTS);
  }
  countFlowPacket(serviceId, 0, wireLen, false);
}

/**
 * A packet that is not for a frontend may be a backend's reply to a tracked
 * flow: its source goes back to the frontend the client talked to.
 * Returns false when it is not.
 */
function handleReply(wireLen: u32, now: u64): bool {
  const entry = ctLookup4(saddr, daddr, sport, dport, proto, CT_DIR_REPLY);
  if (entry == 0) return false;
  if (!ctIsLive(entry, now, proto)) {
    ctDelete4(saddr, daddr, sport, dport, proto, CT_DIR_REPLY);
    return false;
  }
  serviceId = load<u32>(entry + CT_SERVICE_ID);
  backendId = load<u32>(entry + CT_BACKEND_ID);
  const revnat = lookupRevNat4(load<u32>(entry + CT_REV_NAT_INDEX));
  if (revnat == 0) {
    decide(XDP_DROP, REASON_STATE_MISMATCH);
    return true;
  }
  const frontAddr = load<u32>(revnat + LB4_REVNAT_ADDRESS);
  const frontPort = load<u16>(revnat + LB4_REVNAT_PORT);
  ctTouch(entry, now, proto, tcpFlags, true);
  const original = ctLookup4(daddr, frontAddr, dport, frontPort, proto, CT_DIR_ORIGINAL);
  if (original != 0) ctTouch(original, now, proto, tcpFlags, true);
  rewriteSource4(frontAddr, frontPort);
  decide(XDP_TX, REASON_REPLY);
  countFlowPacket(serviceId, backendId, wireLen, false);
  return true;
}

function processFrame(desc: usize): void {
  const data = <usize>load<u32>(desc + DESC_DATA);
  const len = load<u32>(desc + DESC_LEN);
  let wireLen = load<u32>(desc + DESC_WIRE_LEN);
  if (wireLen < len) wireLen = len;
  const capacity = load<u32>(desc + DESC_CAPACITY);
  const sec = (<u64>load<u32>(desc + DESC_TS_SEC_HI) << 32) | <u64>load<u32>(desc + DESC_TS_SEC_LO);
  const now = sec * 1_000_000_000 + <u64>load<u32>(desc + DESC_TS_NSEC);
  serviceId = 0;
  backendId = 0;
  outLen = len;

  const parsed = parsePacket(data, len, wireLen);
  if (parsed != 0) {
    decide(verdictForParseReason(parsed), parsed);
  } else if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
    decide(XDP_PASS, REASON_NO_SERVICE);
  } else {
    const svc = lookupService4(daddr, dport, proto);
    if (svc != 0) handleServicePacket(svc, data, len, capacity, wireLen, now);
    else if (!handleReply(wireLen, now)) decide(XDP_PASS, REASON_NO_SERVICE);
  }

  store<u8>(desc + DESC_VERDICT, verdict);
  store<u8>(desc + DESC_REASON, reason);
  store<u16>(desc + DESC_FLAGS, 0);
  store<u32>(desc + DESC_SERVICE_ID, serviceId);
  store<u32>(desc + DESC_BACKEND_ID, backendId);
  store<u32>(desc + DESC_LEN, outLen);
  countVerdict(reason, verdict, wireLen);
}

/**
 * Processes `count` frames whose descriptors start at `descs`.
 * Returns 0, or -EINVAL when the maps are not all created and configured.
 */
export function process_batch(descs: usize, count: u32): i32 {
  if (!allMapsCreated() || !loadConfig()) return -EINVAL;
  for (let i: u32 = 0; i < count; i++) processFrame(descs + <usize>i * DESC_SIZE);
  return 0;
}

