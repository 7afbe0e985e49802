// Charts, drawn by uPlot (vendored): time series of counts and of latencies.

// `dots`: mark each value, for series with gaps (a latency exists only in minutes that
// started jobs), where a lone value would draw no line at all.
export function timeChart(el, { series, height = 220, dots = false }) {
  const width = Math.max(280, el.clientWidth || 600);
  const options = {
    width,
    height,
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: dots, size: 6, fill: s.color } }))],
    axes: [{ stroke: "#888" }, { stroke: "#888", size: 60 }],
    legend: { live: true },
  };
  // eslint-disable-next-line no-undef
  const plot = new uPlot(options, [[], ...series.map(() => [])], el);
  const resize = () => plot.setSize({ width: Math.max(280, el.clientWidth), height });
  window.addEventListener("resize", resize);
  return {
    set(data) { plot.setData(data); },
    destroy() { window.removeEventListener("resize", resize); plot.destroy(); },
  };
}

// A small SVG line of recent values (a queue's throughput), with its values as a label.
export function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 120 28");
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...values);
  const sum = values.reduce((a, b) => a + b, 0);
  svg.setAttribute("aria-label", `${sum} completed in the last ${values.length} minutes`);
  const step = values.length > 1 ? 120 / (values.length - 1) : 120;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(26 - (v / max) * 24).toFixed(1)}`).join(" ");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}

export function seconds(points) {
  return points.map((p) => new Date(p.at).getTime() / 1000);
}
