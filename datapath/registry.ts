// The datapath's maps by id: what BPF_MAP_CREATE must be given for each (a
// loader/verifier check, so the control plane cannot create a map whose
// layout the datapath would misread), and the created maps themselves.

import { BpfMap, checkMapShape, createFlowMap, createIdMap, createMap } from './maps';
import {
  AFF_SIZE, BACKEND_ID_SIZE, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_LRU_HASH,
  CONFIG_SIZE, CT4_TUPLE_SIZE, CT_ENTRY_SIZE, EEXIST, EINVAL, ENOMEM,
  LB4_AFF_KEY_SIZE, LB4_BE_SIZE, LB4_KEY_SIZE, LB4_REVNAT_SIZE, LB4_SRC_KEY_SIZE, LB4_SVC_SIZE, LB_MEMBER_KEY_SIZE,
  MAGLEV_KEY_SIZE, MAP_BACKEND_STATS, MAP_CONFIG, MAP_COUNT, MAP_CT4, MAP_LB4_AFFINITY, MAP_LB4_BACKENDS,
  MAP_LB4_REVNAT, MAP_LB4_SERVICES, MAP_LB4_SOURCE_RANGES, MAP_LB_MAGLEV, MAP_LB_MEMBERS, MAP_METRICS,
  MAP_FRAG4, MAP_NODE_IPS4, MAP_SERVICE_STATS, MAP_SNAT4, METRIC_ENTRIES, METRIC_SIZE, NODE_IP4_KEY_SIZE, PRESENCE_SIZE,
  REV_NAT_INDEX_SIZE, SNAT4_SIZE, STAT_SIZE, FRAG4_KEY_SIZE, FRAG4_PORTS_SIZE,
  CT6_TUPLE_SIZE, FRAG6_KEY_SIZE, LB6_AFF_KEY_SIZE, LB6_BE_SIZE, LB6_KEY_SIZE, LB6_REVNAT_SIZE, LB6_SRC_KEY_SIZE,
  MAP_CT6, MAP_FRAG6, MAP_LB6_AFFINITY, MAP_LB6_BACKENDS, MAP_LB6_REVNAT, MAP_LB6_SERVICES, MAP_LB6_SOURCE_RANGES,
  MAP_NODE_IPS6, MAP_SNAT6, MAP_STEER, NODE_IP6_KEY_SIZE, SNAT6_SIZE, STEER_CLASS_SIZE, STEER_KEY_SIZE,
  CONFORM_ENTRIES, CONFORM_SIZE, MAP_CONFORMANCE, MAP_REWRITES, RW_KEY_SIZE, RW_SIZE,
  MAP_SERVICE_RANGES4, MAP_SERVICE_RANGES6, SVC_RANGE4_KEY_SIZE, SVC_RANGE6_KEY_SIZE,
  ARRIVAL_SIZE, MAP_ARRIVALS, MAP_NODE_MASQ, NM_KEY_SIZE, NM_SIZE, FC_ENTRIES, FC_SIZE, MAP_FLOW_CHANGES,
} from './layout';

const NONE = changetype<BpfMap>(0);

export let configMap = NONE;
export let lb4Services = NONE;
export let lb4Backends = NONE;
export let lb4Revnat = NONE;
export let maglevMap = NONE;
export let ct4 = NONE;
export let metrics = NONE;
export let serviceStats = NONE;
export let backendStats = NONE;
export let lbMembers = NONE;
export let lb4Affinity = NONE;
export let snat4 = NONE;
export let lb4SourceRanges = NONE;
export let nodeIps4 = NONE;
export let frag4 = NONE;
export let lb6Services = NONE;
export let lb6Backends = NONE;
export let lb6Revnat = NONE;
export let ct6 = NONE;
export let snat6 = NONE;
export let lb6Affinity = NONE;
export let lb6SourceRanges = NONE;
export let nodeIps6 = NONE;
export let frag6 = NONE;
export let steer = NONE;
export let rewrites = NONE;
export let conformance = NONE;
export let serviceRanges4 = NONE;
export let serviceRanges6 = NONE;
export let arrivals = NONE;
export let nodeMasq = NONE;
export let flowChanges = NONE;

/** Entries per Maglev table (the MAP_LB_MAGLEV value holds M backend ids). */
export let maglevM: u32 = 0;

/** The map with this id, or null when it does not exist (yet). */
export function mapById(id: u32): BpfMap | null {
  let m = NONE;
  switch (id) {
    case MAP_CONFIG: m = configMap; break;
    case MAP_LB4_SERVICES: m = lb4Services; break;
    case MAP_LB4_BACKENDS: m = lb4Backends; break;
    case MAP_LB4_REVNAT: m = lb4Revnat; break;
    case MAP_LB_MAGLEV: m = maglevMap; break;
    case MAP_CT4: m = ct4; break;
    case MAP_METRICS: m = metrics; break;
    case MAP_SERVICE_STATS: m = serviceStats; break;
    case MAP_BACKEND_STATS: m = backendStats; break;
    case MAP_LB_MEMBERS: m = lbMembers; break;
    case MAP_LB4_AFFINITY: m = lb4Affinity; break;
    case MAP_SNAT4: m = snat4; break;
    case MAP_LB4_SOURCE_RANGES: m = lb4SourceRanges; break;
    case MAP_NODE_IPS4: m = nodeIps4; break;
    case MAP_FRAG4: m = frag4; break;
    case MAP_LB6_SERVICES: m = lb6Services; break;
    case MAP_LB6_BACKENDS: m = lb6Backends; break;
    case MAP_LB6_REVNAT: m = lb6Revnat; break;
    case MAP_CT6: m = ct6; break;
    case MAP_SNAT6: m = snat6; break;
    case MAP_LB6_AFFINITY: m = lb6Affinity; break;
    case MAP_LB6_SOURCE_RANGES: m = lb6SourceRanges; break;
    case MAP_NODE_IPS6: m = nodeIps6; break;
    case MAP_FRAG6: m = frag6; break;
    case MAP_STEER: m = steer; break;
    case MAP_REWRITES: m = rewrites; break;
    case MAP_CONFORMANCE: m = conformance; break;
    case MAP_SERVICE_RANGES4: m = serviceRanges4; break;
    case MAP_SERVICE_RANGES6: m = serviceRanges6; break;
    case MAP_ARRIVALS: m = arrivals; break;
    case MAP_NODE_MASQ: m = nodeMasq; break;
    case MAP_FLOW_CHANGES: m = flowChanges; break;
  }
  return changetype<usize>(m) == 0 ? null : m;
}

/** True when every map the datapath needs exists. */
export function allMapsCreated(): bool {
  for (let id: u32 = 0; id < MAP_COUNT; id++) if (mapById(id) === null) return false;
  return true;
}

function expectedShape(id: u32, type: u32, keySize: u32, valueSize: u32, maxEntries: u32): bool {
  switch (id) {
    case MAP_CONFIG: return type == BPF_MAP_TYPE_ARRAY && valueSize == CONFIG_SIZE && maxEntries == 1;
    case MAP_LB4_SERVICES: return type == BPF_MAP_TYPE_HASH && keySize == LB4_KEY_SIZE && valueSize == LB4_SVC_SIZE;
    case MAP_LB4_BACKENDS: return type == BPF_MAP_TYPE_HASH && keySize == BACKEND_ID_SIZE && valueSize == LB4_BE_SIZE;
    case MAP_LB4_REVNAT: return type == BPF_MAP_TYPE_HASH && keySize == REV_NAT_INDEX_SIZE && valueSize == LB4_REVNAT_SIZE;
    // Any table size M: the value is M backend ids.
    case MAP_LB_MAGLEV: return type == BPF_MAP_TYPE_HASH && keySize == MAGLEV_KEY_SIZE && (valueSize & 3) == 0;
    case MAP_CT4: return type == BPF_MAP_TYPE_LRU_HASH && keySize == CT4_TUPLE_SIZE && valueSize == CT_ENTRY_SIZE;
    case MAP_METRICS: return type == BPF_MAP_TYPE_ARRAY && valueSize == METRIC_SIZE && maxEntries == METRIC_ENTRIES;
    case MAP_SERVICE_STATS:
    case MAP_BACKEND_STATS: return type == BPF_MAP_TYPE_ARRAY && valueSize == STAT_SIZE;
    case MAP_LB_MEMBERS: return type == BPF_MAP_TYPE_HASH && keySize == LB_MEMBER_KEY_SIZE && valueSize == PRESENCE_SIZE;
    case MAP_LB4_AFFINITY: return type == BPF_MAP_TYPE_LRU_HASH && keySize == LB4_AFF_KEY_SIZE && valueSize == AFF_SIZE;
    case MAP_SNAT4: return type == BPF_MAP_TYPE_LRU_HASH && keySize == CT4_TUPLE_SIZE && valueSize == SNAT4_SIZE;
    case MAP_LB4_SOURCE_RANGES: return type == BPF_MAP_TYPE_LPM_TRIE && keySize == LB4_SRC_KEY_SIZE && valueSize == PRESENCE_SIZE;
    case MAP_NODE_IPS4: return type == BPF_MAP_TYPE_HASH && keySize == NODE_IP4_KEY_SIZE && valueSize == PRESENCE_SIZE;
    case MAP_FRAG4: return type == BPF_MAP_TYPE_LRU_HASH && keySize == FRAG4_KEY_SIZE && valueSize == FRAG4_PORTS_SIZE;
    case MAP_LB6_SERVICES: return type == BPF_MAP_TYPE_HASH && keySize == LB6_KEY_SIZE && valueSize == LB4_SVC_SIZE;
    case MAP_LB6_BACKENDS: return type == BPF_MAP_TYPE_HASH && keySize == BACKEND_ID_SIZE && valueSize == LB6_BE_SIZE;
    case MAP_LB6_REVNAT: return type == BPF_MAP_TYPE_HASH && keySize == REV_NAT_INDEX_SIZE && valueSize == LB6_REVNAT_SIZE;
    case MAP_CT6: return type == BPF_MAP_TYPE_LRU_HASH && keySize == CT6_TUPLE_SIZE && valueSize == CT_ENTRY_SIZE;
    case MAP_SNAT6: return type == BPF_MAP_TYPE_LRU_HASH && keySize == CT6_TUPLE_SIZE && valueSize == SNAT6_SIZE;
    case MAP_LB6_AFFINITY: return type == BPF_MAP_TYPE_LRU_HASH && keySize == LB6_AFF_KEY_SIZE && valueSize == AFF_SIZE;
    case MAP_LB6_SOURCE_RANGES: return type == BPF_MAP_TYPE_LPM_TRIE && keySize == LB6_SRC_KEY_SIZE && valueSize == PRESENCE_SIZE;
    case MAP_NODE_IPS6: return type == BPF_MAP_TYPE_HASH && keySize == NODE_IP6_KEY_SIZE && valueSize == PRESENCE_SIZE;
    case MAP_FRAG6: return type == BPF_MAP_TYPE_LRU_HASH && keySize == FRAG6_KEY_SIZE && valueSize == FRAG4_PORTS_SIZE;
    case MAP_STEER: return type == BPF_MAP_TYPE_HASH && keySize == STEER_KEY_SIZE && valueSize == STEER_CLASS_SIZE;
    case MAP_REWRITES: return type == BPF_MAP_TYPE_LRU_HASH && keySize == RW_KEY_SIZE && valueSize == RW_SIZE;
    case MAP_CONFORMANCE: return type == BPF_MAP_TYPE_ARRAY && valueSize == CONFORM_SIZE && maxEntries == CONFORM_ENTRIES;
    case MAP_SERVICE_RANGES4: return type == BPF_MAP_TYPE_LPM_TRIE && keySize == SVC_RANGE4_KEY_SIZE && valueSize == PRESENCE_SIZE;
    case MAP_SERVICE_RANGES6: return type == BPF_MAP_TYPE_LPM_TRIE && keySize == SVC_RANGE6_KEY_SIZE && valueSize == PRESENCE_SIZE;
    case MAP_ARRIVALS: return type == BPF_MAP_TYPE_LRU_HASH && keySize == RW_KEY_SIZE && valueSize == ARRIVAL_SIZE;
    case MAP_NODE_MASQ: return type == BPF_MAP_TYPE_LRU_HASH && keySize == NM_KEY_SIZE && valueSize == NM_SIZE;
    case MAP_FLOW_CHANGES: return type == BPF_MAP_TYPE_ARRAY && valueSize == FC_SIZE && maxEntries == FC_ENTRIES;
  }
  return false;
}

/** BPF_MAP_CREATE for one of the datapath's maps: 0 or a negative errno. */
export function createNamedMap(id: u32, type: u32, keySize: u32, valueSize: u32, maxEntries: u32): i32 {
  if (id >= MAP_COUNT || !expectedShape(id, type, keySize, valueSize, maxEntries)) return -EINVAL;
  const shapeError = checkMapShape(type, keySize, valueSize, maxEntries);
  if (shapeError != 0) return shapeError;
  if (mapById(id) !== null) return -EEXIST;
  let m: BpfMap | null;
  if (id == MAP_CT4 || id == MAP_CT6) m = createFlowMap(type, keySize, valueSize, maxEntries);
  else if (id == MAP_LB4_BACKENDS || id == MAP_LB6_BACKENDS) m = createIdMap(type, keySize, valueSize, maxEntries);
  else m = createMap(type, keySize, valueSize, maxEntries);
  if (m === null) return -ENOMEM;
  m.id = id;
  switch (id) {
    case MAP_CONFIG: configMap = m; break;
    case MAP_LB4_SERVICES: lb4Services = m; break;
    case MAP_LB4_BACKENDS: lb4Backends = m; break;
    case MAP_LB4_REVNAT: lb4Revnat = m; break;
    case MAP_LB_MAGLEV: maglevMap = m; maglevM = valueSize >>> 2; break;
    case MAP_CT4: ct4 = m; break;
    case MAP_METRICS: metrics = m; break;
    case MAP_SERVICE_STATS: serviceStats = m; break;
    case MAP_BACKEND_STATS: backendStats = m; break;
    case MAP_LB_MEMBERS: lbMembers = m; break;
    case MAP_LB4_AFFINITY: lb4Affinity = m; break;
    case MAP_SNAT4: snat4 = m; break;
    case MAP_LB4_SOURCE_RANGES: lb4SourceRanges = m; break;
    case MAP_NODE_IPS4: nodeIps4 = m; break;
    case MAP_FRAG4: frag4 = m; break;
    case MAP_LB6_SERVICES: lb6Services = m; break;
    case MAP_LB6_BACKENDS: lb6Backends = m; break;
    case MAP_LB6_REVNAT: lb6Revnat = m; break;
    case MAP_CT6: ct6 = m; break;
    case MAP_SNAT6: snat6 = m; break;
    case MAP_LB6_AFFINITY: lb6Affinity = m; break;
    case MAP_LB6_SOURCE_RANGES: lb6SourceRanges = m; break;
    case MAP_NODE_IPS6: nodeIps6 = m; break;
    case MAP_FRAG6: frag6 = m; break;
    case MAP_STEER: steer = m; break;
    case MAP_REWRITES: rewrites = m; break;
    case MAP_CONFORMANCE: conformance = m; break;
    case MAP_SERVICE_RANGES4: serviceRanges4 = m; break;
    case MAP_SERVICE_RANGES6: serviceRanges6 = m; break;
    case MAP_ARRIVALS: arrivals = m; break;
    case MAP_NODE_MASQ: nodeMasq = m; break;
    case MAP_FLOW_CHANGES: flowChanges = m; break;
  }
  return 0;
}
