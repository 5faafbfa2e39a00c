// Connection tracking: every flow through a service frontend has two keys in
// the CT4 map, one per direction as seen on the wire, so that later packets
// keep their backend (even when the Maglev table changes) and the backend's
// replies are recognised and reverse-NATed. The map stores a flow as one
// record holding both keys and one ct_entry (flow_table.ts), so that a
// packet refreshes its flow with one lookup and one write. Entries age on
// the packet clock with kernel-like timeouts; a map full of live flows
// evicts one not used lately (CLOCK), as the kernel's LRU CT map does.
//
// The decisions are those of two entries per flow, each refreshed by the
// packets that refresh it there: ctTouchFlow refreshes an entry and the key
// of the packet's other direction, and when these are not the two keys of
// one record (a reply key taken over by a newer flow, say), the record is
// split first, so that no key is refreshed that two entries would not have.

import {
  CT4_DADDR, CT4_DIR, CT4_DPORT, CT4_PROTO, CT4_SADDR, CT4_SPORT, CT_BACKEND_ID, CT_DIR_ORIGINAL,
  CT_DIR_REPLY, CT_F_CLOSING, CT_F_FLUSHED, CT_F_SEEN_REPLY, CT_F_SNAT, CT_FLAGS, CT_LAST_SEEN, CT_REV_NAT_INDEX, CT_SERVICE_ID,
  CT_SNAT_PORT, CT6_DADDR, CT6_DIR, CT6_DPORT, CT6_PROTO, CT6_SADDR, CT6_SPORT,
} from './layout';
import { flowCreate, flowDetachOther, flowHoldsKey } from './flow_table';
import { BpfMap, mapDelete, mapLookup, mapPeek } from './maps';
import { IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './parse';
import { ct4, ct6 } from './registry';
import { traceLookup, tracing } from './trace';

const tupleKey = memory.data(16); // struct ct4_tuple
const partnerKey = memory.data(16); // struct ct4_tuple: the other direction's, for ctTouchFlow4 and ctCreate4
const tupleKey6 = memory.data(40); // struct ct6_tuple
const partnerKey6 = memory.data(40); // struct ct6_tuple: the other direction's, for ctTouchFlow6 and ctCreate6
const entryValue = memory.data(24); // struct ct_entry

const NS_PER_SEC: u64 = 1_000_000_000;
let tcpEstablishedNs: u64 = 0;
let tcpClosingNs: u64 = 0;
let udpNs: u64 = 0;
let udpStreamNs: u64 = 0;

export function configureTimeouts(tcpEstablished: u32, tcpClosing: u32, udp: u32, udpStream: u32): void {
  tcpEstablishedNs = <u64>tcpEstablished * NS_PER_SEC;
  tcpClosingNs = <u64>tcpClosing * NS_PER_SEC;
  udpNs = <u64>udp * NS_PER_SEC;
  udpStreamNs = <u64>udpStream * NS_PER_SEC;
}

/** A ct4_tuple in scratch memory: valid until the next call. Also the SNAT4 map's key. */
export function fillTuple(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  return fillTupleAt(tupleKey, saddr, daddr, sport, dport, proto, dir);
}

function fillTupleAt(key: usize, saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  store<u32>(key + CT4_SADDR, saddr);
  store<u32>(key + CT4_DADDR, daddr);
  store<u16>(key + CT4_SPORT, sport);
  store<u16>(key + CT4_DPORT, dport);
  store<u8>(key + CT4_PROTO, proto);
  store<u8>(key + CT4_DIR, dir);
  store<u16>(key + CT4_DIR + 1, 0);
  return key;
}

/** The ct_entry of this tuple in this direction, or 0. */
export function ctLookup4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  return mapLookup(ct4, fillTuple(saddr, daddr, sport, dport, proto, dir));
}

/** Like ctLookup4, without counting as a use of the entry (for collision checks). */
export function ctPeek4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  return mapPeek(ct4, fillTuple(saddr, daddr, sport, dport, proto, dir));
}

export function ctDelete4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, dir: u8): void {
  mapDelete(ct4, fillTuple(saddr, daddr, sport, dport, proto, dir));
}

/** A ct6_tuple in scratch memory (addresses copied from pointers): valid until the next call. */
export function fillTuple6(saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  return fillTuple6At(tupleKey6, saddr, daddr, sport, dport, proto, dir);
}

function fillTuple6At(key: usize, saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  memory.copy(key + CT6_SADDR, saddr, 16);
  memory.copy(key + CT6_DADDR, daddr, 16);
  store<u16>(key + CT6_SPORT, sport);
  store<u16>(key + CT6_DPORT, dport);
  store<u8>(key + CT6_PROTO, proto);
  store<u8>(key + CT6_DIR, dir);
  store<u16>(key + CT6_DIR + 1, 0);
  return key;
}

export function ctLookup6(saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  return mapLookup(ct6, fillTuple6(saddr, daddr, sport, dport, proto, dir));
}

export function ctPeek6(saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8, dir: u8): usize {
  return mapPeek(ct6, fillTuple6(saddr, daddr, sport, dport, proto, dir));
}

export function ctDelete6(saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8, dir: u8): void {
  mapDelete(ct6, fillTuple6(saddr, daddr, sport, dport, proto, dir));
}

/** True when the entry has not timed out at `now`. */
export function ctIsLive(entry: usize, now: u64, proto: u8): bool {
  return isLive(load<u64>(entry + CT_LAST_SEEN), load<u16>(entry + CT_FLAGS), now, proto);
}

/** Whether a flow last seen at `last`, in state `flags` (CT_F_*), has not timed out at `now`. */
export function isLive(last: u64, flags: u16, now: u64, proto: u8): bool {
  if (now <= last) return true; // capture clocks may step back a little
  let timeout: u64;
  if (proto == IPPROTO_TCP) timeout = (flags & CT_F_CLOSING) != 0 ? tcpClosingNs : tcpEstablishedNs;
  else timeout = (flags & CT_F_SEEN_REPLY) != 0 ? udpStreamNs : udpNs;
  return now - last <= timeout;
}

/**
 * True when the control plane flushed the flow (CT_F_FLUSHED: kube-proxy's
 * stale UDP flush, which deletes the kernel's entry): the flow is over, and
 * its next packet starts a new one.
 */
@inline export function ctIsFlushed(entry: usize): bool {
  return (load<u16>(entry + CT_FLAGS) & CT_F_FLUSHED) != 0;
}

@inline function isClosing(proto: u8, tcpFlags: u8): bool {
  return proto == IPPROTO_TCP && (tcpFlags & (TCP_FIN | TCP_RST)) != 0;
}

/** A bare SYN on a tracked tuple whose connection was closing starts a new connection. */
@inline export function ctIsReopen(entry: usize, proto: u8, tcpFlags: u8): bool {
  return proto == IPPROTO_TCP && (tcpFlags & (TCP_SYN | TCP_ACK)) == TCP_SYN
    && (load<u16>(entry + CT_FLAGS) & CT_F_CLOSING) != 0;
}

/** Records a packet of the flow: time, and FIN/RST/reply state. */
export function ctTouch(entry: usize, now: u64, proto: u8, tcpFlags: u8, isReply: bool): void {
  touch(entry + CT_LAST_SEEN, entry + CT_FLAGS, now, proto, tcpFlags, isReply);
}

/**
 * A packet of the flow of `entry` (found as its `entryDir` key) refreshes it
 * and the key its other direction has (`key`, of `partnerDir`): when
 * the record holds both, one write; else the record keeps only the entry's
 * key, and the partner key's own record is refreshed (holding only that key).
 * The partner's lookup is traced before the refresh, as its value then was.
 */
function touchFlow(m: BpfMap, entry: usize, entryDir: u8, key: usize, partnerDir: u8, now: u64, proto: u8, tcpFlags: u8, isReply: bool): void {
  const t = m.flows!;
  let partner = entry;
  if (flowHoldsKey(t, entry, key)) {
    if (tracing) traceLookup(m.id, key, m.keySize, entry, m.valueSize);
    if (partnerDir == entryDir) flowDetachOther(t, entry, entryDir, 0);
  } else {
    partner = mapLookup(m, key);
    flowDetachOther(t, entry, entryDir, partner);
    if (partner != 0) flowDetachOther(t, partner, partnerDir, entry);
  }
  ctTouch(entry, now, proto, tcpFlags, isReply);
  if (partner != 0 && partner != entry) ctTouch(partner, now, proto, tcpFlags, isReply);
}

/** touchFlow of a ct4 entry, with the partner key's tuple. */
export function ctTouchFlow4(
  entry: usize, entryDir: u8, saddr: u32, daddr: u32, sport: u16, dport: u16, partnerDir: u8,
  now: u64, proto: u8, tcpFlags: u8, isReply: bool,
): void {
  const key = fillTupleAt(partnerKey, saddr, daddr, sport, dport, proto, partnerDir);
  touchFlow(ct4, entry, entryDir, key, partnerDir, now, proto, tcpFlags, isReply);
}

/** ctTouchFlow4 for IPv6: addresses by pointer. */
export function ctTouchFlow6(
  entry: usize, entryDir: u8, saddr: usize, daddr: usize, sport: u16, dport: u16, partnerDir: u8,
  now: u64, proto: u8, tcpFlags: u8, isReply: bool,
): void {
  const key = fillTuple6At(partnerKey6, saddr, daddr, sport, dport, proto, partnerDir);
  touchFlow(ct6, entry, entryDir, key, partnerDir, now, proto, tcpFlags, isReply);
}

/** ctTouch on a clock kept elsewhere: a u64 last-seen time and u16 CT_F_* flags at these addresses. */
export function touch(lastSeen: usize, flagsAt: usize, now: u64, proto: u8, tcpFlags: u8, isReply: bool): void {
  if (now > load<u64>(lastSeen)) store<u64>(lastSeen, now);
  let flags = load<u16>(flagsAt);
  if (isReply) flags |= CT_F_SEEN_REPLY;
  if (isClosing(proto, tcpFlags)) flags |= CT_F_CLOSING;
  store<u16>(flagsAt, flags);
}

function fillEntry(proto: u8, tcpFlags: u8, snatPort: u16, backendId: u32, revNatIndex: u32, serviceId: u32, now: u64): usize {
  let flags: u16 = isClosing(proto, tcpFlags) ? CT_F_CLOSING : 0;
  if (snatPort != 0) flags |= CT_F_SNAT;
  store<u32>(entryValue + CT_BACKEND_ID, backendId);
  store<u32>(entryValue + CT_REV_NAT_INDEX, revNatIndex);
  store<u32>(entryValue + CT_SERVICE_ID, serviceId);
  store<u16>(entryValue + CT_FLAGS, flags);
  store<u16>(entryValue + CT_SNAT_PORT, snatPort);
  store<u64>(entryValue + CT_LAST_SEEN, now);
  return entryValue;
}

/**
 * Tracks a new flow client -> frontend that was sent to a backend: one
 * record with the original-direction key and the reply-direction key, keyed
 * as the reply will arrive: backend -> client, or backend -> masquerade
 * address and port when the source was masqueraded (`snatPort` != 0). The
 * map makes room by eviction, so the insert cannot fail.
 */
export function ctCreate4(
  saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, tcpFlags: u8,
  backendAddr: u32, backendPort: u16, snatAddr: u32, snatPort: u16,
  backendId: u32, revNatIndex: u32, serviceId: u32, now: u64,
): void {
  const value = fillEntry(proto, tcpFlags, snatPort, backendId, revNatIndex, serviceId, now);
  const replyDst = snatPort != 0 ? snatAddr : saddr;
  const replyDport = snatPort != 0 ? snatPort : sport;
  flowCreate(
    ct4.flows!,
    fillTupleAt(tupleKey, saddr, daddr, sport, dport, proto, CT_DIR_ORIGINAL),
    fillTupleAt(partnerKey, backendAddr, replyDst, backendPort, replyDport, proto, CT_DIR_REPLY),
    value,
  );
}

/** ctCreate4 for IPv6: addresses by pointer. */
export function ctCreate6(
  saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8, tcpFlags: u8,
  backendAddr: usize, backendPort: u16, snatAddr: usize, snatPort: u16,
  backendId: u32, revNatIndex: u32, serviceId: u32, now: u64,
): void {
  const value = fillEntry(proto, tcpFlags, snatPort, backendId, revNatIndex, serviceId, now);
  const replyDst = snatPort != 0 ? snatAddr : saddr;
  const replyDport = snatPort != 0 ? snatPort : sport;
  flowCreate(
    ct6.flows!,
    fillTuple6At(tupleKey6, saddr, daddr, sport, dport, proto, CT_DIR_ORIGINAL),
    fillTuple6At(partnerKey6, backendAddr, replyDst, backendPort, replyDport, proto, CT_DIR_REPLY),
    value,
  );
}
