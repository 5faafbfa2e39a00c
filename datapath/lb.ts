// Service load balancing: which frontend a packet is addressed to, and which
// backend a new flow of it goes to (Maglev consistent hashing).

import { flowHash4, flowHash6 } from './hash';
import {
  LB4_KEY_ADDRESS, LB4_KEY_DPORT, LB4_KEY_PROTO, LB4_KEY_SCOPE, LB4_SVC_BACKEND_COUNT, LB4_SVC_LOCAL_BACKEND_COUNT,
  LB4_SVC_SERVICE_ID, LB6_KEY_DPORT, LB6_KEY_PROTO, LB6_KEY_SCOPE, LB_SCOPE_EXTERNAL,
} from './layout';
import { mapLookup } from './maps';
import { traceMaglev, tracing } from './trace';
import { lb4Backends, lb4Revnat, lb4Services, lb6Backends, lb6Revnat, lb6Services, maglevM, maglevMap } from './registry';

const serviceKey = memory.data(8); // struct lb4_key
const serviceKey6 = memory.data(20); // struct lb6_key
const idKey = memory.data(4);

/** The lb4_service of the frontend (daddr, dport, proto), or 0. */
export function lookupService4(daddr: u32, dport: u16, proto: u8): usize {
  store<u32>(serviceKey + LB4_KEY_ADDRESS, daddr);
  store<u16>(serviceKey + LB4_KEY_DPORT, dport);
  store<u8>(serviceKey + LB4_KEY_PROTO, proto);
  store<u8>(serviceKey + LB4_KEY_SCOPE, LB_SCOPE_EXTERNAL);
  return mapLookup(lb4Services, serviceKey);
}

/** True when `daddr` is a cluster IP (its wildcard entry exists). */
export function isClusterIP4(daddr: u32): bool {
  return lookupService4(daddr, 0, 0) != 0;
}

/** The lb6_service of the frontend (daddr, dport, proto), or 0. */
export function lookupService6(daddr: usize, dport: u16, proto: u8): usize {
  memory.copy(serviceKey6, daddr, 16);
  store<u16>(serviceKey6 + LB6_KEY_DPORT, dport);
  store<u8>(serviceKey6 + LB6_KEY_PROTO, proto);
  store<u8>(serviceKey6 + LB6_KEY_SCOPE, LB_SCOPE_EXTERNAL);
  return mapLookup(lb6Services, serviceKey6);
}

export function isClusterIP6(daddr: usize): bool {
  return lookupService6(daddr, 0, 0) != 0;
}

/** The Maglev table of the service's local (or cluster-wide) backends of one address family. */
@inline export function tableId(svc: usize, v6: bool, local: bool): u32 {
  return (load<u32>(svc + LB4_SVC_SERVICE_ID) << 2) | (v6 ? 2 : 0) | (local ? 1 : 0);
}

/** Usable backends the service has in that set. */
@inline export function backendCount(svc: usize, local: bool): u32 {
  return load<u32>(svc + (local ? LB4_SVC_LOCAL_BACKEND_COUNT : LB4_SVC_BACKEND_COUNT));
}

/**
 * The backend id Maglev assigns to this flow: slot hash(5-tuple) mod M of the
 * table. 0 when there is no such table.
 */
export function maglevBackend4(table: u32, seed: u32, saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8): u32 {
  store<u32>(idKey, table);
  const slots = mapLookup(maglevMap, idKey);
  if (slots == 0) return 0;
  const slot = flowHash4(seed, saddr, daddr, sport, dport, proto) % maglevM;
  const backendId = load<u32>(slots + (<usize>slot << 2));
  if (tracing) traceMaglev(table, slot, backendId);
  return backendId;
}

/** The Maglev choice for an IPv6 flow: slot hash(5-tuple) mod M of the table, or 0. */
export function maglevBackend6(table: u32, seed: u32, saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8): u32 {
  store<u32>(idKey, table);
  const slots = mapLookup(maglevMap, idKey);
  if (slots == 0) return 0;
  const slot = flowHash6(seed, saddr, daddr, sport, dport, proto) % maglevM;
  const backendId = load<u32>(slots + (<usize>slot << 2));
  if (tracing) traceMaglev(table, slot, backendId);
  return backendId;
}

/** The lb6_backend with this id, or 0. */
export function lookupBackend6(backendId: u32): usize {
  if (backendId == 0) return 0;
  store<u32>(idKey, backendId);
  return mapLookup(lb6Backends, idKey);
}

/** The lb6_revnat with this index, or 0. */
export function lookupRevNat6(revNatIndex: u32): usize {
  store<u32>(idKey, revNatIndex);
  return mapLookup(lb6Revnat, idKey);
}

/** The lb4_backend with this id, or 0. */
export function lookupBackend4(backendId: u32): usize {
  if (backendId == 0) return 0;
  store<u32>(idKey, backendId);
  return mapLookup(lb4Backends, idKey);
}

/** The lb4_revnat (frontend address and port) with this index, or 0. */
export function lookupRevNat4(revNatIndex: u32): usize {
  store<u32>(idKey, revNatIndex);
  return mapLookup(lb4Revnat, idKey);
}
