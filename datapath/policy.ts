// Traffic policy: which of a service's backends a new flow may use, and
// whether its source is masqueraded. These are kube-proxy's (nftables mode)
// decisions, made from the kind of frontend the packet was sent to, the
// service's traffic policies and where the packet comes from:
//
//   cluster IP   internalTrafficPolicy Local -> local backends, else all;
//                masquerade with --masquerade-all, or when the source is
//                not a pod (only if the pod network is known at all)
//   NodePort,    externalTrafficPolicy Cluster -> all backends, masquerade;
//   LB IP,       Local -> a pod: all backends, no masquerade;
//   external IP           this node: all backends, masquerade;
//                         anyone else: local backends, source kept
//
// A flow whose client is also the chosen backend (hairpin) is masqueraded
// whatever the rest says; index.ts applies that once the backend is known.

import {
  CFG_F_MASQUERADE_ALL, CFG_F_POD_CIDR4, CFG_F_REMOVED_FRONTENDS, CFG_F_RESELECT_GONE, CFG_F_POD_CIDR6, CONFIG_FLAGS,
  CONFIG_POD_CIDR4, CONFIG_POD_CIDR6, CONFIG_POD_MASK4, CONFIG_POD_MASK6, SVC_F_EXT_LOCAL, SVC_F_EXTERNAL, SVC_F_INT_LOCAL,
} from './layout';
import { mapLookup } from './maps';
import { nodeIps4, nodeIps6 } from './registry';

export const SOURCE_EXTERNAL: u8 = 0;
export const SOURCE_POD: u8 = 1;
export const SOURCE_NODE: u8 = 2;

let configFlags: u32 = 0;
let podNet: u32 = 0;
let podMask: u32 = 0;
/** The config value itself holds the IPv6 pod network and mask; they are read in place. */
let config: usize = 0;

export function configurePolicy(cfg: usize): void {
  config = cfg;
  configFlags = load<u32>(cfg + CONFIG_FLAGS);
  podNet = load<u32>(cfg + CONFIG_POD_CIDR4);
  podMask = load<u32>(cfg + CONFIG_POD_MASK4);
}

/**
 * Whether a flow whose backend went (a tombstone, BE_F_GONE) chooses again:
 * Cilium revalidates the backend on every packet; kube-proxy's conntrack
 * entries keep their DNAT to it.
 */
export function reselectsGoneBackends(): bool {
  return (configFlags & CFG_F_RESELECT_GONE) != 0;
}

/**
 * Whether a packet to no frontend may be an established flow's: only after a
 * sync removed a frontend (the control plane sets CFG_F_REMOVED_FRONTENDS and
 * leaves it), since conntrack entries are only ever made for frontends. Until
 * then, such a packet costs no conntrack lookup.
 */
export function flowsOutliveFrontends(): bool {
  return (configFlags & CFG_F_REMOVED_FRONTENDS) != 0;
}

const addressKey = memory.data(4);

/** Where a packet comes from: this node, a pod, or anywhere else. */
export function classifySource4(saddr: u32): u8 {
  store<u32>(addressKey, saddr);
  if (mapLookup(nodeIps4, addressKey) != 0) return SOURCE_NODE;
  // Addresses and masks are both in network order: masking works bytewise.
  if ((configFlags & CFG_F_POD_CIDR4) != 0 && (saddr & podMask) == podNet) return SOURCE_POD;
  return SOURCE_EXTERNAL;
}

/** True when `addr` masked with the 16-byte mask at `mask` equals the network at `net`. */
function inNetwork6(addr: usize, net: usize, mask: usize): bool {
  return (load<u64>(addr) & load<u64>(mask)) == load<u64>(net)
    && (load<u64>(addr, 8) & load<u64>(mask, 8)) == load<u64>(net, 8);
}

export function classifySource6(saddr: usize): u8 {
  if (mapLookup(nodeIps6, saddr) != 0) return SOURCE_NODE;
  if ((configFlags & CFG_F_POD_CIDR6) != 0 && inNetwork6(saddr, config + CONFIG_POD_CIDR6, config + CONFIG_POD_MASK6)) return SOURCE_POD;
  return SOURCE_EXTERNAL;
}

/** The policy's outcome for a new flow: valid after choosePolicy. */
export let useLocalBackends: bool = false;
export let masquerade: bool = false;

export function choosePolicy(serviceFlags: u32, source: u8, v6: bool): void {
  if ((serviceFlags & SVC_F_EXTERNAL) != 0) {
    if ((serviceFlags & SVC_F_EXT_LOCAL) == 0) {
      // The backend may be on another node: masquerade so its reply comes back here.
      useLocalBackends = false;
      masquerade = true;
    } else {
      // Pods and the node itself short-circuit to every backend, as if they
      // had gone out to the load balancer and come back in; the node's own
      // traffic needs masquerading because its source is a local address.
      useLocalBackends = source == SOURCE_EXTERNAL;
      masquerade = source == SOURCE_NODE;
    }
    return;
  }
  useLocalBackends = (serviceFlags & SVC_F_INT_LOCAL) != 0;
  const podNetworkKnown = (configFlags & (v6 ? CFG_F_POD_CIDR6 : CFG_F_POD_CIDR4)) != 0;
  masquerade = (configFlags & CFG_F_MASQUERADE_ALL) != 0 || (podNetworkKnown && source != SOURCE_POD);
}
