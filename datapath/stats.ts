// Counters, like Cilium's metrics map: packets and bytes per (reason,
// verdict), packets, bytes and new flows per service and per backend, and
// packets per kind of flow change (what a cluster change did to their flow).

import { FC_PACKETS, METRIC_BYTES, METRIC_PACKETS, STAT_BYTES, STAT_FLOWS, STAT_PACKETS } from './layout';
import { mapLookup } from './maps';
import { backendStats, flowChanges, metrics, serviceStats } from './registry';

const indexKey = memory.data(4);

@inline function bump(counter: usize, bytes: u32): void {
  store<u64>(counter + STAT_PACKETS, load<u64>(counter + STAT_PACKETS) + 1);
  store<u64>(counter + STAT_BYTES, load<u64>(counter + STAT_BYTES) + bytes);
}

export function countVerdict(reason: u8, verdict: u8, bytes: u32): void {
  store<u32>(indexKey, (<u32>reason << 3) | verdict);
  const counter = mapLookup(metrics, indexKey);
  if (counter == 0) return;
  store<u64>(counter + METRIC_PACKETS, load<u64>(counter + METRIC_PACKETS) + 1);
  store<u64>(counter + METRIC_BYTES, load<u64>(counter + METRIC_BYTES) + bytes);
}

/** Counts a packet of a service flow; `newFlow` also counts the flow. */
export function countFlowPacket(serviceId: u32, backendId: u32, bytes: u32, newFlow: bool): void {
  store<u32>(indexKey, serviceId);
  const svc = mapLookup(serviceStats, indexKey);
  if (svc != 0) {
    bump(svc, bytes);
    if (newFlow) store<u64>(svc + STAT_FLOWS, load<u64>(svc + STAT_FLOWS) + 1);
  }
  if (backendId == 0) return;
  store<u32>(indexKey, backendId);
  const be = mapLookup(backendStats, indexKey);
  if (be != 0) {
    bump(be, bytes);
    if (newFlow) store<u64>(be + STAT_FLOWS, load<u64>(be + STAT_FLOWS) + 1);
  }
}

/** Counts a packet flagged with one DESC_F_* flow change: at index bit - 4 (layout.ts MAP_FLOW_CHANGES). */
export function countFlowChange(flag: u16): void {
  store<u32>(indexKey, <u32>ctz<u16>(flag) - 4);
  const counter = mapLookup(flowChanges, indexKey);
  if (counter != 0) store<u64>(counter + FC_PACKETS, load<u64>(counter + FC_PACKETS) + 1);
}
