/**
 * mulberry32: a tiny seedable PRNG, good enough for spreading allocations
 * and shaping generated traffic (not for anything secret). Everything in
 * svcpath that must be reproducible under --seed draws from it.
 */
export class Mulberry32 {
  private state: number;

  constructor(seed: number) {
    // Fold the high bits of seeds above 2^32 in, so they still make a difference.
    this.state = (seed >>> 0) ^ Math.imul(Math.floor(seed / 0x1_0000_0000) >>> 0, 0x9e3779b9);
  }

  /** Uniform u32. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 0x1_0000_0000;
  }

  /** Uniform integer in min..max, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1));
  }

  /** Uniform enough in [0, n) for any n, an IPv6 range's included: 32 more random bits than n has. */
  below(n: bigint): bigint {
    const words = Math.ceil(n.toString(2).length / 32) + 1;
    let r = 0n;
    for (let i = 0; i < words; i++) r = (r << 32n) | BigInt(this.next());
    return (r * n) >> BigInt(32 * words);
  }
}
