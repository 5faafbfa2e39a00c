/**
 * The few DOM helpers the report is built with: elements from a tag,
 * attributes and children (text is always set as text, never parsed as
 * HTML, so a name in the data cannot inject markup), numbers as people read
 * them, and cells that carry the exact number for the tests.
 */

export type Attrs = Record<string, string | number | boolean | undefined>;
export type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el: Element, attrs: Attrs): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
}

function append(el: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'number' ? String(child) : child);
  }
}

// Made once: toLocaleString makes a formatter per call, seconds on a page of 10^4 numbers.
const COUNT = new Intl.NumberFormat('en-US');
const COMPACT = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

/** 1234567 -> "1,234,567". */
export function count(n: number): string {
  return COUNT.format(n);
}

/** 1234567 -> "1.2M": for labels inside charts, where the tables beside them have the exact numbers. */
export function compact(n: number): string {
  return COMPACT.format(n);
}

/** The width inside an element's padding, in CSS pixels. */
export function contentWidth(el: HTMLElement): number {
  const style = getComputedStyle(el);
  return el.clientWidth - Number.parseFloat(style.paddingLeft) - Number.parseFloat(style.paddingRight);
}

/** 0.4567 -> "45.7%". */
export function percent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/**
 * A table cell holding a number: shown with separators, the exact value in
 * `data-value`, and `attrs` saying which number it is (`data-summary`: its
 * path in the run's --summary JSON, so a test can compare the two).
 */
export function numCell(value: number, attrs: Attrs = {}): HTMLTableCellElement {
  return h('td', { class: 'num', 'data-value': value, ...attrs }, count(value));
}

/** A table with a header row and body rows of cells. */
export function table(head: string[], rows: HTMLTableRowElement[], attrs: Attrs = {}): HTMLTableElement {
  return h('table', attrs, h('thead', {}, h('tr', {}, ...head.map((label) => h('th', { scope: 'col' }, label)))), h('tbody', {}, ...rows));
}

/** Label/value pairs as a definition list. */
export function facts(pairs: Array<[string, Child]>): HTMLDListElement {
  return h('dl', { class: 'facts' }, ...pairs.flatMap(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]));
}
