// The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real
// `sluice run` node on an embedded SQLite store, with the real hello guest.
//
// Checks what issue 14 asks: a job enqueued through the API appears on the jobs page without a
// reload; retry on a discarded job makes it available and then completed; pausing a queue from
// the page stops claims on the running node (and resuming restarts them); a read-only session
// shows no action controls and its actions are refused; forged POSTs (no CSRF header, another
// site) are refused; every page loads without console errors. Also the incident's flow by
// keyboard (filter to a function's dead letters, retry them all through the confirmation),
// sign-out, and the jobs page on a phone's screen. Saves a screenshot of every page under
// target/dashboard/.
//
// Usage: node tests/browser/dashboard.mjs   (after `cargo build` and the hello guest's build;
// .ci/browser does all of it). SLUICE_BIN and CHROMIUM override the binaries' paths.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../..");
const sluiceBin = process.env.SLUICE_BIN || join(root, "target/debug/sluice");
const hello = join(root, "jobs-wasm/target/wasm32-wasip2/release/hello.wasm");
const hostile = join(root, "jobs-wasm/target/wasm32-wasip2/release/hostile.wasm");
const shots = join(root, "target/dashboard");
const work = mkdtempSync(join(tmpdir(), "sluice-browser-"));
const databaseUrl = `sqlite://${join(work, "dashboard.db")}`;
// How long any awaited event may take before the test fails (the pages refresh every 2 s).
const PATIENCE = 20_000;

const children = [];

/// The environment of every sluice command: this test's store, and no SLUICE_URL or
/// SLUICE_TOKEN from the caller's shell (those would send the commands to another node).
function environment(extra = {}) {
  const env = { ...process.env, SLUICE_DATABASE_URL: databaseUrl, NO_COLOR: "1", ...extra };
  delete env.SLUICE_URL;
  delete env.SLUICE_TOKEN;
  return env;
}
let browser;
const problems = [];

function sluice(args, env = {}) {
  return execFileSync(sluiceBin, args, {
    env: environment(env),
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

/// Starts `sluice run` with the API on a free port; resolves with its address once it listens.
function startNode(args) {
  const child = spawn(sluiceBin, ["run", "--listen", "127.0.0.1:0", "--cache-dir", join(work, "cache"), ...args], {
    env: environment(),
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  let log = "";
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the node did not start:\n${log}`)), PATIENCE);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const found = log.match(/API listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (found) { clearTimeout(timer); ok(found[1]); }
    });
    child.on("exit", (code) => fail(new Error(`the node exited (${code}):\n${log}`)));
  });
}

/// Polls `probe` until it returns a truthy value (the event awaited), or fails after PATIENCE.
async function eventually(what, probe) {
  const deadline = Date.now() + PATIENCE;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`waited ${PATIENCE} ms for ${what}; last saw ${JSON.stringify(last)}`);
}

async function main() {
  mkdirSync(shots, { recursive: true });

  // The store: the hello module, an admin and a read-only token, and dead letters of three
  // kinds made by a first node whose fuel budget is too small (the incident to fix).
  sluice(["upload", hello]);
  const admin = sluice(["token", "create", "--role", "admin", "--name", "browser-admin"]);
  const reader = sluice(["token", "create", "--role", "read", "--name", "browser-reader"]);
  const starved = sluice(["enqueue", "hello", "heavy", '{"ms": 400}', "--max-attempts", "1"]);
  sluice(["enqueue", "hello", "fail", "--max-attempts", "1"]);
  sluice(["enqueue", "hello", "greet", '{"nom": "no name"}']);
  for (const name of ["Ada", "Grace", "Linus"]) sluice(["enqueue", "hello", "greet", JSON.stringify({ name })]);
  sluice(["run", "--exit-when-idle", "--listen", "none", "--cache-dir", join(work, "cache")], { SLUICE_JOBS__FUEL: "2000000" });
  assert.equal(JSON.parse(sluice(["job", starved, "--json"])).state, "discarded");

  // The node under test, with enough fuel, serving two queues and the dashboard.
  const base = await startNode(["--queue", "default=2", "--queue", "mail=1", "--base-path", "/sluice"]);
  // The pages as a reverse proxy that keeps the prefix would show them (the session cookie's
  // path is the base path); the API calls below go to the root, which answers too.
  const dash = `${base}/sluice`;
  const api = async (path, init = {}) => {
    const response = await fetch(base + path, {
      ...init,
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json", ...(init.headers || {}) },
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${init.method || "GET"} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const jobState = async (id) => (await api(`/v1/jobs/${id}`)).state;

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });

  // Every console error and uncaught exception of a page fails the test, with the page's name.
  async function open(context, name) {
    const page = await context.newPage();
    page.on("console", (m) => { if (m.type() === "error") problems.push(`${name}: console: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`${name}: uncaught: ${e.message}`));
    return page;
  }
  async function signIn(page, token) {
    await page.goto(`${dash}/`);
    await page.waitForURL(/#\/signin$/);
    await page.fill("#token", token);
    await page.click("button[type=submit]");
    await page.waitForURL(/#\/$/);
    await page.waitForSelector(".top .who:not(:empty)");
  }
  async function shoot(page, name) {
    await page.waitForLoadState("networkidle");
    // Toasts of earlier steps would cover the page.
    await page.evaluate(() => document.getElementById("toasts")?.replaceChildren());
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  }

  // ---- an operator (admin) ------------------------------------------------------------------
  const operator = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await open(operator, "admin");
  {
    const signin = await open(operator, "signin");
    await signin.goto(`${dash}/#/signin`);
    await signin.waitForSelector("#token");
    await shoot(signin, "signin");
    await signin.close();
  }
  await signIn(page, admin);
  assert.match(await page.textContent("#who"), /browser-admin · admin/);
  // The session is a cookie the page's scripts cannot read.
  const cookies = await operator.cookies();
  const session = cookies.find((c) => c.name === "sluice_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));
  await page.waitForSelector("canvas");
  await shoot(page, "overview");

  // A job enqueued through the API appears on the jobs page without a reload.
  await page.goto(`${dash}/#/jobs?queue=mail`);
  await page.waitForSelector("table, p.muted");
  await page.evaluate(() => { window.notReloaded = true; });
  const fresh = await api("/v1/jobs", { method: "POST", body: JSON.stringify({ module: "hello", function: "greet", args: { name: "Live" }, queue: "mail" }) });
  await page.waitForSelector(`tr[data-job="${fresh.id}"]`, { timeout: PATIENCE });
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page reloaded");
  await eventually(`job ${fresh.id} completed`, async () => (await jobState(fresh.id)) === "completed");

  // Pausing a queue from the page stops claims on the running node; resuming restarts them.
  await page.goto(`${dash}/#/queues`);
  await page.click('[data-key="pause-mail"]');
  await page.waitForSelector('tr[data-queue="mail"] .chip.warn');
  assert.equal((await api("/v1/queues")).find((q) => q.name === "mail").paused, true);
  const held = await api("/v1/jobs", { method: "POST", body: JSON.stringify({ module: "hello", function: "greet", args: { name: "Held" }, queue: "mail" }) });
  const passing = await api("/v1/jobs", { method: "POST", body: JSON.stringify({ module: "hello", function: "greet", args: { name: "Passing" } }) });
  // The node claims from its other queue after the held job was enqueued: it is claiming, and
  // passes the paused queue by.
  await eventually(`job ${passing.id} completed`, async () => (await jobState(passing.id)) === "completed");
  assert.equal(await jobState(held.id), "available");
  await shoot(page, "queues");
  await page.click('[data-key="resume-mail"]');
  await eventually(`job ${held.id} completed after resume`, async () => (await jobState(held.id)) === "completed");

  // Clicking retry on a discarded job makes it available and then completed (the node under
  // test has the fuel the first one lacked).
  await page.goto(`${dash}/#/jobs/${starved}`);
  await page.waitForSelector("ol.timeline");
  assert.match(await page.textContent("h1"), /discarded/);
  assert.match(await page.textContent("ol.timeline"), /out_of_fuel/);
  assert.match(await page.textContent("ol.timeline"), /When it was discarded/);
  await shoot(page, "job-discarded");
  // Its queue is paused for a moment so `available` stays on the page long enough to be seen.
  await api("/v1/queues/default/pause", { method: "POST" });
  await page.click('[data-key="retry"]');
  await page.waitForFunction(() => document.querySelector("h1")?.textContent.includes("available"), null, { timeout: PATIENCE });
  await api("/v1/queues/default/resume", { method: "POST" });
  await page.waitForFunction(() => document.querySelector("h1")?.textContent.includes("completed"), null, { timeout: PATIENCE });
  const retried = await api(`/v1/jobs/${starved}`);
  assert.equal(retried.attempts.length, 2, JSON.stringify(retried.attempts));
  assert.equal(retried.attempts[1].outcome, "completed");
  const audit = await api(`/v1/audit?limit=50`);
  assert.ok(audit.some((e) => e.action === "job.retry" && e.target.startsWith(starved) && e.actor === "browser-admin"), JSON.stringify(audit.slice(0, 5)));
  await shoot(page, "job");

  // The other pages load, with their data.
  await page.goto(`${dash}/#/jobs`);
  await page.waitForSelector(`tr[data-job="${fresh.id}"]`);
  await shoot(page, "jobs");
  await page.goto(`${dash}/#/dead-letters`);
  await page.waitForSelector('tr[data-group="hello.fail.guest_error"]');
  await page.waitForSelector('tr[data-group="hello.greet.bad_args"]');
  await page.click('[data-key="why-hello.fail.guest_error"]');
  await page.waitForSelector('section[aria-label="Forensics of hello.fail"] table');
  assert.match(await page.textContent('section[aria-label="Forensics of hello.fail"]'), /this job always fails/);
  await shoot(page, "dead-letters");
  // The incident, with the keyboard: filter the jobs to the failing function's dead letters
  // (typed, submitted with Enter, kept in the URL), then retry them all after a confirmation
  // that Escape dismisses.
  const failing = await api("/v1/jobs?state=discarded&function=fail");
  assert.equal(failing.jobs.length, 1);
  const failed = failing.jobs[0].id;
  await page.goto(`${dash}/#/jobs`);
  await page.waitForSelector("form.filters");
  await page.focus("form.filters select");
  await page.selectOption("form.filters select", "discarded");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  await page.keyboard.type("fail");
  await page.keyboard.press("Enter");
  await page.waitForURL(/state=discarded&.*function=fail/);
  // The filtered table replaces the unfiltered one (which listed this job too): wait for
  // exactly the one row the filter matches.
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll("tbody tr");
    return rows.length === 1 && rows[0].dataset.job === String(id);
  }, failed, { timeout: PATIENCE });
  await page.click('[data-key="all-retry"]');
  await page.waitForSelector("#confirm[open]");
  assert.match(await page.textContent("#confirm-text"), /function=fail/);
  await page.keyboard.press("Escape");
  await page.waitForSelector("#confirm[open]", { state: "detached" });
  assert.equal((await api(`/v1/jobs/${failed}`)).attempts.length, 1, "a dismissed confirmation retried");
  await page.click('[data-key="all-retry"]');
  await page.click("#confirm-ok");
  await eventually(`job ${failed} retried and discarded again`, async () => {
    const job = await api(`/v1/jobs/${failed}`);
    return job.state === "discarded" && job.attempts.length === 2;
  });
  // And from the navigation, by keyboard alone.
  await page.focus('.top nav a[data-page="overview"]');
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await page.waitForURL(/#\/queues$/);

  await page.goto(`${dash}/#/modules`);
  await page.waitForSelector('section[data-module="hello"]');
  // Upload from the page: a second module appears.
  await page.setInputFiles('input[type=file]', hostile);
  await page.click('form.card button[type=submit]');
  await page.waitForSelector('section[data-module="hostile"]', { timeout: PATIENCE });
  await shoot(page, "modules");
  await page.goto(`${dash}/#/nodes`);
  await page.waitForSelector("tr[data-node]");
  await shoot(page, "nodes");

  // A phone's screen: the jobs page still reads.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await open(phone, "phone");
  await signIn(small, admin);
  await small.goto(`${dash}/#/jobs`);
  await small.waitForSelector("tr[data-job]");
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the phone's page scrolls sideways by ${overflow} px`);
  await shoot(small, "jobs-phone");
  // Signing out ends the session: back to sign-in, and the cookie no longer works.
  await small.click("#signout");
  await small.waitForURL(/#\/signin$/);
  const after = await small.evaluate(async () => (await fetch("v1/session")).status);
  assert.equal(after, 204);

  // ---- a read-only session ------------------------------------------------------------------
  const readOnly = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const viewer = await open(readOnly, "read");
  await signIn(viewer, reader);
  for (const [hash, ready] of [["#/queues", 'tr[data-queue="mail"]'], [`#/jobs/${starved}`, "ol.timeline"],
    ["#/jobs", "tr[data-job]"], ["#/dead-letters", "tr[data-group]"], ["#/modules", "section[data-module]"]]) {
    await viewer.goto(`${dash}/${hash}`);
    await viewer.waitForSelector(ready);
    // Every control but the jobs page's filter form (searching is reading).
    const controls = await viewer.$$eval("main button, main input[type=checkbox], main input[type=file]",
      (els) => els.filter((e) => !e.closest("form[role=search]")).map((e) => e.outerHTML));
    assert.deepEqual(controls, [], `read-only ${hash} shows action controls`);
  }
  await shoot(viewer, "modules-read-only");
  // The server refuses what the page hides: with the CSRF header (the role is refused) and
  // without it (a forged request is refused before the role is looked at).
  // (From a page whose console is not watched: a refused request logs an error by design.)
  const prober = await readOnly.newPage();
  await prober.goto(`${dash}/#/queues`);
  const refusals = await prober.evaluate(async () => {
    const session = await (await fetch("v1/session")).json();
    const withCsrf = await fetch("v1/queues/default/pause", { method: "POST", headers: { "x-sluice-csrf": session.csrf } });
    const without = await fetch("v1/queues/default/pause", { method: "POST" });
    return [withCsrf.status, (await withCsrf.json()).code, without.status, (await without.json()).code];
  });
  assert.deepEqual(refusals, [403, "forbidden", 403, "csrf"]);

  // A forged POST from another site, under the admin's session: a page on another origin
  // auto-submits a form to the node. The node refuses it and nothing is paused.
  const evil = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<form method="post" action="${dash}/v1/queues/default/pause"></form><script>document.forms[0].submit()</script>`);
  });
  await new Promise((ok) => evil.listen(0, "localhost", ok));
  const forged = await operator.newPage();
  const answer = forged.waitForResponse((r) => r.url().includes("/v1/queues/default/pause"));
  await forged.goto(`http://localhost:${evil.address().port}/`);
  const response = await answer;
  assert.equal(response.status(), 403);
  assert.equal((await response.json()).code, "cross_origin");
  evil.close();
  assert.equal((await api("/v1/queues")).find((q) => q.name === "default").paused, false);

  assert.deepEqual(problems, [], "console errors");
  console.log(`dashboard: every check passed; screenshots in ${shots}`);
}

try {
  await main();
} catch (error) {
  // What the pages said before the failure explains most of them.
  if (problems.length) console.error(`browser problems so far:\n${problems.join("\n")}`);
  throw error;
} finally {
  await browser?.close();
  for (const child of children) child.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
}
