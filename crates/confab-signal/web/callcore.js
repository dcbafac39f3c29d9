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
  const JOIN_REQUEST_GRACE_MS = 2000;
  const MAX_NONCE = 64;
  const MAX_PROOFS = 16;
  // Most resumes kept until their old id leaves (see earlyResumes).
  const MAX_EARLY_RESUMES = 16;

  const LINKED = new Set(['connecting', 'connected']);

  // SHA-256 (FIPS 180-4) of a string's UTF-8 bytes, synchronous (the rules are): hex.
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  function sha256Hex(text) {
    const bytes = new TextEncoder().encode(text);
    const len = bytes.length;
    const blocks = Math.ceil((len + 9) / 64);
    const m = new Uint8Array(blocks * 64);
    m.set(bytes);
    m[len] = 0x80;
    const bits = len * 8;
    const view = new DataView(m.buffer);
    view.setUint32(m.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(m.length - 4, bits >>> 0);
    const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const w = new Uint32Array(64);
    const rot = (x, n) => (x >>> n) | (x << (32 - n));
    for (let b = 0; b < blocks; b++) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(b * 64 + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rot(w[i - 15], 7) ^ rot(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rot(w[i - 2], 17) ^ rot(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, bb, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (rot(e, 6) ^ rot(e, 11) ^ rot(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((rot(a, 2) ^ rot(a, 13) ^ rot(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c))) >>> 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) >>> 0;
        d = c;
        c = bb;
        bb = a;
        a = (t1 + t2) >>> 0;
      }
      h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    return Array.from(h, (x) => x.toString(16).padStart(8, '0')).join('');
  }
  // SHA-256 as hex, first 32 characters (128 bits), like core.rs's `hash`.
  const hash = (text) => sha256Hex(text).slice(0, 32);
  const resumeProof = (secret, from, to) => hash(`${secret}:${from}:${to}`);

  class CallCore {
    constructor(session, secret, autoAccept) {
      this.session = session;
      this.secret = secret;
      this.me = null;
      // Our ids before a rejoin (the last 8): a server that has not yet noticed an old
      // connection died still lists it, and that is us, not someone else.
      this.former = [];
      this.peers = new Map(); // id -> peer; iterated in id order (sortedIds) like Rust's BTreeMap
      this.inCall = false;
      this.audio = true;
      this.video = true;
      this.autoAccept = !!autoAccept;
      this.admitAll = false;
      this.callOnArrival = false;
      this.ringTimeout = RING_TIMEOUT_MS;
      this.rejoinGrace = REJOIN_GRACE_MS;
      // [newId, proofs] of resumes that came before the old id was announced gone.
      this.earlyResumes = [];
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

    // Everyone else in the room as these rules know it, those away included (known_peers).
    knownPeers() {
      return this.peers.size;
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

    myNonce(peer) {
      return hash(`${this.secret}:nonce:${peer}`);
    }

    openLink(peer, offerer) {
      const mine = this.myNonce(peer);
      const p = this.peers.get(peer);
      if (p) {
        const theirs = p.theirNonce;
        p.linkSecret = theirs === null ? null : mine <= theirs ? hash(`${mine}:${theirs}`) : hash(`${theirs}:${mine}`);
      }
      this.out.push({ action: 'open-link', peer, offerer, polite: this.politeWith(peer) });
    }

    // ----- room events

    welcome(me, peers, now) {
      // Our own id is never one of the others, whatever the server says: a server that listed
      // it (or handed us the id of someone we knew) would have us signal, ring and link to
      // ourselves.
      const mine = this.peers.get(me);
      if (mine) {
        this.peers.delete(me);
        if (LINKED.has(mine.phase)) this.out.push({ action: 'close-link', peer: me });
      }
      if (this.me !== null && this.me !== me) {
        this.former.push(this.me);
        if (this.former.length > 8) this.former.shift();
      }
      peers = peers.filter((info) => info.id !== me && !this.former.includes(info.id));
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
      for (const y of this.present()) this.sendResume(y);
      this.broadcastState();
      this.maybeEndCall();
      this.maybeCallOnArrival(now);
    }

    sendResume(to) {
      if (this.me === null) return;
      const target = this.peers.get(to);
      const toIsLinked = !!target && LINKED.has(target.phase);
      const proofs = this.sortedIds()
        .filter((id) => {
          const p = this.peers.get(id);
          return LINKED.has(p.phase) && (id === to || (p.awaySince !== null && !toIsLinked));
        })
        .map((id) => this.peers.get(id).linkSecret)
        .filter((secret) => secret !== null)
        .map((secret) => resumeProof(secret, this.me, to))
        .slice(0, MAX_PROOFS);
      if (proofs.length) this.send(to, { kind: 'resume', proofs });
    }

    addPeer(id, name, now) {
      this.peers.set(id, {
        name, inCall: false, audio: true, video: true, session: null, phase: 'idle', since: now, awaySince: null,
        theirNonce: null, linkSecret: null, vouched: false, announced: false,
      });
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
      this.sendResume(id);
      this.send(id, this.stateSignal());
      this.changed();
      this.maybeCallOnArrival(now);
    }

    peerLeft(id, now) {
      const p = this.peers.get(id);
      if (!p) return;
      if (LINKED.has(p.phase)) {
        p.awaySince = now;
        // A rejoin under a new id may have proved itself before this id was announced gone.
        const early = this.earlyResumes;
        this.earlyResumes = [];
        for (const [newId, proofs] of early) this.onResume(newId, proofs);
      } else if (p.phase === 'incoming') {
        const name = p.name;
        const announced = p.announced;
        this.peers.delete(id);
        if (announced) this.notice({ kind: 'ring-cancelled', from: id, name });
      } else {
        this.peers.delete(id);
      }
      this.earlyResumes = this.earlyResumes.filter(([n]) => n !== id);
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
          const p = this.peers.get(from);
          p.inCall = sig.in_call;
          p.audio = sig.audio;
          p.video = sig.video;
          p.session = typeof sig.session === 'string' ? sig.session : null;
          this.changed();
          this.fillMesh(from, now);
          break;
        }
        case 'ring':
          this.takeNonce(from, sig.nonce);
          this.onRing(from, now);
          break;
        case 'accept':
          if (this.peers.get(from).phase === 'ringing') {
            this.takeNonce(from, sig.nonce);
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
            const announced = this.peers.get(from).announced;
            this.setPhase(from, 'idle', now);
            if (announced) this.notice({ kind: 'ring-cancelled', from, name });
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
        case 'admit':
          if (typeof sig.peer === 'string') this.onAdmit(from, sig.peer, now);
          break;
        case 'resume':
          if (Array.isArray(sig.proofs) && sig.proofs.every((x) => typeof x === 'string')) this.onResume(from, sig.proofs);
          break;
        default:
          break;
      }
    }

    takeNonce(from, nonce) {
      const p = this.peers.get(from);
      if (p && typeof nonce === 'string' && nonce.length > 0 && nonce.length <= MAX_NONCE) p.theirNonce = nonce;
    }

    fillMesh(peer, now) {
      const p = this.peers.get(peer);
      const due = this.inCall && this.me !== null && this.me < peer && !!p &&
        p.inCall && p.vouched && p.phase === 'idle' && p.awaySince === null;
      if (due) this.ring(peer, now);
    }

    onAdmit(by, peer, now) {
      const b = this.peers.get(by);
      const trusted = this.inCall && !!b && LINKED.has(b.phase) && b.awaySince === null;
      if (!trusted || by === peer) return;
      const p = this.peers.get(peer);
      if (!p) return;
      p.vouched = true;
      if (p.phase === 'incoming') {
        this.notice({ kind: 'admitted', peer, name: this.name(peer), by: this.name(by) });
        this.acceptNow(peer, now);
      } else {
        this.fillMesh(peer, now);
      }
    }

    onResume(newId, allProofs) {
      if (this.me === null) return;
      const target = this.peers.get(newId);
      // A kept early resume may name an id that is gone since.
      if (!target || (target.phase !== 'idle' && target.phase !== 'ringing')) return;
      const proofs = allProofs.slice(0, MAX_PROOFS);
      const me = this.me;
      const old = this.sortedIds().find((id) => {
        const p = this.peers.get(id);
        // Whether or not its old id has been announced gone (see confab-call's on_resume).
        return id !== newId && LINKED.has(p.phase) &&
          p.linkSecret !== null && proofs.includes(resumeProof(p.linkSecret, newId, me));
      });
      this.earlyResumes = this.earlyResumes.filter(([n]) => n !== newId);
      if (old === undefined) {
        // Its old id may not be announced as gone yet: keep the proofs for then.
        if (this.earlyResumes.length === MAX_EARLY_RESUMES) this.earlyResumes.shift();
        this.earlyResumes.push([newId, proofs]);
        return;
      }
      const oldPeer = this.peers.get(old);
      this.peers.delete(old);
      target.phase = oldPeer.phase;
      target.since = oldPeer.since;
      target.linkSecret = oldPeer.linkSecret;
      target.theirNonce = oldPeer.theirNonce;
      target.vouched = true;
      this.out.push({ action: 'rebind-link', from: old, to: newId });
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
          this.send(from, { kind: 'accept', nonce: this.myNonce(from) });
          this.openLink(from, false);
        }
      } else if (phase === 'idle') {
        const vouched = this.peers.get(from).vouched;
        if (this.autoAccept || (this.inCall && (vouched || this.admitAll))) {
          this.acceptNow(from, now);
        } else {
          this.setPhase(from, 'incoming', now);
          this.peers.get(from).announced = !this.inCall;
          if (!this.inCall) this.notice({ kind: 'incoming-call', from, name: this.name(from) });
        }
      }
    }

    acceptNow(from, now) {
      this.setPhase(from, 'connecting', now);
      this.send(from, { kind: 'accept', nonce: this.myNonce(from) });
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
      this.send(id, { kind: 'ring', nonce: this.myNonce(id) });
    }

    vouch(peer) {
      const members = this.sortedIds().filter((id) => {
        const p = this.peers.get(id);
        return id !== peer && p.phase === 'connected' && p.awaySince === null;
      });
      for (const m of members) {
        this.send(m, { kind: 'admit', peer });
        this.send(peer, { kind: 'admit', peer: m });
      }
    }

    // ----- link events

    linkConnected(id, now) {
      const p = this.peers.get(id);
      if (p && p.phase === 'connecting') {
        this.setPhase(id, 'connected', now);
        this.notice({ kind: 'joined-call', peer: id, name: this.name(id) });
        if (this.inCall) this.vouch(id);
      }
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
      if (this.inCall) this.vouch(from);
      this.acceptNow(from, now);
      return null;
    }

    decline(from, now) {
      const p = this.peers.get(from);
      if (!p) return 'unknown-peer';
      if (p.phase !== 'incoming') return 'not-ringing';
      this.setPhase(from, 'idle', now);
      this.send(from, { kind: 'decline', reason: this.inCall ? 'denied' : 'declined' });
      return null;
    }

    setAdmitAll(on) {
      this.admitAll = !!on;
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
      const due = this.sortedIds().filter((id) => {
        const p = this.peers.get(id);
        return p.phase === 'incoming' && !p.announced && now - p.since >= JOIN_REQUEST_GRACE_MS;
      });
      for (const id of due) {
        this.peers.get(id).announced = true;
        this.notice({ kind: 'join-request', from: id, name: this.name(id) });
        this.changed();
      }
      const expired = this.sortedIds()
        .map((id) => [id, this.peers.get(id)])
        .filter(([, p]) => (p.phase === 'ringing' || p.phase === 'incoming') && now - p.since >= this.ringTimeout)
        .map(([id, p]) => [id, p.phase]);
      for (const [id, phase] of expired) {
        const name = this.name(id);
        this.setPhase(id, 'idle', now);
        this.peers.get(id).announced = false;
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
      // Our own network moved under this connection (pathGone): this side restarts ICE
      // whichever side made the first offer, until it connects again.
      this.pathIsGone = false;
      // Our signaling connection is up: a restart's offer can arrive (none is made while not).
      this.signalingUp = true;
    }

    restartsIce() {
      return this.offerer || this.pathIsGone;
    }

    restart(now) {
      this.restarts++;
      this.lastRestart = now;
      return 'restart-ice';
    }

    // state: 'connecting' | 'connected' | 'broken'. Returns true the first time it connects.
    onState(state, now) {
      if (state === 'connected') {
        this.brokenSince = null;
        this.restarts = 0;
        this.pathIsGone = false;
        const first = !this.everConnected;
        this.everConnected = true;
        return first;
      }
      if (state === 'broken' && this.brokenSince === null) this.brokenSince = now;
      return false;
    }

    // The signaling connection is back after a drop: a broken link's last restart went out on
    // the dead connection, so the offerer restarts now (health.rs, signaling_back).
    signalingDown() {
      this.signalingUp = false;
    }

    signalingBack(now) {
      this.signalingUp = true;
      return this.restartIfBroken(now);
    }

    // The other end is back under a new id (the link was rebound to it): a restart made while
    // it was away went to its old id and was lost, so the restarting side restarts now
    // (health.rs, peer_back).
    peerBack(now) {
      if (!this.signalingUp) return null;
      return this.restartIfBroken(now);
    }

    restartIfBroken(now) {
      if (this.restartsIce() && this.everConnected && this.brokenSince !== null && this.restarts < this.rules.maxRestarts) {
        return this.restart(now);
      }
      return null;
    }

    // Our side of the path is gone (health.rs, path_gone): broken now, and this side restarts
    // at once, or once rejoined when the signaling connection went with it. The desktop
    // engine watches its routes; a browser does not tell a page, so the web client has no
    // caller yet: this keeps the one table of rules whole.
    pathGone(now) {
      if (!this.everConnected) return null;
      if (this.brokenSince === null) this.brokenSince = now;
      this.pathIsGone = true;
      if (this.signalingUp && this.restarts < this.rules.maxRestarts) return this.restart(now);
      return null;
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
      if (this.restartsIce() && this.signalingUp && brokenFor > r.restartAfterMs && due && this.restarts < r.maxRestarts) {
        return this.restart(now);
      }
      return null;
    }
  }

  // ------------------------------------------------------------------ simulcast layers (layers.rs)
  const LAYERS = {
    downAtLossPct: 8,
    cleanBelowPct: 2,
    waitMs: 10000,
    maxWaitMs: 160000,
    trialMs: 15000,
    settleMs: 3000,
    requestsInWindow: 4,
    requestWindowMs: 3000,
  };

  // Which layer of a simulcast camera to ask the SFU for: 'half' when the link from it is in
  // trouble (loss, or keyframe after keyframe), 'full' again after a clean spell that doubles
  // after each failed try. tick() returns the new layer, or null.
  class LayerChoice {
    constructor(now, rules = LAYERS) {
      this.rules = rules;
      this.want = 'full';
      this.changedAt = now;
      this.cleanSince = null;
      this.wait = rules.waitMs;
      this.trying = false;
      this.requests = []; // [at, count]: the window, and the last reading before it
    }

    // reading: { lossPct: number|null, keyframeRequests: number, receiving: boolean }
    tick(now, reading) {
      const r = this.rules;
      if (!reading.receiving) {
        this.requests = [];
        this.changedAt = now;
        return null;
      }
      this.requests.push([now, reading.keyframeRequests]);
      while (this.requests.length > 1 && now - this.requests[1][0] > r.requestWindowMs) this.requests.shift();
      const asked = Math.max(0, reading.keyframeRequests - this.requests[0][1]);
      if (now - this.changedAt < r.settleMs) return null;
      const loss = reading.lossPct === null || reading.lossPct === undefined ? 0 : reading.lossPct;
      const trouble = loss >= r.downAtLossPct || asked >= r.requestsInWindow;
      const clean = loss < r.cleanBelowPct && asked === 0;
      if (this.want === 'full') {
        if (!trouble) return null;
        const failedTry = this.trying && now - this.changedAt <= r.trialMs;
        this.wait = failedTry ? Math.min(this.wait * 2, r.maxWaitMs) : r.waitMs;
        return this.set('half', now);
      }
      if (!clean) {
        this.cleanSince = null;
        return null;
      }
      if (this.cleanSince === null) this.cleanSince = now;
      if (now - this.cleanSince < this.wait) return null;
      this.trying = true;
      return this.set('full', now);
    }

    set(want, now) {
      this.want = want;
      this.changedAt = now;
      this.cleanSince = null;
      return want;
    }
  }

  // ------------------------------------------------------------------ verification (verify.rs)
  function fingerprint(sdp) {
    for (const line of String(sdp).split(/\r?\n/)) {
      const t = line.trim();
      if (!t.startsWith('a=fingerprint:')) continue;
      const v = t.slice('a=fingerprint:'.length).trim().toLowerCase();
      if (v.startsWith('sha-256 ') && v.length <= 128) return v;
    }
    return null;
  }
  const commitment = (fp, random) => hash(`${fp}:${random}`);
  function shortCode(digestHex) {
    const n = parseInt(digestHex.slice(0, 8), 16) % 1000000;
    return `${String(Math.floor(n / 1000)).padStart(3, '0')} ${String(n % 1000).padStart(3, '0')}`;
  }

  // role: 'offerer' | 'answerer'. Each method returns a verify signal to send, or null; the
  // offerer's commitment goes before its description, the answerer's reveal after its own.
  class Verifier {
    constructor(role, random, binding) {
      this.role = role;
      this.random = random;
      this.binding = binding;
      this.ownFp = null;
      this.theirFp = null;
      this.theirCommit = null;
      this.theirRandom = null;
      this.committed = false;
      this.revealed = false;
      this.result = null; // { code } | { error }
    }

    localDescription(sdp) {
      if (this.ownFp === null) this.ownFp = fingerprint(sdp);
      if (this.role === 'offerer' && !this.committed) {
        if (this.ownFp === null) return null;
        this.committed = true;
        return { kind: 'verify', commit: commitment(this.ownFp, this.random) };
      }
      return this.maybeReveal();
    }

    remoteDescription(sdp) {
      if (this.theirFp === null) this.theirFp = fingerprint(sdp);
      return this.maybeReveal();
    }

    signal(commit, reveal) {
      if (typeof commit === 'string' && this.role === 'answerer' && this.theirCommit === null && commit.length <= 64) this.theirCommit = commit;
      if (typeof reveal === 'string' && this.theirRandom === null && reveal.length <= 64) this.theirRandom = reveal;
      const out = this.maybeReveal();
      this.finish();
      return out;
    }

    maybeReveal() {
      if (this.revealed || this.ownFp === null || this.theirFp === null) return null;
      const turn = this.role === 'answerer' ? this.theirCommit !== null : this.committed && this.theirRandom !== null;
      if (!turn) return null;
      this.revealed = true;
      const out = { kind: 'verify', reveal: this.random };
      this.finish();
      return out;
    }

    finish() {
      if (this.result !== null || !this.revealed || this.ownFp === null || this.theirFp === null || this.theirRandom === null) return;
      if (this.role === 'answerer') {
        if (this.theirCommit === null) {
          this.result = { error: 'no-commit' };
          return;
        }
        if (commitment(this.theirFp, this.theirRandom) !== this.theirCommit) {
          this.result = { error: 'commit-mismatch' };
          return;
        }
      }
      const [ofp, afp, or, ar] = this.role === 'offerer'
        ? [this.ownFp, this.theirFp, this.random, this.theirRandom]
        : [this.theirFp, this.ownFp, this.theirRandom, this.random];
      this.result = { code: shortCode(hash(`confab-sas:${this.binding}:${ofp}:${afp}:${or}:${ar}`)) };
    }
  }

  // When a call through an SFU goes back to direct links (mesh_return.rs): once the room has
  // stayed small for 5 s; a move back less than 2 minutes after the last waits twice as long as
  // that one did, up to 80 s (a room pushed to and fro must not move the call back and forth).
  const MESH_RETURN = { waitMs: 5000, maxWaitMs: 80000, forgetMs: 120000 };
  class MeshReturn {
    constructor() {
      this.due = null; // [at, wait] while the room stays small
      this.last = null; // [at, wait] of the last move back
    }

    // small: the call goes through the SFU and the room is small enough. True: go back now.
    tick(now, small) {
      if (!small) {
        this.due = null;
        return false;
      }
      if (this.due === null) {
        const wait = this.nextWait(now);
        this.due = [now + wait, wait];
      }
      const [due, wait] = this.due;
      if (now < due) return false;
      this.due = null;
      this.last = [now, wait];
      return true;
    }

    // The call went back another way (the other side's direct offer came).
    moved(now) {
      const wait = this.due !== null ? this.due[1] : this.nextWait(now);
      this.due = null;
      this.last = [now, wait];
    }

    nextWait(now) {
      if (this.last !== null && now - this.last[0] < MESH_RETURN.forgetMs) {
        return Math.min(this.last[1] * 2, MESH_RETURN.maxWaitMs);
      }
      return MESH_RETURN.waitMs;
    }
  }

  const FAILURE_TEXT = {
    'setup-timeout': 'the call could not be connected within 30 s (a firewall may block it; a TURN server helps)',
    broken: 'the connection to this person broke and could not be restored',
  };

  return { CallCore, LinkHealth, LayerChoice, MeshReturn, Verifier, FAILURE_TEXT, RING_TIMEOUT_MS, REJOIN_GRACE_MS, sha256Hex, resumeProof };
});
