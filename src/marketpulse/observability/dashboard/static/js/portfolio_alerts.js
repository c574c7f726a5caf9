// Portfolio alerts of the open session (docs/alerts.md, "Portfolio alerts"): list them with their
// state, create one from the form, delete one, and show each fire the session's socket brings
// ({"type": "portfolio_alert"}). The Portfolio part tells this one, by document events, which
// session is open ("mp:session"), each fire ("mp:portfolio-alert") and each revaluation
// ("mp:valued"); every request carries the session's token.

import { api } from "./http.js";
import { $, el, showMessage, num, clock, normalSymbol } from "./dom.js";

const REFRESH_MS = 2000; // at most one listing per this while revaluations stream in

// "AAPL:60, IBM:40" -> {AAPL: 60, IBM: 40}; throws a readable Error.
export function parseTargets(text) {
  const targets = {};
  const parts = String(text || "").split(/[,;\n]+/).map((p) => p.trim()).filter(Boolean);
  if (!parts.length) throw new Error("A drift alert needs target weights, like AAPL:60, IBM:40.");
  for (const part of parts) {
    const match = part.match(/^([^\s:=]+)\s*[:=\s]\s*(\S+)$/);
    const weight = match ? Number(match[2]) : NaN;
    if (!match || !Number.isFinite(weight)) {
      throw new Error(`"${part}" is not a target: write SYMBOL:PERCENT, like AAPL:60.`);
    }
    targets[normalSymbol(match[1])] = weight;
  }
  return targets;
}

function describe(a) {
  const margin = a.rearm_margin ? `, re-arms ${a.rearm_margin} back` : "";
  switch (a.kind) {
    case "drift": {
      const t = Object.entries(a.targets || {}).map(([k, v]) => `${k} ${v}%`).join(", ");
      return `drift outside ±${a.band} points of ${t}${margin}`;
    }
    case "metric":
      return a.action
        ? `${a.metric} of ${a.ticker} turns ${a.action}`
        : `${a.metric} of ${a.ticker} ${a.comparison} ${a.threshold}${margin}`;
    case "drawdown_from_peak": return `drawdown from peak ≥ ${a.threshold}%${margin}`;
    case "day_change_pct": return `day change ${a.comparison} ${a.threshold}%${margin}`;
    default: return `total value ${a.comparison} ${num(a.threshold)}${margin}`;
  }
}

export class PortfolioAlertsPanel {
  constructor() {
    this.session = null; // {session_id, token}
    this.lastRefresh = 0;
    this.pending = null;
  }

  init() {
    $("palert-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    $("palert-kind").addEventListener("change", () => this.showFields());
    document.addEventListener("mp:session", (e) => this.use(e.detail));
    document.addEventListener("mp:portfolio-alert", (e) => this.fired(e.detail));
    document.addEventListener("mp:valued", () => this.soon());
    this.showFields();
  }

  path(suffix = "") {
    return `/api/sessions/${encodeURIComponent(this.session.session_id)}/alerts${suffix}`;
  }

  use(session) {
    this.session = session && session.session_id ? session : null;
    $("portfolio-alerts").hidden = !this.session;
    $("palert-list").replaceChildren();
    $("palert-feed").replaceChildren();
    if (this.session) this.refresh();
  }

  showFields() {
    const kind = $("palert-kind").value;
    for (const node of document.querySelectorAll("[data-for]")) {
      node.hidden = !node.dataset.for.split(" ").includes(kind);
    }
  }

  body() {
    const f = $("palert-form");
    const kind = f.kind.value;
    const body = { kind };
    const number = (name, text, required) => {
      const raw = String(f[name].value || "").trim();
      if (!raw) {
        if (required) throw new Error(`Enter ${text}.`);
        return undefined;
      }
      const v = Number(raw);
      if (!Number.isFinite(v)) throw new Error(`${text} must be a number, not "${raw}".`);
      return v;
    };
    const margin = number("rearm_margin", "the re-arm margin", false);
    if (margin !== undefined) body.rearm_margin = margin;
    if (kind === "drift") {
      body.targets = parseTargets(f.targets.value);
      body.band = number("band", "the band (points)", true);
      return body;
    }
    if (kind === "metric") {
      body.ticker = normalSymbol(f.ticker.value);
      if (!body.ticker) throw new Error("Enter the holding the metric is of.");
      body.metric = f.metric.value;
      if (f.action.value) {
        body.action = f.action.value;
        return body;
      }
    }
    if (kind !== "drawdown_from_peak") body.comparison = f.comparison.value;
    body.threshold = number("threshold", "a threshold", true);
    return body;
  }

  async create() {
    const msg = $("palert-msg");
    if (!this.session) return showMessage(msg, "Open a session first.");
    let body;
    try {
      body = this.body();
    } catch (err) {
      return showMessage(msg, err.message);
    }
    try {
      const made = await api("POST", this.path(), body, this.session.token);
      showMessage(msg, `Portfolio alert ${made.id} created.`, "ok");
      await this.refresh();
    } catch (err) {
      showMessage(msg, `Not created: ${err.message}`);
    }
  }

  async remove(id) {
    try {
      await api("DELETE", this.path(`/${encodeURIComponent(id)}`), undefined, this.session.token);
      await this.refresh();
    } catch (err) {
      showMessage($("palert-msg"), `Not deleted: ${err.message}`);
    }
  }

  soon() {
    if (!this.session || this.pending) return;
    const wait = Math.max(0, this.lastRefresh + REFRESH_MS - Date.now());
    this.pending = setTimeout(() => {
      this.pending = null;
      this.refresh();
    }, wait);
  }

  async refresh() {
    if (!this.session) return;
    this.lastRefresh = Date.now();
    let data;
    try {
      data = await api("GET", this.path(), undefined, this.session.token);
    } catch (err) {
      return showMessage($("palert-msg"), `Portfolio alerts unavailable: ${err.message}`);
    }
    this.render(data);
  }

  render(data) {
    const track = data.track;
    $("palert-track").textContent = track
      ? `index ${num(track.index, 4)} · peak ${num(track.peak, 4)} · drawdown ${num(track.drawdown_pct)}% · day ${num(track.day_change_pct)}%`
      : "not valued since the first alert";
    $("palert-list").replaceChildren(
      ...(data.alerts || []).map((a) => {
        const st = a.state || {};
        const word = st.armed ? "armed" : "fired";
        return el("li", { class: "row", "data-testid": "palert-row", "data-id": a.id, "data-state": word },
          el("strong", { text: a.id }), " ", describe(a), " ",
          el("span", { class: "state", "data-testid": "palert-state", text: word }),
          el("span", { class: "value", text: st.value === null || st.value === undefined ? "" : ` now ${num(st.value, 4)}` }),
          el("button", { type: "button", class: "small", "data-testid": "palert-delete", onclick: () => this.remove(a.id) }, "delete"));
      }),
    );
    $("palert-empty").hidden = (data.alerts || []).length > 0;
  }

  fired(msg) {
    const drivers = ((msg.portfolio || {}).contributors || []).map((c) => c.ticker).join(", ");
    const line = el("li", { class: "row", "data-testid": "palert-fire", "data-id": msg.alert_id },
      el("span", { class: "time", text: clock(msg.fired_at) }), " ",
      el("strong", { text: msg.alert_id }), ` ${msg.why || ""}`,
      drivers ? el("span", { class: "hint", text: ` (driven by ${drivers})` }) : null);
    $("palert-feed").prepend(line);
    while ($("palert-feed").children.length > 50) $("palert-feed").lastChild.remove();
    this.refresh();
  }
}
