// Thin wrappers around the vendored uPlot: line charts that grow point by point, and bars.
/* global uPlot */
import { fmtMs } from "./util.js";

// Whole-number steps (1, 2, 5, 10, 20, 50, ...) for axes of counts, bytes and messages.
const INTEGER_STEPS = [];
for (let e = 0; e <= 13; e += 1) for (const m of [1, 2, 5]) INTEGER_STEPS.push(m * 10 ** e);

// Steps for an x axis in seconds since a run started: whole tenths, seconds and minutes.
export const SECOND_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

// uPlot's own y increments: 1, 2, 2.5 and 5 times a power of ten.
const NICE = [1, 2, 2.5, 5, 10];

/**
 * The smallest of uPlot's y increments at or above `v` (> 0). A y scale that ends there
 * has its top as a tick: a chart a few ticks tall (a run card's) then always labels one
 * value above 0, where a top of max × 1.1 left only "0/s" whenever the next round
 * increment (50,000 for a peak of 44,225) lay above it.
 */
export function niceCeil(v) {
  const power = 10 ** Math.floor(Math.log10(v));
  // A hair of tolerance: 0.3 / 0.1 is 2.9999999999999996 in floating point.
  return NICE.find((m) => m * power >= v * (1 - 1e-9)) * power;
}

export const COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#be123c"];

// Axis and grid colours from the page's theme (static/style.css), so charts stay readable in
// the dark theme; read when a chart is made.
function themeColour(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

// Room for the widest tick label ("200,000 msg/s"), at about 7 px a character.
function axisSize(u, values) {
  const longest = values ? Math.max(0, ...values.map((v) => String(v).length)) : 6;
  return Math.max(48, longest * 7 + 16);
}

function countPoints(data) {
  if (!data.length || !data[0]) return 0;
  let n = 0;
  for (let i = 0; i < data[0].length; i += 1) {
    for (let s = 1; s < data.length; s += 1) {
      if (data[s][i] != null) { n += 1; break; }
    }
  }
  return n;
}

/**
 * A uPlot chart in `container` that follows the container's width.
 *
 * series: [{label, fmt, scale?, color?, bars?}], x: {time: bool, label?, fmt?}.
 * The container's data-points attribute says how many x values have data, so a test (or a
 * person with dev tools) can tell an empty chart from a drawn one.
 */
export class Chart {
  constructor(container, { series, x = { time: true }, height = 220, maxPoints = 900, axes, log = false }) {
    this.container = container;
    this.maxPoints = maxPoints;
    this.data = [[], ...series.map(() => [])];
    const scales = { x: { time: x.time !== false } };
    if (x.minSpan) {
      // Show at least minSpan of x: a chart of three seconds of data would label its axis in
      // milliseconds, and uPlot widens a single point to a whole day. Time charts end at
      // their newest point; charts from 0 (seconds since a run started) start at 0.
      scales.x.range = (u) => {
        const xs = u.data[0] || [];
        if (x.from0) return [0, Math.max(xs.length ? xs[xs.length - 1] : 0, x.minSpan)];
        const hi = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
        const lo = xs.length ? xs[0] : hi;
        return hi - lo < x.minSpan ? [hi - x.minSpan, hi] : [lo, hi];
      };
    }
    const ink = themeColour("--chart-ink", "#5b6577");
    const grid = themeColour("--chart-grid", "rgba(0,0,0,0.07)");
    const yAxes = [];
    const seen = new Set();
    for (const s of series) {
      const scale = s.scale || "y";
      if (!seen.has(scale)) {
        seen.add(scale);
        scales[scale] = { auto: true, range: (u, min, max) => [Math.min(0, min), max > 0 ? niceCeil(max * 1.05) : 1] };
        // log: the first y scale is logarithmic (RTT tails over several decades).
        if (log && scale === (series[0].scale || "y")) scales[scale] = { distr: 3, log: 10 };
        const fmt = s.axisFmt || s.fmt || ((v) => String(v));
        const first = yAxes.length === 0;
        yAxes.push({
          scale,
          side: yAxes.length === 0 ? 3 : 1,
          size: axisSize,
          stroke: ink,
          grid: { show: yAxes.length === 0, stroke: grid },
          values: (u, vals) => {
            const labels = vals.map((v) => fmt(v));
            // The labels the first y axis draws on its canvas, readable from the page
            // (data-y-ticks), as data-points tells an empty chart from a drawn one.
            if (first) container.dataset.yTicks = labels.join(" | ");
            return labels;
          },
          incrs: s.integer ? INTEGER_STEPS : undefined,
        });
      }
    }
    const xAxis = { stroke: ink, grid: { stroke: grid } };
    if (x.fmt) xAxis.values = (u, vals) => vals.map((v) => x.fmt(v));
    if (x.label) xAxis.label = x.label;
    if (x.integer) xAxis.incrs = INTEGER_STEPS;
    if (x.seconds) xAxis.incrs = SECOND_STEPS;
    const opts = {
      width: this.width(),
      height,
      scales,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: x.label || (x.time === false ? "x" : "time"), value: x.value || (x.fmt ? (u, v) => (v == null ? "–" : x.fmt(v)) : undefined) },
        ...series.map((s, i) => ({
          label: s.label,
          scale: s.scale || "y",
          stroke: s.color || COLORS[i % COLORS.length],
          fill: s.bars ? `${s.color || COLORS[i % COLORS.length]}99` : undefined,
          width: 2,
          spanGaps: Boolean(s.spanGaps),
          points: { show: s.bars ? false : (u, si, i0, i1) => i1 - i0 < 40 },
          paths: s.bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 60] }) : undefined,
          value: (u, v) => (v == null ? "–" : (s.fmt ? s.fmt(v) : String(v))),
        })),
      ],
      axes: axes || [xAxis, ...yAxes],
    };
    this.plot = new uPlot(opts, this.data, container);
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(container);
    container.dataset.points = "0";
  }

  width() {
    return Math.max(this.container.clientWidth || 0, 280);
  }

  resize() {
    const width = this.width();
    if (this.container.clientWidth && Math.abs(width - this.plot.width) > 2) {
      this.plot.setSize({ width, height: this.plot.height });
    }
  }

  /** Draw `data` ([xs, ys...]); the chart keeps its own copy, so two charts given the same
   * x array (a run's RTT and throughput) each grow their own when points are pushed. */
  setData(data) {
    this.data = data.map((col) => [...col]);
    this.plot.setData(this.data);
    this.container.dataset.points = String(countPoints(data));
  }

  /** Append one x with its y values (one per series); keeps at most maxPoints. */
  push(x, ys) {
    const xs = this.data[0];
    if (xs.length && x <= xs[xs.length - 1]) return;
    xs.push(x);
    ys.forEach((y, i) => this.data[i + 1].push(y));
    if (xs.length > this.maxPoints) for (const col of this.data) col.shift();
    this.plot.setData(this.data);
    this.container.dataset.points = String(countPoints(this.data));
  }

  /** Show or hide series `index` (1 is the first y series), its legend entry included. */
  showSeries(index, show) {
    if (this.plot.series[index] && this.plot.series[index].show !== show) this.plot.setSeries(index, { show });
  }

  clear() {
    this.setData(this.data.map(() => []));
  }

  /** Remove the chart from the page (before drawing another in its container). */
  destroy() {
    this.observer.disconnect();
    this.plot.destroy();
  }
}

// The axis of round-trip times reads like every other RTT figure.
export const msAxis = fmtMs;
