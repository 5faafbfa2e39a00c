/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4): each backend
 * gets a pseudo-random permutation of the M table slots from two hashes of
 * its name, and the backends take turns claiming their next free preferred
 * slot until the table is full. Every backend ends up with about M/N slots,
 * and removing one backend moves only the flows that were on it (plus a
 * small fraction), which is why Cilium and Katran use it for service
 * backends. The table is computed here, in the control plane, as Cilium does;
 * the datapath only indexes it.
 */
import { murmur3 } from './murmur3.js';

export const DEFAULT_MAGLEV_TABLE_SIZE = 16381;

const encoder = new TextEncoder();

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/**
 * The lookup table: slot -> index into `backendNames`. Backend names must be
 * unique; the table depends on the names and the seed, not on their order.
 */
export function maglevTable(backendNames: readonly string[], m: number, seed: number): Uint32Array {
  if (!isPrime(m)) throw new RangeError(`Maglev table size ${m} is not prime`);
  const table = new Uint32Array(m);
  const n = backendNames.length;
  if (n === 0) return table;
  // Claim order must not depend on input order, so walk names sorted.
  const order = [...backendNames.keys()].sort((a, b) => (backendNames[a] < backendNames[b] ? -1 : 1));
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const cursor = new Uint32Array(n);
  order.forEach((backend, i) => {
    const name = encoder.encode(backendNames[backend]);
    offset[i] = murmur3(name, seed) % m;
    skip[i] = (murmur3(name, seed ^ 0x5bd1e995) % (m - 1)) + 1;
    cursor[i] = offset[i];
  });
  const taken = new Uint8Array(m);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = cursor[i];
      while (taken[c]) c = (c + skip[i]) % m;
      taken[c] = 1;
      table[c] = order[i];
      cursor[i] = (c + skip[i]) % m;
      if (++filled === m) return table;
    }
  }
}
