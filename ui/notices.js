// What a notice of the call rules says to people, in words: one copy for the desktop window
// and the web client (the signaling server serves this file too). A notice is the `notice` of
// the rules' `notice` action (confab_call::Notice, callcore.js). Returns [text, kind] for a
// toast, or null for a notice shown some other way (an incoming call rings, a request to
// join asks).
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ConfabNotices = api;
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';
  function toast(n) {
    switch (n.kind) {
      case 'ring-cancelled': return [`Missed call from ${n.name}`, 'warn'];
      case 'declined': return [`${n.name} declined the call`, 'warn'];
      case 'no-answer': return [`${n.name} did not answer`, 'warn'];
      case 'hung-up': return [`${n.name} left the call`, 'info'];
      case 'link-failed': return [`The connection to ${n.name} was lost`, 'error'];
      case 'call-ended': return ['Call ended', 'info'];
      case 'joined-call': return [`${n.name} joined the call`, 'info'];
      case 'admitted': return [`${n.by} let ${n.name} in`, 'info'];
      default: return null;
    }
  }
  // Names as shown: two people with the same name (or someone with our own name) are told
  // apart by the start of their id, so nobody can pass for someone else by taking their name.
  // people: [{id, name}]; returns Map id -> shown name.
  function displayNames(people, myName) {
    const count = new Map();
    for (const p of people) count.set(p.name, (count.get(p.name) || 0) + 1);
    const out = new Map();
    for (const p of people) {
      const clash = count.get(p.name) > 1 || (myName && p.name === myName);
      out.set(p.id, clash ? `${p.name} #${String(p.id).slice(0, 4)}` : p.name);
    }
    return out;
  }
  return { toast, displayNames };
});
