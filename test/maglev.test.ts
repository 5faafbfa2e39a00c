// Maglev consistent hashing: balance, minimal disruption, determinism, and
// that the datapath indexes the table with the flow hash we document.
import { describe, expect, it } from 'vitest';
import ipaddr from 'ipaddr.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, isPrime, maglevTable } from '../control/compile/maglev.js';
import { flowHash4, murmur3 } from '../control/common/murmur3.js';
import { endpoints, makeService, program, resolvedService, runFrames, tcp } from './helpers.js';

const M = DEFAULT_MAGLEV_TABLE_SIZE;
const names = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `10.244.${(i + from) >> 8}.${(i + from) & 255}:8080`);

function slotsPerBackend(table: Uint32Array, n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const b of table) counts[b]++;
  return counts;
}

describe('Maglev table', () => {
  it('gives each of N backends about M/N slots', () => {
    for (const n of [1, 2, 3, 10, 100, 1000]) {
      const counts = slotsPerBackend(maglevTable(names(n), M, 0), n);
      const ideal = M / n;
      expect(counts.reduce((a, b) => a + b)).toBe(M);
      // Maglev's fill is round-robin: no backend is more than a slot or so off.
      for (const c of counts) expect(Math.abs(c - ideal), `n=${n}`).toBeLessThanOrEqual(Math.max(1, ideal * 0.01) + 1);
    }
  });

  it('remaps only about 1/N of the slots when one of N backends is removed', () => {
    for (const n of [5, 10, 50]) {
      const all = names(n);
      const before = maglevTable(all, M, 7).map((i) => i); // indices into `all`
      const removed = 3;
      const rest = all.filter((_, i) => i !== removed);
      const after = maglevTable(rest, M, 7);
      let moved = 0;
      let movedOffRemoved = 0;
      for (let s = 0; s < M; s++) {
        const was = all[before[s]];
        const now = rest[after[s]];
        if (was !== now) {
          moved++;
          if (before[s] === removed) movedOffRemoved++;
        }
      }
      // All slots of the removed backend move, and few others do.
      expect(movedOffRemoved).toBe(slotsPerBackend(before, n)[removed]);
      expect(moved / M, `n=${n}`).toBeLessThan((1 / n) * 1.6);
      expect(moved / M).toBeGreaterThanOrEqual((1 / n) * 0.9);
    }
  });

  it('depends on the backend names and the seed, not on their order', () => {
    const a = maglevTable(names(20), M, 1);
    const shuffled = names(20).reverse();
    const b = maglevTable(shuffled, M, 1);
    for (let s = 0; s < M; s++) expect(shuffled[b[s]]).toBe(names(20)[a[s]]);
    const c = maglevTable(names(20), M, 2);
    expect(c).not.toEqual(a);
  });

  it('refuses a table size that is not prime', () => {
    expect(isPrime(16381)).toBe(true);
    expect(isPrime(65537)).toBe(true);
    expect(() => maglevTable(names(2), 16380, 0)).toThrow(/not prime/);
  });
});

describe('MurmurHash3', () => {
  it('matches the reference x86_32 test vectors', () => {
    const enc = new TextEncoder();
    expect(murmur3(enc.encode(''), 0)).toBe(0);
    expect(murmur3(enc.encode(''), 1)).toBe(0x514e28b7);
    expect(murmur3(enc.encode('Hello, world!'), 1234)).toBe(0xfaf6cdb3);
    expect(murmur3(enc.encode('The quick brown fox jumps over the lazy dog'), 0)).toBe(0x2e4ff723);
    expect(murmur3(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0x5082edee)).toBe(0x2362f9de);
  });
});

describe('the datapath uses the documented flow hash', () => {
  it('puts each new flow on table[flowHash4(seed, tuple) mod M]', async () => {
    const svc = makeService('default', 'web', '10.96.0.10', [{ port: 80 }]);
    const eps = endpoints(Array.from({ length: 7 }, (_, i): [string, number] => [`10.244.0.${i + 2}`, 8080]));
    for (const seed of [0, 12345]) {
      const { dp, compiled } = await program([resolvedService(svc, [eps])], { seed, maglevTableSize: 251 });
      const table = compiled.services[0].cluster.maglev;
      const frames = Array.from({ length: 500 }, (_, i) => tcp(`10.1.${i >> 8}.${i & 255}`, 1024 + i * 7, '10.96.0.10', 80, ['SYN']));
      const results = runFrames(dp, frames);
      results.forEach((r, i) => {
        const src = ipaddr.parse(`10.1.${i >> 8}.${i & 255}`).toByteArray();
        const dst = ipaddr.parse('10.96.0.10').toByteArray();
        const slot = flowHash4(seed, src, dst, 1024 + i * 7, 80, 6) % 251;
        expect(r.backendId).toBe(table[slot]);
      });
    }
  });
});
