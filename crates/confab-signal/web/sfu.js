// Calls through an SFU in the browser: a Janus VideoRoom session over Janus's WebSocket API,
// the same steps the engine takes (crates/confab-engine/src/sfu.rs). The page decides who is in
// the call (callcore.js); this only talks to Janus: join (making the room if needed), publish
// our media once, subscribe our own feed for each person our call let in, trickle candidates,
// keep the session alive.
//
// Who receives whom: a publisher subscribes for the people its call let in, in its own session
// and with its own private_id, and hands each of them Janus's offer over Confab's signaling
// (`sfu-offer`, sender stamped by the signaling server); their answers and candidates come back
// the same way. Nobody subscribes to anyone else's feed, so a display name at Janus (anyone's
// to claim) is never taken for a person.
//
// Works as a browser script (window.ConfabSfu) and as a Node module (module.exports).
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ConfabSfu = api;
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';
  const NO_SUCH_ROOM = 426;
  const NO_SUCH_FEED = 428; // a subscription of our feed before Janus has our media up
  const UNAUTHORIZED = 433; // our token is not on the room's list yet
  const ROOM_RETRY_MS = 250;
  const ROOM_WAIT_MS = 10000;
  const FEED_RETRY_MS = 250;
  const FEED_RETRIES = 20;
  const MAX_SUBS = 64; // people we subscribe for
  const MAX_CANDIDATES = 64; // a person's candidates trickled for one subscription
  const LAYER_EVERY_MS = 1000; // a person's asks for another layer reach Janus at most this often
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  class JanusSession {
    // info: the welcome's sfu object; me: our peer id; on: { offer(peer, sub, sdp, shareMids),
    // failed(message), kicked() }.
    constructor(info, me, on) {
      this.info = info;
      this.me = me;
      this.on = on;
      this.next = 1;
      this.waiting = new Map(); // transaction -> { resolve, reject, timer }
      this.wanted = new Set(); // the people our call let in (admit)
      this.subs = new Map(); // peer id -> subscriber handle id (or a marker while attaching)
      this.handles = new Map(); // subscriber handle id -> peer id
      this.candidates = new Map(); // subscriber handle id -> candidates trickled for it
      this.layers = new Map(); // subscriber handle id -> the substream last asked for
      this.layerAt = new Map(); // subscriber handle id -> when it was asked for (ms)
      this.awaiting = new Set(); // subscriber handles whose offer awaits its answer
      this.shares = new Map(); // subscriber handle id -> the mids of our screen it offers
      this.session = 0;
      this.publisher = 0;
      this.ownFeed = null; // the feed Janus let us publish as
      this.privateId = null;
      this.up = false; // our publisher's PeerConnection is up at Janus (webrtcup)
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
        const timer = setTimeout(() => {
          if (this.waiting.delete(t)) reject(new Error('the media server did not answer within 10 s'));
        }, 10000);
        this.waiting.set(t, { resolve, reject, timer });
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
      // Our own room and token, from the server (which removes the room once we have left).
      // Janus picks our feed id: nobody else is ever in the room.
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
          await sleep(ROOM_RETRY_MS);
        }
      }
      const data = joined.plugindata.data;
      // Every subscription names it: kicking our feed ends them too.
      this.privateId = data.private_id;
      this.ownFeed = data.id;
      this.keepalive = setInterval(() => this.send({ janus: 'keepalive' }), 25000);
      return data.id;
    }

    // Our offer in, Janus's answer out.
    async publish(sdp, descriptions) {
      const m = await this.plugin(this.publisher, { request: 'publish', audio: true, video: true, descriptions },
        { type: 'offer', sdp });
      return m.jsep && m.jsep.sdp;
    }

    // Our publisher's own candidates.
    trickle(candidate) {
      if (this.publisher && !this.closed) this.send({ janus: 'trickle', handle_id: this.publisher, candidate });
    }

    // Our call let `peer` in: subscribe our feed for them (once our media is up at Janus) and
    // hand them Janus's offer (on.offer).
    admit(peer) {
      if (this.closed || (this.wanted.size >= MAX_SUBS && !this.wanted.has(peer))) return;
      this.wanted.add(peer);
      this.subscribeReady();
    }

    // `peer` left our call: their subscription goes, and with it our media to them.
    release(peer) {
      this.wanted.delete(peer);
      const h = this.subs.get(peer);
      this.subs.delete(peer);
      if (typeof h === 'number') this.drop(h);
    }

    drop(h) {
      this.handles.delete(h);
      this.candidates.delete(h);
      this.layers.delete(h);
      this.layerAt.delete(h);
      this.awaiting.delete(h);
      this.shares.delete(h);
      if (!this.closed) this.send({ janus: 'detach', handle_id: h });
    }

    // Before Janus has our publisher's PeerConnection up, a subscription of our feed is
    // refused ("No such feed"): wait for webrtcup.
    subscribeReady() {
      if (!this.up || this.closed) return;
      for (const peer of this.wanted) if (!this.subs.has(peer)) this.subscribe(peer);
    }

    async subscribe(peer) {
      const mark = {};
      this.subs.set(peer, mark);
      let h = 0;
      try {
        h = (await this.request({ janus: 'attach', plugin: 'janus.plugin.videoroom' })).data.id;
        if (this.closed) return;
        // Let go (or let in again, on another handle) meanwhile: this one is not needed.
        if (this.subs.get(peer) !== mark) {
          this.send({ janus: 'detach', handle_id: h });
          return;
        }
        this.subs.set(peer, h);
        this.handles.set(h, peer);
        const join = {
          request: 'join', ptype: 'subscriber', room: this.info.room, pin: this.info.pin,
          feed: this.ownFeed, private_id: this.privateId,
        };
        let m;
        for (let tries = 0; ; tries++) {
          try {
            m = await this.plugin(h, join);
            break;
          } catch (e) {
            if (e.code !== NO_SUCH_FEED || tries >= FEED_RETRIES || this.closed || this.subs.get(peer) !== h) throw e;
            await sleep(FEED_RETRY_MS);
          }
        }
        if (this.closed || this.subs.get(peer) !== h) return;
        this.offered(h, m);
      } catch (e) {
        if (this.closed) return;
        if (h && this.subs.get(peer) === h) {
          this.subs.delete(peer);
          this.drop(h);
        } else if (this.subs.get(peer) === mark) {
          this.subs.delete(peer);
        }
        console.warn('subscribing for someone failed', e);
      }
    }

    // Janus's offer on a subscriber handle (its join's answer, or a later update; one without
    // its streams keeps the ones named before).
    offered(h, m) {
      const peer = this.handles.get(h);
      if (peer === undefined || !m.jsep || m.jsep.type !== 'offer' || typeof m.jsep.sdp !== 'string') return;
      const data = (m.plugindata && m.plugindata.data) || {};
      if (Array.isArray(data.streams)) {
        this.shares.set(h, data.streams
          .filter((s) => s && s.feed_description === 'share' && typeof s.mid === 'string').map((s) => s.mid));
      }
      this.awaiting.add(h);
      this.on.offer(peer, h, m.jsep.sdp, this.shares.get(h) || []);
    }

    // The answer of the person we subscribed for, to Janus's offer on their handle `sub`.
    // One answer an offer: a person cannot make us send Janus answers without end.
    answer(peer, sub, sdp) {
      if (this.closed || this.subs.get(peer) !== sub || !this.awaiting.delete(sub)) return;
      this.plugin(sub, { request: 'start', room: this.info.room }, { type: 'answer', sdp })
        .catch((e) => console.warn('starting a subscription failed', e));
    }

    // A candidate of the person's receiving side, for their handle `sub`.
    candidate(peer, sub, candidate) {
      if (this.closed || this.subs.get(peer) !== sub) return;
      const n = this.candidates.get(sub) || 0;
      if (n >= MAX_CANDIDATES) return;
      this.candidates.set(sub, n + 1);
      this.send({ janus: 'trickle', handle_id: sub, candidate });
    }

    // Forward this layer ('full' or 'half') of our camera to the person. Janus numbers a
    // publisher's encodings from the lowest (0); a camera that sends one ignores it.
    layer(peer, sub, layer) {
      if (this.closed || this.subs.get(peer) !== sub) return;
      const substream = layer === 'half' ? 0 : 1;
      if (this.layers.get(sub) === substream) return;
      // At most once a second: layers flipped to and fro are not all asked of Janus.
      const at = Date.now();
      if (at - (this.layerAt.get(sub) ?? -Infinity) < LAYER_EVERY_MS) return;
      this.layerAt.set(sub, at);
      this.layers.set(sub, substream);
      this.plugin(sub, { request: 'configure', substream }).catch((e) => {
        if (this.layers.get(sub) === substream) this.layers.delete(sub);
        console.warn('asking for another layer failed', e);
      });
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
        clearTimeout(w.timer);
        if (m.janus === 'error') w.reject(new Error(String((m.error && m.error.reason) || 'refused')));
        else w.resolve(m);
        return;
      }
      if (this.closed) return;
      if (m.janus === 'webrtcup' && m.sender === this.publisher && this.publisher) {
        this.up = true;
        this.subscribeReady();
      } else if (m.janus === 'event' && this.handles.has(m.sender)) {
        // Janus renegotiates a subscription (an update): the same sub, a new offer.
        this.offered(m.sender, m);
      } else if (m.janus === 'event' && m.sender === this.publisher && m.plugindata) {
        const d = m.plugindata.data || {};
        // The server removes our room once we are no longer in the Confab room.
        if (d.videoroom === 'destroyed' || (d.leaving === 'ok' && d.reason === 'kicked')) {
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

  return { JanusSession, descriptions };
});
