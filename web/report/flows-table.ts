/**
 * The flows table: the collector's first flows, sortable by any column (click
 * its header; again to reverse), filtered by a text box (every word must
 * occur in the row), each with its `svcpath trace` command and a button that
 * copies it.
 */
import type { FlowRow, FlowTable } from '../../control/runtime/report-types.js';
import { count, h } from './dom.js';
import { verdictColor } from './colors.js';

interface Column {
  key: keyof FlowRow;
  label: string;
  numeric?: boolean;
  show: (row: FlowRow, start: number) => string;
}

const text = (key: keyof FlowRow) => (row: FlowRow) => String(row[key] ?? '–');

const COLUMNS: Column[] = [
  { key: 'packet', label: 'packet', numeric: true, show: (r) => String(r.packet) },
  { key: 'time', label: 'time', numeric: true, show: (r, start) => `+${(r.time - start).toFixed(3)} s` },
  { key: 'protocol', label: 'protocol', show: text('protocol') },
  { key: 'client', label: 'client', show: text('client') },
  { key: 'frontend', label: 'frontend', show: text('frontend') },
  { key: 'service', label: 'service', show: text('service') },
  { key: 'backend', label: 'backend', show: text('backend') },
  { key: 'masqueraded', label: 'masq.', show: (r) => (r.masqueraded ? 'yes' : '') },
  { key: 'packets', label: 'packets', numeric: true, show: (r) => count(r.packets) },
  { key: 'bytes', label: 'bytes', numeric: true, show: (r) => count(r.bytes) },
  { key: 'lastVerdict', label: 'last verdict', show: (r) => `${r.lastVerdict} ${r.lastReason}` },
];

/** "first 1,000 of 52,311 flows", or "all 12 flows". */
export function capSentence(flows: FlowTable): string {
  if (flows.rows.length >= flows.total) return `All ${count(flows.total)} flows of the replay, in order of their first packet.`;
  return `The first ${count(flows.rows.length)} of ${count(flows.total)} flows, in order of their first packet (the report keeps at most ${count(flows.cap)}).`;
}

interface Order {
  column: Column;
  descending: boolean;
}

export function flowsTable(flows: FlowTable, start: number): HTMLElement {
  const haystacks = flows.rows.map((r) => [...COLUMNS.map((c) => c.show(r, start)), r.trace].join(' ').toLowerCase());
  const filter = h('input', { type: 'search', placeholder: 'filter: words that must all occur in a row', 'aria-label': 'filter flows' });
  const shown = h('span', { class: 'shown' });
  const headers = COLUMNS.map((c) => h('th', { scope: 'col', 'data-key': c.key, class: 'sortable' }, c.label));
  const body = h('tbody');
  const tbl = h(
    'table',
    { class: 'flows', 'data-table': 'flows' },
    h('thead', {}, h('tr', {}, ...headers, h('th', { scope: 'col' }, 'trace'))),
    body,
  );
  let order: Order | undefined;

  const redraw = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const kept = flows.rows.map((_, i) => i).filter((i) => words.every((w) => haystacks[i].includes(w)));
    if (order) kept.sort(comparator(flows.rows, order));
    body.replaceChildren(...kept.map((i) => rowOf(flows.rows[i], start)));
    shown.textContent = kept.length === flows.rows.length ? '' : `${count(kept.length)} of ${count(flows.rows.length)} rows match`;
    for (const [k, th] of headers.entries()) {
      const sorted = order?.column === COLUMNS[k];
      th.setAttribute('aria-sort', sorted ? (order!.descending ? 'descending' : 'ascending') : 'none');
    }
  };
  headers.forEach((th, k) =>
    th.addEventListener('click', () => {
      order = { column: COLUMNS[k], descending: order?.column === COLUMNS[k] ? !order.descending : false };
      redraw();
    }),
  );
  filter.addEventListener('input', redraw);
  body.addEventListener('click', (e) => {
    const button = (e.target as Element).closest('button.copy');
    if (button) copy(button as HTMLButtonElement);
  });
  redraw();
  return h(
    'div',
    {},
    h('p', { class: 'cap' }, capSentence(flows)),
    h('div', { class: 'filter' }, filter, shown),
    h('div', { class: 'scroll' }, tbl),
  );
}

/** Numbers by value, the rest as text (addresses as written); ties keep the capture's order. */
function comparator(rows: FlowRow[], { column, descending }: Order): (a: number, b: number) => number {
  const sign = descending ? -1 : 1;
  return (a, b) => {
    const [x, y] = [rows[a][column.key], rows[b][column.key]];
    const c = column.numeric ? Number(x) - Number(y) : String(x ?? '').localeCompare(String(y ?? ''), 'en', { numeric: true });
    return sign * c || a - b;
  };
}

function rowOf(row: FlowRow, start: number): HTMLTableRowElement {
  const cells = COLUMNS.map((c) =>
    h('td', { class: c.numeric ? 'num' : undefined, 'data-value': c.numeric ? (row[c.key] as number) : undefined }, c.show(row, start)),
  );
  cells[COLUMNS.findIndex((c) => c.key === 'lastVerdict')].style.color = verdictColor(row.lastVerdict);
  return h(
    'tr',
    {},
    ...cells,
    h('td', { class: 'trace' }, h('code', {}, row.trace), h('button', { class: 'copy', type: 'button' }, 'copy')),
  );
}

/** To the clipboard; where the page may not write it (a file opened without permission), the command is selected instead. */
async function copy(button: HTMLButtonElement): Promise<void> {
  const code = button.previousElementSibling as HTMLElement;
  try {
    await navigator.clipboard.writeText(code.textContent ?? '');
    say(button, 'copied');
  } catch {
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = window.getSelection();
    selection?.removeAllRanges();
    selection?.addRange(range);
    say(button, 'selected: Ctrl+C');
  }
}

function say(button: HTMLButtonElement, what: string): void {
  button.textContent = what;
  setTimeout(() => {
    button.textContent = 'copy';
  }, 1500);
}
