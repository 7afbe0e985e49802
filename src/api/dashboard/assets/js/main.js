// The dashboard's shell: who is signed in, which page the URL names (hash routing, so every
// view can be shared as a link), and the live loop that refreshes the page every 2 s
// unless paused (or the tab is hidden).

import { api, setCsrf, whenUnauthorized } from "./api.js";
import { h, swap, toast } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as queues from "./pages/queues.js";
import * as jobs from "./pages/jobs.js";
import * as job from "./pages/job.js";
import * as modules from "./pages/modules.js";
import * as nodes from "./pages/nodes.js";
import * as dead from "./pages/dead.js";
import * as signin from "./pages/signin.js";

const REFRESH_MS = 2000;
const ROLES = ["read", "operate", "admin"];

const routes = [
  [/^\/$/, overview, "overview"],
  [/^\/queues$/, queues, "queues"],
  [/^\/jobs$/, jobs, "jobs"],
  [/^\/jobs\/(\d+)$/, job, "jobs"],
  [/^\/modules$/, modules, "modules"],
  [/^\/nodes$/, nodes, "nodes"],
  [/^\/dead-letters$/, dead, "dead"],
  [/^\/signin$/, signin, null],
];

let session = null;
let current = null;
let live = localStorage.getItem("sluice.live") !== "off";
let refreshing = false;

const main = document.getElementById("main");

function context(match, params) {
  return {
    params,
    match,
    session,
    // Whether the caller's role allows an action needing `role`: the page hides what the
    // server would refuse anyway.
    can: (role) => session !== null && ROLES.indexOf(session.role) >= ROLES.indexOf(role),
    navigate: (to) => { location.hash = to; },
    signedIn: async () => { await loadSession(); location.hash = "#/"; },
  };
}

async function loadSession() {
  // 204 (null) when nobody is signed in.
  session = await api("/v1/session");
  setCsrf(session?.csrf ?? null);
  const who = document.getElementById("who");
  who.textContent = session ? `${session.name} · ${session.role}` : "";
  document.getElementById("signout").hidden = !(session && session.via === "session");
}

async function route() {
  const [path, search] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(search || "");
  let found = routes.find(([pattern]) => pattern.test(path));
  if (!found) found = routes[0];
  const [pattern, page, nav] = found;
  if (!session && page !== signin) {
    location.hash = "#/signin";
    return;
  }
  for (const a of document.querySelectorAll(".top nav a")) {
    if (a.dataset.page === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  current?.destroy?.();
  current = null;
  const region = h("div", {});
  main.replaceChildren(region);
  try {
    current = await page.mount(region, context(path.match(pattern), params));
    document.title = `${page.title} · Sluice`;
  } catch (e) {
    swap(region, h("p", { class: "error-box" }, e.message));
  }
}

async function tick() {
  if (!live || document.hidden || refreshing || !current?.refresh) return;
  refreshing = true;
  try {
    await current.refresh();
    document.body.classList.remove("stale");
  } catch (e) {
    // The next tick tries again; the page keeps what it last showed.
    document.body.classList.add("stale");
  } finally {
    refreshing = false;
  }
}

function showLive() {
  const button = document.getElementById("live");
  button.setAttribute("aria-pressed", String(live));
  button.textContent = live ? "Live" : "Paused";
}

document.getElementById("live").addEventListener("click", () => {
  live = !live;
  localStorage.setItem("sluice.live", live ? "on" : "off");
  showLive();
});

document.getElementById("signout").addEventListener("click", async () => {
  try {
    await api("/v1/session", { method: "DELETE" });
  } catch (e) {
    toast(e.message, true);
  }
  session = null;
  setCsrf(null);
  await loadSession();
  location.hash = "#/signin";
});

whenUnauthorized(() => {
  if (session) {
    session = null;
    location.hash = "#/signin";
  }
});

window.addEventListener("hashchange", route);

(async () => {
  showLive();
  try {
    await loadSession();
  } catch (e) {
    main.replaceChildren(h("p", { class: "error-box" }, e.message));
    return;
  }
  await route();
  setInterval(tick, REFRESH_MS);
})();
