/**
 * "Did you mean …?": the names closest to one the user got wrong (a flag, a
 * command, a Service).
 */

/**
 * The candidates nearest to `word`: those at the smallest edit distance, if it
 * is small for the word's length (a third of it, at least 1); else those that
 * `word` begins (an abbreviation). Empty when nothing is close.
 */
export function closest(word: string, candidates: Iterable<string>): string[] {
  const typed = word.toLowerCase();
  const limit = Math.max(1, Math.floor(typed.length / 3));
  let best = limit + 1;
  let nearest: string[] = [];
  const unique = [...new Set(candidates)];
  for (const candidate of unique) {
    const d = editDistance(typed, candidate.toLowerCase());
    if (d < best) {
      best = d;
      nearest = [];
    }
    if (d === best) nearest.push(candidate);
  }
  if (nearest.length > 0 || typed.length < 2) return nearest;
  return unique.filter((c) => c.toLowerCase().startsWith(typed));
}

/** " (did you mean a?)", " (did you mean a or b?)", or "" when there is nothing to suggest. */
export function didYouMean(suggestions: string[]): string {
  if (suggestions.length === 0) return '';
  const last = suggestions[suggestions.length - 1];
  const list = suggestions.length === 1 ? last : `${suggestions.slice(0, -1).join(', ')} or ${last}`;
  return ` (did you mean ${list}?)`;
}

/**
 * Optimal string alignment distance: insertions, deletions, substitutions and
 * swaps of two neighbouring characters (the commonest typo, --clutser), each
 * counting 1. Written here because Node has no string distance built in.
 */
function editDistance(a: string, b: string): number {
  // Three rows of the dynamic programme: the one before the previous is needed for swaps.
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2] + 1);
      current.push(d);
    }
    [before, previous] = [previous, current];
  }
  return previous[b.length];
}
