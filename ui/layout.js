// How the call's tiles are laid out, decided from what people chose (a pinned tile, a tile in
// focus, the self view hidden or in a corner) and who speaks. Pure: no DOM, so the same rules
// are tested under Node (tests/js/layout.test.js) and drawn by app.js.
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ConfabLayout = api;
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';

  const CORNERS = ['bottom-right', 'bottom-left', 'top-left', 'top-right'];

  // What people chose, kept between calls: pinned and focus are per call, the self view's place
  // is kept (localStorage in the window).
  function initial() {
    return { pinned: null, focus: null, selfHidden: false, corner: 'bottom-right', speaker: null };
  }

  // A speaker stays emphasized for a moment after they stop, so the emphasis does not flicker
  // between people who take turns quickly.
  const SPEAKER_HOLD_MS = 1500;

  // Levels → the active speaker (a remote key, or null). `levels` is [{key, level}].
  function speaker(prev, levels, now, threshold = 0.02) {
    let best = null;
    for (const l of levels) {
      if (l.level > threshold && (!best || l.level > best.level)) best = l;
    }
    if (best) return { key: best.key, since: now };
    if (prev && now - prev.since < SPEAKER_HOLD_MS) return prev;
    return null;
  }

  // The arrangement for the tiles in `keys` (the local tile is 'local'):
  // - mode 'grid': every tile the same size;
  // - mode 'stage': one tile large (the pinned one, else a shared screen, or with 3 or more
  //   people the active speaker), the rest in a strip;
  // - mode 'focus': one tile fills the window (others hidden, the self view floats).
  // `floating` is the self view shown small in a corner instead of as a tile of its own.
  function arrange(keys, choice, activeSpeaker) {
    const present = new Set(keys);
    const pinned = present.has(choice.pinned) ? choice.pinned : null;
    const focus = present.has(choice.focus) ? choice.focus : null;
    const remote = keys.filter((k) => k !== 'local');
    const hasSelf = present.has('local');
    const out = {
      mode: 'grid',
      main: null,
      order: [],
      floating: null,
      hidden: [],
      corner: CORNERS.includes(choice.corner) ? choice.corner : CORNERS[0],
      speaking: activeSpeaker && present.has(activeSpeaker) ? activeSpeaker : null,
    };
    const self = (show) => {
      if (!hasSelf) return;
      if (choice.selfHidden) out.hidden.push('local');
      else if (show === 'float') out.floating = 'local';
      else out.order.push('local');
    };
    if (focus) {
      out.mode = 'focus';
      out.main = focus;
      out.order = [focus];
      for (const k of remote) if (k !== focus) out.hidden.push(k);
      if (focus !== 'local') self('float');
      return out;
    }
    // A shared screen ('share:<id>') takes the stage unless someone is pinned: people show
    // their screen to be read, and the faces go small into the strip.
    const shared = remote.find((k) => k.startsWith('share:'));
    const stage = pinned || shared || (remote.length >= 3 ? out.speaking : null);
    if (stage) {
      out.mode = 'stage';
      out.main = stage;
      out.order = [stage, ...remote.filter((k) => k !== stage)];
      if (stage !== 'local') self('strip');
      return out;
    }
    // One other person: they fill the grid, the self view floats (as in every 1:1 call app).
    if (remote.length === 1) {
      out.order = remote.slice();
      self('float');
      return out;
    }
    out.order = remote.slice();
    self('grid');
    return out;
  }

  // The shortcut keys, one list for the handler and the help overlay.
  const SHORTCUTS = [
    ['M', 'Mute or unmute the microphone'],
    ['V', 'Turn the camera off or on'],
    ['E', 'Share your screen or a window (again: stop sharing)'],
    ['Ctrl+D', 'Hang up'],
    ['P', 'Pin the active speaker (again: unpin)'],
    ['F', 'Fill the window with the pinned or speaking person (again: back)'],
    ['S', 'Hide or show your own picture'],
    ['T', 'Open the chat and type'],
    ['I', 'Show or hide the connection details'],
    ['C', 'Move your own picture to the next corner'],
    ['?', 'Show these shortcuts'],
    ['Esc', 'Close a panel, leave the full-window view'],
  ];

  // What a key does to the choice ('P', 'F', 'S', 'C'), given the current tiles and speaker.
  // Returns the new choice (the same object when the key does nothing).
  function onKey(choice, key, keys, activeSpeaker) {
    const k = key.toUpperCase();
    const remote = keys.filter((x) => x !== 'local');
    const target = choice.pinned || (keys.includes(activeSpeaker) ? activeSpeaker : remote[0]);
    switch (k) {
      case 'P':
        return { ...choice, pinned: choice.pinned ? null : target || null };
      case 'F':
        return { ...choice, focus: choice.focus ? null : target || null };
      case 'S':
        return { ...choice, selfHidden: !choice.selfHidden };
      case 'C': {
        const i = CORNERS.indexOf(choice.corner);
        return { ...choice, corner: CORNERS[(i + 1) % CORNERS.length] };
      }
      case 'ESCAPE':
        return choice.focus ? { ...choice, focus: null } : choice;
      default:
        return choice;
    }
  }

  // The corner nearest to a point in a box (for dragging the self view).
  function nearestCorner(x, y, width, height) {
    const v = y > height / 2 ? 'bottom' : 'top';
    const h = x > width / 2 ? 'right' : 'left';
    return `${v}-${h}`;
  }

  return { initial, speaker, arrange, onKey, nearestCorner, SHORTCUTS, CORNERS, SPEAKER_HOLD_MS };
});
