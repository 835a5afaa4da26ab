// The Markdown the extension reads back from a rendered answer, checked in
// Chromium's DOM (the converter runs in the page, so it is tested in one).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM } from "../harness/browser.js";

const CONVERTER = fileURLToPath(new URL("../../src/content/markdown.js", import.meta.url));
let browser;
let page;

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
  page = await browser.newPage();
  await page.setContent("<main></main>");
  await page.addScriptTag({ path: CONVERTER });
});

after(() => browser?.close());

const markdown = (html) =>
  page.evaluate((h) => {
    const div = document.createElement("div");
    div.innerHTML = h;
    return globalThis.ChatrelayMarkdown.toMarkdown(div);
  }, html);

const cases = [
  ["headings and emphasis", "<h2>Title</h2><p>Some <strong>bold</strong>, <em>italic</em> and <del>gone</del>.</p>",
    "## Title\n\nSome **bold**, *italic* and ~~gone~~."],
  ["inline code and links", '<p>Run <code>ls -la</code>, see <a href="https://x.test/a">docs</a>.</p>',
    "Run `ls -la`, see [docs](https://x.test/a)."],
  ["a code block under ChatGPT's header, keeping its language and blank lines",
    '<pre><div><span>rust</span><button>Copy code</button></div><code class="hljs language-rust">fn main() {\n\n    println!("hi");\n}\n</code></pre>',
    '```rust\nfn main() {\n\n    println!("hi");\n}\n```'],
  ["nested and ordered lists", '<ol start="3"><li>three<ul><li>inner</li></ul></li><li>four</li></ol>',
    "3. three\n   - inner\n4. four"],
  ["a loose list, whose items hold paragraphs", "<ul><li><p>one</p><p>more</p></li><li><p>two</p></li></ul>",
    "- one\n\n  more\n\n- two"],
  ["a blockquote", "<blockquote><p>quoted</p><p>twice</p></blockquote>", "> quoted\n>\n> twice"],
  ["a table", "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>x|y</td></tr></tbody></table>",
    "| a | b |\n| --- | --- |\n| 1 | x\\|y |"],
  ["a rule and a line break", "<p>one<br>two</p><hr><p>three</p>", "one\ntwo\n\n---\n\nthree"],
];

for (const [name, html, expected] of cases) {
  test(`Markdown: ${name}`, async () => {
    assert.equal(await markdown(html), expected);
  });
}
