// Small DOM and formatting helpers shared by the dashboard parts.

export function $(id) {
  return document.getElementById(id);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function showMessage(node, text, kind = "error") {
  node.textContent = text || "";
  node.dataset.kind = text ? kind : "";
}

export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
  return Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function bytes(n) {
  if (!n) return "–";
  const mb = n / (1024 * 1024);
  return mb >= 1024 ? `${(mb / 1024).toFixed(2)} GiB` : `${mb.toFixed(1)} MiB`;
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Number(seconds);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function clock(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  // market data carries the bar's date (replay, simulated): show the day when it is not today
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

// A symbol as the service accepts it (market/symbols.py SYMBOL_PATTERN, kept equal by a test):
// 1-20 of letters, digits, dot, dash, caret, equals, ampersand, e.g. AAPL, TCS.NS, M&M.NS.
export const SYMBOL_RE = /^[A-Z0-9^][A-Z0-9.\-^=&]{0,19}$/;

export function normalSymbol(text) {
  return String(text || "").trim().toUpperCase();
}
