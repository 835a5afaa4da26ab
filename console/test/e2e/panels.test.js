// The console's panels that use the console API of issue 16 — cancel, the
// extension sessions, the webhook deliveries with Retry, the counts per
// status and one chat's requests — end to end: this build's
// `chatrelay serve`, the console in headless Chromium, the simulated
// extension, and a webhook receiver on loopback.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Chatrelay } from "../../../extension/test/harness/chatrelay.js";
import { waitUntil } from "../../../extension/test/harness/wait.js";
import { launch, openConsole, signIn } from "../harness/browser.js";
import { Simulator } from "../harness/simulator.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const REPO = resolve(HERE, "../../..");
const BIN = process.env.CHATRELAY_BIN || join(REPO, "target/debug/chatrelay");

const dir = mkdtempSync(join(tmpdir(), "chatrelay-console-panels-"));
// One attempt per delivery, so a refused one is `failed` at once; the
// receiver is on loopback.
const server = new Chatrelay({
  bin: BIN,
  dir,
  env: { CHATRELAY_WEBHOOK_RETRY_SCHEDULE: "none", CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS: "true" },
});

// A webhook receiver that refuses (500) until told to accept.
const receiver = { accept: false, received: [] };
const hooks = createServer((req, res) => {
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    receiver.received.push({ id: req.headers["webhook-id"], body: JSON.parse(body) });
    res.writeHead(receiver.accept ? 200 : 500).end(receiver.accept ? "ok" : "not now");
  });
});

let browser;
let key;
let page;
let seen;

before(async () => {
  hooks.listen(0, "127.0.0.1");
  await once(hooks, "listening");
  key = await server.createAccount("console-panels", ["--webhook-url", `http://127.0.0.1:${hooks.address().port}/hook`]);
  await server.start();
  browser = await launch();
  ({ page, seen } = await openConsole(browser, server.base));
  await signIn(page, key);
});

after(async () => {
  await browser?.close();
  await server.stop();
  hooks.close();
  if (process.env.KEEP_TEST_DIR) console.log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
const unique = (text) => `${text} #${++counter}-${Date.now().toString(36)}`;

const row = (id) => page.locator(`#requests tr[data-request-id="${id}"]`);
const rowIn = (id, status) => page.locator(`#requests tr[data-request-id="${id}"][data-status="${status}"]`);
const count = (status) => page.locator(`[data-count="${status}"]`);

async function countsAre(expected) {
  await waitUntil(`the counts to be ${JSON.stringify(expected)}`, async () => {
    const shown = {};
    for (const status of Object.keys(expected)) shown[status] = Number(await count(status).textContent());
    return Object.entries(expected).every(([s, n]) => shown[s] === n) ? shown : { ok: false, shown };
  });
}

test("the counts per status follow the queue live", async () => {
  await countsAre({ idle: 0, executing: 0, done: 0, failed: 0 });
  await page.getByLabel("Message").fill(unique("count me"));
  await page.getByRole("button", { name: "Submit" }).click();
  await countsAre({ idle: 1, executing: 0, done: 0, failed: 0 });
  // A slow extension: the request is executing while it thinks.
  const slow = await Simulator.start(server, key, ["--delay-ms", "600000"]);
  await countsAre({ idle: 0, executing: 1, done: 0, failed: 0 });
  await slow.stop();
  await countsAre({ idle: 1, executing: 0, done: 0, failed: 0 });
  const quick = await Simulator.start(server, key, ["--exit-after", "1"]);
  await quick.finished();
  await countsAre({ idle: 0, executing: 0, done: 1, failed: 0 });
  // The server agrees.
  const counts = await fetch(`${server.base}/api/chat/counts/`, { headers: { "X-API-Key": key } }).then((r) => r.json());
  assert.deepEqual(counts, { idle: 0, executing: 0, done: 1, failed: 0 });
});

test("Cancel on an idle row fails it as cancelled, live", async () => {
  const request = await server.submit(key, { message: unique("never mind") });
  await rowIn(request.id, "idle").waitFor();
  await row(request.id).getByRole("button", { name: "Cancel" }).click();
  await rowIn(request.id, "failed").waitFor();
  assert.equal(await row(request.id).locator(".row-error").textContent(), "cancelled");
  assert.equal(await row(request.id).getByRole("button", { name: "Cancel" }).count(), 0);
  const stored = await server.request(key, request.id);
  assert.equal(stored.status, "failed");
  assert.equal(stored.error_message, "cancelled");
});

test("Cancel in the detail view", async () => {
  const request = await server.submit(key, { message: unique("cancel me from the detail") });
  await page.goto(`${server.base}/#/requests/${request.id}`);
  const detail = page.locator("#detail");
  await detail.getByRole("button", { name: "Cancel" }).click();
  await detail.locator(".status", { hasText: "failed" }).waitFor();
  assert.equal(await detail.locator(".error-message").textContent(), "cancelled");
  assert.equal(await detail.getByRole("button", { name: "Cancel" }).count(), 0);
  await page.goto(`${server.base}/#/requests`);
});

test("Cancel of a request that moved on shows the server's 409 detail", async () => {
  // The page hears no events, so it still shows the request idle after an
  // extension has started it.
  await page.route("**/api/chat/events/**", (route) => route.abort());
  await page.reload();
  await page.locator("#stream-banner").waitFor({ state: "visible" });
  const request = await server.submit(key, { message: unique("too late to cancel") });
  await page.reload();
  await rowIn(request.id, "idle").waitFor();
  const slow = await Simulator.start(server, key, ["--delay-ms", "600000"]);
  try {
    await server.status(key, request.id, "executing");
    await row(request.id).getByRole("button", { name: "Cancel" }).click();
    const notice = page.locator("#requests .error[role=alert]");
    await notice.waitFor();
    assert.equal(
      await notice.textContent(),
      "Could not cancel the request: request is executing; only an idle request can be cancelled",
    );
    // The row then shows what the request is now.
    await rowIn(request.id, "executing").waitFor();
  } finally {
    await page.unroute("**/api/chat/events/**");
    await slow.stop();
  }
  // The extension left: the request is queued again, and can be cancelled.
  await server.status(key, request.id, "idle");
  await page.reload();
  await page.locator("#stream-banner").waitFor({ state: "hidden" });
  await row(request.id).getByRole("button", { name: "Cancel" }).click();
  await rowIn(request.id, "failed").waitFor();
});

test("the extensions panel shows the connected extension, and says when none is", async () => {
  await page.locator("#nav").getByRole("link", { name: "Extensions" }).click();
  const sessions = page.locator("#sessions");
  await sessions.getByText("No extension connected").waitFor();
  assert.equal(await page.locator("#extension-state").textContent(), "No extension connected");

  const held = await server.submit(key, { message: unique("held by the extension") });
  const extension = await Simulator.start(server, key, ["--delay-ms", "600000"]);
  await server.status(key, held.id, "executing");
  const sessionRow = sessions.locator("tr[data-session-id]");
  await sessionRow.waitFor({ timeout: 15_000 });
  await waitUntil("the session's request in flight", async () => (await sessionRow.locator(".in-flight").textContent()) === "1");
  assert.equal(await page.locator("#extension-state").textContent(), "1 extension connected");
  const listed = await fetch(`${server.base}/api/chat/sessions/`, { headers: { "X-API-Key": key } }).then((r) => r.json());
  assert.equal(listed.length, 1);
  assert.equal(await sessionRow.getAttribute("data-session-id"), listed[0].session_id);

  await extension.stop();
  await sessions.getByText("No extension connected").waitFor({ timeout: 15_000 });
  assert.equal(await sessions.locator("tr[data-session-id]").count(), 0);
  // What it held is queued again; cancel it so the next tests start clean.
  await server.status(key, held.id, "idle");
  await fetch(`${server.base}/api/chat/requests/${held.id}/cancel/`, { method: "POST", headers: { "X-API-Key": key } });
});

test("the webhooks panel lists a failed delivery with its attempt, and Retry sends it again", async () => {
  receiver.accept = false;
  receiver.received.length = 0;
  const request = await server.submit(key, { message: unique("tell my webhook") });
  const extension = await Simulator.start(server, key, ["--exit-after", "1"]);
  await extension.finished();
  await waitUntil("the first attempt", async () => receiver.received.some((r) => r.body.request_id === request.id));

  await page.locator("#nav").getByRole("link", { name: "Webhooks" }).click();
  const delivery = page.locator("#webhooks tr", { has: page.locator(`a[href="#/requests/${request.id}"]`) });
  await delivery.and(page.locator("[data-status='failed']")).waitFor({ timeout: 15_000 });
  assert.match(await delivery.locator(".attempts").textContent(), /^#1 .* · HTTP 500/);
  assert.equal(await delivery.locator(".attempts li").count(), 1);

  receiver.accept = true;
  await delivery.getByRole("button", { name: "Retry" }).click();
  await delivery.and(page.locator("[data-status='succeeded']")).waitFor({ timeout: 20_000 });
  assert.equal(await delivery.locator(".attempts li").count(), 2);
  assert.match(await delivery.locator(".attempts li").nth(1).textContent(), /HTTP 200/);
  const attempts = receiver.received.filter((r) => r.body.request_id === request.id);
  assert.equal(attempts.length, 2);
  assert.equal(attempts[0].id, attempts[1].id, "the same webhook-id on both attempts");
  assert.equal(await delivery.getAttribute("data-delivery-id"), attempts[0].id);
});

test("the chats list counts each chat's requests, and a chat lists its own", async () => {
  const first = await server.submit(key, { message: unique("start a chat") });
  const extension = await Simulator.start(server, key, ["--exit-after", "2"]);
  const { chat } = await server.status(key, first.id, "done");
  const second = await server.submit(key, { message: unique("and continue it"), chat_id: chat });
  await extension.finished();
  await server.status(key, second.id, "done");

  await page.locator("#nav").getByRole("link", { name: "Chats" }).click();
  const chatRow = page.locator("#chats tr", { hasText: chat });
  await chatRow.locator(".requests-count .count").waitFor();
  assert.equal(await chatRow.locator(".requests-count").textContent(), "2");
  await chatRow.getByRole("link").click();
  const rows = page.locator("#chat-requests tr[data-request-id]");
  await waitUntil("the chat's two requests", async () => (await rows.count()) === 2);
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.requestId)), [second.id, first.id]);
  assert.match(await page.locator("#chat-counts").textContent(), /^0 idle · 0 executing · 2 done · 0 failed$/);
});

test("nothing was loaded from elsewhere, nothing broke the policy, no script error", () => {
  assert.deepEqual(seen.foreign, []);
  assert.deepEqual(seen.violations, []);
  assert.deepEqual(seen.errors, []);
});
