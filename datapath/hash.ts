// Hashing: MurmurHash3 (x86, 32-bit) over 32-bit words. One function serves
// the hash-map buckets and, seeded with --seed, the Maglev flow hash, which
// the control plane and the reference model reproduce bit for bit
// (control/flowhash.ts), so it must stay exactly this.

@inline function mix(h: u32, k: u32): u32 {
  k *= 0xcc9e2d51;
  k = rotl<u32>(k, 15);
  k *= 0x1b873593;
  h ^= k;
  h = rotl<u32>(h, 13);
  return h * 5 + 0xe6546b64;
}

@inline function finish(h: u32, bytes: u32): u32 {
  h ^= bytes;
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

/** Hash of a map key; `size` is a multiple of 4. */
export function hash32(key: usize, size: u32): u32 {
  let h: u32 = 0;
  for (let i: usize = 0; i < <usize>size; i += 4) h = mix(h, load<u32>(key + i));
  return finish(h, size);
}

/**
 * Maglev flow hash of an IPv4 5-tuple. Addresses and ports are the raw
 * network-order bytes read as little-endian words, as they sit in the packet.
 */
@inline export function flowHash4(seed: u32, saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8): u32 {
  let h = mix(seed, saddr);
  h = mix(h, daddr);
  h = mix(h, (<u32>dport << 16) | <u32>sport);
  h = mix(h, <u32>proto);
  return finish(h, 16);
}

/** Maglev flow hash of an IPv6 5-tuple: the same mix over the addresses' four words each. */
export function flowHash6(seed: u32, saddr: usize, daddr: usize, sport: u16, dport: u16, proto: u8): u32 {
  let h = seed;
  for (let i: usize = 0; i < 16; i += 4) h = mix(h, load<u32>(saddr + i));
  for (let i: usize = 0; i < 16; i += 4) h = mix(h, load<u32>(daddr + i));
  h = mix(h, (<u32>dport << 16) | <u32>sport);
  h = mix(h, <u32>proto);
  return finish(h, 40);
}

/**
 * Hash of a client address alone, both families alike: MurmurHash3 of its 16
 * bytes as IPv6, IPv4 mapped (::ffff:a.b.c.d), seed 0. It picks the client's
 * class of masquerade ports (datapath/snat.ts) and its worker when a replay
 * is sharded (datapath/steer.ts).
 */
export function clientHash4(addr: u32): u32 {
  let h = mix(0, 0);
  h = mix(h, 0);
  h = mix(h, 0xffff0000);
  h = mix(h, addr);
  return finish(h, 16);
}

export function clientHash6(addr: usize): u32 {
  return hash32(addr, 16);
}
