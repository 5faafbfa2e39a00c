// Masquerading (SNAT): the flow's source becomes this node's address and a
// port from the SNAT range, chosen per flow like iptables' MASQUERADE
// --random-fully (a seeded hash of the flow, so replays are deterministic),
// and never a port whose reply tuple a live flow already owns. The SNAT4 map
// remembers, per reply tuple, the client the reply really goes to.

import { ctIsLive, ctPeek4, ctPeek6, fillTuple, fillTuple6 } from './conntrack';
import { clientHash4, clientHash6, flowHash4, flowHash6 } from './hash';
import {
  BPF_ANY, CFG_F_SNAT_ADDR6, CONFIG_FLAGS, CONFIG_SNAT_ADDR4, CONFIG_SNAT_ADDR6, CONFIG_SNAT_PORT_MAX, CONFIG_SNAT_PORT_MIN,
  CT_DIR_REPLY, SNAT4_ADDRESS, SNAT4_NODE_PORT, SNAT4_PORT, SNAT6_ADDRESS, SNAT6_NODE_PORT, SNAT6_PORT,
} from './layout';
import { mapDelete, mapLookup, mapUpdate } from './maps';
import { snat4, snat6 } from './registry';

/** The masquerade addresses: IPv4 (network order), and IPv6 when `hasSnatAddress6`. */
export let snatAddress: u32 = 0;
export const snatAddress6 = memory.data(16);
export let hasSnatAddress6: bool = false;
let portMin: u32 = 0;
let portMax: u32 = 0;

// Distinct from the Maglev hash seed, so port choice and backend choice do not correlate.
const PORT_HASH_SALT: u32 = 0x9e3779b9;

/**
 * Masquerade ports come in classes: port min + c + k * classes belongs to
 * class c, and a client's flows take ports of its own class (its clientHash
 * modulo classes). A masqueraded reply's port so names its client's class,
 * which is how a sharded replay sends the reply to the worker that holds the
 * client (datapath/steer.ts), and a replay picks the same ports with one
 * worker or many. Classes are a power of two up to 64, as many as keep 256
 * ports or more each; a range below 512 ports is one class, all of it.
 */
export const MAX_PORT_CLASSES: u32 = 64;
const MIN_PORTS_PER_CLASS: u32 = 256;

export function portClasses(size: u32): u32 {
  let classes: u32 = 1;
  while (classes < MAX_PORT_CLASSES && size / (classes << 1) >= MIN_PORTS_PER_CLASS) classes <<= 1;
  return classes;
}

@inline export function snatPortMin(): u32 {
  return portMin;
}

@inline export function snatPortMax(): u32 {
  return portMax;
}

export function configureSnat(cfg: usize): void {
  snatAddress = load<u32>(cfg + CONFIG_SNAT_ADDR4);
  memory.copy(snatAddress6, cfg + CONFIG_SNAT_ADDR6, 16);
  hasSnatAddress6 = (load<u32>(cfg + CONFIG_FLAGS) & CFG_F_SNAT_ADDR6) != 0;
  portMin = load<u16>(cfg + CONFIG_SNAT_PORT_MIN);
  portMax = load<u16>(cfg + CONFIG_SNAT_PORT_MAX);
}

/**
 * A masquerade port (network order) for a flow from client:clientPort to
 * backend:backendPort, or 0 when every port of the client's class is taken
 * by a live flow.
 */
export function pickSnatPort4(seed: u32, client: u32, clientPort: u16, backend: u32, backendPort: u16, proto: u8, now: u64): u16 {
  if (portMin == 0 || portMax < portMin) return 0;
  const classes = portClasses(portMax - portMin + 1);
  const first = portMin + clientHash4(client) % classes;
  const size = (portMax - first) / classes + 1;
  const start = flowHash4(seed ^ PORT_HASH_SALT, client, backend, clientPort, backendPort, proto) % size;
  for (let i: u32 = 0; i < size; i++) {
    const port = bswap<u16>(<u16>(first + ((start + i) % size) * classes));
    const owner = ctPeek4(backend, snatAddress, backendPort, port, proto, CT_DIR_REPLY);
    if (owner == 0 || !ctIsLive(owner, now, proto)) return port;
  }
  return 0;
}

/** pickSnatPort4 for IPv6: addresses by pointer. */
export function pickSnatPort6(seed: u32, client: usize, clientPort: u16, backend: usize, backendPort: u16, proto: u8, now: u64): u16 {
  if (!hasSnatAddress6 || portMin == 0 || portMax < portMin) return 0;
  const classes = portClasses(portMax - portMin + 1);
  const first = portMin + clientHash6(client) % classes;
  const size = (portMax - first) / classes + 1;
  const start = flowHash6(seed ^ PORT_HASH_SALT, client, backend, clientPort, backendPort, proto) % size;
  for (let i: u32 = 0; i < size; i++) {
    const port = bswap<u16>(<u16>(first + ((start + i) % size) * classes));
    const owner = ctPeek6(backend, snatAddress6, backendPort, port, proto, CT_DIR_REPLY);
    if (owner == 0 || !ctIsLive(owner, now, proto)) return port;
  }
  return 0;
}

const originValue = memory.data(8);
const originValue6 = memory.data(20);

export function recordSnat4(backend: u32, backendPort: u16, port: u16, proto: u8, client: u32, clientPort: u16): void {
  store<u32>(originValue + SNAT4_ADDRESS, client);
  store<u16>(originValue + SNAT4_PORT, clientPort);
  store<u16>(originValue + SNAT4_NODE_PORT, 0); // none learned yet
  mapUpdate(snat4, fillTuple(backend, snatAddress, backendPort, port, proto, CT_DIR_REPLY), originValue, BPF_ANY);
}

/** The client behind a masqueraded reply from backend:backendPort to port, or 0. */
export function lookupSnat4(backend: u32, backendPort: u16, port: u16, proto: u8): usize {
  return mapLookup(snat4, fillTuple(backend, snatAddress, backendPort, port, proto, CT_DIR_REPLY));
}

/** Frees a masquerade port's binding when its flow ends. */
export function deleteSnat4(backend: u32, backendPort: u16, port: u16, proto: u8): void {
  mapDelete(snat4, fillTuple(backend, snatAddress, backendPort, port, proto, CT_DIR_REPLY));
}

export function recordSnat6(backend: usize, backendPort: u16, port: u16, proto: u8, client: usize, clientPort: u16): void {
  memory.copy(originValue6 + SNAT6_ADDRESS, client, 16);
  store<u16>(originValue6 + SNAT6_PORT, clientPort);
  store<u16>(originValue6 + SNAT6_NODE_PORT, 0);
  mapUpdate(snat6, fillTuple6(backend, snatAddress6, backendPort, port, proto, CT_DIR_REPLY), originValue6, BPF_ANY);
}

export function lookupSnat6(backend: usize, backendPort: u16, port: u16, proto: u8): usize {
  return mapLookup(snat6, fillTuple6(backend, snatAddress6, backendPort, port, proto, CT_DIR_REPLY));
}

export function deleteSnat6(backend: usize, backendPort: u16, port: u16, proto: u8): void {
  mapDelete(snat6, fillTuple6(backend, snatAddress6, backendPort, port, proto, CT_DIR_REPLY));
}
