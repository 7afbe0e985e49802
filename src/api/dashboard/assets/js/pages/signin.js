// Sign-in: a token (from `sluice token create`) is exchanged once for an HttpOnly session
// cookie; the page never keeps the token.

import { api } from "../api.js";
import { h } from "../dom.js";

export const title = "Sign in";

export async function mount(el, ctx) {
  const input = h("input", { type: "password", autocomplete: "current-password", required: true, id: "token", placeholder: "sluice_…" });
  const error = h("p", { class: "error-box", role: "alert" });
  el.append(h("form", { class: "card signin", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      await api("/v1/session", { method: "POST", body: { token: input.value.trim() } });
      input.value = "";
      await ctx.signedIn();
    } catch (err) {
      error.textContent = err.message;
    }
  } },
  h("h1", {}, "Sign in to Sluice"),
  h("p", { class: "muted" }, "Paste an API token. An admin makes one with ", h("code", {}, "sluice token create --role read --name NAME"), "."),
  h("label", { for: "token" }, "Token"), input, error,
  h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Sign in"))));
  input.focus();
  return {};
}
