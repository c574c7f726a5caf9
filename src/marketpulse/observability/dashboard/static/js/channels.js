// Channels (issue 20): list the named delivery channels (targets as the API masks them), add
// and delete one, and "send a test" showing the channel's own answer. Self-starting, so it
// needs nothing from main.js.

import { api, listOf } from "./http.js";
import { $, el, showMessage } from "./dom.js";

function quiet(channel) {
  const q = channel.quiet_hours;
  return q ? ` · quiet ${q.start}–${q.end} ${q.tz}` : "";
}

function target(channel) {
  return Array.isArray(channel.target) ? channel.target.join(", ") : String(channel.target);
}

export class ChannelsPanel {
  init() {
    $("channel-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    this.load();
  }

  readForm() {
    const form = $("channel-form");
    const name = form.name.value.trim();
    const kind = form.kind.value;
    const text = form.target.value.trim();
    if (!name) throw new Error("Enter a name for the channel, for example ops-mail.");
    if (!text) throw new Error("Enter the channel's target.");
    const body = {
      name,
      kind,
      target: kind === "email" ? text.split(",").map((s) => s.trim()).filter(Boolean) : text,
      digest: form.digest.checked,
      back_to_normal: form.back_to_normal.checked,
    };
    const start = form.quiet_start.value.trim();
    const end = form.quiet_end.value.trim();
    const tz = form.quiet_tz.value.trim();
    if (start || end || tz) {
      if (!(start && end && tz)) throw new Error("Quiet hours need a start, an end and a zone.");
      body.quiet_hours = { start, end, tz };
    }
    return body;
  }

  async create() {
    const msg = $("channel-msg");
    let body;
    try {
      body = this.readForm();
    } catch (err) {
      return showMessage(msg, err.message);
    }
    try {
      const created = await api("POST", "/api/channels", body);
      showMessage(msg, `Channel ${created.name} added.`, "ok");
      $("channel-form").reset();
      await this.load();
    } catch (err) {
      showMessage(msg, `Channel not added: ${err.message}`);
    }
  }

  async load() {
    try {
      const data = await api("GET", "/api/channels");
      const list = $("channel-list");
      list.replaceChildren(
        ...listOf(data, "channels").map((channel) => {
          const answer = el("span", { class: "answer", "data-testid": "channel-answer" });
          return el("li", { "data-testid": "channel-row", "data-name": channel.name },
            el("strong", { text: channel.name }),
            el("span", { text: `${channel.kind}: ` }),
            el("code", { "data-testid": "channel-target-shown", text: target(channel) }),
            el("span", { text: quiet(channel) }),
            answer,
            el("button", {
              type: "button", class: "small", "data-testid": "channel-test",
              onclick: () => this.test(channel.name, answer),
            }, "send a test"),
            el("button", {
              type: "button", class: "small", "data-testid": "channel-delete",
              onclick: () => this.remove(channel.name),
            }, "delete"));
        }),
      );
      if (!list.children.length) list.append(el("li", { class: "empty", text: "No channels." }));
    } catch (err) {
      showMessage($("channel-msg"), `Could not load the channels: ${err.message}`);
    }
  }

  async test(name, answer) {
    answer.textContent = "sending…";
    answer.dataset.state = "sending";
    try {
      const result = await api("POST", `/api/channels/${encodeURIComponent(name)}/test`);
      answer.textContent = result.ok ? "ok" : result.answer;
      answer.dataset.state = result.ok ? "ok" : "failed";
    } catch (err) {
      answer.textContent = err.message;
      answer.dataset.state = "failed";
    }
  }

  async remove(name) {
    try {
      await api("DELETE", `/api/channels/${encodeURIComponent(name)}`);
      showMessage($("channel-msg"), `Channel ${name} deleted.`, "ok");
      await this.load();
    } catch (err) {
      showMessage($("channel-msg"), `Could not delete the channel: ${err.message}`);
    }
  }
}

function start() {
  const panel = new ChannelsPanel();
  panel.init();
  window.marketpulseChannels = panel;
  document.body.dataset.channelsReady = "true";
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
