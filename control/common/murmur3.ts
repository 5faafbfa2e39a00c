/**
 * MurmurHash3 x86_32, the hash the datapath uses (datapath/hash.ts): over
 * 32-bit words for the Maglev flow hash, which tools and tests reproduce bit
 * for bit, and over bytes for the Maglev permutations of backend names.
 */

function scramble(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}

function mix(h: number, k: number): number {
  h ^= scramble(k);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number, length: number): number {
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 x86_32 of a byte string: the first `length` bytes (default all), so callers can reuse a buffer. */
export function murmur3(bytes: Uint8Array, seed: number, length = bytes.length): number {
  let h = seed | 0;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    h = mix(h, bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
  }
  const rest = length & 3;
  if (rest > 0) {
    let k = bytes[whole];
    if (rest > 1) k |= bytes[whole + 1] << 8;
    if (rest > 2) k |= bytes[whole + 2] << 16;
    h ^= scramble(k);
  }
  return finish(h, length);
}

/** A little-endian word of four bytes in network order (how the datapath loads them). */
function word(b: Uint8Array | number[]): number {
  return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
}

/** The port as the datapath loads it: a network-order u16 read little-endian. */
function rawPort(port: number): number {
  return ((port & 0xff) << 8) | (port >>> 8);
}

/**
 * The datapath's Maglev flow hash of an IPv4 5-tuple (addresses as 4 bytes
 * each, ports as numbers): which slot of the service's table a flow uses.
 */
export function flowHash4(
  seed: number,
  saddr: Uint8Array | number[],
  daddr: Uint8Array | number[],
  sport: number,
  dport: number,
  proto: number,
): number {
  let h = mix(seed | 0, word(saddr));
  h = mix(h, word(daddr));
  h = mix(h, ((rawPort(dport) << 16) | rawPort(sport)) >>> 0);
  h = mix(h, proto);
  return finish(h, 16);
}
