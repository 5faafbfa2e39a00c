/**
 * Draws a report (control/runtime/report-types.ts ReportData) into an
 * element: the standalone page (page.ts) and the playground, which redraws
 * the same element as its data changes, call renderReport alike; nothing
 * here assumes the element is the whole document.
 *
 * Every number that mirrors the run's --summary JSON sits in an element with
 * `data-summary` (its path in that JSON, "verdicts.TX",
 * "services.2.backends.0.flows") and `data-value` (the exact number); the
 * diff's totals likewise with `data-diff`. Each chart's container has
 * `data-chart`.
 */
import {
  type CaseView,
  type DiffView,
  type MoveMatrix,
  REPORT_FORMAT,
  type ReportData,
  type RunReport,
  type Series,
  type ServiceBalance,
} from '../../control/runtime/report-types.js';
import type { ServiceSummary, Summary } from '../../control/runtime/summary.js';
import { barPanels, stackedBars } from './bars.js';
import { ACCENT, inVerdictOrder, verdictColor } from './colors.js';
import { type Attrs, type Child, compact, contentWidth, count, facts, h, numCell, percent, table } from './dom.js';
import { flowsTable } from './flows-table.js';
import { type Lifecycle, markerTitle, timeChart } from './time-charts.js';

/** The charts of each drawn element, destroyed when it is drawn again. */
const drawn = new WeakMap<HTMLElement, Lifecycle>();

export function renderReport(root: HTMLElement, data: ReportData): void {
  for (const dispose of drawn.get(root)?.disposers ?? []) dispose();
  root.classList.add('svcpath-report');
  root.replaceChildren();
  const life: Lifecycle = { width: contentWidth(root), mounts: [], disposers: [] };
  drawn.set(root, life);
  root.append(...sectionsOf(data, life));
  mountAll(life);
}

function mountAll(life: Lifecycle): void {
  for (const mount of life.mounts.splice(0)) mount();
}

function sectionsOf(data: ReportData, life: Lifecycle): HTMLElement[] {
  const header = h(
    'header',
    {},
    h('h1', {}, 'svcpath report'),
    h('p', { class: 'command' }, h('code', {}, data.command)),
    h('p', { class: 'generator' }, data.generator),
  );
  if (data.format !== REPORT_FORMAT) {
    return [
      header,
      h(
        'p',
        { class: 'error' },
        `This report is of format ${data.format}; this page draws format ${REPORT_FORMAT}: open it with the svcpath that wrote it.`,
      ),
    ];
  }
  return [
    header,
    ...(data.run ? runSections(data.run, life) : []),
    ...(data.diff ? [diffSection(data.diff)] : []),
    ...(data.cases ? [casesSection(data.cases, life)] : []),
  ];
}

// ---------------------------------------------------------------- a run

function runSections(run: RunReport, life: Lifecycle): HTMLElement[] {
  return [
    h(
      'div',
      { class: 'run', 'data-run': run.summary.trace },
      overviewSection(run.summary),
      verdictSection(run.summary),
      servicesSection(run),
      timeSection(run, life),
      section('Flows', flowsTable(run.flows, run.series.start)),
      messagesSection(run.summary),
    ),
  ];
}

function section(title: string, ...children: Child[]): HTMLElement {
  return h('section', {}, h('h2', {}, title), ...children);
}

/** A number of the summary in running text. */
function summaryNumber(value: number, path: string): HTMLElement {
  return h('span', { 'data-summary': path, 'data-value': value }, count(value));
}

function overviewSection(summary: Summary): HTMLElement {
  const st = summary.settings;
  const t = st.conntrackTimeouts;
  return section(
    'The run',
    facts([
      ['capture', h('code', {}, summary.trace)],
      ['node', summary.node ?? '–'],
      ['zone', summary.zone ?? '–'],
      ['packets', summaryNumber(summary.packets, 'packets')],
      ['written', summaryNumber(summary.written, 'written')],
      ['replayed', replayEnd(summary)],
      ['node addresses', st.nodeAddresses.join(', ') || '–'],
      ['NodePorts on', st.nodePortAddresses.join(', ') || '–'],
      ['pod network', st.podNetwork ?? 'unknown'],
      ['service network', st.serviceNetwork ?? 'unknown'],
      ['masquerade as', st.masqueradeAddress ? `${st.masqueradeAddress} ports ${st.snatPorts}` : 'none'],
      ['Maglev', `M=${st.maglevTableSize}, seed ${st.seed}`],
      [
        'conntrack timeouts',
        `TCP established ${t.tcpEstablishedTimeout} s, close-wait ${t.tcpCloseWaitTimeout} s, UDP ${t.udpTimeout} s, UDP stream ${t.udpStreamTimeout} s`,
      ],
      ...(summary.changes
        ? [
            [
              'cluster changes',
              `${summary.changes.events}: ${summary.changes.eventsApplied} events in ${summary.changes.syncs.length} syncs (${summary.changes.semantics}, min sync period ${summary.changes.minSyncPeriod} s)`,
            ] as [string, Child],
          ]
        : []),
      ...(summary.conformance ? [['node rewrites', conformanceOf(summary.conformance)] as [string, Child]] : []),
    ]),
  );
}

function replayEnd(summary: Summary): string {
  if (summary.stoppedAt) return `stopped at record ${summary.stoppedAt.record}: ${summary.stoppedAt.error}`;
  if (summary.interrupted) return 'interrupted: the packets before the signal';
  return summary.complete ? 'every packet of the capture' : 'not every packet';
}

function conformanceOf(c: NonNullable<Summary['conformance']>): HTMLElement {
  const n = (key: keyof typeof c) => summaryNumber(c[key], `conformance.${key}`);
  return h(
    'span',
    {},
    'of ',
    n('outgoing'),
    ' frames the node sent, ',
    n('nodeRewrites'),
    ' are its copies of rewritten packets: ',
    n('reproduced'),
    ' the same, ',
    n('otherBackend'),
    ' to another backend, ',
    n('differ'),
    ' differ',
  );
}

function verdictSection(summary: Summary): HTMLElement {
  const verdicts = inVerdictOrder(Object.keys(summary.verdicts));
  const rows = verdicts.map((verdict) => ({
    label: verdict,
    color: verdictColor(verdict),
    total: summary.verdicts[verdict],
    segments: summary.byVerdictAndReason
      .filter((r) => r.verdict === verdict)
      .sort((a, b) => b.packets - a.packets)
      .map((r) => ({ label: r.reason, value: r.packets })),
  }));
  const totals = table(
    ['verdict', 'packets', 'share'],
    verdicts.map((v) =>
      h(
        'tr',
        {},
        verdictCell(v),
        numCell(summary.verdicts[v], { 'data-summary': `verdicts.${v}`, 'data-verdict': v }),
        h('td', { class: 'num' }, percent(summary.verdicts[v] / (summary.packets || 1))),
      ),
    ),
    { class: 'verdicts' },
  );
  const detail = table(
    ['verdict', 'reason', 'packets', 'bytes'],
    summary.byVerdictAndReason.map((r, i) =>
      h(
        'tr',
        {},
        verdictCell(r.verdict),
        h('td', {}, r.reason),
        numCell(r.packets, { 'data-summary': `byVerdictAndReason.${i}.packets` }),
        numCell(r.bytes, { 'data-summary': `byVerdictAndReason.${i}.bytes` }),
      ),
    ),
    { class: 'reasons' },
  );
  return section(
    'Packets by verdict and reason',
    stackedBars(rows, count, { 'data-chart': 'verdicts' }, 'packets by verdict, each bar split by reason'),
    h('div', { class: 'side-by-side' }, totals, detail),
  );
}

function verdictCell(verdict: string): HTMLTableCellElement {
  return h('td', { class: 'verdict' }, h('span', { class: 'swatch', style: `background:${verdictColor(verdict)}` }), verdict);
}

// ---------------------------------------------------------------- Services

/** Past this many Services, those off screen are laid out only when scrolled to (style.css). */
const MANY_SERVICES = 40;

function servicesSection({ summary, balance, services: shown }: RunReport): HTMLElement {
  const balanceOf = new Map(balance.map((b) => [b.service, b]));
  const overview = table(
    ['Service', 'type', 'frontends', 'endpoints', 'flows', 'packets', 'bytes'],
    summary.services.map((svc, i) =>
      h(
        'tr',
        {},
        h('td', {}, svc.service, svc.deleted ? h('span', { class: 'note' }, ' deleted') : null),
        h('td', {}, svc.type),
        h('td', {}, svc.frontends.join(', ')),
        h('td', {}, svc.endpoints),
        numCell(svc.flows, { 'data-summary': `services.${i}.flows` }),
        numCell(svc.packets, { 'data-summary': `services.${i}.packets` }),
        numCell(svc.bytes, { 'data-summary': `services.${i}.bytes` }),
      ),
    ),
    { class: 'services' },
  );
  const block = section(
    'Services',
    shown.total > summary.services.length
      ? h(
          'p',
          { class: 'cap' },
          `The ${count(summary.services.length)} Services with the most packets of ${count(shown.total)} (the report keeps at most ${count(shown.cap)}).`,
        )
      : null,
    overview,
    summary.skipped.length > 0
      ? h('ul', { class: 'skipped' }, ...summary.skipped.map((s) => h('li', {}, `${s.service}: skipped, ${s.reason}`)))
      : null,
    ...summary.services.flatMap((svc, i) => (svc.backends.length > 0 ? [serviceBlock(svc, i, balanceOf.get(svc.service))] : [])),
  );
  if (summary.services.length > MANY_SERVICES) block.classList.add('many-services');
  return block;
}

/** A Service's backends: flows, packets and bytes as bars, the share of new flows got beside Maglev's expected share. */
function serviceBlock(svc: ServiceSummary, i: number, balance: ServiceBalance | undefined): HTMLElement {
  const expected = new Map(balance?.backends.map((b) => [b.backend, b]));
  const got = (flows: number) => (svc.flows > 0 ? flows / svc.flows : 0);
  const rows = svc.backends.map((b) => ({
    label: b.backend,
    note: b.local ? 'local' : b.node ? `on ${b.node}` : 'remote',
    muted: !b.local,
  }));
  const chart = barPanels(
    rows,
    [
      { title: 'flows', values: svc.backends.map((b) => b.flows), format: compact, color: ACCENT },
      { title: 'packets', values: svc.backends.map((b) => b.packets), format: compact, color: ACCENT },
      { title: 'bytes', values: svc.backends.map((b) => b.bytes), format: compact, color: ACCENT },
      {
        title: 'share of flows; | expected',
        values: svc.backends.map((b) => got(b.flows)),
        marks: svc.backends.map((b) => expected.get(b.backend)?.expected ?? null),
        markLabel: 'Maglev expected share',
        format: percent,
        color: ACCENT,
      },
    ],
    { 'data-chart': 'backends', 'data-service': svc.service },
    `${svc.service}: flows, packets and bytes per backend`,
  );
  const path = (k: number, key: string) => `services.${i}.backends.${k}.${key}`;
  const backends = table(
    ['backend', 'where', 'flows', 'packets', 'bytes', 'expected share', 'share got'],
    svc.backends.map((b, k) => {
      const e = expected.get(b.backend);
      return h(
        'tr',
        { class: b.local ? 'local' : 'remote' },
        h('td', {}, b.backend),
        h('td', {}, b.local ? 'local' : (b.node ?? 'remote')),
        numCell(b.flows, { 'data-summary': path(k, 'flows') }),
        numCell(b.packets, { 'data-summary': path(k, 'packets') }),
        numCell(b.bytes, { 'data-summary': path(k, 'bytes') }),
        h(
          'td',
          { class: 'num', title: e?.table ? `of the ${e.table} table` : 'in no table of the final state' },
          e?.expected === null || e === undefined ? '–' : percent(e.expected),
        ),
        h('td', { class: 'num' }, svc.flows > 0 ? percent(got(b.flows)) : '–'),
      );
    }),
    { class: 'backends' },
  );
  return h(
    'div',
    { class: 'service', 'data-service': svc.service },
    h('h3', {}, svc.service, h('span', { class: 'note' }, `  ${svc.endpoints}; ${policies(svc)}`)),
    balance ? masquerade(balance) : null,
    chart,
    backends,
  );
}

function policies(svc: ServiceSummary): string {
  return [
    `external ${svc.externalTrafficPolicy}`,
    `internal ${svc.internalTrafficPolicy}`,
    `affinity ${svc.sessionAffinity}`,
    ...(svc.topology ? [`topology: ${svc.topology}`] : []),
  ].join(', ');
}

function masquerade(b: ServiceBalance): HTMLElement {
  const n = (value: number, what: string) => h('span', { 'data-value': value, 'data-balance': what }, count(value));
  return h(
    'p',
    { class: 'masquerade' },
    'Masqueraded (source rewritten to the node’s): ',
    n(b.masqueraded.flows, 'masqueraded.flows'),
    ` of ${count(b.flows)} flows, `,
    n(b.masqueraded.packets, 'masqueraded.packets'),
    ' packets.',
  );
}

// ---------------------------------------------------------------- over time

function timeSection({ series, markersCap, markersTotal }: RunReport, life: Lifecycle): HTMLElement {
  const perSecond = (values: number[]) => values.map((v) => v / series.binSeconds);
  // The largest first: uPlot draws in this order, so a few DROPs are drawn over the TX line, not hidden under it.
  const total = (v: string) => series.packets[v].reduce((a, b) => a + b, 0);
  const verdicts = inVerdictOrder(Object.keys(series.packets)).sort((a, b) => total(b) - total(a));
  const from = new Date(series.start * 1000).toISOString().replace('T', ' ').replace('Z', ' UTC');
  return section(
    'Over time',
    h(
      'p',
      { class: 'note' },
      series.time.length === 0
        ? 'The capture has no packets: nothing happened over time.'
        : `${count(series.time.length)} bins of ${series.binSeconds} s from the first packet (${from}); rates are a bin's count over its width, the last bin may be partial.`,
      series.markers.length > 0 ? ' Dashed lines: the cluster changes, numbered by the state they start.' : null,
    ),
    timeChart(
      'packets',
      'Packets per second, by verdict',
      'packets/s',
      series,
      verdicts.map((v) => ({ label: v, color: verdictColor(v), values: perSecond(series.packets[v]) })),
      life,
    ),
    timeChart(
      'new-flows',
      'New flows per second',
      'flows/s',
      series,
      [{ label: 'new flows/s', color: ACCENT, values: perSecond(series.newFlows) }],
      life,
    ),
    timeChart(
      'conntrack',
      'Live conntrack entries',
      'entries',
      series,
      [{ label: 'entries', color: ACCENT, values: series.conntrack }],
      life,
    ),
    timeChart(
      'masquerade-ports',
      'Masquerade ports in use',
      'ports',
      series,
      [{ label: 'ports', color: ACCENT, values: series.masqueradePorts }],
      life,
    ),
    series.markers.length > 0 ? markersTable(series, markersTotal, markersCap) : null,
  );
}

function markersTable(series: Series, total: number, cap: number): HTMLElement {
  return h(
    'div',
    {},
    h('h3', {}, 'Cluster changes'),
    total > series.markers.length
      ? h(
          'p',
          { class: 'cap' },
          `The first ${count(series.markers.length)} of ${count(total)} cluster changes (the report keeps at most ${count(cap)}).`,
        )
      : null,
    table(
      ['state', 'at', 'what changed', 'flows affected at once', 'packets changed while in force'],
      series.markers.map((m) =>
        h(
          'tr',
          { title: markerTitle(m, series.start) },
          numCell(m.state),
          h('td', { class: 'num' }, `+${(m.time - series.start).toFixed(3)} s`),
          h('td', {}, m.label),
          numCell(m.flows),
          numCell(m.packetsChanged),
        ),
      ),
      { class: 'markers' },
    ),
  );
}

function messagesSection(summary: Summary): HTMLElement | null {
  if (summary.warnings.length + summary.notes.length === 0) return null;
  return section(
    'Warnings and notes',
    ...summary.warnings.map((w) => h('p', { class: 'warning' }, w)),
    ...summary.notes.map((n) => h('p', { class: 'note' }, n)),
  );
}

// ---------------------------------------------------------------- svcpath diff

function diffSection(view: DiffView): HTMLElement {
  const r = view.report;
  const d = (value: number, path: string) => h('span', { 'data-diff': path, 'data-value': value }, count(value));
  const services = table(
    ['Service', 'flows', 'changed', 'topology', 'cross-zone flows'],
    r.services.map((s, i) =>
      h(
        'tr',
        {},
        h('td', {}, s.service),
        numCell(s.flows, { 'data-diff': `services.${i}.flows` }),
        numCell(s.changed, { 'data-diff': `services.${i}.changed` }),
        h('td', {}, s.topology ? `${s.topology.before} → ${s.topology.after}` : ''),
        h('td', {}, s.crossZone ? `${count(s.crossZone.before)} → ${count(s.crossZone.after)}` : ''),
      ),
    ),
    { class: 'diff-services' },
  );
  return section(
    'Diff: flows decided otherwise',
    h(
      'p',
      {},
      h('code', {}, r.trace),
      ': ',
      d(r.changed, 'changed'),
      ' of ',
      d(r.flows, 'flows'),
      ' flows were decided otherwise in the second state (backend, verdict or masquerading).',
      r.crossZone ? ` Cross-zone flows ${count(r.crossZone.before)} → ${count(r.crossZone.after)}.` : null,
    ),
    services,
    ...view.matrices.map(matrixBlock),
    changesList(view),
  );
}

/** Rows a flow's decision before, columns after (the diagonal: flows that stayed); each cell shaded by its share of the largest. */
function matrixBlock(m: MoveMatrix): HTMLElement {
  const max = Math.max(1, ...m.flows.flat());
  const cell = (n: number, before: string, after: string) => {
    const strength = n / max;
    const attrs: Attrs = {
      class: `num${before === after ? ' same' : ''}${strength > 0.55 ? ' dark' : ''}`,
      'data-value': n,
      title: `${count(n)} flows ${before} → ${after}`,
      style: n > 0 ? `background: ${ACCENT}${alphaHex(0.08 + 0.92 * strength)}` : undefined,
    };
    return h('td', attrs, n > 0 ? count(n) : '');
  };
  return h(
    'div',
    { class: 'matrix-block' },
    h('h3', {}, m.service),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'matrix', 'data-matrix': m.service },
        h('thead', {}, h('tr', {}, h('th', {}, 'before ↓ after →'), ...m.after.map((a) => h('th', { scope: 'col' }, a)))),
        h(
          'tbody',
          {},
          ...m.before.map((b, r) => h('tr', {}, h('th', { scope: 'row' }, b), ...m.after.map((a, c) => cell(m.flows[r][c], b, a)))),
        ),
      ),
    ),
  );
}

/** 0..1 as the two hex digits of a #rrggbbaa color's alpha. */
function alphaHex(alpha: number): string {
  return Math.round(alpha * 255)
    .toString(16)
    .padStart(2, '0');
}

function changesList(view: DiffView): HTMLElement {
  const shown = view.report.changes;
  const changed = view.report.changed;
  return h(
    'div',
    {},
    h('h3', {}, 'Changed flows'),
    h(
      'p',
      { class: 'cap' },
      shown.length < changed
        ? `The first ${count(shown.length)} of ${count(changed)} changed flows (the report keeps at most ${count(view.changesCap)}).`
        : `All ${count(changed)} changed flows.`,
    ),
    h(
      'div',
      { class: 'scroll' },
      table(
        ['packet', 'flow', 'Service', 'before', 'after'],
        shown.map((c) =>
          h('tr', {}, numCell(c.packet), h('td', {}, c.flow), h('td', {}, c.service), h('td', {}, c.before), h('td', {}, c.after)),
        ),
        { class: 'changes' },
      ),
    ),
  );
}

// ---------------------------------------------------------------- svcpath test

function casesSection(cases: CaseView[], life: Lifecycle): HTMLElement {
  const passed = cases.filter((c) => c.passed).length;
  const rows = cases.map((c) =>
    h(
      'tr',
      { class: c.passed ? 'pass' : 'fail', 'data-case': c.name },
      h('td', {}, c.name),
      h('td', { class: 'result' }, c.passed ? 'pass' : 'FAIL'),
      h('td', {}, c.failures.length > 0 ? h('ul', { class: 'failures' }, ...c.failures.map((f) => h('li', {}, f))) : ''),
    ),
  );
  return section(
    `Test cases: ${passed} passed, ${cases.length - passed} failed`,
    table(['case', 'result', 'differences'], rows, { class: 'cases' }),
    ...cases.flatMap((c) => (c.run ? [caseRun(c.name, c.run, life)] : [])),
  );
}

/** A case's run, drawn when first opened (a chart hidden in a closed <details> has no width to draw at). */
function caseRun(name: string, run: RunReport, life: Lifecycle): HTMLElement {
  const details = h('details', { class: 'case-run', 'data-case': name }, h('summary', {}, `${name}: the run`));
  details.addEventListener('toggle', () => {
    if (!details.open || details.childElementCount > 1) return;
    const own: Lifecycle = { width: contentWidth(details), mounts: [], disposers: life.disposers };
    details.append(...runSections(run, own));
    mountAll(own);
  });
  return details;
}
