// Every notice the call rules can give has words (or is shown another way), for the window
// and the web client alike.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { toast, displayNames } = require(path.join(__dirname, '..', '..', 'ui', 'notices.js'));

test('notices have words', () => {
  for (const kind of ['ring-cancelled', 'declined', 'no-answer', 'hung-up', 'link-failed']) {
    const [text, level] = toast({ kind, name: 'Ada', from: 'x', peer: 'x' });
    assert.match(text, /Ada/, kind);
    assert.ok(['info', 'warn', 'error'].includes(level), kind);
  }
  assert.deepStrictEqual(toast({ kind: 'call-ended' }), ['Call ended', 'info']);
  assert.strictEqual(toast({ kind: 'incoming-call', from: 'x', name: 'Ada' }), null, 'rings instead');
});

test('every notice kind in the scenario tables is known', () => {
  const flow = require(path.join(__dirname, '..', '..', 'crates', 'confab-call', 'scenarios', 'call-flow.json'));
  const kinds = new Set();
  for (const s of flow.scenarios) for (const st of s.steps) for (const a of st.out || []) if (a.action === 'notice') kinds.add(a.notice.kind);
  assert.ok(kinds.size >= 6, [...kinds].join());
  for (const k of kinds) assert.ok(['incoming-call', 'join-request'].includes(k) || toast({ kind: k, name: 'N', by: 'B' }), k);
});

test('spoofed_display_names: equal names are told apart, and so is one equal to ours', () => {
  const people = [
    { id: 'aaaa1111', name: 'Ada' },
    { id: 'bbbb2222', name: 'Ada' },
    { id: 'cccc3333', name: 'Bob' },
    { id: 'dddd4444', name: 'Me' },
  ];
  const shown = displayNames(people, 'Me');
  assert.strictEqual(shown.get('aaaa1111'), 'Ada #aaaa');
  assert.strictEqual(shown.get('bbbb2222'), 'Ada #bbbb');
  assert.strictEqual(shown.get('cccc3333'), 'Bob');
  assert.strictEqual(shown.get('dddd4444'), 'Me #dddd');
});
