// Confab's call rules for the browser: a line-by-line port of crates/confab-call (core.rs and
// health.rs). No DOM, no WebRTC, no clock: fed events and time (ms), it answers with actions
// shaped exactly like the Rust ones. Both implementations run crates/confab-call/scenarios/*.json
// (Rust: crates/confab-call/tests/scenarios.rs; here: tests/js/callcore.test.js), so a rule
// changed in one place and not the other fails `cargo xtask test`.
//
// Works as a browser script (window.ConfabCallCore) and as a Node module (module.exports).
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ConfabCallCore = api;
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';

  const RING_TIMEOUT_MS = 30000;
  const REJOIN_GRACE_MS = 30000;

  const LINKED = new Set(['connecting', 'connected']);

  class CallCore {
    constructor(session, autoAccept) {
      this.session = session;
      this.me = null;
      this.peers = new Map(); // id -> peer; iterated in id order (sortedIds) like Rust's BTreeMap
      this.inCall = false;
      this.audio = true;
      this.video = true;
      this.autoAccept = !!autoAccept;
      this.callOnArrival = false;
      this.ringTimeout = RING_TIMEOUT_MS;
      this.rejoinGrace = REJOIN_GRACE_MS;
      this.out = [];
    }

    drain() {
      const out = this.out;
      this.out = [];
      return out;
    }

    sortedIds() {
      return [...this.peers.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    }

    participants() {
      return this.sortedIds()
        .map((id) => [id, this.peers.get(id)])
        .filter(([, p]) => p.awaySince === null)
        .map(([id, p]) => ({ id, name: p.name, in_call: p.inCall, audio: p.audio, video: p.video, phase: p.phase }));
    }

    nameOf(id) {
      const p = this.peers.get(id);
      return p ? p.name : null;
    }

    stateSignal() {
      return { kind: 'state', in_call: this.inCall, audio: this.audio, video: this.video, session: this.session };
    }

    send(to, signal) {
      this.out.push({ action: 'send', to, signal });
    }

    notice(notice) {
      this.out.push({ action: 'notice', notice });
    }

    changed() {
      this.out.push({ action: 'changed' });
    }

    present() {
      return this.sortedIds().filter((id) => this.peers.get(id).awaySince === null);
    }

    broadcastState() {
      const s = this.stateSignal();
      for (const id of this.present()) this.send(id, { ...s });
      this.changed();
    }

    setPhase(id, phase, now) {
      const p = this.peers.get(id);
      if (p) {
        p.phase = phase;
        p.since = now;
      }
      this.changed();
    }

    name(id) {
      return this.nameOf(id) ?? 'someone';
    }

    politeWith(peer) {
      return this.me !== null && this.me > peer;
    }

    openLink(peer, offerer) {
      this.out.push({ action: 'open-link', peer, offerer, polite: this.politeWith(peer) });
    }

    // ----- room events

    welcome(me, peers, now) {
      this.me = me;
      for (const id of this.sortedIds()) {
        const p = this.peers.get(id);
        if (LINKED.has(p.phase)) {
          if (p.awaySince === null) p.awaySince = now;
        } else {
          this.peers.delete(id);
        }
      }
      for (const info of peers) {
        const p = this.peers.get(info.id);
        if (p) {
          p.awaySince = null;
          p.name = info.name;
        } else {
          this.addPeer(info.id, info.name, now);
        }
      }
      this.broadcastState();
      this.maybeEndCall();
      this.maybeCallOnArrival(now);
    }

    addPeer(id, name, now) {
      this.peers.set(id, { name, inCall: false, audio: true, video: true, session: null, phase: 'idle', since: now, awaySince: null });
    }

    peerJoined(id, name, now) {
      if (this.me === null || this.me === id) return;
      const known = this.peers.get(id);
      if (known) {
        known.name = name;
        this.changed();
        return;
      }
      this.addPeer(id, name, now);
      this.send(id, this.stateSignal());
      this.changed();
      this.maybeCallOnArrival(now);
    }

    peerLeft(id, now) {
      const p = this.peers.get(id);
      if (!p) return;
      if (LINKED.has(p.phase)) {
        p.awaySince = now;
      } else if (p.phase === 'incoming') {
        const name = p.name;
        this.peers.delete(id);
        this.notice({ kind: 'ring-cancelled', from: id, name });
      } else {
        this.peers.delete(id);
      }
      this.changed();
      this.maybeEndCall();
    }

    disconnected() {
      this.changed();
    }

    // ----- signals

    signal(from, sig, now) {
      if (!this.peers.has(from) || !sig || typeof sig.kind !== 'string') return;
      switch (sig.kind) {
        case 'state': {
          if (!isState(sig)) return;
          const session = typeof sig.session === 'string' ? sig.session : null;
          if (session !== null) this.rebindIfSameSession(from, session);
          const p = this.peers.get(from);
          p.inCall = sig.in_call;
          p.audio = sig.audio;
          p.video = sig.video;
          p.session = session;
          this.changed();
          if (this.inCall && sig.in_call && p.phase === 'idle' && this.me !== null && this.me < from) this.ring(from, now);
          break;
        }
        case 'ring':
          this.onRing(from, now);
          break;
        case 'accept':
          if (this.peers.get(from).phase === 'ringing') {
            this.setPhase(from, 'connecting', now);
            this.openLink(from, true);
          }
          break;
        case 'decline':
          if (this.peers.get(from).phase === 'ringing') {
            this.setPhase(from, 'idle', now);
            const reason = typeof sig.reason === 'string' ? sig.reason : null;
            this.notice({ kind: 'declined', peer: from, name: this.name(from), reason });
            this.maybeEndCall();
          }
          break;
        case 'hang-up': {
          const phase = this.peers.get(from).phase;
          const name = this.name(from);
          if (phase === 'incoming') {
            this.setPhase(from, 'idle', now);
            this.notice({ kind: 'ring-cancelled', from, name });
          } else if (phase === 'ringing') {
            this.setPhase(from, 'idle', now);
            this.notice({ kind: 'declined', peer: from, name, reason: null });
            this.maybeEndCall();
          } else if (LINKED.has(phase)) {
            this.setPhase(from, 'idle', now);
            this.out.push({ action: 'close-link', peer: from });
            this.notice({ kind: 'hung-up', peer: from, name });
            this.maybeEndCall();
          }
          break;
        }
        default:
          break;
      }
    }

    rebindIfSameSession(newId, session) {
      const old = this.sortedIds().find((id) => {
        const p = this.peers.get(id);
        return id !== newId && p.awaySince !== null && p.session === session;
      });
      if (old === undefined) return;
      const target = this.peers.get(newId);
      if (target && target.phase !== 'idle') return;
      const oldPeer = this.peers.get(old);
      this.peers.delete(old);
      if (LINKED.has(oldPeer.phase)) {
        target.phase = oldPeer.phase;
        target.since = oldPeer.since;
        this.out.push({ action: 'rebind-link', from: old, to: newId });
      }
      this.changed();
    }

    onRing(from, now) {
      const phase = this.peers.get(from).phase;
      if (phase === 'ringing') {
        const meSmaller = this.me !== null && this.me < from;
        this.setPhase(from, 'connecting', now);
        if (meSmaller) {
          this.openLink(from, true);
        } else {
          this.send(from, { kind: 'accept' });
          this.openLink(from, false);
        }
      } else if (phase === 'idle') {
        if (this.inCall || this.autoAccept) {
          this.acceptNow(from, now);
        } else {
          this.setPhase(from, 'incoming', now);
          this.notice({ kind: 'incoming-call', from, name: this.name(from) });
        }
      }
    }

    acceptNow(from, now) {
      this.setPhase(from, 'connecting', now);
      this.send(from, { kind: 'accept' });
      this.openLink(from, false);
      this.enterCall(now);
    }

    enterCall(now) {
      if (this.inCall) return;
      this.inCall = true;
      this.callOnArrival = false;
      this.broadcastState();
      const list = this.sortedIds()
        .map((id) => [id, this.peers.get(id)])
        .filter(([, p]) => p.awaySince === null)
        .map(([id, p]) => [id, p.phase, p.inCall]);
      for (const [id, phase, inCall] of list) {
        if (phase === 'incoming') this.acceptNow(id, now);
        else if (phase === 'idle' && inCall) this.ring(id, now);
      }
    }

    ring(id, now) {
      this.setPhase(id, 'ringing', now);
      this.send(id, { kind: 'ring' });
    }

    // ----- link events

    linkConnected(id, now) {
      const p = this.peers.get(id);
      if (p && p.phase === 'connecting') this.setPhase(id, 'connected', now);
    }

    linkFailed(id, now) {
      const p = this.peers.get(id);
      if (!p || !LINKED.has(p.phase)) return;
      const name = p.name;
      const away = p.awaySince !== null;
      this.out.push({ action: 'close-link', peer: id });
      this.notice({ kind: 'link-failed', peer: id, name });
      if (away) {
        this.peers.delete(id);
      } else {
        this.setPhase(id, 'idle', now);
        this.send(id, { kind: 'hang-up' });
      }
      this.changed();
      this.maybeEndCall();
    }

    // ----- user commands: each returns null, or the error code of a refusal

    call(target, now) {
      if (this.me === null) return 'not-joined';
      let targets;
      if (target !== null && target !== undefined) {
        const p = this.peers.get(target);
        if (!p || p.awaySince !== null) return 'unknown-peer';
        if (LINKED.has(p.phase)) return 'already-in-call';
        if (p.phase === 'incoming') return this.accept(target, now);
        targets = [target];
      } else {
        targets = this.present();
        if (!targets.length) return 'nobody-to-call';
      }
      this.callOnArrival = false;
      const wasInCall = this.inCall;
      this.inCall = true;
      if (!wasInCall) this.broadcastState();
      for (const id of targets) {
        const phase = this.peers.get(id).phase;
        if (phase === 'idle') this.ring(id, now);
        else if (phase === 'incoming') this.acceptNow(id, now);
      }
      if (!wasInCall) {
        const ids = this.sortedIds().filter((id) => {
          const p = this.peers.get(id);
          return p.awaySince === null && p.inCall && p.phase === 'idle';
        });
        for (const id of ids) this.ring(id, now);
      }
      this.changed();
      return null;
    }

    callWhenPresent(now) {
      if (this.me === null) return 'not-joined';
      if (this.inCall) return null;
      this.callOnArrival = true;
      this.maybeCallOnArrival(now);
      return null;
    }

    maybeCallOnArrival(now) {
      if (this.callOnArrival && !this.inCall && this.present().length > 0) {
        this.callOnArrival = false;
        this.call(null, now);
      }
    }

    accept(from, now) {
      const p = this.peers.get(from);
      if (!p) return 'unknown-peer';
      if (p.phase !== 'incoming') return 'not-ringing';
      this.acceptNow(from, now);
      return null;
    }

    decline(from, now) {
      const p = this.peers.get(from);
      if (!p) return 'unknown-peer';
      if (p.phase !== 'incoming') return 'not-ringing';
      this.setPhase(from, 'idle', now);
      this.send(from, { kind: 'decline', reason: 'declined' });
      return null;
    }

    hangUp(now) {
      this.callOnArrival = false;
      const list = this.sortedIds().map((id) => [id, this.peers.get(id).phase, this.peers.get(id).awaySince !== null]);
      for (const [id, phase, away] of list) {
        if (phase === 'ringing') {
          this.send(id, { kind: 'hang-up' });
          this.setPhase(id, 'idle', now);
        } else if (LINKED.has(phase)) {
          this.send(id, { kind: 'hang-up' });
          this.out.push({ action: 'close-link', peer: id });
          if (away) this.peers.delete(id);
          else this.setPhase(id, 'idle', now);
        }
      }
      if (this.inCall) {
        this.inCall = false;
        this.broadcastState();
        this.notice({ kind: 'call-ended' });
      }
    }

    leave(now) {
      this.hangUp(now);
      this.peers.clear();
      this.me = null;
      this.changed();
    }

    setMedia(audio, video) {
      if (audio !== this.audio || video !== this.video) {
        this.audio = audio;
        this.video = video;
        this.broadcastState();
      }
    }

    tick(now) {
      const expired = this.sortedIds()
        .map((id) => [id, this.peers.get(id)])
        .filter(([, p]) => (p.phase === 'ringing' || p.phase === 'incoming') && now - p.since >= this.ringTimeout)
        .map(([id, p]) => [id, p.phase]);
      for (const [id, phase] of expired) {
        const name = this.name(id);
        this.setPhase(id, 'idle', now);
        if (phase === 'ringing') {
          this.send(id, { kind: 'hang-up' });
          this.notice({ kind: 'no-answer', peer: id, name });
        } else {
          this.notice({ kind: 'ring-cancelled', from: id, name });
        }
      }
      const gone = this.sortedIds().filter((id) => {
        const t = this.peers.get(id).awaySince;
        return t !== null && now - t >= this.rejoinGrace;
      });
      for (const id of gone) {
        const name = this.name(id);
        this.peers.delete(id);
        this.out.push({ action: 'close-link', peer: id });
        this.notice({ kind: 'hung-up', peer: id, name });
        this.changed();
      }
      this.maybeEndCall();
    }

    maybeEndCall() {
      if (!this.inCall) return;
      const anyone = [...this.peers.values()].some((p) => p.phase === 'ringing' || LINKED.has(p.phase));
      if (!anyone) {
        this.inCall = false;
        this.broadcastState();
        this.notice({ kind: 'call-ended' });
      }
    }
  }

  // A state signal is only taken whole and well typed (like the Rust decoder).
  function isState(s) {
    return (
      typeof s.in_call === 'boolean' &&
      typeof s.audio === 'boolean' &&
      typeof s.video === 'boolean' &&
      (s.session === undefined || s.session === null || typeof s.session === 'string')
    );
  }

  // ------------------------------------------------------------------ link health (health.rs)
  const HEALTH = {
    setupDeadlineMs: 30000,
    restartAfterMs: 2000,
    restartEveryMs: 5000,
    maxRestarts: 5,
    giveUpAfterMs: 30000,
  };

  class LinkHealth {
    constructor(offerer, now, rules = HEALTH) {
      this.rules = rules;
      this.offerer = !!offerer;
      this.openedAt = now;
      this.everConnected = false;
      this.brokenSince = null;
      this.restarts = 0;
      this.lastRestart = null;
    }

    // state: 'connecting' | 'connected' | 'broken'. Returns true the first time it connects.
    onState(state, now) {
      if (state === 'connected') {
        this.brokenSince = null;
        this.restarts = 0;
        const first = !this.everConnected;
        this.everConnected = true;
        return first;
      }
      if (state === 'broken' && this.brokenSince === null) this.brokenSince = now;
      return false;
    }

    // Returns null, 'restart-ice', or { fail: 'setup-timeout' | 'broken' }.
    tick(now) {
      const r = this.rules;
      if (!this.everConnected) {
        return now - this.openedAt > r.setupDeadlineMs ? { fail: 'setup-timeout' } : null;
      }
      if (this.brokenSince === null) return null;
      const brokenFor = now - this.brokenSince;
      if (brokenFor > r.giveUpAfterMs) return { fail: 'broken' };
      const due = this.lastRestart === null || now - this.lastRestart > r.restartEveryMs;
      if (this.offerer && brokenFor > r.restartAfterMs && due && this.restarts < r.maxRestarts) {
        this.restarts++;
        this.lastRestart = now;
        return 'restart-ice';
      }
      return null;
    }
  }

  const FAILURE_TEXT = {
    'setup-timeout': 'the call could not be connected within 30 s (a firewall may block it; a TURN server helps)',
    broken: 'the connection to this person broke and could not be restored',
  };

  return { CallCore, LinkHealth, FAILURE_TEXT, RING_TIMEOUT_MS, REJOIN_GRACE_MS };
});
