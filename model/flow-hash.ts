/**
 * The documented flow hash (datapath/hash.ts's contract): MurmurHash3 x86_32
 * over the flow's 32-bit words as they sit in the packet — source address,
 * destination address, the two ports (source first, each in network order),
 * then the protocol number as a little-endian word. Maglev indexes a table
 * with it; the SNAT port choice uses it with a salted seed.
 */
import { flowHash4, murmur3 } from '../control/common/murmur3.js';

/** The hash's input for a flow of either family: the bytes whose little-endian words are mixed. */
export function flowHashKey(saddr: Uint8Array, daddr: Uint8Array, sport: number, dport: number, proto: number): Uint8Array {
  const key = new Uint8Array(saddr.length * 2 + 8);
  key.set(saddr, 0);
  key.set(daddr, saddr.length);
  const view = new DataView(key.buffer);
  view.setUint16(2 * saddr.length, sport);
  view.setUint16(2 * saddr.length + 2, dport);
  view.setUint32(2 * saddr.length + 4, proto, true);
  return key;
}

/**
 * The flow hash. IPv4 uses the control plane's flowHash4; IPv6 mixes the
 * same way over its 40-byte key, which is exactly MurmurHash3 of those bytes
 * (no tail, length 40), so murmur3() computes it.
 */
export function flowHash(seed: number, saddr: Uint8Array, daddr: Uint8Array, sport: number, dport: number, proto: number): number {
  if (saddr.length === 4) return flowHash4(seed, saddr, daddr, sport, dport, proto);
  return murmur3(flowHashKey(saddr, daddr, sport, dport, proto), seed);
}

/** The client hash: MurmurHash3 (seed 0) of the address's 16 bytes as IPv6, IPv4 mapped (::ffff:a.b.c.d). */
export function clientHash(address: Uint8Array): number {
  if (address.length === 16) return murmur3(address, 0);
  const mapped = new Uint8Array(16);
  mapped[10] = 0xff;
  mapped[11] = 0xff;
  mapped.set(address, 12);
  return murmur3(mapped, 0);
}
