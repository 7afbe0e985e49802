// One job: its call, args, output, state and schedule, and its attempts as a timeline (class,
// message, trap code, backtrace, logs, fuel, memory, wall time, module version, node, and
// the forensics of a discarding attempt); retry, cancel, delete, and retry with edited args.

import { api } from "../api.js";
import { h, swap, state, when, bytes, millis, count, pretty, toast, confirmAction, link } from "../dom.js";

export const title = "Job";

export async function mount(el, ctx) {
  const id = ctx.match[1];
  const head = h("div", {});
  const facts = h("div", { class: "grid" });
  const actions = h("div", { class: "row" });
  const editor = h("div", {});
  const attempts = h("div", {});
  el.append(head, actions, editor, facts, h("h2", {}, "Attempts"), attempts);
  let job = null;
  let editing = false;

  async function act(path, init, done) {
    try {
      await api(path, init);
      toast(done);
      return true;
    } catch (e) {
      toast(e.message, true);
      return false;
    }
  }

  function renderActions() {
    if (!ctx.can("operate")) return swap(actions);
    const finished = ["completed", "discarded", "cancelled"].includes(job.state);
    const retryable = finished || ["scheduled", "retryable"].includes(job.state);
    swap(actions,
      h("button", { type: "button", class: "primary", disabled: !retryable, dataset: { key: "retry" },
        onclick: async () => { if (await act(`/v1/jobs/${id}/retry`, { method: "POST" }, `Job ${id} retried`)) refresh(); } }, "Retry"),
      h("button", { type: "button", disabled: !retryable, dataset: { key: "edit" },
        onclick: () => { editing = true; renderEditor(); } }, "Retry with edited args…"),
      h("button", { type: "button", disabled: finished, dataset: { key: "cancel" },
        onclick: async () => { if (await confirmAction(`Cancel job ${id}?`, "Cancel job") && await act(`/v1/jobs/${id}/cancel`, { method: "POST" }, `Job ${id} cancelled`)) refresh(); } }, "Cancel"),
      h("button", { type: "button", class: "danger", disabled: job.state === "running", dataset: { key: "delete" },
        onclick: async () => { if (await confirmAction(`Delete job ${id} and its history?`, "Delete") && await act(`/v1/jobs/${id}`, { method: "DELETE" }, `Job ${id} deleted`)) ctx.navigate("#/jobs"); } }, "Delete"));
  }

  function renderEditor() {
    if (!editing) return swap(editor);
    const area = h("textarea", { "aria-label": "New args (JSON)", spellcheck: "false", class: "mono" }, JSON.stringify(job.args, null, 2));
    const error = h("p", { class: "error-box", role: "alert" });
    swap(editor, h("form", { class: "card", onsubmit: async (e) => {
      e.preventDefault();
      let args;
      try { args = JSON.parse(area.value); } catch (err) { error.textContent = `Not JSON: ${err.message}`; return; }
      if (await act(`/v1/jobs/${id}/retry`, { method: "POST", body: { args } }, `Job ${id} retried with new args`)) {
        editing = false;
        renderEditor();
        refresh();
      }
    } },
    h("h2", {}, "Retry with edited args"),
    job.codec === "postcard" ? h("p", { class: "muted" }, "This job's args are postcard bytes; edited args are sent as JSON.") : null,
    area, error,
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Retry with these args"),
      h("button", { type: "button", onclick: () => { editing = false; renderEditor(); } }, "Discard edits"))));
    area.focus();
  }

  function attempt(a) {
    const failed = a.outcome !== "completed";
    return h("li", { class: failed ? "bad" : "s-completed", dataset: { attempt: a.attempt } },
      h("div", { class: "row" }, h("strong", {}, `Attempt ${a.attempt}`), h("span", { class: `chip ${failed ? "bad" : "s-completed"}` }, a.outcome),
        h("span", { class: "muted" }, "on ", h("span", { class: "mono" }, a.node), " · ", when(a.finished_at))),
      a.explanation ? h("p", { class: "muted" }, a.explanation) : null,
      a.message ? h("pre", { class: "message" }, a.message) : null,
      h("dl", { class: "facts" },
        a.trap_code ? [h("dt", {}, "Trap code"), h("dd", { class: "mono" }, a.trap_code)] : null,
        h("dt", {}, "Wall time"), h("dd", {}, millis(a.duration_ms)),
        h("dt", {}, "Fuel"), h("dd", {}, count(a.fuel_consumed)),
        h("dt", {}, "Peak memory"), h("dd", {}, bytes(a.peak_memory_bytes)),
        h("dt", {}, "Module version"), h("dd", {}, a.module_version ?? "—"),
        h("dt", {}, "Started"), h("dd", {}, new Date(a.started_at).toLocaleString())),
      a.context ? h("div", { class: "card" }, h("strong", {}, "When it was discarded"),
        h("dl", { class: "facts" },
          h("dt", {}, "Node version"), h("dd", {}, a.context.node_version),
          h("dt", {}, "Jobs held by the node"), h("dd", {}, a.context.node_in_flight),
          h("dt", {}, "Queue running / concurrency"), h("dd", {}, `${a.context.queue_running} / ${a.context.queue_concurrency}`))) : null,
      a.logs.length ? h("details", {}, h("summary", {}, `Logs (${a.logs.length} lines)`),
        h("pre", {}, a.logs.map((l) => `[${l.stream}] ${l.text}`).join("\n"))) : null);
  }

  async function refresh() {
    job = await api(`/v1/jobs/${id}`);
    document.title = `Job ${id} · Sluice`;
    swap(head, h("h1", {}, `Job #${job.id} `, state(job.state)),
      h("p", { class: "mono" }, `${job.module}${job.module_version ? `@${job.module_version}` : ""}.${job.function}`,
        h("span", { class: "muted" }, ` on queue ${job.queue}`)));
    swap(facts,
      h("section", { class: "card" }, h("h2", {}, "Call"),
        h("dl", { class: "facts" },
          h("dt", {}, "Module"), h("dd", {}, link("/jobs", { module: job.module }, job.module), job.module_version ? ` (pinned v${job.module_version})` : " (latest at each attempt)"),
          h("dt", {}, "Function"), h("dd", {}, link("/jobs", { module: job.module, function: job.function }, job.function)),
          h("dt", {}, "Queue"), h("dd", {}, link("/jobs", { queue: job.queue }, job.queue)),
          h("dt", {}, "Priority"), h("dd", {}, job.priority),
          h("dt", {}, "Attempts"), h("dd", {}, `${job.attempt} of ${job.max_attempts}`),
          h("dt", {}, "Codec"), h("dd", {}, job.codec)),
        h("h2", {}, "Args"), pretty(job.args)),
      h("section", { class: "card" }, h("h2", {}, "Schedule"),
        h("dl", { class: "facts" },
          h("dt", {}, "Enqueued"), h("dd", {}, when(job.inserted_at)),
          h("dt", {}, "Scheduled"), h("dd", {}, when(job.scheduled_at)),
          h("dt", {}, "Last attempt"), h("dd", {}, when(job.attempted_at)),
          h("dt", {}, "Finished"), h("dd", {}, when(job.finalized_at)),
          job.lease_node ? [h("dt", {}, "Leased to"), h("dd", { class: "mono" }, job.lease_node, " until ", when(job.lease_expires_at))] : null),
        h("h2", {}, "Output"), pretty(job.output)));
    swap(attempts, job.attempts.length === 0 ? h("p", { class: "muted" }, "No attempt has finished yet.") :
      h("ol", { class: "timeline", reversed: true }, [...job.attempts].reverse().map(attempt)));
    if (!editing) renderActions();
  }
  await refresh();
  return { refresh };
}
