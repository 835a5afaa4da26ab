// End to end: the real `chatrelay serve`, the unpacked extension in headless
// Chromium, and the stand-in ChatGPT page served as chatgpt.com. Each test
// submits over REST and reads the outcome over REST, as a client would.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { StandIn } from "../standin/server.js";
import { answerMarkdown, titleFor } from "../standin/answers.js";
import { makeCertificate } from "../harness/cert.js";
import { Chatrelay } from "../harness/chatrelay.js";
import { Browser } from "../harness/browser.js";
import { waitUntil, withTimeout } from "../harness/wait.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const EXTENSION_DIR = resolve(HERE, "../..");
const REPO = resolve(EXTENSION_DIR, "..");
const BIN = process.env.CHATRELAY_BIN || join(REPO, "target/debug/chatrelay");
// Screenshots for the README are written to extension/docs/ only when asked,
// so a test run leaves the work tree as it was.
const SHOTS = process.env.CHATRELAY_UPDATE_SCREENSHOTS ? join(EXTENSION_DIR, "docs") : null;

const dir = mkdtempSync(join(tmpdir(), "chatrelay-ext-"));
const standIn = new StandIn();
const server = new Chatrelay({ bin: BIN, dir });
let browser;
let key;

before(async () => {
  await standIn.start(makeCertificate(dir));
  key = await server.createAccount("extension-e2e");
  await server.start();
  browser = await Browser.launch({ extensionDir: EXTENSION_DIR, standInPort: standIn.port, dir });
  await browser.configure({ serverUrl: server.wsUrl, apiKey: key, maxTabs: 2 });
  // A request that does not finish says what the extension and its tabs
  // were doing at the time.
  server.diagnose = diagnose;
});

after(async () => {
  await browser?.close();
  await server.stop();
  await standIn.stop();
  if (process.env.KEEP_TEST_DIR) console.log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
});

async function diagnose() {
  const st = await browser.status();
  st.chromeTabs = await browser.control.evaluate(() =>
    chrome.tabs.query({}).then((tabs) => tabs.map(({ id, url, status }) => ({ id, url, status }))),
  );
  return `extension: ${JSON.stringify(st)}`;
}

async function screenshot(page, name) {
  const path = SHOTS ? join(SHOTS, name) : join(dir, name);
  mkdirSync(SHOTS || dir, { recursive: true });
  await page.screenshot({ path });
}

let counter = 0;
const unique = (text) => `${text} #${++counter}-${Date.now().toString(36)}`;

test("Test connection names the exact reason", async () => {
  const page = await browser.context.newPage();
  await page.goto(browser.url("src/options/options.html"));
  const tryWith = async (url, apiKey) => {
    await page.getByLabel("Server URL").fill(url);
    await page.getByLabel("API key").fill(apiKey);
    await page.getByRole("button", { name: "Test connection" }).click();
    const result = page.locator("#result");
    await waitUntil("a test result", async () => !(await result.textContent()).includes("Testing"));
    return result.textContent();
  };
  assert.match(await tryWith(server.wsUrl, "cr_wrong"), /Cannot connect: 401: the server refused the API key/);
  assert.match(await tryWith("http://127.0.0.1:1/ws/extension/", key), /wrong URL: it must start with ws:\/\/ or wss:\/\//);
  assert.match(await tryWith("ws://127.0.0.1:1/ws/extension/", key), /Cannot connect: unreachable: nothing answers at 127\.0\.0\.1:1/);
  assert.match(await tryWith(server.wsUrl.replace("/ws/extension/", "/ws/nope/"), key), /wrong URL: chatrelay has no WebSocket at \/ws\/nope\//);
  assert.match(await tryWith(server.wsUrl, key), /^Connected: chatrelay at 127\.0\.0\.1:\d+ accepts this API key/);
  await screenshot(page.locator("main"), "options.png");
  await page.close();
});

test("connects to the server and says so in the popup", async () => {
  await browser.waitForStatus("the popup to show a connection", (st) => st.connection.state === "connected");
});

test("a wrong API key: the popup says the server refused it, and a fixed key connects", async () => {
  await browser.configure({ serverUrl: server.wsUrl, apiKey: "cr_not_a_key" });
  await browser.waitForStatus("the popup to show the refusal", (st) =>
    st.connection.state === "disconnected" && st.connection.reason.startsWith("401: the server refused the API key"),
  );
  await browser.configure({ serverUrl: server.wsUrl, apiKey: key });
  await browser.waitForStatus("a connection with the right key", (st) => st.connection.state === "connected");
});

let firstChat;

test("a new chat: the request is done with the page's answer, chat id and title", async () => {
  const message = unique("Explain qubits");
  const submitted = await server.submit(key, { message });
  const done = await server.finished(key, submitted.id);
  assert.equal(done.status, "done", done.error_message);
  assert.equal(done.response, answerMarkdown(message, 1));
  const [conversation] = [...standIn.conversations.values()].filter((c) => c.turns[0]?.message === message);
  assert.ok(conversation, "the stand-in holds the conversation");
  assert.equal(done.chat, conversation.id);
  assert.ok(done.started_at, "the extension reported executing");
  const chat = (await server.chats(key)).find((c) => c.chat_id === conversation.id);
  assert.equal(chat.title, titleFor(message));
  assert.equal(standIn.timesReceived(message), 1);
  firstChat = conversation;
});

test("a follow-up with chat_id continues the same chat, in the mode asked for", async () => {
  const message = unique("And in one sentence?");
  const submitted = await server.submit(key, {
    message,
    chat_id: firstChat.id,
    response_type: "thinking",
    thinking_time: "extended",
  });
  const done = await server.finished(key, submitted.id);
  assert.equal(done.status, "done", done.error_message);
  assert.equal(done.chat, firstChat.id);
  assert.equal(done.response, answerMarkdown(message, 2));
  assert.equal(firstChat.turns.length, 2);
  assert.deepEqual(firstChat.turns[1].mode, { response_type: "thinking", thinking_time: "extended" });
});

test("a multi-line message reaches ChatGPT exactly as submitted", async () => {
  const message = unique("First line.\n\nSecond paragraph,\nwith a line break: <b>not HTML</b> & *not Markdown*");
  const submitted = await server.submit(key, { message });
  const done = await server.finished(key, submitted.id);
  assert.equal(done.status, "done", done.error_message);
  assert.deepEqual(standIn.received.at(-1).message, message);
});

test("two tabs run two requests at the same time", async () => {
  const gates = [
    { token: "two-a", text: "Draft a release note" },
    { token: "two-b", text: "Summarise the incident report" },
  ].map((g) => ({ ...g, gate: standIn.gate(g.token) }));
  const submitted = [];
  for (const { token, text } of gates) {
    submitted.push(await server.submit(key, { message: unique(`${text} [hold:${token}]`) }));
  }
  // Both messages wait in the stand-in at once: each tab runs one request,
  // so two tabs are working in parallel.
  await withTimeout("both requests to be running in ChatGPT", Promise.all(gates.map((g) => g.gate.reached))).catch(
    async (e) => {
      const reached = gates.map((g) => `${g.token}: ${g.gate.isReached ? "reached" : "not reached"}`);
      const seen = await Promise.all(submitted.map((s) => server.request(key, s.id)));
      const extension = await diagnose().catch((err) => err.message);
      throw new Error(`${e.message}\nstand-in: ${reached.join(", ")}\nserver: ${JSON.stringify(seen)}\n${extension}`);
    },
  );
  const st = await browser.status();
  assert.equal(st.tabs.filter((t) => t.request_id).length, 2, JSON.stringify(st.tabs));
  const popup = await openPopup();
  await popup.locator("#tabs tr", { hasText: "running" }).nth(1).waitFor();
  await screenshot(popup, "popup.png");
  await popup.close();
  for (const { gate } of gates) gate.release();
  const results = await Promise.all(submitted.map((s) => server.finished(key, s.id)));
  for (const r of results) assert.equal(r.status, "done", r.error_message);
  assert.notEqual(results[0].chat, results[1].chat);
});

test("logged out: the request fails saying so", async () => {
  standIn.loggedOut = true;
  try {
    const message = unique("hello while logged out");
    const submitted = await server.submit(key, { message });
    const r = await server.finished(key, submitted.id);
    assert.equal(r.status, "failed");
    assert.match(r.error_message, /^not logged in to ChatGPT: the page shows its log-in button/);
    assert.equal(standIn.timesReceived(message), 0);
  } finally {
    standIn.loggedOut = false;
  }
});

for (const how of ["notice", "message"]) {
  test(`rate limited (the page says so in a ${how}): the request fails with the page's words`, async () => {
    standIn.rateLimited = how;
    try {
      const submitted = await server.submit(key, { message: unique("one too many") });
      const r = await server.finished(key, submitted.id);
      assert.equal(r.status, "failed");
      assert.match(r.error_message, /rate limit or usage cap\): You've reached our limit of messages per hour/);
    } finally {
      standIn.rateLimited = false;
    }
  });
}

test("a changed page: the error names the selector that matched nothing", async () => {
  const page = await browser.context.newPage();
  await page.goto(browser.url("src/options/options.html"));
  await page.locator("summary").click();
  await page.getByLabel("Selector overrides (JSON)").fill('{"sendButton": ["button[data-testid=\'send-button-v2\']"]}');
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#result.ok").waitFor();
  try {
    const message = unique("after a redesign");
    const submitted = await server.submit(key, { message });
    const r = await server.finished(key, submitted.id, 60_000);
    assert.equal(r.status, "failed");
    assert.match(r.error_message, /^ChatGPT's page changed: no enabled send button .* selector "sendButton" \(button\[data-testid='send-button-v2'\]\) matched nothing/);
    assert.equal(standIn.timesReceived(message), 0);
  } finally {
    await page.getByLabel("Selector overrides (JSON)").fill("");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#result.ok").waitFor();
    await page.close();
  }
});

test("an answer that does not finish in time fails with the timeout", async () => {
  const page = await browser.context.newPage();
  await page.goto(browser.url("src/options/options.html"));
  await page.locator("summary").click();
  await page.getByLabel("Answer timeout (seconds)").fill("5");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#result.ok").waitFor();
  const gate = standIn.gate("slow");
  try {
    const submitted = await server.submit(key, { message: unique("take your time [hold:slow]") });
    const r = await server.finished(key, submitted.id);
    assert.equal(r.status, "failed");
    assert.equal(r.error_message, "the answer did not finish within 5 s");
  } finally {
    gate.release();
    await page.getByLabel("Answer timeout (seconds)").fill("600");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#result.ok").waitFor();
    await page.close();
  }
});

test("the server crashes while ChatGPT answers: the answer lands once, after the restart", async () => {
  const gate = standIn.gate("crash-1");
  const message = unique("survive a crash [hold:crash-1]");
  const submitted = await server.submit(key, { message });
  await withTimeout("the message to reach ChatGPT", gate.reached);
  await server.status(key, submitted.id, "executing");
  await server.kill();
  gate.release();
  // The answer completes while the server is down: the extension keeps it.
  await browser.waitForStatus("the result to wait in the outbox", (st) => st.outbox === 1 && st.connection.state !== "connected");
  await server.start();
  const r = await server.finished(key, submitted.id);
  assert.equal(r.status, "done", r.error_message);
  assert.equal(r.response, answerMarkdown(message, 1));
  assert.equal(standIn.timesReceived(message), 1, "ChatGPT was asked once");
  await browser.waitForStatus("the outbox to be empty", (st) => st.outbox === 0 && st.connection.state === "connected");
});

test("the server restarts before the answer: the redelivered request is not run again", async () => {
  const gate = standIn.gate("crash-2");
  const message = unique("redelivered [hold:crash-2]");
  const submitted = await server.submit(key, { message });
  await withTimeout("the message to reach ChatGPT", gate.reached);
  const before = (await browser.status()).redelivered;
  await server.kill();
  await server.start();
  // The restarted server gives the request back to the queue and hands it to
  // the reconnected extension again, which knows it is already running.
  await browser.waitForStatus("the request to be redelivered", (st) => st.redelivered > before);
  gate.release();
  const r = await server.finished(key, submitted.id);
  assert.equal(r.status, "done", r.error_message);
  assert.equal(r.response, answerMarkdown(message, 1));
  assert.equal(standIn.timesReceived(message), 1, "ChatGPT was asked once");
});

test("Chrome stops the worker mid-request: the answer still lands, once", async () => {
  const gate = standIn.gate("worker");
  const message = unique("outlive the worker [hold:worker]");
  const submitted = await server.submit(key, { message });
  await withTimeout("the message to reach ChatGPT", gate.reached);
  await server.status(key, submitted.id, "executing");
  const { workerStartedAt } = await browser.status();
  await browser.stopWorker();
  // The page finishes; its result wakes the worker, which reconnects.
  gate.release();
  const r = await server.finished(key, submitted.id);
  assert.equal(r.status, "done", r.error_message);
  assert.equal(r.response, answerMarkdown(message, 1));
  assert.equal(standIn.timesReceived(message), 1, "ChatGPT was asked once");
  const st = await browser.waitForStatus("the worker to be connected again", (st) => st.connection.state === "connected");
  assert.ok(st.workerStartedAt > workerStartedAt, "a new worker instance answered");
});

test("closing the tab mid-request fails the request, and the next one gets a new tab", async () => {
  const gate = standIn.gate("closed");
  const submitted = await server.submit(key, { message: unique("about to lose my tab [hold:closed]") });
  await withTimeout("the message to reach ChatGPT", gate.reached);
  const st = await browser.status();
  const busy = st.tabs.find((t) => t.request_id === submitted.id);
  await browser.control.evaluate((tabId) => chrome.tabs.remove(tabId), busy.tabId);
  const r = await server.finished(key, submitted.id);
  assert.equal(r.status, "failed");
  assert.equal(r.error_message, "the ChatGPT tab running this request was closed");
  gate.release();

  const next = await server.submit(key, { message: unique("on a fresh tab") });
  assert.equal((await server.finished(key, next.id)).status, "done");
  const after = await browser.status();
  assert.ok(!after.tabs.some((t) => t.tabId === busy.tabId), JSON.stringify(after.tabs));
});

test("the popup shows the connection, today's counts and the last error", async () => {
  const popup = await openPopup();
  await popup.locator("#state", { hasText: "Connected" }).waitFor();
  const st = await browser.status();
  assert.equal(await popup.locator("#today").textContent(), `Today: ${st.stats.done} done, ${st.stats.failed} failed`);
  assert.ok(st.stats.done >= 8 && st.stats.failed >= 5, JSON.stringify(st.stats));
  assert.match(await popup.locator("#lastError").textContent(), /^the ChatGPT tab running this request was closed/);
  await popup.close();
});

async function openPopup() {
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 380, height: 440 });
  await page.goto(browser.url("src/popup/popup.html"));
  return page;
}
