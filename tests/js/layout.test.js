// The call window's layout rules (ui/layout.js): who is large, where the self view goes, what
// the shortcut keys do.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const L = require(path.join(__dirname, '..', '..', 'ui', 'layout.js'));

const four = ['local', 'a', 'b', 'c'];

test('one other person fills the grid; the self view floats in its corner', () => {
  const out = L.arrange(['local', 'a'], L.initial(), null);
  assert.equal(out.mode, 'grid');
  assert.deepEqual(out.order, ['a']);
  assert.equal(out.floating, 'local');
  assert.equal(out.corner, 'bottom-right');
});

test('small groups share the grid equally, the speaker only gets a ring', () => {
  const out = L.arrange(['local', 'a', 'b'], L.initial(), 'b');
  assert.equal(out.mode, 'grid');
  assert.deepEqual(out.order, ['a', 'b', 'local']);
  assert.equal(out.speaking, 'b');
});

test('from three others on, the active speaker takes the stage', () => {
  const out = L.arrange(four, L.initial(), 'c');
  assert.equal(out.mode, 'stage');
  assert.equal(out.main, 'c');
  assert.deepEqual(out.order, ['c', 'a', 'b', 'local']);
  // Nobody speaking: the grid.
  assert.equal(L.arrange(four, L.initial(), null).mode, 'grid');
});

test('a pinned tile beats the speaker, and a pin on someone who left is forgotten', () => {
  const choice = { ...L.initial(), pinned: 'a' };
  const out = L.arrange(four, choice, 'c');
  assert.equal(out.main, 'a');
  assert.equal(out.speaking, 'c');
  const gone = L.arrange(['local', 'b'], choice, null);
  assert.equal(gone.mode, 'grid');
  assert.deepEqual(gone.order, ['b']);
});

test('focus fills the window with one tile; the self view floats unless hidden', () => {
  const out = L.arrange(four, { ...L.initial(), focus: 'b' }, 'c');
  assert.equal(out.mode, 'focus');
  assert.deepEqual(out.order, ['b']);
  assert.deepEqual(out.hidden.sort(), ['a', 'c']);
  assert.equal(out.floating, 'local');
  const hidden = L.arrange(four, { ...L.initial(), focus: 'b', selfHidden: true }, null);
  assert.equal(hidden.floating, null);
  assert.ok(hidden.hidden.includes('local'));
});

test('the self view can be hidden in every mode, and only when there is one', () => {
  const choice = { ...L.initial(), selfHidden: true };
  for (const keys of [['local', 'a'], ['local', 'a', 'b'], four]) {
    const out = L.arrange(keys, choice, 'a');
    assert.ok(!out.order.includes('local') && out.floating === null, keys.join());
    assert.ok(out.hidden.includes('local'), keys.join());
  }
  assert.deepEqual(L.arrange(['a', 'b'], choice, null).hidden, []);
});

test('keys: P pins the speaker and unpins, F fills and Esc leaves, S hides, C moves', () => {
  let c = L.initial();
  c = L.onKey(c, 'p', four, 'b');
  assert.equal(c.pinned, 'b');
  c = L.onKey(c, 'f', four, 'c');
  assert.equal(c.focus, 'b', 'the pinned tile goes full-window');
  c = L.onKey(c, 'Escape', four, null);
  assert.equal(c.focus, null);
  c = L.onKey(c, 'P', four, null);
  assert.equal(c.pinned, null);
  // Nobody speaking: the first other person.
  assert.equal(L.onKey(L.initial(), 'P', four, null).pinned, 'a');
  // Alone in the call: nothing to pin.
  assert.equal(L.onKey(L.initial(), 'P', ['local'], null).pinned, null);
  c = L.onKey(c, 's', four, null);
  assert.equal(c.selfHidden, true);
  const corners = [];
  for (let i = 0; i < 4; i++) {
    c = L.onKey(c, 'c', four, null);
    corners.push(c.corner);
  }
  assert.deepEqual(corners, ['bottom-left', 'top-left', 'top-right', 'bottom-right']);
  const same = L.initial();
  assert.equal(L.onKey(same, 'x', four, null), same, 'other keys change nothing');
});

test('the active speaker is held briefly, then let go; the loudest wins', () => {
  let s = L.speaker(null, [{ key: 'a', level: 0.3 }, { key: 'b', level: 0.5 }], 0);
  assert.equal(s.key, 'b');
  s = L.speaker(s, [{ key: 'a', level: 0.01 }], 1000);
  assert.equal(s.key, 'b', 'held');
  assert.equal(L.speaker(s, [], L.SPEAKER_HOLD_MS + 1), null);
});

test('a dragged self view lands in the nearest corner; bad corners fall back', () => {
  assert.equal(L.nearestCorner(10, 10, 800, 600), 'top-left');
  assert.equal(L.nearestCorner(790, 590, 800, 600), 'bottom-right');
  assert.equal(L.arrange(['local', 'a'], { ...L.initial(), corner: 'middle' }, null).corner, 'bottom-right');
});

test('every shortcut the handler knows is in the help list', () => {
  const listed = new Set(L.SHORTCUTS.map(([k]) => k));
  for (const k of ['M', 'V', 'Ctrl+D', 'P', 'F', 'S', 'C', '?', 'Esc']) assert.ok(listed.has(k), k);
});

test('a shared screen takes the stage, even in a 1:1 call; a pinned face still wins', () => {
  const keys = ['local', 'pat', 'share:pat'];
  const out = L.arrange(keys, L.initial(), null);
  assert.equal(out.mode, 'stage');
  assert.equal(out.main, 'share:pat');
  assert.deepEqual(out.order, ['share:pat', 'pat', 'local'], 'the face and the self view in the strip');
  const pinned = L.arrange(keys, { ...L.initial(), pinned: 'pat' }, 'share:pat');
  assert.equal(pinned.main, 'pat');
});
