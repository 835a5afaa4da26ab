// The stand-in's answers: HTML as ChatGPT renders it, and the Markdown the
// extension must turn it back into. Both sides of the test use this file.
export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function answerHtml(message, turn) {
  return [
    `<h3>Stand-in answer</h3>`,
    `<p>You said: <strong>${escapeHtml(message)}</strong></p>`,
    `<ul><li>first <em>point</em></li><li>second, with <code>inline code</code></li></ul>`,
    `<pre><div class="code-header"><span>python</span><button>Copy code</button></div>` +
      `<code class="language-python">print("hello")\nprint("world")\n</code></pre>`,
    `<p>Turn ${turn} of this chat. See <a href="https://example.com/docs">the docs</a>.</p>`,
  ];
}

export function answerMarkdown(message, turn) {
  return [
    "### Stand-in answer",
    `You said: **${message}**`,
    "- first *point*\n- second, with `inline code`",
    '```python\nprint("hello")\nprint("world")\n```',
    `Turn ${turn} of this chat. See [the docs](https://example.com/docs).`,
  ].join("\n\n");
}

export function titleFor(firstMessage) {
  return "Stand-in: " + firstMessage.split(/\s+/).slice(0, 4).join(" ");
}
