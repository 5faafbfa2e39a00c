/**
 * When cluster changes reach the datapath: kube-proxy applies them in syncs,
 * and its sync runner (pkg/proxy/runner/bounded_frequency_runner.go) waits
 * `minSyncPeriod` after one sync ends before it starts the next; changes that
 * arrive meanwhile are coalesced into that next sync. A sync takes no time
 * here, and the one before the capture (kube-proxy's start) is long past, so
 * a change at `t` is applied at max(t, previous sync + minSyncPeriod) together
 * with every change until then. With `minSyncPeriod` 0 each change is applied
 * at its own time.
 *
 * The periodic full sync (every hour) changes nothing that an earlier sync
 * has not already applied, so it is not scheduled.
 */

/** Nanoseconds, as the events' and the packets' times are. */
export interface Timed {
  time: bigint;
}

export interface Sync<E extends Timed> {
  /** When the sync applies its changes: packets from this time on see them. */
  at: bigint;
  /** The changes it applies, in their order. */
  changes: E[];
}

/** kube-proxy's default `minSyncPeriod`: 1 s. */
export const DEFAULT_MIN_SYNC_PERIOD_NS = 1_000_000_000n;

/** The syncs that apply `changes` (in time order), each with the changes it coalesces. */
export function scheduleSyncs<E extends Timed>(changes: readonly E[], minSyncPeriodNs: bigint): Array<Sync<E>> {
  if (minSyncPeriodNs < 0n) throw new RangeError(`minSyncPeriod ${minSyncPeriodNs} ns is negative`);
  const syncs: Array<Sync<E>> = [];
  let previous: bigint | undefined;
  for (const change of changes) {
    if (previous !== undefined && change.time < previous) throw new RangeError('changes must be in time order');
    previous = change.time;
    const last = syncs.at(-1);
    // A change no later than the last sync scheduled joins it (it has not run yet, or runs at that very time).
    if (last && change.time <= last.at) {
      last.changes.push(change);
      continue;
    }
    // The runner may start again minSyncPeriod after the last sync: until then the change waits.
    const wait = last ? last.at + minSyncPeriodNs - change.time : 0n;
    syncs.push({ at: wait > 0n ? change.time + wait : change.time, changes: [change] });
  }
  return syncs;
}
