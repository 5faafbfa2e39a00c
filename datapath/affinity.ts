// Session affinity (ClientIP): a client keeps its backend for a service port
// while it opens new connections within the timeout, as kube-proxy's
// per-endpoint affinity sets do. The record is checked against the backends
// the flow may use now, so a backend that left (or is not local, under a
// Local policy) is never reused.

import {
  AFF_BACKEND_ID, AFF_LAST_USED, BPF_ANY, LB4_AFF_CLIENT, LB4_AFF_SERVICE_ID, LB6_AFF_CLIENT, LB6_AFF_SERVICE_ID,
  LB_MEMBER_BACKEND, LB_MEMBER_TABLE,
} from './layout';
import { BpfMap, mapLookup, mapUpdate } from './maps';
import { lb4Affinity, lb6Affinity, lbMembers } from './registry';

const affinityKey = memory.data(8);
const affinityKey6 = memory.data(20);
const affinityValue = memory.data(16);
const memberKey = memory.data(8);

@inline function fillKey(client: u32, serviceId: u32): usize {
  store<u32>(affinityKey + LB4_AFF_CLIENT, client);
  store<u32>(affinityKey + LB4_AFF_SERVICE_ID, serviceId);
  return affinityKey;
}

/** True when the Maglev table `table` holds `backendId`. */
export function tableHasBackend(table: u32, backendId: u32): bool {
  store<u32>(memberKey + LB_MEMBER_TABLE, table);
  store<u32>(memberKey + LB_MEMBER_BACKEND, backendId);
  return mapLookup(lbMembers, memberKey) != 0;
}

/**
 * Whether the last affinityBackend4/6 found a live record whose backend the
 * table no longer holds: the client's affinity was reset by a change (its
 * backend left, or stopped taking new flows).
 */
export let affinityLapsed: bool = false;

/** The backend of an affinity record if it still holds, else 0. */
function stillAffine(map: BpfMap, key: usize, table: u32, timeoutSeconds: u32, now: u64): u32 {
  affinityLapsed = false;
  const record = mapLookup(map, key);
  if (record == 0) return 0;
  const last = load<u64>(record + AFF_LAST_USED);
  if (now > last && now - last > <u64>timeoutSeconds * 1_000_000_000) return 0;
  const backendId = load<u32>(record + AFF_BACKEND_ID);
  if (tableHasBackend(table, backendId)) return backendId;
  affinityLapsed = true;
  return 0;
}

function record(map: BpfMap, key: usize, backendId: u32, now: u64): void {
  store<u32>(affinityValue + AFF_BACKEND_ID, backendId);
  store<u32>(affinityValue + AFF_BACKEND_ID + 4, 0);
  store<u64>(affinityValue + AFF_LAST_USED, now);
  mapUpdate(map, key, affinityValue, BPF_ANY);
}

@inline function fillKey6(client: usize, serviceId: u32): usize {
  memory.copy(affinityKey6 + LB6_AFF_CLIENT, client, 16);
  store<u32>(affinityKey6 + LB6_AFF_SERVICE_ID, serviceId);
  return affinityKey6;
}

/** The client's backend for this service port if its affinity still holds, else 0. */
export function affinityBackend4(client: u32, serviceId: u32, table: u32, timeoutSeconds: u32, now: u64): u32 {
  return stillAffine(lb4Affinity, fillKey(client, serviceId), table, timeoutSeconds, now);
}

export function affinityBackend6(client: usize, serviceId: u32, table: u32, timeoutSeconds: u32, now: u64): u32 {
  return stillAffine(lb6Affinity, fillKey6(client, serviceId), table, timeoutSeconds, now);
}

/** Records (or refreshes) the client's backend at a new connection. */
export function recordAffinity4(client: u32, serviceId: u32, backendId: u32, now: u64): void {
  record(lb4Affinity, fillKey(client, serviceId), backendId, now);
}

export function recordAffinity6(client: usize, serviceId: u32, backendId: u32, now: u64): void {
  record(lb6Affinity, fillKey6(client, serviceId), backendId, now);
}
