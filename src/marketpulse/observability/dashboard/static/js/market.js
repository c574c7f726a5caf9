// Market: monitored symbols with a live quote and a small chart each; add and remove symbols.
// Live prices are the {"type": "quote"} frames of the dashboard socket (/ws/dashboard, wired in
// main.js); a card's first quote is loaded over HTTP (GET /api/quotes/{symbol}) when it is made.

import { api, listOf } from "./http.js";
import { $, el, showMessage, num, age, normalSymbol, SYMBOL_RE } from "./dom.js";

const MAX_POINTS = 120;
const REFRESH_GAP_MS = 2000; // at most one symbol-list reload per gap for unknown symbols

// Decimals to show a price with: the currency's own (JPY 0, USD 2, ...) for a listing; more
// for an exchange rate (a pair symbol such as USDINR=X), whose small moves are the point.
function priceDigits(currency, symbol, price) {
  if (/=X$/.test(symbol)) return Math.abs(price) < 1 ? 6 : 4;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits;
  } catch {
    return 2; // not a code Intl knows
  }
}

// The price in its currency for a tooltip (e.g. "₹1,234.50"); the code alone when unknown.
function money(price, currency, digits) {
  try {
    return new Intl.NumberFormat(undefined, {
      style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
    }).format(price);
  } catch {
    return `${num(price, digits)} ${currency}`;
  }
}

// The card's market line: "open", "closed, opens Mon, 7 Dec, 15:30" (the next open in the
// browser's own time zone), "(estimated)" past the calendar library's horizon, or "–" for a
// quote without a calendar (a simulated or replayed market, an FX pair).
export function marketText(quote) {
  const estimated = quote.estimated ? " (estimated)" : "";
  if (quote.market_open === true) return `open${estimated}`;
  if (quote.market_open !== false) return "–";
  const next = quote.next_open ? Date.parse(quote.next_open) : NaN;
  if (!Number.isFinite(next)) return `closed${estimated}`;
  const when = new Date(next).toLocaleString(undefined, {
    weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  });
  return `closed, opens ${when}${estimated}`;
}

function symbolName(item) {
  return typeof item === "string" ? item : item && (item.symbol || item.name);
}

export class MarketPanel {
  constructor() {
    this.cards = new Map(); // symbol -> {node, chart, xs, ys, last, at}
    this.refreshing = null;
    this.refreshedAt = 0;
  }

  init() {
    $("symbol-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
    this.refresh();
    window.addEventListener("resize", () => this.resizeCharts());
  }

  // Reconcile the cards with the monitored set; a new card loads its first quote over HTTP.
  refresh() {
    if (!this.refreshing) {
      this.refreshedAt = Date.now();
      this.refreshing = this.reload().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  // After this page changed the set: a reload already in flight may have been sent before the
  // change, so wait for it and reload again (one that starts after the change).
  async refreshAfterChange() {
    if (this.refreshing) await this.refreshing;
    return this.refresh();
  }

  async reload() {
    try {
      const data = await api("GET", "/api/symbols");
      const wanted = listOf(data, "symbols", "items").map(symbolName).filter(Boolean);
      for (const sym of [...this.cards.keys()]) if (!wanted.includes(sym)) this.drop(sym);
      const added = wanted.filter((sym) => !this.cards.has(sym));
      for (const sym of added) this.card(sym);
      this.updateEmpty();
      await Promise.all(added.map((sym) => this.fetchQuote(sym)));
    } catch (err) {
      showMessage($("symbol-msg"), `could not load symbols: ${err.message}`);
    }
  }

  async add() {
    const input = $("symbol-input");
    const symbol = normalSymbol(input.value);
    const msg = $("symbol-msg");
    if (!symbol) return showMessage(msg, "Enter a symbol, for example AAPL or TCS.NS.");
    if (!SYMBOL_RE.test(symbol)) {
      return showMessage(msg, `"${symbol}" is not a valid symbol: use letters, digits and . - ^ = &`);
    }
    try {
      await api("POST", "/api/symbols", { symbol });
      input.value = "";
      showMessage(msg, `${symbol} added.`, "ok");
      await this.refreshAfterChange();
    } catch (err) {
      showMessage(msg, `Could not add ${symbol}: ${err.message}`);
    }
  }

  async remove(symbol) {
    try {
      await api("DELETE", `/api/symbols/${encodeURIComponent(symbol)}`);
      this.drop(symbol);
      this.updateEmpty();
      showMessage($("symbol-msg"), `${symbol} removed.`, "ok");
    } catch (err) {
      showMessage($("symbol-msg"), `Could not remove ${symbol}: ${err.message}`);
    }
  }

  updateEmpty() {
    $("symbols-empty").hidden = this.cards.size > 0;
  }

  card(symbol) {
    const plot = el("div", { class: "chart", "data-testid": `chart-${symbol}` });
    const value = (name) => el("span", { class: name, "data-testid": `${name}-${symbol}`, text: "–" });
    const labelled = (label, ...shown) =>
      el("div", { class: "field" }, el("span", { class: "label", text: label }), ...shown);
    const field = (name, label) => labelled(label, value(name));
    const node = el(
      "article",
      { class: "card", "data-symbol": symbol, "data-testid": `symbol-${symbol}` },
      el("header", {},
        el("h3", { text: symbol }),
        el("button", {
          type: "button", class: "small", "data-testid": `remove-${symbol}`,
          "aria-label": `remove ${symbol}`, onclick: () => this.remove(symbol),
        }, "remove")),
      el("div", { class: "quote" },
        labelled("price", el("span", {}, value("price"), " ", value("currency"))),
        field("change", "change"), field("volume", "volume"),
        field("age", "age"), field("source", "source"), field("market", "market")),
      plot,
    );
    $("symbols").append(node);
    const entry = { node, plot, chart: null, xs: [], ys: [], last: null, at: -Infinity };
    this.cards.set(symbol, entry);
    return entry;
  }

  drop(symbol) {
    const entry = this.cards.get(symbol);
    if (!entry) return;
    if (entry.chart) entry.chart.destroy();
    entry.node.remove();
    this.cards.delete(symbol);
  }

  async fetchQuote(symbol) {
    const entry = this.cards.get(symbol);
    try {
      const quote = await api("GET", `/api/quotes/${encodeURIComponent(symbol)}`);
      this.show(quote);
    } catch (err) {
      if (entry) {
        entry.node.dataset.state = "error";
        entry.node.querySelector(".source").textContent = err.message;
      }
    }
  }

  // One quote (StockData JSON) onto its card; an older quote than the one shown is ignored. A
  // quote of a symbol without a card (added elsewhere) reloads the symbol list.
  show(quote) {
    const symbol = quote && quote.symbol;
    if (!symbol) return;
    const entry = this.cards.get(symbol);
    if (!entry) {
      if (Date.now() - this.refreshedAt > REFRESH_GAP_MS) this.refresh();
      return;
    }
    const at = Date.parse(quote.timestamp);
    if (at < entry.at) return;
    entry.at = at;
    const price = Number(quote.price);
    const prev = Number(quote.previous_close ?? quote.close);
    const currency = String(quote.currency || "USD");
    const digits = priceDigits(currency, symbol, price);
    const q = (name) => entry.node.querySelector(`.${name}`);
    q("price").textContent = num(price, digits);
    q("price").title = money(price, currency, digits);
    q("currency").textContent = currency;
    entry.node.dataset.currency = currency;
    if (prev > 0) {
      const diff = price - prev;
      q("change").textContent =
        `${diff >= 0 ? "+" : ""}${num(diff, digits)} (${num((diff / prev) * 100)}%)`;
      q("change").dataset.sign = diff > 0 ? "up" : diff < 0 ? "down" : "flat";
    }
    q("volume").textContent = Number(quote.volume ?? 0).toLocaleString("en-US");
    q("age").textContent = age(quote.age_s);
    q("source").textContent = `${quote.source || "?"}${quote.stale ? " (stale)" : ""}`;
    entry.node.dataset.state = quote.stale ? "stale" : "live";
    q("market").textContent = marketText(quote);
    if (quote.session_date) q("market").title = `session of ${quote.session_date}`;
    entry.node.dataset.market =
      quote.market_open === false ? "closed" : quote.market_open === true ? "open" : "";
    entry.node.dataset.price = String(price);
    const key = `${price}|${quote.timestamp}|${quote.volume}`;
    if (entry.last === key) return;
    entry.last = key;
    entry.xs.push(Date.now() / 1000);
    entry.ys.push(price);
    if (entry.xs.length > MAX_POINTS) {
      entry.xs.shift();
      entry.ys.shift();
    }
    this.draw(entry);
  }

  draw(entry) {
    if (typeof window.uPlot !== "function") return;
    const data = [entry.xs, entry.ys];
    if (entry.chart) {
      entry.chart.setData(data);
      return;
    }
    if (entry.xs.length < 2) return;
    entry.chart = new window.uPlot(
      {
        width: Math.max(160, entry.plot.clientWidth || 240),
        height: 90,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: true } },
        axes: [{ show: false }, { size: 50, font: "10px sans-serif" }],
        series: [{}, { stroke: "#2b6cb0", width: 1.5, fill: "rgba(43,108,176,0.08)" }],
      },
      data,
      entry.plot,
    );
  }

  resizeCharts() {
    for (const entry of this.cards.values()) {
      if (entry.chart) entry.chart.setSize({ width: Math.max(160, entry.plot.clientWidth), height: 90 });
    }
  }
}
