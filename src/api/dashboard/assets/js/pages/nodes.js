// Nodes: each node's queues, in-flight attempts, last heartbeat, leader and health; dead
// nodes stay listed (for an hour) so an incident can be read back.

import { api } from "../api.js";
import { h, swap, when } from "../dom.js";

export const title = "Nodes";

export async function mount(el) {
  const body = h("div", { class: "scroll" });
  el.append(h("h1", {}, "Nodes"), body);
  async function refresh() {
    const nodes = await api("/v1/nodes");
    swap(body, nodes.length === 0 ? h("p", { class: "muted" }, "No node has registered: start one with `sluice run`.") :
      h("table", {},
        h("thead", {}, h("tr", {}, ["Node", "Health", "Leader", "In flight", "Queues", "Last heartbeat", "Started", "Host", "Version"]
          .map((t) => h("th", {}, t)))),
        h("tbody", {}, nodes.map((n) => h("tr", { dataset: { node: n.id } },
          h("td", { class: "mono" }, n.id),
          h("td", {}, h("span", { class: `chip h-${n.health}` }, n.health)),
          h("td", {}, n.leader ? h("span", { class: "chip" }, "leader") : ""),
          h("td", { class: "num" }, n.running),
          h("td", {}, n.queues.join(", ")),
          h("td", {}, when(n.heartbeat_at)),
          h("td", {}, when(n.started_at)),
          h("td", { class: "mono" }, `${n.host} (pid ${n.pid})`),
          h("td", {}, n.version))))));
  }
  await refresh();
  return { refresh };
}
