// The console's Markdown renderer (console/markdown.js) on its own, in
// Chromium's DOM: the module is imported into the console's page (served by
// this build's `chatrelay serve`, under its Content-Security-Policy) and what
// it builds is compared as a tree of tags and text.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Chatrelay } from "../../../extension/test/harness/chatrelay.js";
import { launch, openConsole } from "../harness/browser.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const BIN = process.env.CHATRELAY_BIN || join(resolve(HERE, "../../.."), "target/debug/chatrelay");
const dir = mkdtempSync(join(tmpdir(), "chatrelay-console-md-"));
const server = new Chatrelay({ bin: BIN, dir });
let browser;
let page;
let seen;

before(async () => {
  await server.start();
  browser = await launch();
  ({ page, seen } = await openConsole(browser, server.base));
});

after(async () => {
  await browser?.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

// The rendering of `markdown` as nested arrays: [tag, {attributes}, ...children],
// text as strings.
function render(markdown) {
  return page.evaluate(async (text) => {
    const { renderMarkdown } = await import("/console/markdown.js");
    const shape = (node) => {
      if (node.nodeType === Node.TEXT_NODE) return node.data;
      const attrs = Object.fromEntries([...node.attributes].map((a) => [a.name, a.value]));
      const children = [];
      for (const child of node.childNodes) {
        const s = shape(child);
        // Adjacent text nodes read as one string.
        if (typeof s === "string" && typeof children.at(-1) === "string") children[children.length - 1] += s;
        else children.push(s);
      }
      return [node.tagName.toLowerCase(), attrs, ...children];
    };
    const root = document.createElement("div");
    root.append(renderMarkdown(text));
    return shape(root).slice(2);
  }, markdown);
}

test("headings sit under the console's own (# is h4), paragraphs keep line breaks", async () => {
  assert.deepEqual(await render("# One\n\n### Three ###\n\nfirst line\nsecond line\n\n####### seven"), [
    ["h4", {}, "One"],
    ["h6", {}, "Three"],
    ["p", {}, "first line", ["br", {}], "second line"],
    ["p", {}, "####### seven"],
  ]);
});

test("emphasis, strong, strikethrough, code spans and escapes", async () => {
  assert.deepEqual(await render("**bold** and *it* and _it_ and ~~gone~~ and `a *b* <c>` and \\*not\\* and snake_case_name"), [
    [
      "p",
      {},
      ["strong", {}, "bold"],
      " and ",
      ["em", {}, "it"],
      " and ",
      ["em", {}, "it"],
      " and ",
      ["del", {}, "gone"],
      " and ",
      ["code", {}, "a *b* <c>"],
      " and *not* and snake_case_name",
    ],
  ]);
});

test("fenced code blocks keep their text and language; an unclosed one runs to the end", async () => {
  assert.deepEqual(await render("```js\nconst a = '<b>';\n\n  indented\n```\nafter\n\n~~~\n```\n~~~\n\n```\nno end"), [
    ["pre", { class: "code" }, ["span", { class: "language" }, "js"], ["code", { "data-language": "js" }, "const a = '<b>';\n\n  indented"]],
    ["p", {}, "after"],
    ["pre", { class: "code" }, ["code", {}, "```"]],
    ["pre", { class: "code" }, ["code", {}, "no end"]],
  ]);
});

test("lists: tight and loose, nested, ordered from any number", async () => {
  assert.deepEqual(await render("- a\n- b\n  1. b1\n  2. b2\n- c\n\n3. three\n4. four\n\n* loose\n\n* list"), [
    ["ul", {}, ["li", {}, "a"], ["li", {}, "b", ["ol", {}, ["li", {}, "b1"], ["li", {}, "b2"]]], ["li", {}, "c"]],
    ["ol", { start: "3" }, ["li", {}, "three"], ["li", {}, "four"]],
    ["ul", {}, ["li", {}, ["p", {}, "loose"]], ["li", {}, ["p", {}, "list"]]],
  ]);
});

test("tables with alignment and an escaped pipe; block quotes", async () => {
  assert.deepEqual(await render("| a | b | c |\n|:--|:-:|--:|\n| 1 | x \\| y | **3** |\n\n> quoted\n> - item"), [
    [
      "div",
      { class: "table-wrap" },
      [
        "table",
        {},
        ["thead", {}, ["tr", {}, ["th", { class: "align-left" }, "a"], ["th", { class: "align-center" }, "b"], ["th", { class: "align-right" }, "c"]]],
        ["tbody", {}, ["tr", {}, ["td", { class: "align-left" }, "1"], ["td", { class: "align-center" }, "x | y"], ["td", { class: "align-right" }, ["strong", {}, "3"]]]],
      ],
    ],
    ["blockquote", {}, ["p", {}, "quoted"], ["ul", {}, ["li", {}, "item"]]],
  ]);
});

test("links keep http(s) and mailto only; images are links, never loaded", async () => {
  const rel = "noopener noreferrer nofollow";
  assert.deepEqual(
    await render("[docs](https://example.com/a \"Docs\") <https://example.com/b> [mail](mailto:a@example.com) [x](javascript:alert(1)) [y](/relative) ![chart](https://example.com/c.png)"),
    [
      [
        "p",
        {},
        ["a", { href: "https://example.com/a", title: "Docs", rel, target: "_blank" }, "docs"],
        " ",
        ["a", { href: "https://example.com/b", rel, target: "_blank" }, "https://example.com/b"],
        " ",
        ["a", { href: "mailto:a@example.com", rel, target: "_blank" }, "mail"],
        " x (javascript:alert(1)) y (/relative) ",
        ["a", { href: "https://example.com/c.png", rel, target: "_blank" }, "image: chart"],
      ],
    ],
  );
});

test("HTML in an answer is text, wherever it is", async () => {
  const html = '<script>alert(1)</script>\n\n<img src=x onerror="alert(2)">\n\n- <b>item</b>\n\n| <i>h</i> |\n| - |\n| <svg onload=alert(3)> |\n\n# <em>title</em>';
  const shape = await render(html);
  assert.deepEqual(shape, [
    ["p", {}, "<script>alert(1)</script>"],
    ["p", {}, '<img src=x onerror="alert(2)">'],
    ["ul", {}, ["li", {}, "<b>item</b>"]],
    ["div", { class: "table-wrap" }, ["table", {}, ["thead", {}, ["tr", {}, ["th", {}, "<i>h</i>"]]], ["tbody", {}, ["tr", {}, ["td", {}, "<svg onload=alert(3)>"]]]]],
    ["h4", {}, "<em>title</em>"],
  ]);
});

test("nothing was loaded from elsewhere, nothing broke the policy, no script error", () => {
  assert.deepEqual(seen.foreign, []);
  assert.deepEqual(seen.violations, []);
  assert.deepEqual(seen.errors, []);
});
