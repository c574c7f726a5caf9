// Entry point: wires the four parts of the dashboard together.

import { MarketPanel } from "./market.js";
import { AlertsPanel } from "./alerts.js";
import { PortfolioPanel } from "./portfolio.js";
import { SystemPanel } from "./system.js";

function start() {
  const market = new MarketPanel();
  const alerts = new AlertsPanel((quote) => market.show(quote));
  const portfolio = new PortfolioPanel((alert) => alerts.feed(alert));
  const system = new SystemPanel((perf) => alerts.feed(perf));
  market.init();
  alerts.init();
  portfolio.init();
  system.init();
  window.marketpulse = { market, alerts, portfolio, system };
  document.body.dataset.ready = "true";
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
