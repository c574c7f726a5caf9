// Alerts: create, list and delete alert conditions; a live feed of fired alerts (from /ws/alerts,
// from the portfolio socket, and health warnings from the System part); the history.

import { api, listOf } from "./http.js";
import { $, el, showMessage, num, clock, normalSymbol, SYMBOL_RE } from "./dom.js";
import { ReconnectingSocket, wsUrl, showConnection } from "./socket.js";

const FEED_MAX = 50;

function describe(alert) {
  const type = (alert.alert_type || alert.type_ || alert.kind || "").replaceAll("_", " ");
  const unit = alert.alert_type === "percentage_change" ? "%" : alert.alert_type === "volume_spike" ? "×" : "";
  return `${alert.symbol} ${type} ${alert.comparison || ""} ${alert.threshold ?? ""}${unit}`.trim();
}

function observed(fired) {
  const value = fired.observed ?? fired.value ?? fired.observed_value;
  return value === undefined ? "" : ` — observed ${num(value)}`;
}

function stamp(item) {
  return clock(item.fired_at || item.timestamp || (item.quote && item.quote.timestamp));
}

export class AlertsPanel {
  constructor() {
    this.seen = new Set();
    this.socket = new ReconnectingSocket(() => wsUrl("/ws/alerts"), {
      onMessage: (msg) => this.onMessage(msg),
      onState: (state, detail) => showConnection($("conn-alerts"), "alerts feed", state, detail),
      onOpen: () => this.loadHistory(),
    });
  }

  init() {
    $("alert-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    $("history-refresh").addEventListener("click", () => this.loadHistory());
    this.loadAlerts();
    this.loadHistory();
    this.socket.start();
  }

  onMessage(msg) {
    if (msg.type === "alert") this.feed(msg);
  }

  readForm() {
    const form = $("alert-form");
    const symbol = normalSymbol(form.symbol.value);
    const thresholdText = form.threshold.value.trim();
    const cooldownText = form.cooldown.value.trim();
    if (!symbol) throw new Error("Enter the symbol the alert watches, for example AAPL.");
    if (!SYMBOL_RE.test(symbol)) throw new Error(`"${symbol}" is not a valid symbol.`);
    if (!thresholdText) throw new Error("Enter a threshold (a number).");
    const threshold = Number(thresholdText);
    if (!Number.isFinite(threshold)) throw new Error(`Threshold "${thresholdText}" is not a number.`);
    const body = {
      symbol,
      alert_type: form.alert_type.value,
      comparison: form.comparison.value,
      threshold,
    };
    if (cooldownText) {
      const cooldown = Number(cooldownText);
      if (!Number.isFinite(cooldown) || cooldown < 0) {
        throw new Error(`Cooldown "${cooldownText}" must be a number of seconds, 0 or more.`);
      }
      body.cooldown_s = cooldown;
    }
    return body;
  }

  async create() {
    const msg = $("alert-msg");
    let body;
    try {
      body = this.readForm();
    } catch (err) {
      return showMessage(msg, err.message);
    }
    try {
      const created = await api("POST", "/api/alerts", body);
      showMessage(msg, `Alert created: ${describe(created || body)}.`, "ok");
      $("alert-form").threshold.value = "";
      await this.loadAlerts();
    } catch (err) {
      showMessage(msg, `Alert not created: ${err.message}`);
    }
  }

  async loadAlerts() {
    try {
      const data = await api("GET", "/api/alerts");
      const list = $("alert-list");
      list.replaceChildren(
        ...listOf(data, "alerts", "items").map((alert) =>
          el("li", { "data-testid": "alert-row", "data-alert-id": alert.id, "data-symbol": alert.symbol },
            el("span", { text: describe(alert) }),
            el("button", {
              type: "button", class: "small", "data-testid": "alert-delete",
              onclick: () => this.remove(alert.id),
            }, "delete"))),
      );
      if (!list.children.length) list.append(el("li", { class: "empty", text: "No alerts." }));
    } catch (err) {
      showMessage($("alert-msg"), `Could not load alerts: ${err.message}`);
    }
  }

  async remove(id) {
    try {
      await api("DELETE", `/api/alerts/${encodeURIComponent(id)}`);
      showMessage($("alert-msg"), "Alert deleted.", "ok");
      await this.loadAlerts();
    } catch (err) {
      showMessage($("alert-msg"), `Could not delete the alert: ${err.message}`);
    }
  }

  // A fired alert or a health warning into the live feed, newest first, once each.
  feed(item) {
    const key = item.id || item.event_id || `${item.alert_id}|${item.fired_at || item.timestamp}|${item.message || ""}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const health = item.type === "health_warning";
    const text = health ? `health: ${item.message}` : `${describe(item)}${observed(item)}`;
    const row = el("li", {
      class: health ? "health" : "fired",
      "data-testid": health ? "feed-health" : "feed-alert",
      "data-symbol": item.symbol || "",
    }, el("time", { text: stamp(item) }), " ", el("span", { text }));
    const list = $("alert-feed");
    list.prepend(row);
    while (list.children.length > FEED_MAX) list.lastChild.remove();
    if (!health) this.loadHistory(item.id);
  }

  // The service records history after delivery (it names the channels that delivered), so an
  // alert seen on the feed may reach the history a moment later: when ``wantId`` is given and not
  // there yet, look again with backoff (0.1 s doubling, six times).
  async loadHistory(wantId = null, attempt = 0) {
    try {
      const data = await api("GET", "/api/alerts/history?limit=20");
      const items = listOf(data, "history", "items", "alerts");
      if (wantId && !items.some((item) => item.id === wantId) && attempt < 6) {
        setTimeout(() => this.loadHistory(wantId, attempt + 1), 100 * 2 ** attempt);
      }
      const rows = items.map((item) =>
        el("li", { "data-testid": "history-row", "data-symbol": item.symbol || "" },
          el("time", { text: stamp(item) }), " ", el("span", { text: `${describe(item)}${observed(item)}` })));
      const list = $("alert-history");
      list.replaceChildren(...rows);
      if (!rows.length) list.append(el("li", { class: "empty", text: "Nothing fired yet." }));
    } catch (err) {
      showMessage($("alert-msg"), `Could not load the history: ${err.message}`);
    }
  }
}
