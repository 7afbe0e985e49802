// Overview: throughput, failures and enqueue-to-start latency over the last hour or day,
// jobs by state per queue, nodes up, and the newest dead letters.

import { api, query } from "../api.js";
import { h, swap, count, when, link, state, queueCount } from "../dom.js";
import { timeChart, seconds } from "../charts.js";

export const title = "Overview";

const SPANS = { hour: { minutes: 60, step: 1 }, day: { minutes: 1440, step: 15 } };
const STATES = ["available", "scheduled", "running", "retryable", "held", "completed", "discarded", "cancelled"];

export async function mount(el, ctx) {
  let span = ctx.params.get("span") === "day" ? "day" : "hour";
  const tiles = h("div", { class: "tiles" });
  const throughputEl = h("div", { class: "chart", "aria-label": "Attempts completed and failed per step" });
  const latencyEl = h("div", { class: "chart", "aria-label": "Enqueue-to-start latency, p50 and p99" });
  const queuesEl = h("div", { class: "scroll" });
  const deadEl = h("div", { class: "scroll" });
  const spanButtons = Object.keys(SPANS).map((name) =>
    h("button", { type: "button", "aria-pressed": String(name === span), onclick: () => ctx.navigate(`#/?span=${name}`) },
      `Last ${name}`));
  el.append(
    h("h1", {}, "Overview"),
    tiles,
    h("div", { class: "row" }, spanButtons),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Throughput (attempts per step)"), throughputEl),
      h("section", { class: "card" }, h("h2", {}, "Enqueue-to-start latency (ms)"), latencyEl)),
    h("section", {}, h("h2", {}, "Jobs by state per queue"), queuesEl),
    h("section", {}, h("h2", {}, "Recent dead letters"), deadEl),
  );
  const throughput = timeChart(throughputEl, {
    series: [{ label: "completed", color: "#16a34a" }, { label: "failed", color: "#dc2626" }],
  });
  const latency = timeChart(latencyEl, {
    dots: true,
    series: [{ label: "p50", color: "#2563eb" }, { label: "p99", color: "#d97706" }],
  });

  async function refresh() {
    const [stats, queues, nodes, dead] = await Promise.all([
      api(`/v1/stats${query(SPANS[span])}`),
      api("/v1/queues"),
      api("/v1/nodes"),
      api("/v1/jobs?state=discarded&limit=8"),
    ]);
    const points = stats.total.points;
    const x = seconds(points);
    throughput.set([x, points.map((p) => p.completed), points.map((p) => p.failed)]);
    latency.set([x, points.map((p) => p.wait_p50_ms), points.map((p) => p.wait_p99_ms)]);
    const sum = (key) => points.reduce((a, p) => a + p[key], 0);
    const totals = Object.fromEntries(STATES.map((s) => [s, queues.reduce((a, q) => a + (q.counts[s] || 0), 0)]));
    // "+" where a count stopped at the node's cap.
    const more = (...states) => (queues.some((q) => states.some((s) => (q.at_least || []).includes(s))) ? "+" : "");
    swap(tiles,
      tile(count(sum("completed")), `completed, last ${span}`),
      tile(count(sum("failed")), `failed, last ${span}`, sum("failed") ? "bad" : ""),
      tile(count(totals.available + totals.scheduled + totals.retryable + totals.held) + more("available", "scheduled", "retryable", "held"), "waiting"),
      tile(count(totals.running) + more("running"), "running"),
      tile(count(totals.discarded) + more("discarded"), "discarded", totals.discarded ? "bad" : ""),
      tile(`${nodes.filter((n) => n.health === "up").length} / ${nodes.length}`, "nodes up"),
    );
    swap(queuesEl, queues.length === 0 ? h("p", { class: "muted" }, "No queues yet: enqueue a job.") :
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Queue"), STATES.map((s) => h("th", { class: "num" }, s)))),
        h("tbody", {}, queues.map((q) => h("tr", {},
          h("td", {}, link("/jobs", { queue: q.name }, q.name), q.paused ? h("span", { class: "chip warn" }, " paused") : null),
          STATES.map((s) => h("td", { class: "num" }, q.counts[s] ? link("/jobs", { queue: q.name, state: s }, queueCount(q, s)) : "0")))))));
    swap(deadEl, dead.jobs.length === 0 ? h("p", { class: "muted" }, "No dead letters.") :
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Call"), h("th", {}, "Queue"), h("th", {}, "Discarded"), h("th", {}, "State"))),
        h("tbody", {}, dead.jobs.map((j) => h("tr", {},
          h("td", {}, link(`/jobs/${j.id}`, null, `#${j.id}`)),
          h("td", { class: "mono" }, `${j.module}.${j.function}`),
          h("td", {}, j.queue),
          h("td", {}, when(j.finalized_at)),
          h("td", {}, state(j.state)))))));
  }

  await refresh();
  return { refresh, destroy() { throughput.destroy(); latency.destroy(); } };
}

function tile(n, label, tone = "") {
  return h("div", { class: "tile" }, h("div", { class: `n ${tone}` }, n), h("div", { class: "l" }, label));
}
