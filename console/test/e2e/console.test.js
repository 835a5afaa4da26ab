// The web console end to end: this build's `chatrelay serve` on a SQLite file
// in a temporary directory, the console in headless Chromium, and the
// simulated extension (`chatrelay extension simulate`) answering. The tests
// use the page as a person does — labels, buttons, what is shown — and check
// over REST what it did.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Chatrelay } from "../../../extension/test/harness/chatrelay.js";
import { waitUntil } from "../../../extension/test/harness/wait.js";
import { launch, openConsole, signIn } from "../harness/browser.js";
import { Simulator } from "../harness/simulator.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const CONSOLE_DIR = resolve(HERE, "../..");
const REPO = resolve(CONSOLE_DIR, "..");
const BIN = process.env.CHATRELAY_BIN || join(REPO, "target/debug/chatrelay");
// Screenshots for the README go to console/docs/ only when asked, so a test
// run leaves the work tree as it was.
const SHOTS = process.env.CHATRELAY_UPDATE_SCREENSHOTS ? join(CONSOLE_DIR, "docs") : null;

const dir = mkdtempSync(join(tmpdir(), "chatrelay-console-"));
const server = new Chatrelay({ bin: BIN, dir });
let browser;
let key;
let page;
let seen;

// An answer with Markdown and with HTML that must stay text.
const HOSTILE = [
  "# Qubits",
  "",
  "A **qubit** holds *both* states; see `superposition`.",
  "",
  "<script>window.__pwned = 'script'</script>",
  "<img src=x onerror=\"window.__pwned = 'img'\">",
  '<a href="javascript:window.__pwned=1">click</a> and [a link](javascript:alert(1))',
  "",
  "- one",
  "- two",
  "",
  "```python",
  "print('<b>not bold</b>')",
  "```",
].join("\n");

before(async () => {
  key = await server.createAccount("console-e2e");
  await server.start();
  browser = await launch();
  ({ page, seen } = await openConsole(browser, server.base));
});

after(async () => {
  await browser?.close();
  await server.stop();
  if (process.env.KEEP_TEST_DIR) console.log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
});

async function screenshot(target, name, options = {}) {
  mkdirSync(SHOTS || dir, { recursive: true });
  await target.screenshot({ path: join(SHOTS || dir, name), ...options });
}

let counter = 0;
const unique = (text) => `${text} #${++counter}-${Date.now().toString(36)}`;

const row = (id) => page.locator(`#requests tr[data-request-id="${id}"]`);
const statusOf = async (id) => (await row(id).locator(".status").textContent()).trim();

// Submits through the form; resolves to the request the server stored.
async function submitInPage(message, { responseType, thinkingTime, chat } = {}) {
  await page.goto(`${server.base}/#/requests`);
  await page.getByLabel("Message").fill(message);
  if (responseType) await page.getByLabel("Response type").selectOption(responseType);
  if (thinkingTime) await page.getByLabel("Thinking time").selectOption(thinkingTime);
  if (chat) await page.getByLabel("Chat", { exact: true }).selectOption({ label: chat });
  await page.getByRole("button", { name: "Submit" }).click();
  await page.locator("#submit-result").waitFor();
  const found = await waitUntil(`"${message}" to be stored`, async () => {
    const list = await fetch(`${server.base}/api/chat/requests/?limit=20`, { headers: { "X-API-Key": key } }).then((r) => r.json());
    return list.find((r) => r.message === message) || { ok: false };
  });
  return found;
}

test("the console is served at / with a strict Content-Security-Policy", async () => {
  const res = await fetch(`${server.base}/`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = res.headers.get("content-security-policy");
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"]) {
    assert.ok(csp.includes(directive), `${directive} in ${csp}`);
  }
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  await page.getByLabel("API key").waitFor();
  assert.equal(await page.title(), "chatrelay console");
});

test("a wrong API key is refused clearly; the right one signs in, kept in session storage only", async () => {
  await page.getByLabel("API key").fill("cr_not_a_key");
  await page.getByRole("button", { name: "Sign in" }).click();
  const error = page.locator("#sign-in-error");
  await error.waitFor();
  assert.match(await error.textContent(), /^Wrong API key: the server refused it \(invalid API key\)\.$/);
  assert.equal(await page.locator("#console").isVisible(), false);

  await signIn(page, key);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("chatrelay.apiKey")), key);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.deepEqual(await page.context().cookies(), []);
  assert.ok(!page.url().includes(key), page.url());
  // A reload keeps the session (same tab).
  await page.reload();
  await page.locator("#console").waitFor();
});

test("the API's detail is shown next to the form", async () => {
  await page.getByLabel("Message").fill("   ");
  await page.getByRole("button", { name: "Submit" }).click();
  const error = page.locator("#submit-error");
  await error.waitFor();
  assert.equal(await error.textContent(), "message: must not be empty");
});

let answered;

test("a submitted request shows as idle, then done without a reload when an extension answers", async () => {
  const message = unique("Explain qubits");
  // A page that reloaded would lose this.
  await page.evaluate(() => (window.__sameDocument = true));
  const request = await submitInPage(message, { responseType: "thinking", thinkingTime: "extended" });
  assert.equal(request.response_type, "thinking");
  assert.equal(request.thinking_time, "extended");
  await row(request.id).waitFor();
  assert.equal(await statusOf(request.id), "idle");
  assert.equal(await row(request.id).locator("a.message").textContent(), message);
  assert.equal(await row(request.id).getAttribute("data-status"), "idle");

  const extension = await Simulator.start(server, key, ["--reply", HOSTILE, "--exit-after", "1"]);
  await page.locator(`#requests tr[data-request-id="${request.id}"][data-status="done"]`).waitFor({ timeout: 20_000 });
  assert.equal(await statusOf(request.id), "done");
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
  await extension.finished();
  answered = request;
});

test("the detail shows the answer as Markdown, and HTML in it runs nothing", async () => {
  await row(answered.id).locator("a.message").click();
  const detail = page.locator("#detail");
  await detail.locator(".response").waitFor();
  assert.equal(await detail.locator(".status").textContent(), "done");
  assert.equal(await detail.locator(".message-text").textContent(), answered.message);
  const response = detail.locator(".response");
  assert.equal(await response.locator("h4").textContent(), "Qubits");
  assert.equal(await response.locator("strong").textContent(), "qubit");
  assert.equal(await response.locator("em").textContent(), "both");
  assert.deepEqual(await response.locator("li").allTextContents(), ["one", "two"]);
  assert.equal(await response.locator("pre code").textContent(), "print('<b>not bold</b>')");
  // Every tag is text: shown, never made into an element.
  const text = await response.textContent();
  assert.ok(text.includes("<script>window.__pwned = 'script'</script>"), text);
  assert.ok(text.includes(`<img src=x onerror="window.__pwned = 'img'">`), text);
  assert.equal(await response.locator("script, img, b, a[href^='javascript']").count(), 0);
  assert.equal(await page.locator("a[href^='javascript']").count(), 0);
  assert.equal(await page.evaluate(() => document.scripts.length), 1, "only the console's own module");
  assert.equal(await page.evaluate(() => window.__pwned), undefined);

  const timeline = await detail.locator(".timeline").textContent();
  assert.match(timeline, /Queued/);
  assert.match(timeline, /queued → started: [\d.]+ (ms|s)/);
  assert.match(timeline, /started → completed: [\d.]+ (ms|s)/);
  assert.match(timeline, /queued → completed: [\d.]+ (ms|s)/);
  // Its chat, by the title the extension reported.
  const chat = detail.locator("dd a[href^='#/chats/']");
  await chat.waitFor();
  assert.equal(await chat.textContent(), answered.message.slice(0, 40));
});

test("the chats list shows the chat's title and ChatGPT id; a follow-up picks it in Chat", async () => {
  const done = await server.request(key, answered.id);
  await page.locator("#nav").getByRole("link", { name: "Chats" }).click();
  const chatRow = page.locator("#chats tr", { hasText: done.chat });
  await chatRow.waitFor();
  assert.equal(await chatRow.locator("td").first().textContent(), answered.message.slice(0, 40));

  const title = answered.message.slice(0, 40);
  const followUp = await submitInPage(unique("And in one sentence?"), { chat: `${title} · ${done.chat}` });
  assert.equal(followUp.chat, done.chat);
  assert.equal(await statusOf(followUp.id), "idle");
});

test("a failed request shows its error", async () => {
  const request = await server.submit(key, { message: unique("this one fails") });
  const extension = await Simulator.start(server, key, ["--failure-rate", "1", "--exit-after", "2"]);
  await page.locator(`#requests tr[data-request-id="${request.id}"][data-status="failed"]`).waitFor({ timeout: 20_000 });
  assert.equal(await row(request.id).locator(".row-error").textContent(), "simulated failure");
  await extension.stop();
});

test("while the server is down a banner says so; the console reconnects by itself", async () => {
  const banner = page.locator("#stream-banner");
  assert.equal(await banner.isVisible(), false);
  await server.stop();
  await banner.waitFor({ state: "visible" });
  assert.match(await banner.innerText(), /^Live updates are down \(.+\); reconnecting in .+\. What you see may be out of date\./);
  await server.start();
  await banner.waitFor({ state: "hidden", timeout: 30_000 });
  // Events flow again: a request submitted elsewhere appears and is answered.
  const request = await server.submit(key, { message: unique("after the restart") });
  await row(request.id).waitFor();
  const extension = await Simulator.start(server, key, ["--exit-after", "1"]);
  await page.locator(`#requests tr[data-request-id="${request.id}"][data-status="done"]`).waitFor({ timeout: 20_000 });
  await extension.finished();
});

// A second account with a tidy queue of its own: every status, two chats,
// one request waiting behind another in its chat, an extension connected.
async function seedForScreenshots() {
  const acme = await server.createAccount("acme");
  const reply = [
    "Both keep every request durably; the difference is **how many processes** write.",
    "",
    "| | SQLite | PostgreSQL |",
    "| --- | --- | --- |",
    "| writers | one process | many cores |",
    "| setup | none | a server |",
    "",
    "For a small team, start with SQLite:",
    "",
    "```sh",
    "chatrelay serve",
    "```",
  ].join("\n");
  const first = await server.submit(acme, { message: "Summarise last night's incident report in five bullet points" });
  await server.submit(acme, { message: "Draft a release note for version 1.4", response_type: "thinking" });
  const answering = await Simulator.start(server, acme, ["--reply", reply, "--exit-after", "2"]);
  await answering.finished();
  const failing = await server.submit(acme, { message: "Translate the onboarding guide into German" });
  const failer = await Simulator.start(server, acme, ["--failure-rate", "1", "--exit-after", "1"]);
  await failer.finished();
  await server.status(acme, failing.id, "failed");
  const { chat } = await server.status(acme, first.id, "done");
  // Held "executing" by a slow extension; the next in its chat waits behind it.
  const slow = await server.submit(acme, { message: "Compare PostgreSQL and SQLite for a team of ten", chat_id: chat, response_type: "thinking", thinking_time: "extended" });
  const holder = await Simulator.start(server, acme, ["--delay-ms", "600000"]);
  await server.status(acme, slow.id, "executing");
  await server.submit(acme, { message: "And which one needs less care at night?", chat_id: chat });
  return { acme, holder, done: first };
}

test("screenshots at 1440 px and 360 px, light and dark", async () => {
  const { acme, holder, done } = await seedForScreenshots();
  try {
    for (const [name, options, path] of [
      ["console.png", { width: 1440, height: 760 }, "#/requests"],
      ["console-360.png", { width: 360, height: 780 }, "#/requests"],
      ["console-dark.png", { width: 1440, height: 760, colorScheme: "dark" }, "#/requests"],
      ["console-request.png", { width: 1440, height: 900 }, `#/requests/${done.id}`],
    ]) {
      const shot = await openConsole(browser, server.base, options);
      await signIn(shot.page, acme);
      await shot.page.goto(`${server.base}/${path}`);
      if (path === "#/requests") {
        await waitUntil("every seeded request", async () => (await shot.page.locator("#requests tbody tr").count()) === 5);
        await shot.page.locator("#requests tr[data-status='executing']").waitFor();
      } else {
        await shot.page.locator("#detail .response table").waitFor();
      }
      await shot.page.waitForFunction(() => !document.getElementById("extension-state").textContent.includes("checking"));
      // Nothing is wider than the window: no sideways scrolling at 360 px.
      const overflow = await shot.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${name}: the page is ${overflow} px wider than the window`);
      await shot.page.mouse.move(0, 0); // no link drawn as hovered
      await screenshot(shot.page, name, { fullPage: options.width < 400 });
      assert.deepEqual(shot.seen.errors, []);
      assert.deepEqual(shot.seen.violations, []);
      await shot.context.close();
    }
  } finally {
    await holder.stop();
  }
});

test("keyboard: every control is reachable with Tab, and Sign out forgets the key", async () => {
  await page.goto(`${server.base}/#/requests`);
  await page.locator("#requests tbody tr").first().waitFor();
  await page.locator("body").focus();
  const reached = [];
  for (let i = 0; i < 40; i += 1) {
    await page.keyboard.press("Tab");
    reached.push(await page.evaluate(() => {
      const el = document.activeElement;
      return `${el.tagName.toLowerCase()}:${el.labels?.[0]?.textContent || el.textContent.trim()}`;
    }));
  }
  for (const control of ["a:Requests", "a:Chats", "a:Extensions", "a:Webhooks", "button:Sign out", "textarea:Message", "select:Response type", "select:Thinking time", "select:Chat", "button:Submit", "select:Status"]) {
    assert.ok(reached.includes(control), `${control} not reached by Tab: ${reached.join(", ")}`);
  }
  assert.ok(reached.some((r) => r.startsWith("a:") && r.includes("Explain qubits")), "a request's row links to its detail");
  // Following a link moves the focus to the new view's heading.
  await page.locator("#requests a.message").first().focus();
  await page.keyboard.press("Enter");
  await page.locator("#detail-title:focus").waitFor();
  await page.locator("#view-request").getByRole("link", { name: "← Requests" }).focus();
  await page.keyboard.press("Enter");
  await page.locator("#requests-title:focus").waitFor();

  await page.getByRole("button", { name: "Sign out" }).focus();
  await page.keyboard.press("Enter");
  await page.locator("#sign-in-note").waitFor();
  assert.equal(await page.locator("#sign-in-note").textContent(), "Signed out: the key is forgotten.");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("chatrelay.apiKey")), null);
  await page.getByLabel("API key").focus();
  await page.keyboard.type(key);
  await page.keyboard.press("Enter");
  await page.locator("#console").waitFor();
});

test("the status filter and cursor paging list what the server holds", async () => {
  await page.getByLabel("Status", { exact: true }).selectOption("done");
  await waitUntil("only done rows", async () => {
    const statuses = await page.locator("#requests tbody .status").allTextContents();
    return statuses.length > 0 && statuses.every((s) => s === "done");
  });
  await page.getByLabel("Status", { exact: true }).selectOption("");
  // 55 more requests: the first page holds 50, the rest come with "Load older requests".
  for (let i = 0; i < 55; i += 1) await server.submit(key, { message: `bulk ${i}` });
  await page.reload();
  await page.locator("#requests tbody tr").nth(49).waitFor();
  const all = await fetch(`${server.base}/api/chat/requests/?limit=1000`, { headers: { "X-API-Key": key } }).then((r) => r.json());
  await waitUntil("the first page", async () => (await page.locator("#requests tbody tr").count()) === 50);
  await page.getByRole("button", { name: "Load older requests" }).click();
  await waitUntil("every request listed", async () => (await page.locator("#requests tbody tr").count()) === all.length);
  const shown = await page.locator("#requests tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.requestId));
  assert.deepEqual(shown, all.map((r) => r.id), "newest first, each once");
  assert.equal(await page.getByRole("button", { name: "Load older requests" }).isVisible(), false);
});

test("nothing was loaded from elsewhere, nothing broke the policy, no script error", () => {
  assert.deepEqual(seen.foreign, []);
  assert.deepEqual(seen.violations, []);
  assert.deepEqual(seen.errors, []);
});
