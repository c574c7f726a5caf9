// A WebSocket that reconnects by itself with exponential backoff and full jitter, and reports
// its state ("connecting", "live", "reconnecting", "closed") so the page can show it.

export class ReconnectingSocket {
  // protocolsFn: the subprotocols to offer (a session socket's token travels there, never in
  // the URL: docs/contracts.md).
  constructor(urlFn, { onMessage, onState, onOpen, shouldRetry, protocolsFn, minDelay = 500, maxDelay = 8000 }) {
    this.urlFn = urlFn;
    this.protocolsFn = protocolsFn || (() => []);
    this.onMessage = onMessage || (() => {});
    this.onState = onState || (() => {});
    this.onOpen = onOpen || (() => {});
    this.shouldRetry = shouldRetry || (async () => true);
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "client closed");
    }
    this.onState("closed", "");
  }

  send(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  connect() {
    if (this.stopped) return;
    this.onState(this.attempt ? "reconnecting" : "connecting", "");
    const ws = new WebSocket(this.urlFn(), this.protocolsFn());
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.onState("live", "");
      this.onOpen();
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (err) {
        return; // not ours to show: the protocol sends JSON only
      }
      this.onMessage(msg);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      this.retry(event.code);
    });
  }

  async retry(code) {
    let again = true;
    try {
      again = await this.shouldRetry(code);
    } catch (err) {
      again = true;
    }
    if (!again || this.stopped) {
      this.stopped = true;
      this.onState("closed", `closed (${code})`);
      return;
    }
    this.attempt += 1;
    const cap = Math.min(this.maxDelay, this.minDelay * 2 ** (this.attempt - 1));
    const delay = Math.max(200, Math.random() * cap);
    this.onState("reconnecting", `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}`;
}

export function showConnection(node, label, state, detail) {
  node.dataset.state = state;
  const words = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…", closed: "offline", idle: "idle" };
  node.textContent = `${label}: ${detail || words[state] || state}`;
}
