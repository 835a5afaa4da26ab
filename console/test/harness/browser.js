// Headless Chromium (Debian's, driven by playwright-core) opening the
// console of a local chatrelay. Every host name but 127.0.0.1 fails to
// resolve, so nothing leaves the machine; each page records what the tests
// assert never happens: a request to another origin, a Content-Security-Policy
// or Trusted Types violation, an uncaught error.
import { chromium } from "playwright-core";
import { existsSync } from "node:fs";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export async function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ],
  });
}

// A fresh browser context (its own session storage) with the console open.
export async function openConsole(browser, base, { width = 1440, height = 900, colorScheme = "light" } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme });
  const page = await context.newPage();
  const seen = { foreign: [], violations: [], errors: [] };
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(`${base}/`) && !url.startsWith("data:")) seen.foreign.push(url);
  });
  page.on("console", (message) => {
    if (/Content Security Policy|Trusted ?Type|TrustedHTML/i.test(message.text())) seen.violations.push(message.text());
  });
  page.on("pageerror", (error) => seen.errors.push(error.message));
  await page.goto(`${base}/`);
  return { page, context, seen };
}

// Signs in as a user does; resolves once the console shows.
export async function signIn(page, key) {
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#console").waitFor();
}
