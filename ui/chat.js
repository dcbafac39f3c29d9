// The chat panel's text rules, DOM-free (tests/js/chat.test.js): which parts of a line are web
// links (only http and https; opened in the system browser by the app, never in the window),
// and how a line's time is shown. Lines are always drawn as text, never as HTML.
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ConfabChat = api;
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';

  const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  const CLOSERS = { ')': '(', ']': '[', '}': '{' };

  // A link's end: trailing punctuation belongs to the sentence, and a closing bracket only
  // to the link when the link opened it ("(see https://x.org/a_(b))").
  function trimLink(url) {
    let end = url.length;
    for (;;) {
      const c = url[end - 1];
      if ('.,;:!?\'"'.includes(c)) {
        end -= 1;
        continue;
      }
      if (CLOSERS[c]) {
        const body = url.slice(0, end);
        const opens = body.split(CLOSERS[c]).length - 1;
        const closes = body.split(c).length - 1;
        if (closes > opens) {
          end -= 1;
          continue;
        }
      }
      return url.slice(0, end);
    }
  }

  // [{text}] and [{text, url}] parts, in order, covering the whole line.
  function parts(text) {
    const out = [];
    let at = 0;
    for (const m of text.matchAll(LINK)) {
      const url = trimLink(m[0]);
      if (url.length <= 'https://'.length) continue;
      if (m.index > at) out.push({ text: text.slice(at, m.index) });
      out.push({ text: url, url });
      at = m.index + url.length;
    }
    if (at < text.length) out.push({ text: text.slice(at) });
    return out;
  }

  // "14:05": when a line arrived (lines from before we joined say "earlier" instead).
  function clock(ms) {
    const d = new Date(ms);
    return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  }

  // The unread count on the chat button: lines that arrived while the panel was closed.
  function unread(count, panelOpen, fromOthers) {
    if (panelOpen) return 0;
    return fromOthers ? Math.min(count + 1, 99) : count;
  }

  return { parts, clock, unread };
});
