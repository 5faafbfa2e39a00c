/**
 * The categorical charts (packets per verdict and reason, each backend's
 * flows, packets, bytes and share) as small hand-written SVG: a few to a few
 * dozen labelled bars, where uPlot, made for numeric x axes, would need its
 * bar path builder, a category axis and a hover plugin to show what a
 * <text> and a <title> per bar show here, scaling with the page and readable
 * without script in a saved copy of the DOM.
 */
import { type Attrs, svg } from './dom.js';

/** The drawing's own units; the SVG scales to the page's width. */
const WIDTH = 960;
const ROW = 22;
const HEAD = 20;
const LABEL = 210;
const GAP = 18;
/** A segment this wide or wider says its reason inside it. */
const SEGMENT_LABEL = 90;
/** Of a panel's width, what the longest bar takes: the rest holds its value's label. */
const BAR_SPAN = 0.68;

export interface BarRow {
  label: string;
  /** Said after the label, dimmer ("local", "on node-b"). */
  note?: string;
  /** Drawn lighter (a remote backend beside local ones). */
  muted?: boolean;
}

export interface Panel {
  title: string;
  values: number[];
  format: (n: number) => string;
  color: string;
  /** A tick per row at this value (the expected share), or none. */
  marks?: Array<number | null>;
  markLabel?: string;
}

function chart(height: number, attrs: Attrs, label: string): SVGSVGElement {
  return svg('svg', {
    ...attrs,
    viewBox: `0 0 ${WIDTH} ${height}`,
    width: '100%',
    role: 'img',
    'aria-label': label,
    class: 'bars',
  });
}

function title(text: string): SVGTitleElement {
  return svg('title', {}, text);
}

/** A scale's top: the largest value, or 1 when all are zero (the bars are then empty but the axes are drawn). */
function top(values: number[]): number {
  return Math.max(0, ...values) || 1;
}

/** A positive value is at least 2 units long, so that it never looks like zero. */
function length(value: number, max: number, span: number): number {
  return value > 0 ? Math.max(2, (value / max) * span) : 0;
}

/**
 * Rows of bars in side-by-side panels sharing the row labels: each panel
 * scaled to its own largest value, its axis drawn even when every value is 0.
 */
export function barPanels(rows: BarRow[], panels: Panel[], attrs: Attrs, label: string): SVGSVGElement {
  const height = HEAD + rows.length * ROW + 4;
  const el = chart(height, attrs, label);
  const panelWidth = (WIDTH - LABEL - GAP * (panels.length - 1)) / panels.length;
  rows.forEach((row, i) => {
    const y = HEAD + i * ROW + ROW / 2 + 4;
    el.append(svg('text', { x: 0, y, class: 'label' }, row.label, row.note ? svg('tspan', { class: 'note' }, `  ${row.note}`) : null));
  });
  panels.forEach((panel, p) => {
    el.append(panelOf(panel, rows, LABEL + p * (panelWidth + GAP), panelWidth, height));
  });
  return el;
}

function panelOf(panel: Panel, rows: BarRow[], x: number, width: number, height: number): SVGGElement {
  const g = svg('g', {});
  const max = top([...panel.values, ...(panel.marks ?? []).map((m) => m ?? 0)]);
  const span = width * BAR_SPAN;
  g.append(svg('text', { x, y: 13, class: 'head' }, panel.title));
  g.append(svg('line', { x1: x, x2: x, y1: HEAD, y2: height - 2, class: 'axis' }));
  rows.forEach((row, i) => {
    const value = panel.values[i];
    const y = HEAD + i * ROW + 4;
    const w = length(value, max, span);
    g.append(
      svg(
        'rect',
        { x, y, width: w, height: ROW - 8, fill: panel.color, 'fill-opacity': row.muted ? 0.4 : 1 },
        title(`${row.label}: ${panel.title} ${panel.format(value)}`),
      ),
    );
    const mark = panel.marks?.[i];
    if (mark !== null && mark !== undefined) {
      const mx = x + (mark / max) * span;
      g.append(
        svg('line', { x1: mx, x2: mx, y1: y - 3, y2: y + ROW - 5, class: 'mark' }, title(`${panel.markLabel}: ${panel.format(mark)}`)),
      );
    }
    g.append(
      svg('text', { x: x + Math.max(w, mark ? (mark / max) * span : 0) + 5, y: y + ROW / 2 + 1, class: 'value' }, panel.format(value)),
    );
  });
  return g;
}

export interface StackedRow {
  label: string;
  color: string;
  total: number;
  segments: Array<{ label: string; value: number }>;
}

/** One bar per row, its segments shaded from its color (the first darkest), its total after it. */
export function stackedBars(rows: StackedRow[], format: (n: number) => string, attrs: Attrs, label: string): SVGSVGElement {
  const height = rows.length * ROW + 8;
  const el = chart(height, attrs, label);
  const labelWidth = 110;
  const span = (WIDTH - labelWidth) * 0.85;
  const max = top(rows.map((r) => r.total));
  el.append(svg('line', { x1: labelWidth, x2: labelWidth, y1: 2, y2: height - 2, class: 'axis' }));
  rows.forEach((row, i) => {
    const y = i * ROW + 6;
    el.append(svg('text', { x: 0, y: y + ROW / 2, class: 'label' }, row.label));
    let x = labelWidth;
    row.segments.forEach((segment, k) => {
      const w = length(segment.value, max, span);
      const opacity = 1 - (0.6 * k) / Math.max(1, row.segments.length - 1);
      el.append(
        svg(
          'rect',
          { x, y, width: w, height: ROW - 8, fill: row.color, 'fill-opacity': opacity.toFixed(2), class: 'segment' },
          title(`${row.label} ${segment.label}: ${format(segment.value)}`),
        ),
      );
      if (w >= SEGMENT_LABEL)
        el.append(svg('text', { x: x + 4, y: y + ROW / 2 - 1, class: opacity > 0.6 ? 'inside' : 'inside light' }, segment.label));
      x += w;
    });
    el.append(svg('text', { x: x + 6, y: y + ROW / 2, class: 'value' }, format(row.total)));
  });
  return el;
}
