// Headless Chromium with the unpacked extension loaded, where chatgpt.com
// resolves to the local stand-in and every other name fails to resolve, so
// nothing leaves the machine.
import { chromium } from "playwright-core";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { waitUntil, withTimeout } from "./wait.js";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export class Browser {
  static async launch({ extensionDir, standInPort, dir }) {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
    const context = await chromium.launchPersistentContext(join(dir, "profile"), {
      executablePath: CHROMIUM,
      headless: true,
      ignoreDefaultArgs: ["--disable-extensions"],
      viewport: { width: 900, height: 700 },
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--disable-extensions-except=${extensionDir}`,
        `--load-extension=${extensionDir}`,
        `--host-resolver-rules=MAP chatgpt.com 127.0.0.1:${standInPort}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`,
        "--ignore-certificate-errors",
        // The extension works in background tabs; keep their timers running
        // at full speed so the stand-in streams as fast as in a visible tab.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
      ],
    });
    const worker =
      context.serviceWorkers().find((w) => w.url().startsWith("chrome-extension://")) ||
      (await context.waitForEvent("serviceworker", { timeout: 30_000 }));
    const id = new URL(worker.url()).host;
    const browser = new Browser(context, id);
    browser.control = await context.newPage();
    await browser.control.goto(browser.url("src/options/options.html"));
    return browser;
  }

  constructor(context, id) {
    this.context = context;
    this.id = id;
  }

  url(path) {
    return `chrome-extension://${this.id}/${path}`;
  }

  // Fills in the options page the way a user does, and saves.
  async configure({ serverUrl, apiKey, maxTabs }, page = this.control) {
    await page.goto(this.url("src/options/options.html"));
    await page.getByLabel("Server URL").fill(serverUrl);
    await page.getByLabel("API key").fill(apiKey);
    if (maxTabs) {
      await page.locator("summary").click();
      await page.getByLabel("Maximum ChatGPT tabs").fill(String(maxTabs));
    }
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#result.ok").waitFor();
  }

  // What the popup shows, asked of the worker the same way the popup does.
  status() {
    return this.control.evaluate(() => chrome.runtime.sendMessage({ type: "chatrelay:status" }));
  }

  waitForStatus(what, check, timeoutMs = 30_000) {
    return waitUntil(
      what,
      async () => {
        const st = await this.status();
        return check(st) ? st : { ok: false, st };
      },
      { timeoutMs },
    );
  }

  // Stops the extension's service worker the way Chrome does when it deems
  // it idle (DevTools protocol), and resolves once it has stopped.
  async stopWorker() {
    const cdp = await this.context.newCDPSession(this.control);
    await cdp.send("ServiceWorker.enable");
    const stopped = new Promise((resolve) => {
      cdp.on("ServiceWorker.workerVersionUpdated", ({ versions }) => {
        if (versions.some((v) => v.scriptURL.startsWith(this.url("")) && v.runningStatus === "stopped")) resolve();
      });
    });
    await cdp.send("ServiceWorker.stopAllWorkers");
    await withTimeout("the extension's worker to stop", stopped);
    await cdp.detach();
  }

  close() {
    return this.context.close();
  }
}
