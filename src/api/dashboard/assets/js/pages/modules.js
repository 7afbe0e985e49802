// Modules: names, versions, digests, functions and their descriptions, and which version
// jobs run; upload a new version from the page (admin role).

import { api } from "../api.js";
import { h, swap, when, bytes, link, toast } from "../dom.js";

export const title = "Modules";

export async function mount(el, ctx) {
  const list = h("div", {});
  const upload = ctx.can("admin") ? uploadForm() : null;
  el.append(h("h1", {}, "Modules"), upload, list);
  const open = new Set();

  function uploadForm() {
    const name = h("input", { required: true, placeholder: "my_jobs", "aria-label": "Module name", pattern: "[A-Za-z0-9_.\\-]+" });
    const file = h("input", { type: "file", accept: ".wasm,application/wasm", required: true, "aria-label": "Component file (.wasm)" });
    const status = h("span", { class: "muted", role: "status" });
    file.addEventListener("change", () => {
      if (!name.value && file.files[0]) name.value = file.files[0].name.replace(/\.wasm$/, "").replace(/[^A-Za-z0-9_.-]/g, "_");
    });
    return h("form", { class: "card row", onsubmit: async (e) => {
      e.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      status.textContent = "Validating and compiling…";
      try {
        const result = await api(`/v1/modules/${encodeURIComponent(name.value)}`, { method: "POST", raw: await chosen.arrayBuffer(), contentType: "application/wasm" });
        status.textContent = "";
        toast(result.already_present ? `${result.name}: these bytes are v${result.version} already` : `${result.name}: uploaded v${result.version}`);
        open.add(result.name);
        await refresh();
      } catch (err) {
        status.textContent = "";
        toast(err.message, true);
      }
    } }, h("strong", {}, "Upload a module"), name, file, h("button", { type: "submit", class: "primary" }, "Upload"), status);
  }

  async function versions(name) {
    const detail = await api(`/v1/modules/${encodeURIComponent(name)}`);
    return h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Version", "Digest (SHA-256)", "Size", "Uploaded", "Functions"].map((t) => h("th", {}, t)))),
      h("tbody", {}, detail.versions.map((v) => h("tr", {},
        h("td", {}, `v${v.version}`),
        h("td", { class: "mono", title: v.digest }, `${v.digest.slice(0, 16)}…`),
        h("td", {}, bytes(v.size_bytes)),
        h("td", {}, when(v.uploaded_at)),
        h("td", {}, v.functions.map((f) => f.name).join(", ")))))));
  }

  async function refresh() {
    if (el.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
    const modules = await api("/v1/modules");
    const cards = [];
    for (const m of modules) {
      const details = h("details", { open: open.has(m.name), ontoggle: (e) => { if (e.target.open) open.add(m.name); else open.delete(m.name); } },
        h("summary", { dataset: { key: `versions-${m.name}` } }, "Every version"));
      if (open.has(m.name)) details.append(await versions(m.name));
      else details.addEventListener("toggle", async () => { if (details.open && details.childElementCount === 1) details.append(await versions(m.name)); }, { once: true });
      cards.push(h("section", { class: "card", dataset: { module: m.name } },
        h("h2", {}, m.name, " ", h("span", { class: "chip" }, `v${m.version}`)),
        h("p", { class: "muted" }, `Jobs that pin no version run v${m.version}, the latest, at each attempt. Uploaded `, when(m.uploaded_at),
          `; ${bytes(m.size_bytes)}; digest `, h("span", { class: "mono", title: m.digest }, m.digest.slice(0, 16)), "…"),
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Function"), h("th", {}, "Description"), h("th", {}, ""))),
          h("tbody", {}, m.functions.map((f) => h("tr", {},
            h("td", { class: "mono" }, f.name),
            h("td", {}, f.description || h("span", { class: "muted" }, "—")),
            h("td", {}, link("/jobs", { module: m.name, function: f.name }, "jobs")))))),
        details));
    }
    swap(list, cards.length ? cards : h("p", { class: "muted" }, "No module uploaded yet."));
  }
  await refresh();
  return { refresh };
}
