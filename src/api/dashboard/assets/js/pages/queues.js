// Queues: depth by state, concurrency, paused or not, and a throughput sparkline; pause,
// resume and change concurrency (operate role).

import { api } from "../api.js";
import { h, swap, link, toast, queueCount } from "../dom.js";
import { sparkline } from "../charts.js";

export const title = "Queues";

const STATES = ["available", "scheduled", "running", "retryable", "held", "completed", "discarded", "cancelled"];

export async function mount(el, ctx) {
  const body = h("div", { class: "scroll" });
  el.append(h("h1", {}, "Queues"), body);
  const operate = ctx.can("operate");

  async function act(path, init, done) {
    try {
      await api(path, init);
      toast(done);
      await refresh();
    } catch (e) {
      toast(e.message, true);
    }
  }

  function controls(q) {
    if (!operate) return null;
    const input = h("input", {
      type: "number", min: 1, max: 10000, inputmode: "numeric", "aria-label": `Concurrency of ${q.name}`,
      placeholder: "default", value: q.concurrency ?? "", size: 6, dataset: { key: `conc-${q.name}` },
    });
    const set = (concurrency) => act(`/v1/queues/${encodeURIComponent(q.name)}/concurrency`,
      { method: "PUT", body: { concurrency } },
      concurrency === null ? `${q.name}: each node's own concurrency` : `${q.name}: concurrency ${concurrency}`);
    return h("div", { class: "row" },
      q.paused
        ? h("button", { type: "button", dataset: { key: `resume-${q.name}` }, onclick: () => act(`/v1/queues/${encodeURIComponent(q.name)}/resume`, { method: "POST" }, `${q.name} resumed`) }, "Resume")
        : h("button", { type: "button", dataset: { key: `pause-${q.name}` }, onclick: () => act(`/v1/queues/${encodeURIComponent(q.name)}/pause`, { method: "POST" }, `${q.name} paused`) }, "Pause"),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); const n = parseInt(input.value, 10); if (n > 0) set(n); else set(null); } },
        input,
        h("button", { type: "submit", dataset: { key: `set-${q.name}` } }, "Set"),
        h("button", { type: "button", dataset: { key: `default-${q.name}` }, onclick: () => set(null) }, "Default")));
  }

  async function refresh() {
    // Skip a refresh while a concurrency is being typed: it would overwrite the input.
    if (el.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
    const [queues, stats] = await Promise.all([api("/v1/queues"), api("/v1/stats?minutes=60&step=2")]);
    const series = Object.fromEntries(stats.series.map((s) => [s.queue, s.points.map((p) => p.completed)]));
    swap(body, queues.length === 0 ? h("p", { class: "muted" }, "No queues yet.") :
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", {}, "Status"), h("th", { class: "num" }, "Concurrency"),
          STATES.map((s) => h("th", { class: "num hide-sm" }, s)), h("th", {}, "Last hour"), operate ? h("th", {}, "Actions") : null)),
        h("tbody", {}, queues.map((q) => h("tr", { dataset: { queue: q.name } },
          h("td", {}, link("/jobs", { queue: q.name }, q.name)),
          h("td", {}, q.paused ? h("span", { class: "chip warn" }, "paused") : h("span", { class: "chip h-up" }, "running")),
          h("td", { class: "num" }, q.concurrency ?? h("span", { class: "muted" }, "node default")),
          STATES.map((s) => h("td", { class: "num hide-sm" }, q.counts[s] ? link("/jobs", { queue: q.name, state: s }, queueCount(q, s)) : "0")),
          h("td", {}, sparkline(series[q.name] || [0])),
          operate ? h("td", {}, controls(q)) : null)))));
  }
  await refresh();
  return { refresh };
}
