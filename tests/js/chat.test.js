// The chat panel's text rules (ui/chat.js).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const C = require(path.join(__dirname, '..', '..', 'ui', 'chat.js'));

test('web links are found; the rest stays text', () => {
  assert.deepEqual(C.parts('see https://example.org/a?b=c, then reply'), [
    { text: 'see ' },
    { text: 'https://example.org/a?b=c', url: 'https://example.org/a?b=c' },
    { text: ', then reply' },
  ]);
  assert.deepEqual(C.parts('no links here'), [{ text: 'no links here' }]);
  assert.deepEqual(C.parts(''), []);
});

test('sentence punctuation and unbalanced brackets end a link', () => {
  const url = (t) => C.parts(t).filter((p) => p.url).map((p) => p.url);
  assert.deepEqual(url('(see http://x.org/page).'), ['http://x.org/page']);
  assert.deepEqual(url('wiki: https://en.wikipedia.org/wiki/Foo_(bar)!'), ['https://en.wikipedia.org/wiki/Foo_(bar)']);
  assert.deepEqual(url('two: https://a.org and https://b.org?'), ['https://a.org', 'https://b.org']);
});

test('only web links: no javascript:, file:, data: or confab: links', () => {
  for (const t of ['javascript:alert(1)', 'file:///etc/passwd', 'data:text/html,<b>x</b>', 'confab://join?room=x', 'https://']) {
    assert.ok(C.parts(t).every((p) => !p.url), t);
  }
  // Markup is text, not a link or an element.
  assert.deepEqual(C.parts('<a href="https://evil.org">x</a>').filter((p) => p.url).map((p) => p.url), ['https://evil.org']);
});

test('every character of the line is in exactly one part', () => {
  for (const t of ['a https://x.org/b. c', 'https://x.org', '((https://x.org/(a)))', 'x\nhttps://y.org\n']) {
    assert.equal(C.parts(t).map((p) => p.text).join(''), t);
  }
});

test('times are shown as hours and minutes', () => {
  assert.equal(C.clock(new Date(2026, 11, 2, 9, 5, 59).getTime()), '09:05');
  assert.equal(C.clock(new Date(2026, 11, 2, 14, 30).getTime()), '14:30');
});

test('unread counts lines from others while the panel is closed', () => {
  assert.equal(C.unread(0, false, true), 1);
  assert.equal(C.unread(3, false, false), 3, 'our own lines do not count');
  assert.equal(C.unread(5, true, true), 0);
  assert.equal(C.unread(99, false, true), 99);
});
