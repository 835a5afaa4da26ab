// The real `chatrelay serve` as a child process on loopback, over a SQLite
// file in the test's temporary directory, plus the REST calls the tests make.
// A restart reuses the same port (the extension's settings name it) and file.
// The web console's suite (console/test/) uses it too.
import { spawn, execFile } from "node:child_process";
import { createServer } from "node:net";
import { once } from "node:events";
import { join } from "node:path";
import { promisify } from "node:util";
import { waitUntil, withTimeout } from "./wait.js";

const LISTENING = /chatrelay listening: REST and WebSocket on (http:\/\/[\d.]+:(\d+))/;

export class Chatrelay {
  // `env`: more settings (CHATRELAY_… variables) for `serve` and `account`.
  constructor({ bin, dir, env = {} }) {
    this.bin = bin;
    this.env = env;
    this.databaseUrl = `sqlite://${join(dir, "chatrelay.db")}?mode=rwc`;
    this.logs = [];
    this.port = 0;
  }

  // `options`: more flags of `account create` (e.g. --webhook-url URL).
  async createAccount(name, options = []) {
    const args = ["account", "--database-url", this.databaseUrl, "create", "--name", name, ...options];
    const { stdout } = await promisify(execFile)(this.bin, args, { env: { ...process.env, ...this.env } });
    return stdout.trim().split("\n").pop().trim();
  }

  // Starts serve on the port of the previous start (a free one the first time).
  async start() {
    if (!this.port) this.port = await freePort();
    const child = spawn(this.bin, ["serve"], {
      env: {
        ...process.env,
        DATABASE_URL: this.databaseUrl,
        CHATRELAY_HTTP_ADDR: `127.0.0.1:${this.port}`,
        CHATRELAY_GRPC_ADDR: "127.0.0.1:0",
        RUST_LOG: process.env.RUST_LOG || "warn",
        ...this.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    child.stderr.on("data", (d) => this.logs.push(String(d)));
    let out = "";
    const listening = new Promise((resolve, reject) => {
      child.stdout.on("data", (d) => {
        out += d;
        const m = LISTENING.exec(out);
        if (m) resolve(m[1]);
      });
      child.once("exit", (code) => reject(new Error(`chatrelay serve exited (${code}): ${this.logs.join("")}`)));
    });
    this.base = await withTimeout("chatrelay serve to listen", listening, 60_000);
    return this;
  }

  // A crash: SIGKILL, no graceful shutdown.
  async kill() {
    const exited = once(this.child, "exit");
    this.child.kill("SIGKILL");
    await exited;
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode) return;
    const exited = once(this.child, "exit");
    this.child.kill("SIGTERM");
    await withTimeout("chatrelay serve to stop", exited, 30_000).catch(() => this.child.kill("SIGKILL"));
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws/extension/`;
  }

  async submit(key, body) {
    const res = await fetch(`${this.base}/api/chat/submit/`, {
      method: "POST",
      headers: { "X-API-Key": key, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = await res.json();
    if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${JSON.stringify(json)}`);
    return json;
  }

  async request(key, id) {
    const res = await fetch(`${this.base}/api/chat/requests/${id}/`, { headers: { "X-API-Key": key } });
    if (res.status !== 200) throw new Error(`GET request answered ${res.status}`);
    return res.json();
  }

  async chats(key) {
    const res = await fetch(`${this.base}/api/chat/chats/`, { headers: { "X-API-Key": key } });
    return res.json();
  }

  // Polls the request until it is done or failed.
  finished(key, id, timeoutMs = 45_000) {
    return waitUntil(
      `request ${id} to finish`,
      async () => {
        const r = await this.request(key, id);
        return r.status === "done" || r.status === "failed" ? r : { ok: false, status: r.status };
      },
      { timeoutMs, everyMs: 100 },
    ).catch(async (e) => {
      if (this.diagnose) e.message += `\n${await this.diagnose().catch((err) => err.message)}`;
      throw e;
    });
  }

  status(key, id, wanted, timeoutMs = 30_000) {
    return waitUntil(
      `request ${id} to be ${wanted}`,
      async () => {
        const r = await this.request(key, id);
        return r.status === wanted ? r : { ok: false, status: r.status };
      },
      { timeoutMs },
    );
  }
}

async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}
