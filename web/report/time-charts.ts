/**
 * The charts over the capture's time, drawn by uPlot on a canvas (fast on
 * 10^5-10^6 points). x is seconds since the first packet; each bin is drawn
 * as a step over its whole width, so a single bin is a visible segment and
 * an all-zero series a line along the axis. The cluster changes are marked
 * on every chart: a dashed line with the state's number, its label on hover.
 */
import uPlot from 'uplot';
import type { ChangeMarker, Series } from '../../control/runtime/report-types.js';
import { compact, h } from './dom.js';

export interface Line {
  label: string;
  color: string;
  values: number[];
}

/**
 * What the report keeps to draw its charts once they are in the page, and to
 * let them go when it is drawn again. `width` is the charts' width, measured
 * on the element the report goes in before the report is put in it: reading a
 * width from inside a large report would lay all of it out (seconds for a
 * few hundred Services) before its first chart is drawn.
 */
export interface Lifecycle {
  width: number;
  mounts: Array<() => void>;
  disposers: Array<() => void>;
}

const HEIGHT = 200;
/** The width a chart takes when the report's element has none (hidden); the chart follows its container's when it gets one. */
const FALLBACK_WIDTH = 800;

/** Bin edges in seconds since the first packet: every bin's start, then the last bin's end. */
export function binEdges(series: Series): number[] {
  const starts = series.time.length > 0 ? series.time.map((t) => t - series.start) : [0];
  return [...starts, starts[starts.length - 1] + series.binSeconds];
}

/** One value per bin, the last repeated at the closing edge so the step covers the bin; no bins: one empty bin. */
function stepValues(values: number[]): number[] {
  const bins = values.length > 0 ? values : [0];
  return [...bins, bins[bins.length - 1]];
}

/** A chart container; the chart itself is drawn by the mount it queues. */
export function timeChart(name: string, caption: string, unit: string, series: Series, lines: Line[], life: Lifecycle): HTMLElement {
  const box = h('div', { class: 'chart', 'data-chart': name });
  const figure = h('figure', {}, h('figcaption', {}, caption), box);
  life.mounts.push(() => draw(box, unit, series, lines, life));
  return figure;
}

function draw(box: HTMLElement, unit: string, series: Series, lines: Line[], life: Lifecycle): void {
  const plot = new uPlot(options(unit, series, lines, life.width || FALLBACK_WIDTH), data(series, lines), box);
  const resize = new ResizeObserver(() => {
    if (box.clientWidth > 0 && box.clientWidth !== plot.width) plot.setSize({ width: box.clientWidth, height: HEIGHT });
  });
  resize.observe(box);
  life.disposers.push(() => {
    resize.disconnect();
    plot.destroy();
  });
}

function data(series: Series, lines: Line[]): uPlot.AlignedData {
  return [binEdges(series), ...lines.map((l) => stepValues(l.values))];
}

function options(unit: string, series: Series, lines: Line[], width: number): uPlot.Options {
  const stepped = uPlot.paths.stepped!({ align: 1 });
  return {
    width,
    height: HEIGHT,
    scales: {
      x: { time: false },
      // From zero, and a scale of 0..1 when everything is zero so the line lies on the axis.
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.08 : 1] },
    },
    axes: [
      { label: 'seconds since the first packet', labelSize: 20, size: 36 },
      { label: unit, labelSize: 20, size: 56, values: (_u, ticks) => ticks.map(compact) },
    ],
    series: [
      { label: 'time', value: (_u, v) => (v === null ? '–' : `+${v.toFixed(3)} s`) },
      ...lines.map(
        (l): uPlot.Series => ({
          label: l.label,
          stroke: l.color,
          fill: `${l.color}1f`,
          width: 1.5,
          paths: stepped,
          points: { show: false },
          value: (_u, v) => (v === null ? '–' : v.toLocaleString('en-US', { maximumFractionDigits: 2 })),
        }),
      ),
    ],
    cursor: { drag: { x: true, y: false } },
    hooks: { init: [(u) => addMarkers(u, series)], draw: [placeMarkers] },
  };
}

/** The cluster changes' markers, HTML over the plot so that each has a tooltip. */
function addMarkers(u: uPlot, series: Series): void {
  for (const m of series.markers) {
    const el = h(
      'div',
      { class: 'marker', 'data-x': m.time - series.start, title: markerTitle(m, series.start) },
      h('span', {}, String(m.state)),
    );
    u.over.append(el);
  }
}

export function markerTitle(m: ChangeMarker, start: number): string {
  return `state ${m.state} at +${(m.time - start).toFixed(3)} s: ${m.label} (${m.flows} flows affected)`;
}

function placeMarkers(u: uPlot): void {
  const { min, max } = u.scales.x;
  for (const el of u.over.querySelectorAll<HTMLElement>('.marker')) {
    const x = Number(el.dataset.x);
    const inView = min !== undefined && max !== undefined && x >= min && x <= max;
    el.style.display = inView ? '' : 'none';
    if (inView) el.style.left = `${u.valToPos(x, 'x')}px`;
  }
}
