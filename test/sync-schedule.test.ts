// When cluster changes reach the datapath (control/runtime/sync-schedule.ts): kube-proxy's
// sync runner waits minSyncPeriod after a sync before the next and coalesces the changes
// that arrive meanwhile. Every expected schedule below is worked out by hand.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MIN_SYNC_PERIOD_NS, scheduleSyncs } from '../control/runtime/sync-schedule.js';

const MS = 1_000_000n;
const at = (...ms: number[]) => ms.map((t, i) => ({ time: BigInt(t) * MS, name: `c${i}` }));
const shape = (syncs: ReturnType<typeof scheduleSyncs<{ time: bigint; name: string }>>) =>
  syncs.map((s) => [Number(s.at / MS), s.changes.map((c) => c.name)]);

describe('scheduleSyncs', () => {
  it('applies a first change at once, and coalesces what comes within minSyncPeriod of the last sync', () => {
    // 0: sync at once. 200 and 900: the next sync may run at 1000, both join it. 1500: after 1000,
    // so the next sync runs at 2000 (1000 + 1 s). 2000 exactly: joins that sync. 3500: more than 1 s
    // after 2000, at once.
    expect(shape(scheduleSyncs(at(0, 200, 900, 1500, 2000, 3500), DEFAULT_MIN_SYNC_PERIOD_NS))).toEqual([
      [0, ['c0']],
      [1000, ['c1', 'c2']],
      [2000, ['c3', 'c4']],
      [3500, ['c5']],
    ]);
  });

  it('two changes 200 ms apart after a quiet spell: the first alone at once, the second a second later', () => {
    expect(shape(scheduleSyncs(at(5000, 5200), DEFAULT_MIN_SYNC_PERIOD_NS))).toEqual([
      [5000, ['c0']],
      [6000, ['c1']],
    ]);
  });

  it('with minSyncPeriod 0 applies each change at its own time (changes at one instant together)', () => {
    expect(shape(scheduleSyncs(at(0, 200, 200, 900), 0n))).toEqual([
      [0, ['c0']],
      [200, ['c1', 'c2']],
      [900, ['c3']],
    ]);
  });

  it('refuses changes out of time order and a negative period', () => {
    expect(() => scheduleSyncs(at(10, 5), MS)).toThrow(/time order/);
    expect(() => scheduleSyncs(at(10), -1n)).toThrow(/negative/);
  });

  it('for any changes: every change once, in order, never before its time, syncs at least minSyncPeriod apart', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 5000 }), { maxLength: 40 }), fc.nat({ max: 1500 }), (times, period) => {
        const changes = at(...[...times].sort((a, b) => a - b));
        const minSync = BigInt(period) * MS;
        const syncs = scheduleSyncs(changes, minSync);
        expect(syncs.flatMap((s) => s.changes)).toEqual(changes);
        for (const [i, s] of syncs.entries()) {
          for (const c of s.changes) expect(c.time <= s.at).toBe(true);
          if (i > 0) expect(s.at - syncs[i - 1].at >= minSync && s.at > syncs[i - 1].at).toBe(true);
          // A sync is no later than it must be: at its first change's time, or minSyncPeriod after the one before.
          expect(s.at === s.changes[0].time || (i > 0 && s.at === syncs[i - 1].at + minSync)).toBe(true);
        }
      }),
    );
  });
});
