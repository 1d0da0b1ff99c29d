// The runtime page's live plots (uPlot): calls/s, errors/s and p50/p99
// latency per version, from GET /v1/runtimes/{id}/stats, re-read every
// second. Each version keeps its colour on every plot.

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { h, num } from './dom.js';

/** Colours for versions, in the order of the runtime's config. */
const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626'];

const AXIS = { stroke: '#4b5563', grid: { stroke: '#e5e7eb', width: 1 }, ticks: { stroke: '#d1d5db', width: 1 } };

/** Tick steps of a count axis: whole calls only. */
const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

/** What each plot shows: the columns it takes from a version's stats. */
const KINDS = {
  calls: {
    title: 'Calls per second',
    unit: 'calls/s',
    columns: [{ key: 'calls', suffix: '' }],
  },
  errors: {
    title: 'Errors per second',
    unit: 'errors/s',
    columns: [{ key: 'errors', suffix: '' }],
  },
  latency: {
    title: 'Latency (ms): p50 solid, p99 dashed',
    unit: 'ms',
    columns: [
      { key: 'p50_ms', suffix: ' p50' },
      { key: 'p99_ms', suffix: ' p99', dash: [6, 4] },
    ],
    log: true,
  },
};

/** The versions to plot: the configured ones, then any others in `stats`. */
export function plotVersions(configured, stats) {
  const versions = [...configured];
  for (const entry of stats?.versions ?? []) {
    if (!versions.includes(entry.version)) versions.push(entry.version);
  }
  return versions;
}

/**
 * uPlot's data for one plot: `[time, ...one column per version and
 * measure]`; a version without stats gets nulls (no line), and a
 * latency column keeps its nulls (no calls: no latency).
 */
export function plotData(kind, versions, stats) {
  const spec = KINDS[kind];
  const time = stats.time;
  const columns = [time];
  for (const version of versions) {
    const entry = stats.versions.find((v) => v.version === version);
    for (const column of spec.columns) {
      columns.push(entry ? entry[column.key] : time.map(() => null));
    }
  }
  return columns;
}

/** The one-line text summary of a plot (for its caption and for screen
 * readers): each version's value in the last second, and the total. */
function summary(kind, stats) {
  const parts = [];
  for (const entry of stats.versions) {
    const last = entry.calls.length - 1;
    if (kind === 'latency') {
      parts.push(`${entry.version}: p50 ${num(entry.total.p50_ms, 2)} ms, p99 ${num(entry.total.p99_ms, 2)} ms over the window`);
    } else {
      parts.push(`${entry.version}: ${entry[kind][last]} ${KINDS[kind].unit} in the last second, ${entry.total[kind]} in the window`);
    }
  }
  return parts.length ? parts.join('; ') : 'no calls in this window';
}

/** How many (second, version) points have calls in `stats`. */
function pointsWithCalls(stats) {
  let points = 0;
  for (const entry of stats.versions) points += entry.calls.filter((c) => c > 0).length;
  return points;
}

/** One plot: a figure with a title, the chart and a text summary. */
class Plot {
  constructor(kind, container) {
    this.kind = kind;
    this.spec = KINDS[kind];
    this.chartBox = h('div', { class: 'chart' });
    this.caption = h('figcaption', { class: 'plot-summary', 'aria-live': 'off' });
    this.figure = h('figure', { class: `plot plot-${kind}`, dataset: { kind, points: '0', versions: '' } },
      h('h3', { text: this.spec.title }), this.chartBox, this.caption);
    container.append(this.figure);
    this.chart = null;
    this.versions = null;
  }

  build(versions) {
    this.chart?.destroy();
    this.versions = versions;
    const series = [{}];
    versions.forEach((version, index) => {
      for (const column of this.spec.columns) {
        series.push({
          label: `${version}${column.suffix}`,
          stroke: PALETTE[index % PALETTE.length],
          width: 2,
          dash: column.dash,
          spanGaps: false,
          points: { show: false },
          value: (_, v) => (v === null || v === undefined ? '—' : `${num(v)}`),
        });
      }
    });
    const y = this.spec.log
      ? { distr: 3, log: 10 }
      : { range: (_, _min, max) => [0, max > 0 ? Math.ceil(max * 1.15) : 1] };
    this.chart = new uPlot({
      width: this.width(),
      height: 180,
      series,
      scales: { x: { time: true }, y },
      axes: [{ ...AXIS }, { ...AXIS, size: 52, incrs: this.spec.log ? undefined : COUNT_STEPS }],
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false, setScale: false } },
    }, null, this.chartBox);
  }

  width() {
    return Math.max(240, Math.floor(this.chartBox.clientWidth || this.figure.clientWidth || 320));
  }

  update(configured, stats) {
    const versions = plotVersions(configured, stats);
    if (!this.chart || versions.join('\n') !== this.versions.join('\n')) this.build(versions);
    this.chart.setData(plotData(this.kind, versions, stats));
    this.caption.textContent = summary(this.kind, stats);
    this.figure.dataset.points = String(pointsWithCalls(stats));
    this.figure.dataset.versions = stats.versions
      .filter((v) => v.total.calls > 0)
      .map((v) => v.version)
      .join(' ');
  }

  resize() {
    this.chart?.setSize({ width: this.width(), height: 180 });
  }

  destroy() {
    this.chart?.destroy();
  }
}

/** The three plots of a runtime, in `container`. */
export class Plots {
  constructor(container) {
    this.plots = Object.keys(KINDS).map((kind) => new Plot(kind, container));
    this.observer = new ResizeObserver(() => {
      for (const plot of this.plots) plot.resize();
    });
    this.observer.observe(container);
  }

  update(configured, stats) {
    for (const plot of this.plots) plot.update(configured, stats);
  }

  destroy() {
    this.observer.disconnect();
    for (const plot of this.plots) plot.destroy();
  }
}
