// Entry point: wires the four parts of the dashboard together. One socket, /ws/dashboard,
// carries the Market part's live quotes and the System part's reports; on every reconnect its
// first frames are a fresh snapshot of both.

import { MarketPanel } from "./market.js";
import { AlertsPanel } from "./alerts.js";
import { PortfolioPanel } from "./portfolio.js";
import { PortfolioAlertsPanel } from "./portfolio_alerts.js";
import { SystemPanel } from "./system.js";
import { ReconnectingSocket, wsUrl, showConnection } from "./socket.js";
import { $ } from "./dom.js";

function start() {
  const market = new MarketPanel();
  const alerts = new AlertsPanel();
  const portfolioAlerts = new PortfolioAlertsPanel(); // before the session opens: it listens
  portfolioAlerts.init();
  const portfolio = new PortfolioPanel((alert) => alerts.feed(alert));
  const system = new SystemPanel((warning) => alerts.feed(warning));
  let opened = false;
  const live = new ReconnectingSocket(() => wsUrl("/ws/dashboard"), {
    onMessage: (msg) => {
      if (msg.type === "quote") market.show(msg);
      else if (msg.type === "system") system.render(msg);
    },
    onState: (state, detail) => {
      showConnection($("conn-dashboard"), "market", state, detail);
      system.connection(state, detail);
    },
    onOpen: () => {
      if (opened) market.refresh(); // symbols may have changed while we were away
      opened = true;
    },
  });
  market.init();
  alerts.init();
  portfolio.init();
  system.init();
  live.start();
  window.marketpulse = { market, alerts, portfolio, portfolioAlerts, system, live };
  document.body.dataset.ready = "true";
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
