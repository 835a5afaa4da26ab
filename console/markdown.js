// ChatGPT's answers (Markdown, as the extension reads them back) rendered
// as DOM nodes. Every piece of text becomes a text node, so HTML in an
// answer — `<script>`, `<img onerror=…>`, anything — is shown as the
// characters it is and never becomes an element. Links keep only http(s) and
// mailto targets; an image is shown as a link to it, never loaded.
//
// Supported: ATX headings, paragraphs (a line break is kept), emphasis,
// strong, strikethrough, inline code, fenced code blocks with their
// language, block quotes, nested ordered and unordered lists, GFM tables,
// thematic breaks, links and <https://…> autolinks, backslash escapes.
import { h } from "./dom.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
const TABLE_DELIMITER = /^ *\|? *:?-+:? *(?:\| *:?-+:? *)*\|? *$/;

// Renders `text` into a document fragment.
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  fragment.append(...blocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n")));
  return fragment;
}

// A line that closes a code block opened with `fence`: the same character,
// at least as many, nothing else.
function closesFence(line, fence) {
  const m = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(line);
  return Boolean(m) && m[1][0] === fence[0] && m[1].length >= fence.length;
}

const indentOf = (line) => line.match(/^ */)[0].length;
const blank = (line) => line.trim() === "";

function startsBlock(lines, i) {
  const line = lines[i];
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    isTableStart(lines, i)
  );
}

function isTableStart(lines, i) {
  return lines[i].includes("|") && i + 1 < lines.length && TABLE_DELIMITER.test(lines[i + 1]) && lines[i + 1].includes("-");
}

// Block-level nodes for a run of lines.
function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (blank(line)) {
      i += 1;
      continue;
    }
    let m;
    if ((m = FENCE.exec(line))) {
      const [, fence, language] = m;
      const body = [];
      i += 1;
      while (i < lines.length && !closesFence(lines[i], fence)) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or the end)
      const code = h("code", language ? { "data-language": language } : {}, body.join("\n"));
      out.push(h("pre", { class: "code" }, language ? h("span", { class: "language" }, language) : null, code));
    } else if ((m = HEADING.exec(line))) {
      // The answer sits under the console's own <h3>s: # is an <h4>.
      out.push(h(`h${Math.min(6, m[1].length + 3)}`, {}, inline(m[2] || "")));
      i += 1;
    } else if (RULE.test(line)) {
      out.push(h("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      // Quoted lines, and unquoted ones that continue the quote's paragraph.
      while (i < lines.length && !blank(lines[i])) {
        const quoted = QUOTE.exec(lines[i]);
        if (quoted) body.push(quoted[1]);
        else if (!startsBlock(lines, i)) body.push(lines[i]);
        else break;
        i += 1;
      }
      out.push(h("blockquote", {}, blocks(body)));
    } else if (ITEM.test(line)) {
      const [list, next] = listAt(lines, i);
      out.push(list);
      i = next;
    } else if (isTableStart(lines, i)) {
      const [table, next] = tableAt(lines, i);
      out.push(table);
      i = next;
    } else {
      const body = [line.trim()];
      i += 1;
      while (i < lines.length && !blank(lines[i]) && !startsBlock(lines, i)) {
        body.push(lines[i].trim());
        i += 1;
      }
      out.push(h("p", {}, paragraphLines(body)));
    }
  }
  return out;
}

// The lines of a paragraph, each line break kept as a <br>.
function paragraphLines(lines) {
  return lines.flatMap((line, n) => (n ? [h("br"), inline(line)] : [inline(line)]));
}

// A list starting at line `start`; returns it and the line after it.
function listAt(lines, start) {
  const first = ITEM.exec(lines[start]);
  const base = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = h(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) list.setAttribute("start", String(parseInt(first[2], 10)));
  // Another item of this list (same indent, same kind of marker).
  const sibling = (line) => {
    const m = ITEM.exec(line);
    return Boolean(m) && m[1].length === base && /\d/.test(m[2]) === ordered;
  };
  let i = start;
  let loose = false;
  const items = [];
  while (i < lines.length) {
    if (!sibling(lines[i])) break;
    const m = ITEM.exec(lines[i]);
    const contentIndent = base + m[2].length + 1;
    const body = [m[3] || ""];
    i += 1;
    while (i < lines.length) {
      if (blank(lines[i])) {
        // A blank line continues the item only if indented content follows.
        let j = i;
        while (j < lines.length && blank(lines[j])) j += 1;
        if (j < lines.length && indentOf(lines[j]) > base) {
          body.push(...lines.slice(i, j).map(() => ""));
          loose = true;
          i = j;
          continue;
        }
        if (j < lines.length && sibling(lines[j])) loose = true;
        i = j;
        break;
      }
      const indent = indentOf(lines[i]);
      if (indent > base) {
        body.push(lines[i].slice(Math.min(indent, contentIndent)));
      } else if (!startsBlock(lines, i)) {
        body.push(lines[i].trim()); // a lazy continuation line
      } else {
        break;
      }
      i += 1;
    }
    items.push(body);
  }
  for (const body of items) {
    const content = blocks(body);
    // A tight list's items hold their text directly, not in a paragraph.
    const unwrapped = loose ? content : content.flatMap((node) => (node.tagName === "P" ? [...node.childNodes] : [node]));
    list.append(h("li", {}, unwrapped));
  }
  return [list, i];
}

// Cells of one table row (a backslash-escaped pipe stays in its cell).
function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function tableAt(lines, start) {
  const head = cells(lines[start]);
  const aligns = cells(lines[start + 1]).map((d) =>
    d.startsWith(":") && d.endsWith(":") ? "center" : d.endsWith(":") ? "right" : d.startsWith(":") ? "left" : null,
  );
  const cell = (tag, text, n) => h(tag, aligns[n] ? { class: `align-${aligns[n]}` } : {}, inline(text));
  const thead = h("thead", {}, h("tr", {}, head.map((text, n) => cell("th", text, n))));
  const tbody = h("tbody");
  let i = start + 2;
  while (i < lines.length && !blank(lines[i]) && lines[i].includes("|")) {
    const row = cells(lines[i]);
    tbody.append(h("tr", {}, head.map((_, n) => cell("td", row[n] ?? "", n))));
    i += 1;
  }
  return [h("div", { class: "table-wrap" }, h("table", {}, thead, tbody)), i];
}

// A link target the console will follow: http(s) and mailto only.
function safeHref(target) {
  try {
    const url = new URL(target);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(text, target, title) {
  const href = safeHref(target);
  if (!href) return document.createTextNode(text === target ? text : `${text} (${target})`);
  return h("a", { href, title: title || null, rel: "noopener noreferrer nofollow", target: "_blank" }, text);
}

const INLINE = new RegExp(
  [
    /(?<code>`+)(?<codeText>[\s\S]*?[^`])\k<code>(?!`)/,
    /\\(?<escaped>[\\`*_{}[\]()#+\-.!|~<>])/,
    /(?<image>!)?\[(?<label>[^\]]*)\]\(\s*<?(?<target>[^\s)>]*)>?(?:\s+"(?<title>[^"]*)")?\s*\)/,
    /<(?<auto>(?:https?:\/\/|mailto:)[^\s<>]+)>/,
    /\*\*(?<strong>(?!\s)[\s\S]*?\S)\*\*/,
    /__(?<strong2>(?!\s)[\s\S]*?\S)__(?!\w)/,
    /~~(?<strike>(?!\s)[\s\S]*?\S)~~/,
    /\*(?<em>(?![\s*])[\s\S]*?[^\s*])\*/,
    /(?<!\w)_(?<em2>(?![\s_])[\s\S]*?[^\s_])_(?!\w)/,
  ]
    .map((r) => r.source)
    .join("|"),
  "g",
);

// Inline nodes for a span of text.
function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    last = m.index + m[0].length;
    const g = m.groups;
    if (g.code !== undefined) {
      out.push(h("code", {}, g.codeText.replace(/^ (.*) $/s, "$1")));
    } else if (g.escaped !== undefined) {
      out.push(document.createTextNode(g.escaped));
    } else if (g.label !== undefined) {
      out.push(g.image ? link(g.label ? `image: ${g.label}` : "image", g.target, g.title) : link(g.label, g.target, g.title));
    } else if (g.auto !== undefined) {
      out.push(link(g.auto, g.auto));
    } else if (g.strong !== undefined || g.strong2 !== undefined) {
      out.push(h("strong", {}, inline(g.strong ?? g.strong2)));
    } else if (g.strike !== undefined) {
      out.push(h("del", {}, inline(g.strike)));
    } else {
      out.push(h("em", {}, inline(g.em ?? g.em2)));
    }
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}
