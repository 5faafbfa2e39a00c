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
import { murmur3 } from '../common/murmur3.js';

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
  return maglevTableOf(
    backendNames,
    backendNames.map((_, i) => i),
    m,
    seed,
  );
}

/** The same table, with `values[i]` in the slots of `backendNames[i]` (backend ids, say) instead of `i`. */
export function maglevTableOf(backendNames: readonly string[], values: readonly number[], m: number, seed: number): Uint32Array {
  if (!isPrime(m)) throw new RangeError(`Maglev table size ${m} is not prime`);
  const n = backendNames.length;
  if (n === 0) return new Uint32Array(m);
  // Claim order must not depend on input order, so walk names sorted.
  const order = [...backendNames.keys()].sort((a, b) => (backendNames[a] < backendNames[b] ? -1 : 1));
  // Int32Array keeps the slot arithmetic in int32 registers (Uint32Array loads may become doubles);
  // ids at or past 2^31 wrap here and wrap back in the Uint32Array table.
  const skip = new Int32Array(n);
  const cursor = new Int32Array(n);
  const value = new Int32Array(n);
  const name = nameBuffer(backendNames);
  order.forEach((backend, i) => {
    const length = encoder.encodeInto(backendNames[backend], name).written;
    cursor[i] = murmur3(name, seed, length) % m;
    skip[i] = (murmur3(name, seed ^ 0x5bd1e995, length) % (m - 1)) + 1;
    value[i] = values[backend];
  });
  const { table, taken } = scratch(m);
  fill(table, m, skip, cursor, value, taken);
  // Filled in a table that stays in cache, copied out in one sequential pass.
  return table.slice(0, m);
}

/**
 * Makes `target[key]` a table built by `build` on first read and kept: a
 * compiled cluster of 10k Services need not fill 10k tables of 16381 slots
 * before anything asks for one. The property stays enumerable, so that a
 * spread, a structured clone (a worker's copy) or a deep comparison reads
 * the built table as it would a plain one.
 */
export function lazyTable<T extends object>(target: T, key: keyof T & string, build: () => Uint32Array): T {
  Object.defineProperty(target, key, {
    enumerable: true,
    configurable: true,
    get: () => settled(target, key, build()),
  });
  return target;
}

/**
 * Replaces a lazy table's getter with the table it built, as a plain property. An
 * object literal with `get key() { return settled(this, key, build()); }` is the same
 * as lazyTable and cheaper to make, for the compile's tens of thousands.
 */
export function settled<T extends object>(target: T, key: keyof T & string, table: Uint32Array): Uint32Array {
  Object.defineProperty(target, key, { value: table, enumerable: true, configurable: true, writable: true });
  return table;
}

/**
 * The round-robin claim loop, the hot spot of compiling: as the table fills
 * up, a backend probes ever more taken slots before a free one (about 100k
 * probes for M = 16381, 10 backends). Slot arithmetic stays below 2M, so a
 * subtraction replaces `%`.
 */
function fill(table: Uint32Array, m: number, skip: Int32Array, cursor: Int32Array, value: Int32Array, taken: Uint8Array): void {
  const n = skip.length;
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      const s = skip[i];
      let c = cursor[i];
      while (taken[c] !== 0) {
        c += s;
        if (c >= m) c -= m;
      }
      taken[c] = 1;
      table[c] = value[i];
      c += s;
      cursor[i] = c >= m ? c - m : c;
      if (++filled === m) return;
    }
  }
}

let names = new Uint8Array(64);
let scratchTable = new Uint32Array(0);
let scratchTaken = new Uint8Array(0);

/** A reused buffer that holds the UTF-8 of the longest name. */
function nameBuffer(backendNames: readonly string[]): Uint8Array {
  const longest = backendNames.reduce((n, s) => Math.max(n, s.length), 0);
  if (3 * longest > names.length) names = new Uint8Array(3 * longest);
  return names;
}

/** A reused table of M slots, and a cleared "slot is claimed" array of M bytes. */
function scratch(m: number): { table: Uint32Array; taken: Uint8Array } {
  if (scratchTable.length < m) {
    scratchTable = new Uint32Array(m);
    scratchTaken = new Uint8Array(m);
  } else scratchTaken.fill(0, 0, m);
  return { table: scratchTable, taken: scratchTaken };
}
