// Dead letters: discarded jobs grouped by module, function and class, and for a group the
// forensics an incident needs: the newest job's attempt history and the node and queue state
// recorded as it was discarded, and the recent errors of that function. Retry a group in
// bulk (operate role).

import { api, query } from "../api.js";
import { h, swap, when, count, link, href, toast, confirmAction, millis } from "../dom.js";

export const title = "Dead letters";

export async function mount(el, ctx) {
  const groupsEl = h("div", { class: "scroll" });
  const detail = h("div", {});
  el.append(h("h1", {}, "Dead letters"), groupsEl, detail);
  let chosen = ctx.params.get("module") && ctx.params.get("function")
    ? { module: ctx.params.get("module"), function: ctx.params.get("function") } : null;

  async function retryGroup(g) {
    if (!(await confirmAction(`Retry every discarded job of ${g.module}.${g.function} (up to 1,000 per request)?`, "Retry all"))) return;
    try {
      const r = await api("/v1/jobs/retry", { method: "POST", body: { filter: { state: "discarded", module: g.module, function: g.function, limit: 1000 } } });
      toast(`Retried ${r.done.length} job(s)${r.more ? "; more remain: retry again" : ""}`);
      await refresh();
    } catch (e) {
      toast(e.message, true);
    }
  }

  async function renderDetail(groups) {
    if (!chosen) return swap(detail);
    const group = groups.find((g) => g.module === chosen.module && g.function === chosen.function);
    const [failures, newest] = await Promise.all([
      api(`/v1/dead-letters/failures${query({ module: chosen.module, function: chosen.function, limit: 20 })}`),
      group ? api(`/v1/jobs/${group.last_job}`) : null,
    ]);
    const discarding = newest?.attempts[newest.attempts.length - 1];
    swap(detail, h("section", { class: "card", "aria-label": `Forensics of ${chosen.module}.${chosen.function}` },
      h("h2", {}, `${chosen.module}.${chosen.function}`),
      newest ? h("div", {},
        h("p", {}, "Newest dead letter: ", link(`/jobs/${newest.id}`, null, `#${newest.id}`), ` on queue ${newest.queue}, ${newest.attempts.length} attempt(s), discarded `, when(newest.finalized_at)),
        h("ol", { class: "timeline" }, newest.attempts.map((a) => h("li", { class: a.outcome === "completed" ? "s-completed" : "bad" },
          h("strong", {}, `Attempt ${a.attempt}: ${a.outcome}`), h("span", { class: "muted" }, ` on ${a.node}, ${millis(a.duration_ms)}`),
          a.message ? h("pre", {}, a.message) : null))),
        discarding?.context ? h("dl", { class: "facts" },
          h("dt", {}, "Node at discard"), h("dd", { class: "mono" }, `${discarding.node} (v${discarding.context.node_version}), ${discarding.context.node_in_flight} job(s) held`),
          h("dt", {}, "Queue at discard"), h("dd", {}, `${discarding.context.queue_running} running of ${discarding.context.queue_concurrency}`)) : null) : null,
      h("h2", {}, "Recent errors of this function"),
      failures.length === 0 ? h("p", { class: "muted" }, "None among recent retrying or discarded jobs.") :
        h("table", {}, h("thead", {}, h("tr", {}, ["Job", "Attempt", "Class", "Message", "When"].map((t) => h("th", {}, t)))),
          h("tbody", {}, failures.map((f) => h("tr", {},
            h("td", {}, link(`/jobs/${f.job_id}`, null, `#${f.job_id}`)),
            h("td", { class: "num" }, f.attempt),
            h("td", {}, h("span", { class: "chip bad" }, f.outcome)),
            h("td", { class: "mono" }, (f.message || "").slice(0, 200)),
            h("td", {}, when(f.finished_at))))))));
  }

  async function refresh() {
    const view = await api("/v1/dead-letters");
    const operate = ctx.can("operate");
    swap(groupsEl, view.groups.length === 0 ? h("p", { class: "muted" }, "No dead letters: nothing was discarded.") :
      h("table", {},
        h("caption", { class: "muted" }, `Among the newest ${count(view.window)} discarded jobs`),
        h("thead", {}, h("tr", {}, ["Module", "Function", "Class", "Jobs", "Newest", "Last error", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, view.groups.map((g) => h("tr", { dataset: { group: `${g.module}.${g.function}.${g.class}` } },
          h("td", {}, g.module),
          h("td", { class: "mono" }, g.function),
          h("td", {}, h("span", { class: "chip bad" }, g.class)),
          h("td", { class: "num" }, link("/jobs", { state: "discarded", module: g.module, function: g.function }, count(g.jobs))),
          h("td", {}, link(`/jobs/${g.last_job}`, null, `#${g.last_job}`), " ", when(g.last_at)),
          h("td", { class: "mono" }, (g.last_message || "").slice(0, 160)),
          h("td", {}, h("div", { class: "row" },
            h("a", { href: href("/dead-letters", { module: g.module, function: g.function }), dataset: { key: `why-${g.module}.${g.function}.${g.class}` } }, "Why?"),
            operate ? h("button", { type: "button", dataset: { key: `retry-${g.module}.${g.function}.${g.class}` }, onclick: () => retryGroup(g) }, "Retry all") : null)))))));
    await renderDetail(view.groups);
  }
  await refresh();
  return { refresh };
}
