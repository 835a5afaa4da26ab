// A stand-in for chatgpt.com, served on loopback: the page ChatGPT's DOM
// contract describes, a conversation backend that records every message it
// receives (so a test can tell a request that ran twice), and switches for a
// logged-out page and a rate limit. A message containing "[hold:TOKEN]" is
// not answered until the test releases that gate, which lets a test act while
// a request is provably in the middle of running.
import https from "node:https";
import { readFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { answerHtml, titleFor } from "./answers.js";

const HERE = new URL(".", import.meta.url);
export const RATE_LIMIT_TEXT = "You've reached our limit of messages per hour. Please try again later.";

export class StandIn {
  constructor() {
    this.loggedOut = false;
    // false, or how the page refuses: "notice" (an alert) or "message" (as the reply).
    this.rateLimited = false;
    this.conversations = new Map();
    this.received = [];
    this.gates = new Map();
  }

  async start({ key, cert }) {
    this.page = await readFile(new URL("page.html", HERE), "utf8");
    this.script = await readFile(new URL("app.js", HERE), "utf8");
    this.server = https.createServer({ key, cert }, (req, res) => this.handle(req, res).catch((e) => {
      res.writeHead(500).end(String(e));
    }));
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }

  stop() {
    for (const gate of this.gates.values()) gate.release();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(resolve));
  }

  // A gate for "[hold:TOKEN]": `reached` resolves when a message carrying it
  // arrives; the answer is sent once release() is called.
  gate(token) {
    let reach;
    let release;
    const gate = {
      reached: new Promise((r) => (reach = r)),
      opened: new Promise((r) => (release = r)),
      isReached: false,
      release: () => release(),
    };
    gate.reach = () => {
      gate.isReached = true;
      reach();
    };
    this.gates.set(token, gate);
    return gate;
  }

  timesReceived(message) {
    return this.received.filter((r) => r.message === message).length;
  }

  async handle(req, res) {
    const url = new URL(req.url, "https://chatgpt.com");
    if (req.method === "GET" && url.pathname === "/app.js") {
      return send(res, 200, "text/javascript", this.script);
    }
    if (req.method === "POST" && url.pathname === "/backend-api/conversation") {
      return this.converse(req, res);
    }
    if (req.method === "GET" && (url.pathname === "/" || url.pathname.startsWith("/c/"))) {
      const id = url.pathname.startsWith("/c/") ? decodeURIComponent(url.pathname.slice(3)) : null;
      if (id && !this.conversations.has(id)) {
        res.writeHead(302, { location: "/" }).end();
        return;
      }
      const state = {
        loggedOut: this.loggedOut,
        conversation: id ? this.conversations.get(id) : null,
        sidebar: [...this.conversations.values()].map((c) => ({ id: c.id, title: c.title })),
      };
      const title = state.conversation ? state.conversation.title : "ChatGPT";
      const html = this.page
        .replace("{{TITLE}}", title)
        .replace("{{STATE}}", JSON.stringify(state).replace(/</g, "\\u003c"));
      return send(res, 200, "text/html; charset=utf-8", html);
    }
    send(res, 404, "text/plain", "not found");
  }

  async converse(req, res) {
    let body = "";
    for await (const chunk of req) body += chunk;
    const { conversation_id: wanted, message, mode } = JSON.parse(body);
    this.received.push({ message, conversation_id: wanted, mode, at: Date.now() });
    if (this.rateLimited === "notice") {
      return send(res, 429, "application/json", JSON.stringify({ detail: RATE_LIMIT_TEXT }));
    }
    let conversation = wanted && this.conversations.get(wanted);
    if (!conversation) {
      conversation = { id: randomUUID(), title: titleFor(message), turns: [] };
      this.conversations.set(conversation.id, conversation);
    }
    const hold = /\[hold:([\w-]+)\]/.exec(message);
    if (hold && this.gates.has(hold[1])) {
      const gate = this.gates.get(hold[1]);
      gate.reach();
      await gate.opened;
    }
    const turn = conversation.turns.length + 1;
    // "message": the refusal comes as the assistant's reply instead of a notice.
    const html = this.rateLimited === "message" ? [`<p>${RATE_LIMIT_TEXT}</p>`] : answerHtml(message, turn);
    conversation.turns.push({ message, html, mode });
    send(res, 200, "application/json", JSON.stringify({ conversation_id: conversation.id, title: conversation.title, blocks: html }));
  }
}

function send(res, status, type, body) {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store" }).end(body);
}
