// ESLint for the plain-JS parts (no bundler): the desktop window (ui/), the web client the
// signaling server serves (crates/confab-signal/web/), and the Node tests (tests/js/).
'use strict';
const js = require('@eslint/js');
const globals = require('globals');

const rules = {
  'no-unused-vars': ['error', { args: 'none', caughtErrors: 'none' }],
  'no-empty': ['error', { allowEmptyCatch: true }],
  eqeqeq: ['error', 'always'],
  'no-var': 'error',
  'prefer-const': 'error',
  'no-implicit-globals': 'error',
};

module.exports = [
  { ignores: ['node_modules/**', 'target/**', 'fuzz/**'] },
  js.configs.recommended,
  {
    files: ['ui/**/*.js', 'crates/confab-signal/web/**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'script',
      // The shared modules (pattern, call rules, name rules) also load in Node for tests.
      globals: { ...globals.browser, module: 'readonly' },
    },
    rules,
  },
  {
    files: ['tests/js/**/*.js', 'eslint.config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'commonjs', globals: { ...globals.node } },
    rules,
  },
];
