// Calls through an SFU in the browser: a Janus VideoRoom session over Janus's WebSocket API,
// the same steps the engine takes (crates/confab-engine/src/sfu.rs). The page decides who is in
// the call (callcore.js); this only talks to Janus: join (making the room if needed), publish
// our media once, subscribe to a person's feed, trickle candidates, keep the session alive.
//
// Whose feed is whose: a person's pictures are taken only from the feed that person named in a
// `feed` signal (sender stamped by the signaling server) AND that Janus lists under their id;
// a display name alone is anyone's to claim.
//
// Works as a browser script (window.ConfabSfu) and as a Node module (module.exports).
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ConfabSfu = api;
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';
  const MAX_FEEDS = 64;
  const NO_SUCH_ROOM = 426;
  const UNAUTHORIZED = 433; // our token is not on the room's list yet
  const ROOM_RETRY_MS = 250;
  const ROOM_WAIT_MS = 10000;

  class Feeds {
    constructor() {
      this.present = new Map(); // feed id -> display
      this.named = new Map(); // peer id -> feed id
    }
    published(list) {
      for (const p of Array.isArray(list) ? list : []) {
        if (!p || typeof p.id !== 'number' || typeof p.display !== 'string') continue;
        if (this.present.size >= MAX_FEEDS && !this.present.has(p.id)) break;
        this.present.set(p.id, p.display.slice(0, 64));
      }
    }
    gone(feed) { this.present.delete(feed); }
    // The person is out of our call: the feed they named is no longer theirs to us.
    forget(peer) { this.named.delete(peer); }
    name(peer, feed) {
      if (this.named.size < MAX_FEEDS || this.named.has(peer)) this.named.set(peer, feed);
    }
    feedOf(peer) {
      const f = this.named.get(peer);
      return f !== undefined && this.present.get(f) === peer ? f : null;
    }
  }

  // The feed a member holding `token` publishes under its `generation`-th time (from 1): the
  // first 53 bits of SHA-256 of `confab-sfu-feed:TOKEN:GENERATION`, never 0 (as
  // confab_protocol::sfu_feed; both tested on crates/confab-protocol/tests/sfu-feeds.json).
  async function sfuFeed(token, generation) {
    const bytes = new TextEncoder().encode(`confab-sfu-feed:${token}:${generation}`);
    const digest = new DataView(await globalThis.crypto.subtle.digest('SHA-256', bytes));
    const n = digest.getBigUint64(0) & ((1n << 53n) - 1n);
    return Number(n) || 1;
  }

  // The feed to publish under the `n`-th time (from 0) in a membership (the welcome's `sfu`):
  // its first feed, then later ones derived from its token, as far as the server knows them
  // (SfuInfo::feed_for). A feed once named to the room is not published again (for 64 publishes), so nobody who
  // learned it can take it over and be taken for us.
  async function feedFor(info, n) {
    const g = Math.min(n, info.generations || 0);
    if (g === 0 || !info.token) return info.feed || null;
    return sfuFeed(info.token, g);
  }

  class JanusSession {
    // info: the welcome's sfu object; me: our peer id; on: { offer(peer, sdp, shareMids),
    // ready(peer), published(feed), failed(message), kicked() }.
    constructor(info, me, on) {
      this.info = info;
      this.feed = null; // ours (feedFor), set before start(); null: Janus picks one
      this.me = me;
      this.on = on;
      this.feeds = new Feeds();
      this.next = 1;
      this.waiting = new Map(); // transaction -> { resolve, reject }
      this.subs = new Map(); // peer id -> handle id (or 'attaching')
      this.handles = new Map(); // handle id -> peer id
      this.wanted = new Set();
      this.session = 0;
      this.publisher = 0;
      this.closed = false;
    }

    send(msg) {
      const transaction = `t${this.next++}`;
      const full = { ...msg, transaction };
      if (this.session) full.session_id = this.session;
      this.ws.send(JSON.stringify(full));
      return transaction;
    }

    // A request and its final answer (skipping Janus's ack).
    request(msg) {
      return new Promise((resolve, reject) => {
        const t = this.send(msg);
        this.waiting.set(t, { resolve, reject });
        setTimeout(() => {
          if (this.waiting.delete(t)) reject(new Error('the media server did not answer within 10 s'));
        }, 10000);
      });
    }

    async plugin(handle, body, jsep) {
      const m = await this.request({ janus: 'message', handle_id: handle, body, ...(jsep ? { jsep } : {}) });
      const data = (m.plugindata && m.plugindata.data) || {};
      if (typeof data.error_code === 'number') {
        throw Object.assign(new Error(String(data.error || 'refused')), { code: data.error_code });
      }
      return m;
    }

    async start() {
      if (this.closed) throw new Error('closed');
      const url = this.info.url.replace(/^janus\+/, '');
      this.ws = new WebSocket(url, 'janus-protocol');
      await new Promise((resolve, reject) => {
        this.ws.onopen = resolve;
        this.ws.onerror = () => reject(new Error(`cannot reach the media server at ${url}`));
      });
      this.ws.onmessage = (ev) => this.message(ev.data);
      this.ws.onclose = () => {
        if (!this.closed) this.on.failed('the connection to the media server was lost');
      };
      this.session = (await this.request({ janus: 'create' })).data.id;
      this.publisher = (await this.request({ janus: 'attach', plugin: 'janus.plugin.videoroom' })).data.id;
      const room = this.info.room;
      const pin = this.info.pin;
      const join = { request: 'join', ptype: 'publisher', room, pin, display: this.me };
      // Our own feed and token, from the server (which lets the token in, and kicks the feed
      // once we have left the room).
      if (this.feed) join.id = this.feed;
      if (this.info.token) join.token = this.info.token;
      // The signaling server makes the room (only it knows the room's secret) and lists our
      // token; a first joiner can be here before it has: try again for a while.
      const since = Date.now();
      let joined;
      for (;;) {
        try {
          joined = await this.plugin(this.publisher, join);
          break;
        } catch (e) {
          if ((e.code !== NO_SUCH_ROOM && e.code !== UNAUTHORIZED) || Date.now() - since > ROOM_WAIT_MS) throw e;
          await new Promise((resolve) => setTimeout(resolve, ROOM_RETRY_MS));
        }
      }
      const data = joined.plugindata.data;
      // Every subscription names it: kicking our feed ends them too.
      this.privateId = data.private_id;
      this.feeds.published(data.publishers);
      this.keepalive = setInterval(() => this.send({ janus: 'keepalive' }), 25000);
      return data.id;
    }

    // Our offer in, Janus's answer out.
    async publish(sdp, descriptions) {
      const m = await this.plugin(this.publisher, { request: 'publish', audio: true, video: true, descriptions },
        { type: 'offer', sdp });
      return m.jsep && m.jsep.sdp;
    }

    trickle(handle, candidate) {
      if (handle) this.send({ janus: 'trickle', handle_id: handle, candidate });
    }

    named(peer, feed) {
      this.feeds.name(peer, feed);
      this.subscribeReady();
    }

    forget(peer) {
      this.feeds.forget(peer);
    }

    subscribe(peer) {
      this.wanted.add(peer);
      this.subscribeReady();
    }

    unsubscribe(peer) {
      this.wanted.delete(peer);
      const h = this.subs.get(peer);
      this.subs.delete(peer);
      if (typeof h === 'number') {
        this.handles.delete(h);
        this.send({ janus: 'detach', handle_id: h });
      }
    }

    async subscribeReady() {
      for (const peer of this.wanted) {
        const feed = this.feeds.feedOf(peer);
        if (feed === null || this.subs.has(peer)) continue;
        this.subs.set(peer, 'attaching');
        try {
          const h = (await this.request({ janus: 'attach', plugin: 'janus.plugin.videoroom' })).data.id;
          if (!this.wanted.has(peer)) {
            this.send({ janus: 'detach', handle_id: h });
            continue;
          }
          this.subs.set(peer, h);
          this.handles.set(h, peer);
          const m = await this.plugin(h, { request: 'join', ptype: 'subscriber', room: this.info.room, pin: this.info.pin, feed, private_id: this.privateId });
          const shares = ((m.plugindata.data.streams) || [])
            .filter((s) => s && s.feed_description === 'share').map((s) => s.mid);
          if (m.jsep && m.jsep.type === 'offer') this.on.offer(peer, m.jsep.sdp, shares);
        } catch (e) {
          this.subs.delete(peer);
          console.warn('subscribing failed', e);
        }
      }
    }

    // Our answer to Janus's offer for `peer`.
    async answer(peer, sdp) {
      const h = this.subs.get(peer);
      if (typeof h !== 'number') return;
      await this.plugin(h, { request: 'start', room: this.info.room }, { type: 'answer', sdp });
    }

    // Forward this layer ('full' or 'half') of the person's camera to us. Janus numbers a
    // publisher's encodings from the lowest (0); a camera that sends one ignores it.
    configure(peer, layer) {
      const h = this.subs.get(peer);
      if (typeof h !== 'number') return;
      this.plugin(h, { request: 'configure', substream: layer === 'half' ? 0 : 1 })
        .catch((e) => console.warn('asking for another layer failed', e));
    }

    handleOf(peer) {
      const h = peer === null ? this.publisher : this.subs.get(peer);
      return typeof h === 'number' ? h : 0;
    }

    message(text) {
      let m;
      try {
        m = JSON.parse(text);
      } catch (e) {
        return;
      }
      if (!m || typeof m !== 'object') return;
      const w = this.waiting.get(m.transaction);
      if (w && m.janus !== 'ack') {
        this.waiting.delete(m.transaction);
        if (m.janus === 'error') w.reject(new Error(String((m.error && m.error.reason) || 'refused')));
        else w.resolve(m);
        return;
      }
      if (m.janus === 'event' && m.sender === this.publisher && m.plugindata) {
        const d = m.plugindata.data || {};
        if (Array.isArray(d.publishers)) {
          this.feeds.published(d.publishers);
          this.subscribeReady();
        }
        for (const k of ['unpublished', 'leaving', 'kicked']) if (typeof d[k] === 'number') this.feeds.gone(d[k]);
        if (d.leaving === 'ok' && d.reason === 'kicked' && !this.closed) {
          this.close();
          this.on.kicked();
        }
      }
    }

    close() {
      this.closed = true;
      clearInterval(this.keepalive);
      try {
        if (this.session) this.send({ janus: 'destroy' });
        this.ws.close();
      } catch (e) { /* already gone */ }
    }
  }

  // Each media section of our offer: its mid and what it carries. The screen is the second
  // video section (docs/protocol.md, "Media sections"; its track id may say "share" too).
  function descriptions(sdp) {
    const out = [];
    let videos = 0;
    for (const section of sdp.split(/\r?\nm=/).slice(1)) {
      const mid = /\na=mid:(\S+)/.exec(`\n${section}`);
      if (!mid || section.startsWith('application')) continue;
      const msid = /\na=msid:\S+ (\S+)/.exec(`\n${section}`);
      const video = section.startsWith('video');
      if (video) videos++;
      const share = (msid && /(^|-)share(-|$)/.test(msid[1])) || (video && videos === 2);
      out.push({ mid: mid[1], description: share ? 'share' : video ? 'camera' : 'microphone' });
    }
    return out;
  }

  return { JanusSession, Feeds, descriptions, sfuFeed, feedFor };
});
