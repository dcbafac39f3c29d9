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
  return { toast };
});
