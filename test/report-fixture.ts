/**
 * Report data made by hand for the page tests, around the bundled sample's
 * reviewed summary (test/golden/sample.summary.json): Maglev shares of an
 * even table, 150 bins whose packets per verdict add up to the summary's,
 * two cluster changes (one labelled with markup that must stay text), and
 * the first 60 of the summary's flows.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../control/common/paths.js';
import {
  REPORT_FORMAT,
  type FlowRow,
  type ReportData,
  type RunReport,
  type Series,
  type ServiceBalance,
} from '../control/runtime/report-types.js';
import type { Summary } from '../control/runtime/summary.js';

export const START = 1_700_000_000.25;
/** A label the page must show as text, not parse. */
export const HOSTILE_LABEL = 'endpoints of shop/api:https </script><b id="injected">x</b> -1 +1 \u2028';

export function sampleSummary(): Summary {
  return JSON.parse(readFileSync(join(PROJECT_ROOT, 'test', 'golden', 'sample.summary.json'), 'utf8')) as Summary;
}

/** A deterministic pseudo-random sequence (an LCG), so the fixture is the same on every run. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

/** `total` spread over `bins` by a smooth load shape plus noise; the parts add up to `total` exactly. */
function spread(total: number, bins: number, rnd: () => number): number[] {
  const weights = Array.from({ length: bins }, (_, i) => 1 + Math.sin(i / 9) * 0.6 + rnd() * 0.5);
  const sum = weights.reduce((a, b) => a + b, 0);
  const parts = weights.map((w) => Math.floor((w / sum) * total));
  let left = total - parts.reduce((a, b) => a + b, 0);
  for (let i = 0; left > 0; i = (i + 7) % bins, left--) parts[i]++;
  return parts;
}

function balanceOf(summary: Summary): ServiceBalance[] {
  return summary.services
    .filter((s) => s.backends.length > 0)
    .map((s) => ({
      service: s.service,
      flows: s.flows,
      masqueraded: s.service === 'shop/api:https' ? { flows: 4, packets: 37 } : { flows: 0, packets: 0 },
      backends: s.backends.map((b) => ({ ...b, expected: 1 / s.backends.length, table: 'cluster' as const })),
    }));
}

export function seriesOf(summary: Summary, bins: number, binSeconds: number, markers: boolean): Series {
  const rnd = random(7);
  const time = Array.from({ length: bins }, (_, i) => START + i * binSeconds);
  const packets = Object.fromEntries(Object.entries(summary.verdicts).map(([v, n]) => [v, spread(n, bins, rnd)]));
  const flows = summary.services.reduce((n, s) => n + s.flows, 0);
  const newFlows = spread(flows, bins, rnd);
  let live = 0;
  const conntrack = newFlows.map((n, i) => (live = Math.max(0, live + n - (i > 20 ? newFlows[i - 20] : 0))));
  return {
    start: START,
    binSeconds,
    time,
    packets,
    newFlows,
    conntrack,
    // All zero: the sample's node masquerades nothing in this fixture, and the chart must still draw.
    masqueradePorts: time.map(() => 0),
    markers: markers
      ? [
          { time: START + bins * binSeconds * 0.33, state: 1, label: 'default/web:http: +1 -1', flows: 9, packetsChanged: 41 },
          { time: START + bins * binSeconds * 0.71, state: 2, label: HOSTILE_LABEL, flows: 3, packetsChanged: 0 },
        ]
      : [],
  };
}

const PROTOCOLS: FlowRow['protocol'][] = ['TCP', 'UDP'];

function flowRows(summary: Summary, count: number): FlowRow[] {
  const rnd = random(11);
  const withBackends = summary.services.filter((s) => s.backends.length > 0);
  return Array.from({ length: count }, (_, i): FlowRow => {
    const svc = withBackends[Math.floor(rnd() * withBackends.length)];
    const backend = svc.backends[Math.floor(rnd() * svc.backends.length)];
    const client = `10.244.${Math.floor(rnd() * 3)}.${10 + Math.floor(rnd() * 200)}:${30000 + Math.floor(rnd() * 30000)}`;
    const frontend = svc.frontends[0].split('/')[0];
    const packet = 1 + i * 8 + Math.floor(rnd() * 8);
    return {
      packet,
      time: START + packet * 0.0119,
      protocol: PROTOCOLS[svc.service.includes('dns:dns') ? 1 : 0],
      client,
      frontend,
      service: svc.service,
      backend: backend.backend,
      masqueraded: svc.service === 'shop/api:https' && i % 3 === 0,
      packets: 2 + Math.floor(rnd() * 30),
      bytes: 120 + Math.floor(rnd() * 9000),
      lastVerdict: backend.local ? 'REDIRECT' : 'TX',
      lastReason: 'SERVICE',
      trace: `svcpath trace traces/samples/sample.pcap --cluster traces/samples/cluster.yaml --node node-a --packet ${packet}`,
    };
  });
}

export function runOf(summary: Summary, bins = 150, binSeconds = 0.1, markers = true): RunReport {
  const total = summary.services.reduce((n, s) => n + s.flows, 0);
  return {
    summary,
    services: { cap: 200, total: summary.services.length },
    markersCap: 500,
    markersTotal: markers ? 2 : 0,
    balance: balanceOf(summary),
    series: seriesOf(summary, bins, binSeconds, markers),
    flows: { cap: 60, total, rows: flowRows(summary, Math.min(60, total)) },
  };
}

export function reportOf(parts: Partial<ReportData>): ReportData {
  return {
    format: REPORT_FORMAT,
    generator: 'svcpath 0.1.0',
    command: 'svcpath replay traces/samples/sample.pcap --cluster traces/samples/cluster.yaml --node node-a --report r.html',
    ...parts,
  };
}
