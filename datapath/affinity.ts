// Session affinity (ClientIP): a client keeps its backend for a service port
// while it opens new connections within the timeout, as kube-proxy's
// per-endpoint affinity sets do. The record is checked against the backends
// the flow may use now, so a backend that left (or is not local, under a
// Local policy) is never reused.

import {
  AFF_BACKEND_ID, AFF_LAST_USED, BPF_ANY, LB4_AFF_CLIENT, LB4_AFF_SERVICE_ID, LB_MEMBER_BACKEND, LB_MEMBER_TABLE,
} from './layout';
import { mapLookup, mapUpdate } from './maps';
import { lb4Affinity, lbMembers } from './registry';

const affinityKey = memory.data(8);
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

/** The client's backend for this service port if its affinity still holds, else 0. */
export function affinityBackend4(client: u32, serviceId: u32, table: u32, timeoutSeconds: u32, now: u64): u32 {
  const record = mapLookup(lb4Affinity, fillKey(client, serviceId));
  if (record == 0) return 0;
  const last = load<u64>(record + AFF_LAST_USED);
  if (now > last && now - last > <u64>timeoutSeconds * 1_000_000_000) return 0;
  const backendId = load<u32>(record + AFF_BACKEND_ID);
  return tableHasBackend(table, backendId) ? backendId : 0;
}

/** Records (or refreshes) the client's backend at a new connection. */
export function recordAffinity4(client: u32, serviceId: u32, backendId: u32, now: u64): void {
  store<u32>(affinityValue + AFF_BACKEND_ID, backendId);
  store<u32>(affinityValue + AFF_BACKEND_ID + 4, 0);
  store<u64>(affinityValue + AFF_LAST_USED, now);
  mapUpdate(lb4Affinity, fillKey(client, serviceId), affinityValue, BPF_ANY);
}
