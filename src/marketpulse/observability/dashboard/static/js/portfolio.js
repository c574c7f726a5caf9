// Portfolio: open a session from holdings (token kept in sessionStorage), follow it over
// /ws/sessions/{id} (the token offered as the subprotocol marketpulse.token.<token>, never in
// the URL), analyze a holding by clicking it, and watch the five metrics arrive.

import { api, ApiError } from "./http.js";
import { $, el, showMessage, num, clock, normalSymbol, SYMBOL_RE } from "./dom.js";
import { ReconnectingSocket, wsUrl, showConnection } from "./socket.js";

const STORE_KEY = "marketpulse.session";
const STATE_WORDS = {
  idle: "idle",
  running: "running",
  restarted: "restarted: prices moved",
  complete: "complete",
  cancelled: "cancelled",
  failed: "failed",
};

// "AAPL:100, MSFT 75; TCS.NS=10" -> {AAPL: 100, MSFT: 75, "TCS.NS": 10}; throws a readable Error.
export function parseHoldings(text) {
  const holdings = {};
  const parts = String(text || "").split(/[,;\n]+/).map((p) => p.trim()).filter(Boolean);
  if (!parts.length) throw new Error("Enter at least one holding, like AAPL:100, MSFT:75.");
  for (const part of parts) {
    const match = part.match(/^([^\s:=]+)\s*[:=\s]\s*(\S+)$/);
    if (!match) throw new Error(`"${part}" is not a holding: write SYMBOL:QUANTITY, like AAPL:100.`);
    const symbol = normalSymbol(match[1]);
    const qty = Number(match[2]);
    if (!SYMBOL_RE.test(symbol)) throw new Error(`"${match[1]}" is not a valid symbol.`);
    if (!Number.isFinite(qty) || qty <= 0) {
      throw new Error(`The quantity of ${symbol} must be a positive number, not "${match[2]}".`);
    }
    if (symbol in holdings) throw new Error(`${symbol} is listed twice.`);
    holdings[symbol] = qty;
  }
  return holdings;
}

export class PortfolioPanel {
  constructor(onAlert) {
    this.onAlert = onAlert;
    this.session = null; // {session_id, token}
    this.socket = null;
    this.runId = null;
  }

  init() {
    $("session-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    $("analysis-cancel").addEventListener("click", () => this.send({ action: "cancel" }));
    $("session-forget").addEventListener("click", () => this.close());
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    } catch (err) {
      saved = null;
    }
    if (saved && saved.session_id && saved.token) this.open(saved);
  }

  async create() {
    const form = $("session-form");
    const msg = $("session-msg");
    let holdings;
    try {
      holdings = parseHoldings(form.holdings.value);
    } catch (err) {
      return showMessage(msg, err.message);
    }
    const body = { holdings };
    const id = form.session_id.value.trim();
    if (id) body.session_id = id;
    try {
      const created = await api("POST", "/api/sessions", body);
      showMessage(msg, `Session ${created.session_id} opened.`, "ok");
      this.open({ session_id: created.session_id, token: created.token }, created.state);
    } catch (err) {
      showMessage(msg, `Session not opened: ${err.message}`);
    }
  }

  open(session, state) {
    if (this.socket) this.socket.stop();
    this.session = session;
    sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
    $("session-view").hidden = false;
    $("session-id").textContent = session.session_id;
    document.dispatchEvent(new CustomEvent("mp:session", { detail: session })); // portfolio alerts
    if (state) this.render(state);
    const path = `/ws/sessions/${encodeURIComponent(session.session_id)}`;
    this.socket = new ReconnectingSocket(() => wsUrl(path), {
      protocolsFn: () => ["marketpulse.v1", `marketpulse.token.${session.token}`],
      onMessage: (m) => this.onMessage(m),
      onState: (s, detail) => showConnection($("conn-session"), "session", s, detail),
      shouldRetry: (code) => this.stillExists(code),
    });
    this.socket.start();
  }

  // After a drop: retry unless the session is gone (4404, or the HTTP API says 404).
  async stillExists(code) {
    if (code === 4404) return this.forget("The session expired or was deleted.");
    try {
      await api("GET", `/api/sessions/${encodeURIComponent(this.session.session_id)}`, undefined, this.session.token);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return this.forget("The session no longer exists.");
      return true; // server unreachable: keep trying
    }
  }

  forget(reason) {
    sessionStorage.removeItem(STORE_KEY);
    $("session-view").hidden = true;
    showMessage($("session-msg"), reason);
    this.session = null;
    document.dispatchEvent(new CustomEvent("mp:session", { detail: null }));
    return false;
  }

  async close() {
    if (!this.session) return;
    const { session_id, token } = this.session;
    if (this.socket) this.socket.stop();
    this.socket = null;
    try {
      await api("DELETE", `/api/sessions/${encodeURIComponent(session_id)}`, undefined, token);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) {
        showMessage($("session-msg"), `Could not close the session: ${err.message}`);
      }
    }
    this.forget(`Session ${session_id} closed.`);
    showConnection($("conn-session"), "session", "idle", "none");
  }

  send(obj) {
    if (!this.socket || !this.socket.send(obj)) {
      showMessage($("session-msg"), "Not connected to the session yet; try again in a moment.");
      return false;
    }
    return true;
  }

  analyze(ticker) {
    if (this.send({ action: "analyze", ticker })) showMessage($("session-msg"), "");
  }

  onMessage(msg) {
    switch (msg.type) {
      case "session": return this.render(msg.state || {});
      case "portfolio_update":
        document.dispatchEvent(new CustomEvent("mp:valued"));
        return this.valuation(msg);
      case "portfolio_alert":
        return document.dispatchEvent(new CustomEvent("mp:portfolio-alert", { detail: msg }));
      case "analysis_started": return this.startRun(msg, "running", "");
      case "analysis_restarted":
        return this.startRun(msg, "restarted", `Prices moved (basis ${msg.basis_version}); restarted: ${msg.reason || ""}`);
      case "analysis_result": return this.result(msg);
      case "analysis_complete": return this.finish(msg, "complete", "");
      case "analysis_cancelled": return this.finish(msg, "cancelled", `Cancelled: ${msg.reason || ""}`);
      case "analysis_failed": return this.finish(msg, "failed", `Failed: ${msg.reason || ""}`);
      case "alert": return this.onAlert && this.onAlert(msg);
      case "error": return showMessage($("session-msg"), `${msg.message || msg.code}`);
      default: return undefined;
    }
  }

  render(state) {
    if (state.session_id) $("session-id").textContent = state.session_id;
    this.valuation(state);
    const holdings = state.holdings || {};
    const prices = state.prices || {};
    $("holdings").replaceChildren(
      ...Object.entries(holdings).map(([ticker, qty]) =>
        el("button", {
          type: "button", class: "holding", "data-ticker": ticker, "data-testid": `holding-${ticker}`,
          onclick: () => this.analyze(ticker),
        }, el("strong", { text: ticker }), el("span", { class: "qty", text: ` ${qty} @ ` }),
        el("span", { class: "px", "data-testid": `holding-price-${ticker}`, text: num(prices[ticker]) }),
        el("span", { class: "currency", text: ` ${(state.currencies || {})[ticker] || ""}` }))),
    );
    const run = state.current_analysis;
    if (!run || !run.run_id) return;
    const status = String(run.status || "running").toLowerCase();
    const word = status.startsWith("complete") ? "complete" : status in STATE_WORDS ? status : "running";
    this.startRun(run, word, "");
    for (const r of state.analysis_results || []) if (r.run_id === run.run_id) this.result(r);
  }

  valuation(v) {
    if (v.total_value !== undefined) $("total-value").textContent = num(v.total_value);
    if (v.basis_version !== undefined) $("basis-version").textContent = `v${v.basis_version}`;
    if (v.base_currency !== undefined) $("base-currency").textContent = v.base_currency;
    if (v.flags !== undefined) {
      // fx_unavailable: the last good valuation is shown (never one converted at 1:1)
      const words = { fx_unavailable: "exchange rate unavailable: last good value", fx_stale: "reference exchange rate (not live)" };
      $("valuation-flags").textContent = v.flags.map((f) => words[f] || f).join("; ");
    }
    const at = v.valued_at || v.timestamp;
    if (at) $("valued-at").textContent = clock(at);
    for (const [ticker, price] of Object.entries(v.prices || {})) {
      const px = document.querySelector(`.holding[data-ticker="${CSS.escape(ticker)}"] .px`);
      if (px) px.textContent = num(price);
    }
  }

  setState(state, note) {
    const node = $("analysis-state");
    node.dataset.state = state;
    node.textContent = STATE_WORDS[state] || state;
    $("analysis-note").textContent = note;
  }

  startRun(msg, state, note) {
    this.runId = msg.run_id;
    $("analysis-ticker").textContent = msg.ticker || "";
    for (const row of document.querySelectorAll("tr[data-metric]")) {
      row.dataset.state = "pending";
      row.querySelector(".value").textContent = "…";
    }
    this.setState(state, note);
  }

  result(msg) {
    if (this.runId && msg.run_id !== this.runId) return;
    const row = document.querySelector(`tr[data-metric="${CSS.escape(msg.metric)}"]`);
    if (!row) return;
    row.dataset.state = "done";
    row.querySelector(".value").textContent = num(msg.value, 4);
  }

  finish(msg, state, note) {
    if (this.runId && msg.run_id && msg.run_id !== this.runId) return;
    this.setState(state, note);
  }
}
