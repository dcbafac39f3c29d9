// The shared rules table (crates/confab-protocol/tests/rules.json), run against ui/rules.js.
// crates/confab-protocol/tests/rules.rs runs the same table against the Rust rules.
// Run: node --test tests/js/
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');

const rules = require('../../ui/rules.js');
const table = JSON.parse(
  fs.readFileSync(path.join(__dirname, '../../crates/confab-protocol/tests/rules.json'), 'utf8'),
);

function run(section, check) {
  const cases = table[section];
  assert.ok(Array.isArray(cases) && cases.length >= 5, `${section}: too few cases`);
  const failures = [];
  for (const c of cases) {
    const got = check(c.input);
    const ok = 'ok' in c
      ? got.ok === true && got.value === c.ok
      : got.ok === false && got.code === c.error && got.message === c.message;
    if (!ok) failures.push(`${section} / ${c.why}: ${JSON.stringify(c.input)} gave ${JSON.stringify(got)}`);
  }
  assert.deepEqual(failures, []);
}

test('shared room rules', () => run('rooms', rules.checkRoom));
test('shared name rules', () => run('names', rules.checkName));
test('shared password rules', () => run('passwords', rules.checkPassword));
test('shared chat text rules', () => run('chat', (t) => ({ ok: true, value: rules.cleanText(t) })));

test('form helpers: null when fine, a sentence otherwise', () => {
  assert.equal(rules.validateRoom('team'), null);
  assert.match(rules.validateRoom('a b'), /only hold letters/);
  assert.equal(rules.validateName(' Ada '), null);
  assert.match(rules.validateName('Ada\u202e'), /direction of text \(U\+202E\)/);
  assert.equal(rules.normalizeName('  Zoe\u0308  Ada '), 'Zo\u00eb Ada');
  assert.match(rules.validatePassword('x'.repeat(257)), /256 bytes/);
});

test('works as a browser script: sets ConfabRules on the global object', () => {
  const vm = require('node:vm');
  const source = fs.readFileSync(path.join(__dirname, '../../ui/rules.js'), 'utf8');
  const window = { TextEncoder };
  vm.runInNewContext(source, { window });
  assert.equal(typeof window.ConfabRules.checkName, 'function');
  assert.equal(window.ConfabRules.validateName('Ada'), null);
});
