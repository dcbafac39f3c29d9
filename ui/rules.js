// The rules for room names, display names, passwords and chat text, for every JavaScript page (the desktop
// window and the web client) — the same rules as crates/confab-protocol/src/rules.rs. The table
// crates/confab-protocol/tests/rules.json is run against both (tests/js/rules.test.js here,
// tests/rules.rs there): change the three together. No DOM: a browser script that sets
// window.ConfabRules, and a Node module (module.exports) for the tests.
(function (root) {
  'use strict';
  const MAX_ROOM_LEN = 64; // bytes (rooms are ASCII)
  const MAX_NAME_CHARS = 64; // Unicode scalar values, after normalization
  const MAX_PASSWORD_LEN = 256; // bytes of UTF-8

  const cp = (c) => c.codePointAt(0);
  const inRange = (n, lo, hi) => n >= lo && n <= hi;

  // A character quoted in an error message: 'x' when printable ASCII, U+XXXX otherwise.
  function shown(c) {
    const n = cp(c);
    if (inRange(n, 0x20, 0x7e)) return `'${c}'`;
    return 'U+' + n.toString(16).toUpperCase().padStart(4, '0');
  }

  const MESSAGES = {
    'room-empty': () => 'the room name is empty',
    'room-too-long': () => `the room name is longer than ${MAX_ROOM_LEN} characters`,
    'room-character': (c) =>
      `the room name may only hold letters, digits, '.', '_' and '-' (found ${shown(c)})`,
    'name-empty': () => 'the name is empty',
    'name-too-long': () => `the name is longer than ${MAX_NAME_CHARS} characters`,
    'name-control': (c) => `the name contains a control character (${shown(c)})`,
    'name-bidi': (c) => `the name contains a character that changes the direction of text (${shown(c)})`,
    'name-separator': (c) => `the name contains a line or paragraph separator (${shown(c)})`,
    'name-invisible': (c) => `the name contains an invisible character (${shown(c)})`,
    'password-too-long': () => `the password is longer than ${MAX_PASSWORD_LEN} bytes`,
  };

  function fail(code, c) {
    return { ok: false, code, message: MESSAGES[code](c) };
  }

  // ------------------------------------------------------------------------------ rooms

  // {ok:true, value} or {ok:false, code, message}.
  function checkRoom(room) {
    room = String(room);
    if (room.length === 0) return fail('room-empty');
    for (const c of room) {
      if (!/^[A-Za-z0-9._-]$/.test(c)) return fail('room-character', c);
    }
    if (room.length > MAX_ROOM_LEN) return fail('room-too-long');
    return { ok: true, value: room };
  }

  // ------------------------------------------------------------------------------ names

  // Spaces a name may hold, all shown as one ASCII space after normalization. Tabs, newlines
  // and the line/paragraph separators are refused, not repaired.
  function isNameSpace(n) {
    return n === 0x20 || n === 0xa0 || n === 0x1680 || inRange(n, 0x2000, 0x200a) ||
      n === 0x202f || n === 0x205f || n === 0x3000;
  }

  // NFC, every run of spaces made one ASCII space, no space at either end.
  function normalizeName(name) {
    let out = '';
    let pendingSpace = false;
    for (const c of String(name).normalize('NFC')) {
      if (isNameSpace(cp(c))) {
        pendingSpace = out.length > 0;
      } else {
        if (pendingSpace) {
          out += ' ';
          pendingSpace = false;
        }
        out += c;
      }
    }
    return out;
  }

  const isControl = (n) => n <= 0x1f || inRange(n, 0x7f, 0x9f);
  const isBidiControl = (n) => n === 0x061c || n === 0x200e || n === 0x200f ||
    inRange(n, 0x202a, 0x202e) || inRange(n, 0x2066, 0x2069);
  const isSeparator = (n) => n === 0x2028 || n === 0x2029;

  function isAlwaysInvisible(n) {
    return n === 0x00ad || // soft hyphen
      n === 0x034f || // combining grapheme joiner
      n === 0x115f || n === 0x1160 || // Hangul fillers
      n === 0x17b4 || n === 0x17b5 || // Khmer inherent vowels
      inRange(n, 0x180b, 0x180f) || // Mongolian variation selectors, vowel separator
      n === 0x200b || n === 0x200c || // zero width space, zero width non-joiner
      inRange(n, 0x2060, 0x2064) || // word joiner, invisible operators
      inRange(n, 0x206a, 0x206f) || // deprecated format characters
      n === 0x2800 || // braille pattern blank
      n === 0x3164 || // Hangul filler
      n === 0xfeff || // zero width no-break space (BOM)
      n === 0xffa0 || // halfwidth Hangul filler
      inRange(n, 0xfff9, 0xfffb) || // interlinear annotation
      inRange(n, 0x1d173, 0x1d17a); // musical symbol formatting
  }

  const isEmojiLike = (n) => inRange(n, 0x2300, 0x23ff) || inRange(n, 0x2600, 0x27bf) ||
    inRange(n, 0x2b00, 0x2bff) || inRange(n, 0x1f000, 0x1faff);
  const isCjkIdeograph = (n) => inRange(n, 0x3400, 0x4dbf) || inRange(n, 0x4e00, 0x9fff) ||
    inRange(n, 0xf900, 0xfaff) || inRange(n, 0x20000, 0x3ffff);
  const isVariationSelector = (n) => inRange(n, 0xfe00, 0xfe0f) || inRange(n, 0xe0100, 0xe01ef);
  const isTag = (n) => inRange(n, 0xe0020, 0xe007f);
  const isKeycapBase = (n) => inRange(n, 0x30, 0x39) || n === 0x23 || n === 0x2a;

  // Whether code point i of cps (an array of numbers) is invisible where it stands.
  function isInvisibleAt(cps, i) {
    const n = cps[i];
    if (isAlwaysInvisible(n)) return true;
    const prev = i > 0 ? cps[i - 1] : undefined;
    if (n === 0x200d) {
      // Zero width joiner: only between two emoji, the first may carry a variation selector.
      let before = prev;
      if (before !== undefined && isVariationSelector(before)) before = i > 1 ? cps[i - 2] : undefined;
      const after = cps[i + 1];
      return !(before !== undefined && isEmojiLike(before) && after !== undefined && isEmojiLike(after));
    }
    if (isVariationSelector(n)) {
      return !(prev !== undefined &&
        (isEmojiLike(prev) || isKeycapBase(prev) || isCjkIdeograph(prev)));
    }
    if (isTag(n)) return !(prev !== undefined && (prev === 0x1f3f4 || isTag(prev)));
    return false;
  }

  // Normalizes and checks a display name: {ok:true, value: normalized} or
  // {ok:false, code, message}.
  function checkName(name) {
    const value = normalizeName(name);
    if (value.length === 0) return fail('name-empty');
    const chars = Array.from(value);
    if (chars.length > MAX_NAME_CHARS) return fail('name-too-long');
    const cps = chars.map(cp);
    for (let i = 0; i < chars.length; i++) {
      const n = cps[i];
      if (isControl(n)) return fail('name-control', chars[i]);
      if (isBidiControl(n)) return fail('name-bidi', chars[i]);
      if (isSeparator(n)) return fail('name-separator', chars[i]);
      if (isInvisibleAt(cps, i)) return fail('name-invisible', chars[i]);
    }
    return { ok: true, value };
  }

  // -------------------------------------------------------------------------------- chat

  // White_Space, as Rust's char::is_whitespace and str::trim have it.
  const isWhitespace = (n) => inRange(n, 0x09, 0x0d) || n === 0x20 || n === 0x85 || n === 0xa0 ||
    n === 0x1680 || inRange(n, 0x2000, 0x200a) || n === 0x2028 || n === 0x2029 || n === 0x202f ||
    n === 0x205f || n === 0x3000;

  // Chat text as it may be shown (clean_text in rules.rs): NFC; line and paragraph separators
  // and carriage returns become newlines; control characters other than newline and tab,
  // bidirectional controls and invisible characters are removed; at most two empty lines in a
  // row; no blank at either end. Repaired, never refused: it is shown as text, never acted on.
  function cleanText(text) {
    const cps = Array.from(String(text).normalize('NFC'), (c) => {
      const n = cp(c);
      return isSeparator(n) || n === 0x0d ? 0x0a : n;
    });
    const out = [];
    let newlines = 0;
    for (let i = 0; i < cps.length; i++) {
      const n = cps[i];
      let keep;
      if (n === 0x0a) {
        newlines++;
        keep = newlines <= 3;
      } else if (n === 0x09) {
        keep = true;
      } else if (isControl(n) || isBidiControl(n)) {
        keep = false;
      } else {
        keep = !isInvisibleAt(cps, i);
      }
      if (keep) {
        if (n !== 0x0a && !isWhitespace(n)) newlines = 0;
        out.push(n);
      }
    }
    let a = 0;
    let b = out.length;
    while (a < b && isWhitespace(out[a])) a++;
    while (b > a && isWhitespace(out[b - 1])) b--;
    return out.slice(a, b).map((n) => String.fromCodePoint(n)).join('');
  }

  // --------------------------------------------------------------------------- passwords

  function checkPassword(password) {
    password = String(password);
    if (new TextEncoder().encode(password).length > MAX_PASSWORD_LEN) return fail('password-too-long');
    return { ok: true, value: password };
  }

  // For forms: null when fine, else the sentence to show.
  const message = (r) => (r.ok ? null : r.message);
  const validateRoom = (room) => message(checkRoom(room));
  const validateName = (name) => message(checkName(name));
  const validatePassword = (password) => message(checkPassword(password));

  const api = {
    MAX_ROOM_LEN,
    MAX_NAME_CHARS,
    MAX_PASSWORD_LEN,
    checkRoom,
    checkName,
    checkPassword,
    normalizeName,
    cleanText,
    validateRoom,
    validateName,
    validatePassword,
  };
  root.ConfabRules = api;
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})(typeof window !== 'undefined' ? window : globalThis);
