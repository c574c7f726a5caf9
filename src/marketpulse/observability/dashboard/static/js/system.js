// System: Redis, providers, clients, sessions, loop lag, memory and recent health warnings
// (which also go to the alert feed). The report is loaded over HTTP (GET /api/system) once, then
// follows the {"type": "system"} frames of the dashboard socket (wired in main.js).

import { api } from "./http.js";
import { $, el, num, bytes } from "./dom.js";
import { showConnection } from "./socket.js";

export class SystemPanel {
  constructor(onHealthWarning) {
    this.onHealthWarning = onHealthWarning;
  }

  async init() {
    try {
      this.render(await api("GET", "/api/system"));
    } catch (err) {
      $("sys-redis").textContent = `unknown: ${err.message}`; // the socket's snapshot follows
    }
  }

  // The dashboard socket's state, shown beside the title.
  connection(state, detail) {
    showConnection($("system-state"), "status", state, detail);
  }

  render(data) {
    const redis = data.redis || {};
    $("sys-redis").textContent = redis.ok ? `ok, ${num(redis.latency_ms, 2)} ms` : `down (${redis.error || "?"})`;
    $("sys-redis").dataset.state = redis.ok ? "ok" : "bad";
    const clients = data.connected_clients || {};
    $("sys-clients").textContent = Object.entries(clients).map(([k, n]) => `${k} ${n}`).join(" · ") || "–";
    $("sys-sessions").textContent = String(data.active_sessions ?? "–");
    $("sys-lag").textContent = `${num(data.loop_lag_ms, 2)} ms`;
    $("sys-memory").textContent = bytes(data.rss_bytes);
    const rows = (data.providers || []).map((p) =>
      el("tr", { "data-provider": p.name, "data-state": p.state },
        el("td", { text: p.name }),
        el("td", { class: `circuit ${p.state}`, text: p.state || "?" }),
        el("td", { text: p.last_latency_ms == null ? "–" : `${num(p.last_latency_ms, 1)} ms` }),
        el("td", { text: `${p.ok ?? "–"} / ${p.failed ?? "–"}` }),
        el("td", { text: p.last_error || "" })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", class: "empty", text: "no provider status" })));
    $("sys-providers").replaceChildren(...rows);
    const warnings = data.health_warnings || [];
    $("health-warnings").replaceChildren(
      ...warnings.map((w) => el("li", { class: "health", "data-testid": "health-warning" },
        el("time", { text: new Date(w.timestamp).toLocaleTimeString() }), " ", el("span", { text: w.message }))),
    );
    if (!warnings.length) $("health-warnings").append(el("li", { class: "empty", text: "None." }));
    if (this.onHealthWarning) for (const w of [...warnings].reverse()) this.onHealthWarning(w);
  }
}
