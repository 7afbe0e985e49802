// Jobs: a table filtered by state, queue, module, function, args text and id, all kept in the
// URL so a view can be shared; keyset paging (never an offset, never a count of the whole
// table); selection and bulk retry / cancel / delete, on the selected rows or on the whole
// filtered set (at most 1,000 jobs per request, confirmed first).

import { api, query } from "../api.js";
import { h, swap, state, when, link, href, toast, confirmAction } from "../dom.js";

export const title = "Jobs";

const STATES = ["", "available", "scheduled", "running", "retryable", "held", "completed", "discarded", "cancelled"];
const FILTERS = ["state", "queue", "module", "function", "args", "id"];
const PAGE = 50;

export async function mount(el, ctx) {
  const filter = Object.fromEntries(FILTERS.map((k) => [k, ctx.params.get(k) || ""]));
  const before = ctx.params.get("before") || "";
  const operate = ctx.can("operate");
  const selected = new Set();
  let shown = [];

  const inputs = {};
  const field = (name, label, control) => { inputs[name] = control; return h("label", {}, label, control); };
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); apply(); } },
    field("state", "State", h("select", {}, STATES.map((s) => h("option", { value: s, selected: s === filter.state }, s || "any")))),
    field("queue", "Queue", h("input", { value: filter.queue, placeholder: "any" })),
    field("module", "Module", h("input", { value: filter.module, placeholder: "any" })),
    field("function", "Function", h("input", { value: filter.function, placeholder: "any" })),
    field("args", "Args contain", h("input", { value: filter.args, placeholder: "text" })),
    field("id", "Id", h("input", { value: filter.id, inputmode: "numeric", placeholder: "any" })),
    h("button", { type: "submit", class: "primary" }, "Filter"),
    h("button", { type: "button", onclick: () => ctx.navigate("#/jobs") }, "Clear"));

  function apply() {
    const next = Object.fromEntries(FILTERS.map((k) => [k, inputs[k].value.trim()]));
    ctx.navigate(href("/jobs", next));
  }

  const bulkBar = h("div", { class: "row" });
  const table = h("div", { class: "scroll" });
  const pager = h("div", { class: "pager" });
  el.append(h("h1", {}, "Jobs"), form, operate ? bulkBar : null, table, pager);

  // The API's filter, as GET /v1/jobs and the bulk actions take it.
  const apiFilter = () => ({
    state: filter.state || undefined, queue: filter.queue || undefined, module: filter.module || undefined,
    function: filter.function || undefined, args: filter.args || undefined,
  });

  async function bulk(action, scope) {
    const verb = action[0].toUpperCase() + action.slice(1);
    let body;
    let text;
    if (scope === "selected") {
      body = { ids: [...selected] };
      text = `${verb} ${selected.size} selected job(s)?`;
    } else {
      body = { filter: { ...apiFilter(), limit: 1000 } };
      const described = Object.entries(apiFilter()).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join(", ") || "no filter";
      text = `${verb} every job matching ${described}? At most 1,000 are done per request.`;
    }
    if (!(await confirmAction(text, verb))) return;
    try {
      const result = await api(`/v1/jobs/${action}`, { method: "POST", body });
      const refused = result.refused.length ? `, ${result.refused.length} refused (${result.refused[0].detail})` : "";
      toast(`${verb}: ${result.done.length} done${refused}${result.more ? "; more match: run it again" : ""}`);
      selected.clear();
      await refresh();
    } catch (e) {
      toast(e.message, true);
    }
  }

  function renderBulk() {
    const n = selected.size;
    swap(bulkBar,
      h("span", { class: "muted" }, n ? `${n} selected` : "Select rows to act on them, or act on the whole filter:"),
      ["retry", "cancel", "delete"].map((a) => h("button", { type: "button", disabled: n === 0, class: a === "delete" ? "danger" : "", dataset: { key: `sel-${a}` }, onclick: () => bulk(a, "selected") }, `${a[0].toUpperCase()}${a.slice(1)} selected`)),
      ["retry", "cancel", "delete"].map((a) => h("button", { type: "button", class: a === "delete" ? "danger" : "", dataset: { key: `all-${a}` }, onclick: () => bulk(a, "filter") }, `${a[0].toUpperCase()}${a.slice(1)} all matching`)));
  }

  function row(j) {
    const box = operate ? h("input", {
      type: "checkbox", "aria-label": `Select job ${j.id}`, checked: selected.has(j.id), dataset: { key: `sel-${j.id}` },
      onchange: (e) => { if (e.target.checked) selected.add(j.id); else selected.delete(j.id); e.target.closest("tr").classList.toggle("selected", e.target.checked); renderBulk(); },
    }) : null;
    const args = JSON.stringify(j.args);
    return h("tr", { class: selected.has(j.id) ? "selected" : "", dataset: { job: j.id } },
      operate ? h("td", {}, box) : null,
      h("td", {}, link(`/jobs/${j.id}`, null, `#${j.id}`)),
      h("td", {}, state(j.state)),
      h("td", { class: "mono" }, `${j.module}.${j.function}`),
      h("td", { class: "mono hide-sm", title: args }, args.length > 60 ? `${args.slice(0, 60)}…` : args),
      h("td", {}, j.queue),
      h("td", { class: "num" }, `${j.attempt}/${j.max_attempts}`),
      h("td", {}, when(j.inserted_at)),
      h("td", { class: "hide-sm" }, j.state === "scheduled" || j.state === "retryable" ? when(j.scheduled_at) : when(j.finalized_at)));
  }

  async function refresh() {
    if (el.contains(document.activeElement) && form.contains(document.activeElement)) return;
    let page;
    if (filter.id) {
      try {
        const job = await api(`/v1/jobs/${encodeURIComponent(filter.id)}`);
        page = { jobs: [job], next_before: null };
      } catch (e) {
        if (e.status !== 404 && e.status !== 400) throw e;
        page = { jobs: [], next_before: null };
      }
    } else {
      page = await api(`/v1/jobs${query({ ...apiFilter(), before, limit: PAGE })}`);
    }
    shown = page.jobs;
    const all = operate ? h("input", {
      type: "checkbox", "aria-label": "Select every job on this page", dataset: { key: "sel-all" },
      checked: shown.length > 0 && shown.every((j) => selected.has(j.id)),
      onchange: (e) => { for (const j of shown) { if (e.target.checked) selected.add(j.id); else selected.delete(j.id); } refresh(); renderBulk(); },
    }) : null;
    swap(table, shown.length === 0 ? h("p", { class: "muted" }, page.next_before ? "No job matches on this page; older jobs may." : "No job matches.") :
      h("table", {},
        h("thead", {}, h("tr", {}, operate ? h("th", {}, all) : null,
          ["Id", "State", "Call", "Args", "Queue", "Attempts", "Enqueued", "Next / ended"].map((t, i) => h("th", { class: i === 3 || i === 7 ? "hide-sm" : "" }, t)))),
        h("tbody", {}, shown.map(row))));
    const params = Object.fromEntries(FILTERS.map((k) => [k, filter[k]]));
    // A filter on module, function or args reads a window of ids per page, never the table.
    const windowNote = page.searched_to
      ? h("span", { class: "muted" }, `Looked through jobs down to #${page.searched_to}.`) : null;
    swap(pager, windowNote,
      before ? h("a", { href: href("/jobs", params) }, "« Newest") : null,
      page.next_before ? h("a", { href: href("/jobs", { ...params, before: page.next_before }) }, "Older »") : null);
    if (operate) renderBulk();
  }
  await refresh();
  return { refresh };
}
