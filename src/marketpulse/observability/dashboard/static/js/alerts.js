// Alerts: the rule editor (create, edit, snooze and delete alerts of every kind: a form, not a
// string language), each alert's state ("armed, RSI(14) 41.2"), a "would have fired N times in
// the last year" line and chart for the rule in the form before it is saved (POST
// /api/alerts/backtest); a live feed of fired alerts (from /ws/alerts, from the portfolio socket,
// and health warnings from the System part); the history.

import { api, listOf } from "./http.js";
import { $, el, showMessage, num, clock, normalSymbol, SYMBOL_RE } from "./dom.js";
import { ReconnectingSocket, wsUrl, showConnection } from "./socket.js";

const FEED_MAX = 50;
const PREVIEW_DELAY_MS = 400; // the backtest line waits for the typing to pause
const PERIOD_KINDS = new Set(["rsi", "sma", "ema", "price_vs_sma", "price_vs_ema", "change_sessions", "drawdown"]);

function indicatorLabel(ind) {
  if (!ind) return "";
  const names = {
    rsi: "RSI", sma: "SMA", ema: "EMA", price_vs_sma: "price vs SMA", price_vs_ema: "price vs EMA",
    change_sessions: "change over sessions", from_52w_high: "from 52w high", from_52w_low: "from 52w low",
    drawdown: "drawdown",
  };
  if (ind.kind === "ma_cross") {
    const avg = (ind.average || "sma").toUpperCase();
    return `${avg}(${ind.fast})/${avg}(${ind.slow})`;
  }
  return ind.period ? `${names[ind.kind]}(${ind.period})` : names[ind.kind] || ind.kind;
}

function conditionText(c) {
  const unit = c.alert_type === "percentage_change" ? "%" : c.alert_type === "volume_spike" ? "×" : "";
  const what = c.alert_type === "indicator" ? indicatorLabel(c.indicator) : (c.alert_type || "").replaceAll("_", " ");
  const margin = c.rearm_margin ? ` (re-arm ${c.rearm_margin})` : "";
  return `${what} ${(c.comparison || "").replaceAll("_", " ")} ${c.threshold ?? ""}${unit}${margin}`.trim();
}

function describe(alert) {
  if (Array.isArray(alert.all_of) && alert.all_of.length) {
    const how = alert.comparison === "crosses_above" ? "all become true" : "all true";
    return `${alert.symbol} ${alert.all_of.map(conditionText).join(" and ")} (${how})`;
  }
  const type = alert.alert_type || alert.type_ || alert.kind || "";
  if (type === "all_of") return `${alert.symbol} all of`;
  return `${alert.symbol} ${conditionText({ ...alert, alert_type: type })}`.trim();
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function observed(fired) {
  if (fired.why) return ` — ${fired.why}${fired.muted ? " (muted: snoozed)" : ""}`;
  const value = fired.observed ?? fired.value ?? fired.observed_value;
  return value === undefined || value === null ? "" : ` — observed ${num(value)}`;
}

function stamp(item) {
  return clock(item.fired_at || item.timestamp || (item.quote && item.quote.timestamp));
}

export class AlertsPanel {
  constructor() {
    this.seen = new Set();
    this.editing = null; // the id of the alert the form edits (null: a new alert)
    this.previewTimer = null;
    this.previewSeq = 0; // only the latest backtest answer is shown
    this.chart = null;
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
    const form = $("alert-form");
    form.addEventListener("input", () => this.formChanged());
    form.addEventListener("change", () => this.formChanged());
    $("alert-cancel-edit").addEventListener("click", () => this.stopEditing());
    this.showFields();
    this.loadAlerts();
    this.loadHistory();
    this.socket.start();
  }

  onMessage(msg) {
    if (msg.type === "alert") this.feed(msg);
  }

  // Show the inputs the chosen kinds take (indicator, period, fast/slow), for both clauses.
  showFields() {
    const form = $("alert-form");
    for (const [prefix, box] of [["", $("alert-clause")], ["and_", $("alert-clause-and")]]) {
      const indicator = form[`${prefix}alert_type`].value === "indicator";
      const kind = form[`${prefix}kind`].value;
      for (const label of box.querySelectorAll("label[data-for]")) {
        const want = label.dataset.for;
        label.hidden = !indicator || (want === "period" && !PERIOD_KINDS.has(kind)) || (want === "cross" && kind !== "ma_cross");
      }
    }
    $("alert-clause-and").hidden = !form.and_on.checked;
  }

  readClause(prefix, where) {
    const form = $("alert-form");
    const field = (name) => form[`${prefix}${name}`].value.trim();
    const numberOf = (name, label, { optional = false, integer = false } = {}) => {
      const text = field(name);
      if (!text) {
        if (optional) return undefined;
        throw new Error(`Enter ${label}${where} (a number).`);
      }
      const value = Number(text);
      if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
        throw new Error(`${label[0].toUpperCase()}${label.slice(1)}${where} "${text}" is not ${integer ? "a whole number" : "a number"}.`);
      }
      return value;
    };
    const clause = {
      alert_type: field("alert_type"),
      comparison: field("comparison"),
      threshold: numberOf("threshold", "a threshold"),
    };
    const margin = numberOf("margin", "the re-arm margin", { optional: true });
    if (margin !== undefined) {
      if (margin < 0) throw new Error(`The re-arm margin${where} must be 0 or more.`);
      if (margin > 0) clause.rearm_margin = margin;
    }
    if (clause.alert_type === "indicator") {
      const kind = field("kind");
      const indicator = { kind };
      if (PERIOD_KINDS.has(kind)) {
        const period = numberOf("period", "a period", { optional: kind === "rsi", integer: true });
        if (period !== undefined) indicator.period = period;
      } else if (kind === "ma_cross") {
        indicator.fast = numberOf("fast", "the fast period", { integer: true });
        indicator.slow = numberOf("slow", "the slow period", { integer: true });
        indicator.average = field("average");
        if (indicator.fast >= indicator.slow) throw new Error(`The fast period${where} must be below the slow one.`);
      }
      clause.indicator = indicator;
    }
    return clause; // a threshold's sign is the server's to judge (it says which kinds may be negative)
  }

  readForm() {
    const form = $("alert-form");
    const symbol = normalSymbol(form.symbol.value);
    const cooldownText = form.cooldown.value.trim();
    if (!symbol) throw new Error("Enter the symbol the alert watches, for example AAPL.");
    if (!SYMBOL_RE.test(symbol)) throw new Error(`"${symbol}" is not a valid symbol.`);
    const first = this.readClause("", "");
    let body;
    if (form.and_on.checked) {
      const second = this.readClause("and_", " of the second condition");
      const crossing = first.comparison.startsWith("crosses_");
      first.comparison = first.comparison.replace("crosses_", "");
      body = { symbol, alert_type: "all_of", comparison: crossing ? "crosses_above" : "above", all_of: [first, second] };
    } else {
      body = { symbol, ...first };
    }
    if (cooldownText) {
      const cooldown = Number(cooldownText);
      if (!Number.isFinite(cooldown) || cooldown < 0) {
        throw new Error(`Cooldown "${cooldownText}" must be a number of seconds, 0 or more.`);
      }
      body.cooldown_s = cooldown;
    }
    return body;
  }

  // Fill the form with ``alert`` (to edit it); saving then PUTs it.
  edit(alert) {
    const form = $("alert-form");
    const fill = (prefix, c) => {
      form[`${prefix}alert_type`].value = c.alert_type;
      form[`${prefix}comparison`].value = c.comparison;
      form[`${prefix}threshold`].value = String(c.threshold);
      form[`${prefix}margin`].value = c.rearm_margin ? String(c.rearm_margin) : "";
      const ind = c.indicator || {};
      form[`${prefix}kind`].value = ind.kind || "rsi";
      form[`${prefix}period`].value = ind.period ? String(ind.period) : "";
      form[`${prefix}fast`].value = ind.fast ? String(ind.fast) : "";
      form[`${prefix}slow`].value = ind.slow ? String(ind.slow) : "";
      form[`${prefix}average`].value = ind.average || "sma";
    };
    form.symbol.value = alert.symbol;
    const clauses = Array.isArray(alert.all_of) ? alert.all_of : null;
    if (clauses) {
      fill("", { ...clauses[0], comparison: alert.comparison === "crosses_above" ? `crosses_${clauses[0].comparison}` : clauses[0].comparison });
      fill("and_", clauses[1]);
    } else {
      fill("", alert);
    }
    form.and_on.checked = Boolean(clauses);
    form.cooldown.value = alert.cooldown_s ? String(alert.cooldown_s) : "";
    this.editing = alert.id;
    $("alert-create").textContent = "Save changes";
    $("alert-cancel-edit").hidden = false;
    this.formChanged();
  }

  stopEditing() {
    this.editing = null;
    $("alert-create").textContent = "Create alert";
    $("alert-cancel-edit").hidden = true;
  }

  formChanged() {
    this.showFields();
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => this.preview(), PREVIEW_DELAY_MS);
  }

  // "Would have fired N times in the last year": the rule as the form holds it, before it is
  // saved, replayed by POST /api/alerts/backtest over the year up to the symbol's latest quote.
  async preview() {
    const line = $("alert-backtest");
    let rule;
    try {
      rule = this.readForm();
    } catch (err) {
      showMessage(line, "");
      $("alert-backtest-chart").hidden = true;
      return;
    }
    const seq = ++this.previewSeq;
    showMessage(line, `Trying ${describe(rule)} on the last year…`, "ok");
    try {
      const quote = await api("GET", `/api/quotes/${encodeURIComponent(rule.symbol)}`);
      const end = new Date(quote.timestamp);
      const start = new Date(end.getTime() - 365 * 86_400_000);
      const answer = await api("POST", "/api/alerts/backtest", {
        rule, start: isoDay(start), end: isoDay(end),
      });
      if (seq !== this.previewSeq) return; // the form changed meanwhile
      const result = answer.symbols[0];
      const n = result.fire_count;
      const muted = result.muted_count ? `, ${result.muted_count} muted by the snooze` : "";
      const held = result.time_true.sessions;
      showMessage(line,
        `Would have fired ${n} time${n === 1 ? "" : "s"} in the last year (${answer.start} to ${answer.end}${muted}); ` +
        `true on ${held} of ${result.observations} sessions.`, "ok");
      Object.assign(line.dataset, { fires: String(n), start: answer.start, end: answer.end });
      this.drawFires(result);
    } catch (err) {
      if (seq !== this.previewSeq) return;
      showMessage(line, `No backtest: ${err.message}`);
      $("alert-backtest-chart").hidden = true;
    }
  }

  // The symbol's daily prices over the backtest, its fires as red points.
  drawFires(result) {
    const box = $("alert-backtest-chart");
    box.dataset.fires = String(result.fires.length);
    box.dataset.symbol = result.symbol;
    if (typeof window.uPlot !== "function" || result.prices.length < 2) {
      box.hidden = true;
      return;
    }
    const xs = result.prices.map((p) => Date.parse(p.time) / 1000);
    const at = new Map(result.fires.map((f) => [Date.parse(f.time) / 1000, f.quote.price]));
    const data = [xs, result.prices.map((p) => p.price), xs.map((x) => (at.has(x) ? at.get(x) : null))];
    box.hidden = false;
    if (this.chart) this.chart.destroy();
    box.replaceChildren();
    this.chart = new window.uPlot({
      width: Math.max(200, box.clientWidth || 400),
      height: 140,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: true } },
      axes: [{ size: 30, font: "10px sans-serif" }, { size: 50, font: "10px sans-serif" }],
      series: [
        {},
        { stroke: "#2b6cb0", width: 1.2 },
        { stroke: "#b42318", width: 0, paths: () => null, points: { show: true, size: 8, fill: "#b42318" } },
      ],
    }, data, box);
  }

  async create() {
    const msg = $("alert-msg");
    let body;
    try {
      body = this.readForm();
    } catch (err) {
      return showMessage(msg, err.message);
    }
    const editing = this.editing;
    try {
      if (editing) {
        const saved = await api("PUT", `/api/alerts/${encodeURIComponent(editing)}`, body);
        showMessage(msg, `Alert saved: ${describe(saved || body)}.`, "ok");
        this.stopEditing();
      } else {
        const created = await api("POST", "/api/alerts", body);
        showMessage(msg, `Alert created: ${describe(created || body)}.`, "ok");
      }
      $("alert-form").threshold.value = "";
      await this.loadAlerts();
    } catch (err) {
      showMessage(msg, `${editing ? "Alert not saved" : "Alert not created"}: ${err.message}`);
    }
  }

  async loadAlerts() {
    try {
      const data = await api("GET", "/api/alerts");
      const list = $("alert-list");
      list.replaceChildren(
        ...listOf(data, "alerts", "items").map((alert) => {
          const state = alert.state || {};
          const snoozed = Boolean(alert.snoozed_until);
          const text = `${state.text || ""}${snoozed ? `, snoozed until ${clock(alert.snoozed_until)}` : ""}`;
          return el("li", {
            "data-testid": "alert-row", "data-alert-id": alert.id, "data-symbol": alert.symbol,
            "data-snoozed": String(snoozed),
          },
          el("span", { text: describe(alert) }),
          el("span", { class: "rule-state", "data-testid": "alert-state", text }),
          el("button", {
            type: "button", class: "small", "data-testid": "alert-edit", onclick: () => this.edit(alert),
          }, "edit"),
          el("button", {
            type: "button", class: "small", "data-testid": "alert-snooze",
            onclick: () => this.snooze(alert.id, !snoozed),
          }, snoozed ? "unsnooze" : "snooze 1 h"),
          el("button", {
            type: "button", class: "small", "data-testid": "alert-delete",
            onclick: () => this.remove(alert.id),
          }, "delete"));
        }),
      );
      if (!list.children.length) list.append(el("li", { class: "empty", text: "No alerts." }));
    } catch (err) {
      showMessage($("alert-msg"), `Could not load alerts: ${err.message}`);
    }
  }

  async snooze(id, on) {
    const path = `/api/alerts/${encodeURIComponent(id)}/snooze`;
    try {
      if (on) await api("POST", path, { minutes: 60 });
      else await api("DELETE", path);
      showMessage($("alert-msg"), on ? "Alert snoozed for an hour: its fires are recorded, not sent." : "Snooze ended.", "ok");
      await this.loadAlerts();
    } catch (err) {
      showMessage($("alert-msg"), `Could not change the snooze: ${err.message}`);
    }
  }

  async remove(id) {
    try {
      await api("DELETE", `/api/alerts/${encodeURIComponent(id)}`);
      if (this.editing === id) this.stopEditing();
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
