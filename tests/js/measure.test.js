// The web client's readings (crates/confab-signal/web/measure.js): frames presented, and
// freezes counted as confab-peer counts them (a gap of more than 300 ms between two frames).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
globalThis.window = globalThis;
require(path.join(__dirname, '..', '..', 'crates', 'confab-signal', 'web', 'measure.js'));
const M = globalThis.ConfabMeasure;

test('a gap of more than 300 ms between frames is a freeze, with its length', () => {
  const r = M.newReadings();
  // 30 fps for a second, a 500 ms gap, 30 fps again, a gap of exactly 300 ms (not a freeze).
  let t = 1000;
  for (let i = 0; i < 30; i++) M.presented(r, (t += 33));
  M.presented(r, (t += 500));
  for (let i = 0; i < 10; i++) M.presented(r, (t += 33));
  M.presented(r, (t += 300));
  assert.equal(r.frames, 42);
  assert.equal(r.freezes, 1);
  assert.equal(r.freezeMs, 500);
  assert.equal(r.first, 1033);
  assert.equal(r.lastAt, t);
});
