/** IP addresses as the model handles them: bytes in network order, and a canonical text for map keys. */
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export function addressBytes(ip: string): Uint8Array {
  return Uint8Array.from(ipaddr.parse(ip).toByteArray());
}

/** Canonical text of an address (dotted quad, or RFC 5952 IPv6), whatever form it was written in. */
export function addressText(bytes: Uint8Array): string {
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}

export function canonical(ip: string): string {
  return addressText(addressBytes(ip));
}

export function sameAddress(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** True when the first `bits` bits of `address` equal those of `prefix`. */
export function inPrefix(address: Uint8Array, prefix: Uint8Array, bits: number): boolean {
  if (address.length !== prefix.length) return false;
  for (let i = 0; i < address.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((address[i] & mask) !== (prefix[i] & mask)) return false;
  }
  return true;
}

/** True when `address` masked with `mask` is `network` (a network given as address and netmask). */
export function inNetwork(address: Uint8Array, network: { address: Uint8Array; mask: Uint8Array }): boolean {
  return address.length === network.address.length && address.every((byte, i) => (byte & network.mask[i]) === network.address[i]);
}
