/**
 * The report's colors, one per verdict (the same in every chart and table)
 * and one accent for everything that is not a verdict. The verdicts are in
 * the order of control/compile/layout.ts VERDICTS (XDP's action numbers),
 * which test/report-page.test.ts checks; the page does not import layout.ts,
 * whose address parsing would swell the bundle.
 */

export const VERDICT_COLORS: Readonly<Record<string, string>> = {
  ABORTED: '#9333ea',
  DROP: '#dc2626',
  PASS: '#64748b',
  TX: '#16a34a',
  REDIRECT: '#d97706',
};

export const ACCENT = '#2563eb';

/** A verdict this page does not know (from a newer svcpath): drawn, in a neutral color. */
const UNKNOWN_VERDICT = '#334155';

export function verdictColor(verdict: string): string {
  return VERDICT_COLORS[verdict] ?? UNKNOWN_VERDICT;
}

/** Verdict names in XDP's order, unknown ones after, alphabetically. */
export function inVerdictOrder(verdicts: Iterable<string>): string[] {
  const known = Object.keys(VERDICT_COLORS);
  const rank = (v: string) => (known.includes(v) ? known.indexOf(v) : known.length);
  return [...new Set(verdicts)].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}
