// Turns a rendered assistant message back into Markdown, so a client receives
// the answer as ChatGPT wrote it (headings, lists, code blocks, links, tables)
// rather than flattened text. Buttons and other page chrome are skipped.
(function () {
  const SKIP = new Set(["BUTTON", "SVG", "svg", "STYLE", "SCRIPT", "NOSCRIPT", "TEMPLATE"]);

  function inline(node) {
    let out = "";
    for (const child of node.childNodes) out += inlineNode(child);
    return out;
  }

  function inlineNode(node) {
    if (node.nodeType === Node.TEXT_NODE) return node.nodeValue.replace(/\s+/g, " ");
    if (node.nodeType !== Node.ELEMENT_NODE || SKIP.has(node.tagName)) return "";
    const text = () => inline(node);
    switch (node.tagName) {
      case "STRONG":
      case "B":
        return wrap("**", text());
      case "EM":
      case "I":
        return wrap("*", text());
      case "DEL":
      case "S":
        return wrap("~~", text());
      case "CODE": {
        const code = node.textContent;
        const fence = code.includes("`") ? "``" : "`";
        return `${fence}${code}${fence}`;
      }
      case "A": {
        const href = node.getAttribute("href");
        const label = text().trim();
        return href ? `[${label}](${href})` : label;
      }
      case "BR":
        return "\n";
      case "IMG":
        return `![${node.getAttribute("alt") || ""}](${node.getAttribute("src") || ""})`;
      default:
        return isBlock(node) ? "\n" + blocks(node).trim() + "\n" : text();
    }
  }

  function wrap(mark, content) {
    const trimmed = content.trim();
    if (!trimmed) return content;
    const lead = content.slice(0, content.indexOf(trimmed[0]));
    const tail = content.slice(content.lastIndexOf(trimmed[trimmed.length - 1]) + 1);
    return `${lead}${mark}${trimmed}${mark}${tail}`;
  }

  const BLOCK_TAGS = new Set([
    "P", "DIV", "SECTION", "ARTICLE", "H1", "H2", "H3", "H4", "H5", "H6", "UL", "OL",
    "LI", "PRE", "BLOCKQUOTE", "HR", "TABLE",
  ]);

  function isBlock(node) {
    return BLOCK_TAGS.has(node.tagName);
  }

  // A list of Markdown blocks, joined by blank lines (or by `separator`).
  function blocks(node, separator = "\n\n") {
    const parts = [];
    let pendingInline = "";
    const flush = () => {
      const t = pendingInline.replace(/[ \t]+\n/g, "\n").trim();
      if (t) parts.push(t);
      pendingInline = "";
    };
    for (const child of node.childNodes) {
      if (child.nodeType === Node.ELEMENT_NODE && isBlock(child)) {
        flush();
        const b = block(child);
        if (b.trim()) parts.push(b);
      } else {
        pendingInline += inlineNode(child);
      }
    }
    flush();
    return parts.join(separator);
  }

  function block(node) {
    switch (node.tagName) {
      case "H1": case "H2": case "H3": case "H4": case "H5": case "H6":
        return "#".repeat(Number(node.tagName[1])) + " " + inline(node).trim();
      case "P":
        return inline(node).replace(/[ \t]+\n/g, "\n").trim();
      case "PRE":
        return codeBlock(node);
      case "BLOCKQUOTE":
        return blocks(node).split("\n").map((l) => (l ? `> ${l}` : ">")).join("\n");
      case "HR":
        return "---";
      case "UL":
      case "OL":
        return list(node);
      case "TABLE":
        return table(node);
      default:
        return blocks(node);
    }
  }

  function codeBlock(pre) {
    const code = pre.querySelector("code") || pre;
    const match = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className || "");
    const body = code.textContent.replace(/\n$/, "");
    const fence = body.includes("```") ? "````" : "```";
    return `${fence}${match ? match[1] : ""}\n${body}\n${fence}`;
  }

  function list(node) {
    const ordered = node.tagName === "OL";
    let n = Number(node.getAttribute("start") || 1);
    const items = [];
    for (const li of node.children) {
      if (li.tagName !== "LI") continue;
      const marker = ordered ? `${n++}. ` : "- ";
      // A "tight" item (no paragraphs) keeps a nested list on the next line.
      const body = blocks(li, li.querySelector(":scope > p") ? "\n\n" : "\n");
      const indent = " ".repeat(marker.length);
      items.push(marker + body.split("\n").map((l, i) => (i === 0 || !l ? l : indent + l)).join("\n"));
    }
    // A list whose items hold paragraphs is "loose": keep blank lines between.
    const loose = [...node.children].some((li) => li.querySelector(":scope > p + *"));
    return items.join(loose ? "\n\n" : "\n");
  }

  function table(node) {
    const rows = [...node.querySelectorAll("tr")].map((tr) =>
      [...tr.children].map((cell) => inline(cell).trim().replace(/\|/g, "\\|")),
    );
    if (rows.length === 0) return "";
    const width = Math.max(...rows.map((r) => r.length));
    const line = (cells) => "| " + Array.from({ length: width }, (_, i) => cells[i] || "").join(" | ") + " |";
    const out = [line(rows[0]), line(Array(width).fill("---"))];
    for (const r of rows.slice(1)) out.push(line(r));
    return out.join("\n");
  }

  function toMarkdown(element) {
    return blocks(element).replace(/\n{3,}/g, "\n\n").trim();
  }

  globalThis.ChatrelayMarkdown = { toMarkdown };
})();
