// RTT histograms as Fortio draws them: fine buckets on a logarithmic RTT axis, with the run's
// p50, p90, p99 and p99.9 marked. One run shows messages per bucket; several runs overlaid
// show each bucket as a share of that run's own messages, so runs of any size compare.
//
// Input: the documents of GET /api/runs/{id}/histogram ({buckets: [{from_ms, to_ms, count}],
// count, markers: [{name, percentile, ms}]}); the markers are the run summary's figures.
/* global uPlot */
import { el, fmtMs, fmtNum } from "./util.js";
import { COLORS } from "./charts.js";

export const MARKER_LABELS = { p50: "p50", p90: "p90", p99: "p99", p999: "p99.9" };

// Bucket edges are computed the same way for every run (2^(i/k) ns), so equal edges are
// equal numbers; rounding only guards against a run stored with another precision.
const edgeKey = (v) => +v.toPrecision(12);

/** Columns for uPlot: every bucket edge of every run on one x axis, a y column per run. */
export function histogramData(hists, share) {
  const edges = new Set();
  for (const h of hists) {
    for (const b of h.buckets) {
      edges.add(edgeKey(b.from_ms));
      edges.add(edgeKey(b.to_ms));
    }
  }
  const xs = [...edges].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const ys = hists.map((h) => {
    const col = xs.map(() => null);
    const total = h.count || 1;
    for (const b of h.buckets) col[at.get(edgeKey(b.from_ms))] = share ? (100 * b.count) / total : b.count;
    const last = h.buckets[h.buckets.length - 1];
    if (last) col[at.get(edgeKey(last.to_ms))] = 0; // the last bucket's right edge
    return col;
  });
  return [xs, ...ys];
}

/** A histogram chart in `container`; its markers are also listed, as text, in `markerList`. */
export class Histogram {
  constructor(container, markerList, { height = 240 } = {}) {
    this.container = container;
    this.markerList = markerList;
    this.height = height;
    this.plot = null;
    this.runs = [];
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(container);
    container.dataset.points = "0";
  }

  width() {
    return Math.max(this.container.clientWidth || 0, 280);
  }

  resize() {
    const width = this.width();
    if (this.plot && this.container.clientWidth && Math.abs(width - this.plot.width) > 2) {
      this.plot.setSize({ width, height: this.plot.height });
    }
  }

  /** Draw runs: [{id, label, histogram}]; one run in counts, several in shares. */
  show(runs) {
    this.runs = runs;
    const share = runs.length > 1;
    const data = histogramData(runs.map((r) => r.histogram), share);
    const yFmt = (v) => (share ? `${fmtNum(v, v < 10 ? 1 : 0)} %` : fmtNum(v));
    const opts = {
      width: this.width(),
      height: this.height,
      scales: {
        x: { time: false, distr: 3, log: 10 },
        y: { auto: true, range: (u, min, max) => [0, max > 0 ? max * 1.12 : 1] },
      },
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: "RTT", value: (u, v) => (v == null ? "–" : fmtMs(v)) },
        ...runs.map((r, i) => ({
          label: r.label,
          stroke: COLORS[i % COLORS.length],
          fill: `${COLORS[i % COLORS.length]}${share ? "22" : "88"}`,
          width: 2,
          spanGaps: true, // a bucket's height holds up to the next edge of any run
          points: { show: false },
          paths: uPlot.paths.stepped({ align: 1 }),
          value: (u, v) => (v == null ? "–" : yFmt(v)),
        })),
      ],
      axes: [
        { stroke: "#5b6577", grid: { stroke: "rgba(0,0,0,0.07)" }, label: "RTT (log scale)", values: (u, vals) => vals.map((v) => (v == null ? "" : fmtMs(v))) },
        { stroke: "#5b6577", grid: { stroke: "rgba(0,0,0,0.07)" }, size: 70, values: (u, vals) => vals.map(yFmt) },
      ],
      hooks: { draw: [(u) => this.drawMarkers(u)] },
    };
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(opts, data, this.container);
    const buckets = runs.reduce((n, r) => n + r.histogram.buckets.length, 0);
    this.container.dataset.points = String(buckets);
    this.container.dataset.markers = String(runs.reduce((n, r) => n + r.histogram.markers.length, 0));
    this.listMarkers();
  }

  /** Dashed vertical lines at each run's percentiles, labelled at the top. */
  drawMarkers(u) {
    const ctx = u.ctx;
    const { top, height } = u.bbox;
    const ratio = window.devicePixelRatio || 1;
    ctx.save();
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.setLineDash([4 * ratio, 3 * ratio]);
    ctx.lineWidth = ratio;
    this.runs.forEach((r, i) => {
      const colour = COLORS[i % COLORS.length];
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      for (const m of r.histogram.markers) {
        const x = u.valToPos(m.ms, "x", true);
        if (!Number.isFinite(x)) continue;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        ctx.fillText(MARKER_LABELS[m.name] || m.name, x, top + (10 + 11 * i) * ratio);
      }
    });
    ctx.restore();
  }

  /** The markers as text: what a person (or a test) reads, with the summary's figures. */
  listMarkers() {
    const several = this.runs.length > 1;
    this.markerList.replaceChildren(...this.runs.flatMap((r, i) => r.histogram.markers.map((m) => el("li",
      { dataset: { run: r.id, marker: m.name, ms: String(m.ms) }, style: `color: ${COLORS[i % COLORS.length]}` },
      `${several ? `${r.label} ` : ""}${MARKER_LABELS[m.name] || m.name} ${fmtMs(m.ms)}`))));
  }

  clear() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
    this.runs = [];
    this.container.dataset.points = "0";
    this.container.dataset.markers = "0";
    this.markerList.replaceChildren();
  }
}
