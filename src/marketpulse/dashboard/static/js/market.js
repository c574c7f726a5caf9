// Market: monitored symbols with a live quote and a small chart each; add and remove symbols.
// Live prices come from polling GET /api/quotes/{symbol}, and from any {"type": "quote"} message
// the alerts socket carries.

import { api, listOf } from "./http.js";
import { $, el, showMessage, num, age, normalSymbol, SYMBOL_RE } from "./dom.js";

const POLL_MS = 1000;
const MAX_POINTS = 120;

function symbolName(item) {
  return typeof item === "string" ? item : item && (item.symbol || item.name);
}

export class MarketPanel {
  constructor() {
    this.cards = new Map(); // symbol -> {node, chart, xs, ys, last}
    this.timer = null;
    this.polling = false;
  }

  init() {
    $("symbol-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
    this.refresh();
    this.timer = setInterval(() => this.poll(), POLL_MS);
    window.addEventListener("resize", () => this.resizeCharts());
  }

  async refresh() {
    try {
      const data = await api("GET", "/api/symbols");
      const wanted = listOf(data, "symbols", "items").map(symbolName).filter(Boolean);
      for (const sym of [...this.cards.keys()]) if (!wanted.includes(sym)) this.drop(sym);
      for (const sym of wanted) if (!this.cards.has(sym)) this.card(sym);
      this.updateEmpty();
      await this.poll();
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
      return showMessage(msg, `"${symbol}" is not a valid symbol: use letters, digits and . - ^ =`);
    }
    try {
      await api("POST", "/api/symbols", { symbol });
      input.value = "";
      showMessage(msg, `${symbol} added.`, "ok");
      await this.refresh();
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
    const field = (name, label) =>
      el("div", { class: "field" }, el("span", { class: "label", text: label }),
        el("span", { class: name, "data-testid": `${name}-${symbol}`, text: "–" }));
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
        field("price", "price"), field("change", "change"), field("volume", "volume"),
        field("age", "age"), field("source", "source")),
      plot,
    );
    $("symbols").append(node);
    const entry = { node, plot, chart: null, xs: [], ys: [], last: null };
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

  async poll() {
    if (this.polling) return;
    this.polling = true;
    try {
      await Promise.all([...this.cards.keys()].map((sym) => this.fetchQuote(sym)));
    } finally {
      this.polling = false;
    }
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

  // One quote (StockData JSON) onto its card.
  show(quote) {
    const symbol = quote && quote.symbol;
    const entry = symbol && this.cards.get(symbol);
    if (!entry) return;
    const price = Number(quote.price);
    const prev = Number(quote.previous_close ?? quote.close);
    const q = (name) => entry.node.querySelector(`.${name}`);
    q("price").textContent = num(price);
    if (prev > 0) {
      const diff = price - prev;
      q("change").textContent = `${diff >= 0 ? "+" : ""}${num(diff)} (${num((diff / prev) * 100)}%)`;
      q("change").dataset.sign = diff > 0 ? "up" : diff < 0 ? "down" : "flat";
    }
    q("volume").textContent = Number(quote.volume ?? 0).toLocaleString("en-US");
    q("age").textContent = age(quote.age_s);
    q("source").textContent = `${quote.source || "?"}${quote.stale ? " (stale)" : ""}`;
    entry.node.dataset.state = quote.stale ? "stale" : "live";
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
