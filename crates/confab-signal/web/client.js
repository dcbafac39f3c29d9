// Confab in the browser: the page. The call rules are not here: they are callcore.js, the
// port of crates/confab-call that passes the same scenario tables. This file is the shell that
// carries the rules' actions out with the browser's own RTCPeerConnection and getUserMedia, and
// draws what they say. Test devices and measurements are in measure.js.
//
// URL parameters: room and name fill in the form; codec=h264|vp8 and bitrate=KBPS are
// preferences. Only when the server runs with --test-hooks (it says so at
// /client-config.json) do join=1 (join at once), call=1 (also call everyone), accept=1 (accept
// rings without asking), source=test|camera, tone=HZ and size=WxH take effect: a link alone
// never joins, calls, accepts or picks the camera. A password never comes from the URL.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const { CallCore, LinkHealth, LayerChoice, MeshReturn, Verifier, FAILURE_TEXT } = window.ConfabCallCore;
  const now = () => Math.round(performance.now());
  const randomHex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');

  const S = {
    ws: null,
    room: null,
    name: null,
    password: null,
    // Our membership's token from the last welcome, presented when we join again.
    rejoin: null,
    leaving: false,
    core: new CallCore(randomHex(16), randomHex(16), false),
    links: new Map(), // peer id -> link (RTCPeerConnection and its bookkeeping)
    codec: (params.get('codec') || 'h264').toLowerCase(),
    stream: null,
    ringing: null,
    joinedAt: null,
    refusalTold: false,
  };
  window.confabWeb = S;
  // The last call-flow messages and actions, for debugging (window.confabWeb.trace).
  S.trace = [];
  const trace = (what) => {
    S.trace.push(`${now()} ${what}`);
    if (S.trace.length > 300) S.trace.splice(0, 100);
  };
  // Everyone in the room, and every link (also to someone who is away: media flows while the
  // server is gone).
  S.report = () => {
    const ids = new Set([...S.core.participants().map((p) => p.id), ...S.links.keys()]);
    return window.ConfabMeasure.report(
      [...ids].map((id) => {
        const p = S.core.peers.get(id);
        const l = S.links.get(id);
        const code = l && l.verifier.result ? l.verifier.result.code || null : null;
        return {
          id, name: p ? p.name : '', phase: p ? p.phase : 'idle', pc: l ? l.pc : null, readings: l ? l.readings : null,
          share: l && l.shareReadings ? { readings: l.shareReadings, shown: !l.shareTile.hidden, stage: l.shareTile.classList.contains('main'), mids: [l.shareMid, ...(l.shares || [])] } : null,
          verification_code: code, chat: l ? l.chatIn.map((c) => c.text) : [], layer: l && l.layers ? l.layers.want : null,
        };
      }),
      S.joinedAt,
    );
  };

  const ERRORS = {
    'not-joined': 'Join a room first.',
    'nobody-to-call': 'There is nobody else in the room to call.',
    'unknown-peer': 'That person is not in the room any more.',
    'not-ringing': 'That person is not calling you.',
    'already-in-call': 'Already in a call with that person.',
  };

  // ------------------------------------------------------------------ UI helpers
  function toast(text, kind = 'info') {
    const el = document.createElement('div');
    el.className = `toast ${kind}`;
    el.textContent = text;
    $('toasts').append(el);
    setTimeout(() => el.remove(), 6000);
  }
  const initial = (n) => (n || '?').trim().charAt(0).toUpperCase();

  // ------------------------------------------------------------------ the rules' actions
  // Every input to the call rules goes through here, then their actions are carried out.
  function rules(f) {
    const error = f(S.core, now());
    for (const a of S.core.drain()) {
      if (a.action !== 'changed') trace(`do ${JSON.stringify(a)}`);
      switch (a.action) {
        case 'send': signal(a.to, a.signal); break;
        case 'open-link': openLink(a.peer, a.offerer, a.polite); break;
        case 'close-link':
          // Out of our call: our subscription for them goes (Janus stops our media to them at
          // once), and so does an offer of theirs we kept.
          if (S.sfu) S.sfu.session.release(a.peer);
          dropSfuOffer(a.peer);
          closeLink(a.peer);
          break;
        case 'rebind-link': rebindLink(a.from, a.to); break;
        case 'notice': onNotice(a.notice); break;
        default: break;
      }
    }
    if (!S.core.inCall) {
      closeSfu();
      dropSfuOffers();
      // A share ends with its call.
      stopShare();
    } else if (hooks.share && !S.screen && !S.shareAsked) {
      // The &share=test hook shares as soon as we are in a call (confab-peer --share does).
      S.shareAsked = true;
      toggleShare();
    }
    render();
    if (typeof error === 'string') toast(ERRORS[error] || error, 'warn');
    return error;
  }

  function onNotice(n) {
    if (n.kind === 'incoming-call') showRing(n.from, n.name);
    if (n.kind === 'join-request') showRing(n.from, n.name, true);
    if (n.kind === 'ring-cancelled' && S.ringing === n.from) closeRing();
    const t = window.ConfabNotices.toast(n);
    if (t) toast(t[0], t[1]);
  }

  // ------------------------------------------------------------------ local media
  // What the URL may do when the server allows test hooks (see the top of this file).
  const hooks = { join: false, call: false, accept: false, source: null, size: null, tone: null, say: null, share: null };

  async function localStream() {
    const source = hooks.source || $('f-source').value;
    if (source === 'test') return window.ConfabMeasure.testStream(hooks.size, hooks.tone);
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
    } catch (e) {
      toast(`Camera or microphone unavailable (${e.message}); using the test pattern`, 'warn');
      return window.ConfabMeasure.testStream(hooks.size, hooks.tone);
    }
  }

  // ------------------------------------------------------------------ signaling
  function send(msg) {
    if (S.ws && S.ws.readyState === 1) S.ws.send(JSON.stringify(msg));
  }
  function signal(to, data) {
    send({ type: 'signal', to, data });
  }

  function connect() {
    return new Promise((resolve, reject) => {
      const proto = location.protocol === 'https:' ? 'wss' : 'ws';
      const ws = new WebSocket(`${proto}://${location.host}/ws`);
      S.ws = ws;
      let welcomed = false;
      setStatus('connecting');
      // A rejoin presents our last membership's token: the server drops that one at once, so
      // the others see us leave now rather than when it notices the dead connection.
      ws.onopen = () => {
        S.heardAt = performance.now();
        send({
          type: 'join',
          room: S.room,
          name: S.name,
          ...(S.password ? { password: S.password } : {}),
          ...(S.rejoin ? { rejoin: S.rejoin } : {}),
        });
      };
      ws.onerror = () => reject(new Error('Cannot reach the server.'));
      // Also called by the connection check (below, after checkConnection) for one that went
      // silent: a dead path may never close.
      ws.onclose = () => {
        if (S.ws !== ws) return;
        S.checkUntil = null;
        if (!welcomed) {
          reject(new Error('The server closed the connection.'));
          return;
        }
        setStatus('reconnecting');
        if (S.leaving || !S.room) {
          leaveLocal();
          return;
        }
        // Dropped (docs/protocol.md rule 9): the links stay, the rules wait for everyone to
        // come back, and we reconnect.
        rules((c) => c.disconnected());
        // No ICE restarts while the server cannot carry their offers (rule 6).
        for (const link of S.links.values()) if (!link.sfu) link.health.signalingDown();
        toast('Lost the connection to the server; reconnecting…', 'warn');
        reconnect(0);
      };
      ws.onmessage = (ev) => {
        let m;
        try {
          m = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        if (!m || typeof m !== 'object') return;
        // Any word proves the connection (see checkConnection).
        S.heardAt = performance.now();
        S.checkUntil = null;
        if (m.type === 'pong') return;
        trace(`in ${typeof ev.data === 'string' ? ev.data.slice(0, 200) : ''}`);
        if (m.type === 'welcome' && typeof m.id === 'string' && Array.isArray(m.peers)) {
          welcomed = true;
          S.rejoin = typeof m.rejoin === 'string' && /^[0-9a-f]{32}$/.test(m.rejoin) ? m.rejoin : null;
          S.sfuInfo = sfuInfo(m.sfu);
          S.refusalTold = false;
          setStatus('connected');
          const peers = m.peers.filter((p) => p && typeof p.id === 'string' && typeof p.name === 'string');
          rules((c, t) => c.welcome(m.id, peers, t));
          // Whoever left while we were away gets nothing more of ours (as if we had heard them
          // go): a session kept through our rejoin still subscribes for them.
          if (S.sfu) {
            for (const id of S.links.keys()) {
              if (!peers.some((p) => p.id === id)) S.sfu.session.release(id);
            }
          }
          // Back after a drop (a first join has no links yet): a link broken meanwhile
          // restarts ICE now (rule 6), after the resume proofs the rules just sent.
          for (const link of S.links.values()) {
            if (!link.sfu && link.health.signalingBack(now()) === 'restart-ice') restartIce(link);
          }
          // Back in a call through the SFU: a rejoin that kept our place there (our VideoRoom
          // room and token) keeps the session, and what we publish flows on; a new place, or
          // a session the room let go, publishes anew.
          const kicked = S.sfuKicked;
          S.sfuKicked = false;
          if (S.core.inCall && (kicked || (S.sfu && !sameSfuPlace(S.sfu.info, S.sfuInfo)))) republishSfu();
          resolve();
        } else if (m.type === 'error') {
          if (!welcomed) reject(Object.assign(new Error(String(m.message)), { code: m.code }));
          else toast(String(m.message), 'error');
        } else {
          onServer(m);
        }
      };
    });
  }

  // A browser cannot see the server's WebSocket pings, and a connection whose path died (the
  // network changed) may stay open without a word for minutes. So: after 15 s of silence, or
  // at once when a link loses its path, we send a `ping`; a connection that says nothing
  // within 5 s is left for a new one (the rejoin token drops the old one at the server).
  const QUIET_MS = 15000;
  const CHECK_MS = 5000;
  function checkConnection() {
    if (!S.ws || S.ws.readyState !== 1 || S.checkUntil) return;
    send({ type: 'ping' });
    S.checkUntil = performance.now() + CHECK_MS;
  }
  setInterval(() => {
    const ws = S.ws;
    if (!ws || ws.readyState !== 1) return;
    const t = performance.now();
    if (S.checkUntil && t > S.checkUntil) {
      trace('the server did not answer a check; connecting again');
      const lost = ws.onclose;
      ws.onclose = null;
      try {
        ws.close();
      } catch (e) {
        // Closing a dead connection may throw nothing or anything: it is left either way.
      }
      if (lost) lost();
    } else if (!S.checkUntil && t - (S.heardAt || t) > QUIET_MS) {
      checkConnection();
    }
  }, 1000);

  // While waiting to reconnect: the browser says when the network is back ('online'), and
  // then we try at once rather than at the end of the backoff (up to 10 s).
  let retry = null;
  window.addEventListener('online', () => {
    if (!retry) return;
    clearTimeout(retry.timer);
    const { attempt } = retry;
    retry = null;
    reconnect(attempt, 0);
  });

  function reconnect(attempt, wait) {
    const delay = wait !== undefined ? wait : Math.min(250 * 2 ** attempt, 10000);
    const timer = setTimeout(() => {
      retry = null;
      if (S.leaving || !S.room) return;
      connect().catch((e) => {
        // A refusal while calls are alive is retried (the engine does the same); without a
        // call there is nothing to save.
        if (e.code && S.links.size === 0) {
          toast(e.message, 'error');
          leaveLocal();
          return;
        }
        if (e.code && !S.refusalTold) {
          S.refusalTold = true;
          toast(`The server refused to let us back in (${e.message}); the call goes on and we keep trying`, 'warn');
        }
        reconnect(attempt + 1);
      });
    }, delay);
    retry = { timer, attempt };
  }

  function onServer(m) {
    if (m.type === 'peer-joined' && typeof m.id === 'string' && typeof m.name === 'string') {
      rules((c, t) => c.peerJoined(m.id, m.name, t));
      // The room grew past what a mesh holds: the call moves to the SFU.
      if (S.core.inCall && !S.sfu && shouldUseSfu()) goSfu();
      // No longer small: a wait for a move back ends here.
      checkMeshReturn();
    } else if (m.type === 'peer-left' && typeof m.id === 'string') {
      if (S.ringing === m.id) closeRing();
      // Out of the room: whatever we subscribed for them ends now, not when the call rules
      // stop waiting for a rejoin (back, they are someone new, let in again).
      if (S.sfu) S.sfu.session.release(m.id);
      dropSfuOffer(m.id);
      rules((c, t) => c.peerLeft(m.id, t));
      // The room may be down to two: a direct link again, after a while.
      checkMeshReturn();
    } else if (m.type === 'signal' && typeof m.from === 'string' && m.data && typeof m.data.kind === 'string') {
      const d = m.data;
      if (d.kind === 'description') onDescription(m.from, d.description);
      else if (d.kind === 'candidate') onCandidate(m.from, d.candidate);
      else if (d.kind === 'verify') onVerify(m.from, d);
      else if (d.kind.startsWith('sfu-')) onSfuSignal(m.from, d);
      else rules((c, t) => c.signal(m.from, d, t));
    }
  }

  // ------------------------------------------------------------------ peer connections
  function preferCodec(pc) {
    if (!RTCRtpSender.getCapabilities) return;
    const caps = RTCRtpSender.getCapabilities('video');
    if (!caps) return;
    const want = S.codec === 'vp8' ? 'video/vp8' : 'video/h264';
    const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === want);
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== want);
    for (const t of pc.getTransceivers()) {
      if (t.receiver.track.kind === 'video' && t.setCodecPreferences) {
        try {
          t.setCodecPreferences([...first, ...rest]);
        } catch (e) { /* keep the browser's order */ }
      }
    }
  }

  // A link's incoming tracks (a shared screen kept apart from the camera) and its connection
  // state, which the link's health and the call rules follow.
  function receive(link, isShare) {
    const pc = link.pc;
    pc.ontrack = (e) => {
      if (e.track.kind === 'video' && isShare(e)) {
        link.share = e.track;
        link.shareMid = e.transceiver ? e.transceiver.mid : null;
        attachShare(link);
        return;
      }
      link.remote.addTrack(e.track);
      attachRemote(link);
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === 'connected') {
        if (link.health.onState('connected', now())) {
          if (!link.sfu) capBitrate(pc);
          rules((c, t) => c.linkConnected(link.id, t));
        }
      } else if (s === 'disconnected' || s === 'failed') {
        link.health.onState('broken', now());
        // Our network may have changed under the signaling connection too.
        checkConnection();
      }
    };
  }

  function openLink(id, offerer, polite) {
    if (S.links.has(id)) return;
    if (!S.sfu && shouldUseSfu(id)) goSfu();
    if (S.sfu) {
      openSubscriber(id);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: [] });
    const me = S.core.me || '';
    const link = {
      id, pc, offerer, polite, makingOffer: false, pending: [],
      health: new LinkHealth(offerer, now()),
      verifier: new Verifier(offerer ? 'offerer' : 'answerer', randomHex(16), me <= id ? `${me}:${id}` : `${id}:${me}`),
      remote: new MediaStream(), tile: null, readings: null,
      chat: null, chatIn: [], chatTokens: CHAT.burst, chatAt: now(),
    };
    S.links.set(id, link);
    // Chat rides the link (docs/protocol.md, "Chat"): negotiated channel 0 on both sides,
    // created before the first offer so that the offer carries it.
    link.chat = pc.createDataChannel('chat', { negotiated: true, id: 0 });
    link.chat.onmessage = (e) => onChat(link, e.data);
    // The &say= test hook speaks once pictures flow both ways' worth of time: a line sent the
    // instant the channel opens can reach a webrtc-rs peer before its end of the negotiated
    // channel is bound, and is lost (a person never types that fast).
    link.chat.onopen = () => {
      if (!hooks.say) return;
      const when = setInterval(() => {
        if (link.chat.readyState !== 'open') return clearInterval(when);
        if (!link.readings || link.readings.frames < 5) return;
        clearInterval(when);
        // Cleaned like anything a person types (sendChat).
        link.chat.send(JSON.stringify({ kind: 'say', text: cleanText(hooks.say) }));
      }, 200);
    };
    for (const t of S.stream.getTracks()) pc.addTrack(t, S.stream);
    // Room for the other side's shared screen: Confab sends it on a track of its own, and an
    // offer of ours must carry a place for it (when Confab offers, its offer has one).
    // (A track arriving on a transceiver we made keeps the id we gave it, not Confab's:
    // the transceiver itself says it is the screen.) It also carries our own screen when we
    // share: sendrecv from the start, so sharing is a replaceTrack, never a new offer.
    if (offerer) {
      link.shareTransceiver = pc.addTransceiver('video', { direction: 'sendrecv' });
      screenTo(link.shareTransceiver.sender);
    }
    preferCodec(pc);
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) signal(link.id, { kind: 'candidate', candidate: e.candidate.toJSON() });
    };
    // Confab's screen-share track (its id says "share", or it came on the transceiver we made
    // room for it with) is not a camera: kept apart.
    receive(link, (e) => e.transceiver === link.shareTransceiver || /(^|-)share(-|$)/.test(e.track.id));
    if (offerer) makeOffer(link);
  }

  // What another person's chat may be (the rules of confab-call::chat): one message of at most
  // 16 KiB, 5 at once then 1 a second, text cleaned and at most 2000 characters, the sender is
  // the link, a shared history only before anything else was said. Drawn as text only.
  const CHAT = { bytes: 16384, chars: 2000, burst: 5, perSecond: 1, history: 50 };
  // The one chat text rule (ui/rules.js, the same table as confab-protocol's clean_text).
  const cleanText = (t) => window.ConfabRules.cleanText(t);
  let chatSeen = false;
  function onChat(link, data) {
    if (typeof data !== 'string' || data.length > CHAT.bytes) return;
    const t = now();
    link.chatTokens = Math.min(CHAT.burst, link.chatTokens + ((t - link.chatAt) / 1000) * CHAT.perSecond);
    link.chatAt = t;
    if (link.chatTokens < 1) return;
    link.chatTokens -= 1;
    let m;
    try {
      m = JSON.parse(data);
    } catch (_) {
      return;
    }
    const p = S.core.peers.get(link.id);
    const name = p ? p.name : 'someone';
    const take = (who, text, sharedBy) => {
      if (typeof text !== 'string') return;
      const clean = cleanText(text);
      if (!clean || [...clean].length > CHAT.chars) return;
      const line = { name: who, text: clean, shared_by: sharedBy };
      link.chatIn.push(line);
      if (link.chatIn.length > CHAT.history) link.chatIn.shift();
      showChat(line);
    };
    if (m && m.kind === 'say') {
      chatSeen = true;
      take(name, m.text, null);
    } else if (m && m.kind === 'history' && Array.isArray(m.lines) && !chatSeen) {
      chatSeen = true;
      for (const l of m.lines.slice(-CHAT.history)) {
        if (l && typeof l.name === 'string') take(l.name.slice(0, 64), l.text, name);
      }
    }
  }
  function showChat(line) {
    const list = $('chat-lines');
    if (!list) return;
    const li = document.createElement('li');
    const who = document.createElement('strong');
    who.textContent = line.shared_by ? `${line.name} (earlier, shared by ${line.shared_by})` : line.name;
    li.append(who, ': ', line.text);
    list.append(li);
    while (list.children.length > 200) list.firstElementChild.remove();
  }
  function sendChat(text) {
    const clean = cleanText(text);
    if (!clean || [...clean].length > CHAT.chars) return false;
    const wire = JSON.stringify({ kind: 'say', text: clean });
    for (const l of S.links.values()) if (l.chat && l.chat.readyState === 'open') l.chat.send(wire);
    chatSeen = true;
    showChat({ name: 'You', text: clean, shared_by: null });
    return true;
  }
  S.sendChat = sendChat;

  // Our own screen: on every link's screen transceiver (no new offer), the camera going on
  // beside it. The browser's own "Stop sharing" ends it too.
  async function startShare(stream) {
    stopShare();
    S.screen = stream;
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    track.contentHint = 'detail';
    track.onended = () => { if (S.screen === stream) stopShare(); };
    for (const sender of shareSenders()) await sender.replaceTrack(track).catch(() => {});
    renderShare();
  }
  function stopShare() {
    if (!S.screen) return;
    const stream = S.screen;
    S.screen = null;
    for (const sender of shareSenders()) sender.replaceTrack(null).catch(() => {});
    for (const t of stream.getTracks()) t.stop();
    if (stream.stopTest) stream.stopTest();
    renderShare();
  }
  // A screen transceiver made while we share gets the screen at once.
  function screenTo(sender) {
    if (S.screen) sender.replaceTrack(S.screen.getVideoTracks()[0]).catch(() => {});
  }
  // Where our screen goes: each link's screen transceiver, or our place at the SFU.
  function shareSenders() {
    const out = [];
    for (const link of S.links.values()) if (link.shareTransceiver) out.push(link.shareTransceiver.sender);
    if (S.sfu && S.sfu.share) out.push(S.sfu.share.sender);
    return out;
  }
  function renderShare() {
    const b = $('btn-share');
    b.hidden = !S.core.inCall;
    b.setAttribute('aria-pressed', String(!!S.screen));
    b.title = S.screen ? 'Stop sharing (E)' : 'Share your screen (E)';
  }
  async function toggleShare() {
    if (S.screen) {
      stopShare();
      return;
    }
    try {
      const stream = hooks.share === 'test'
        ? window.ConfabMeasure.testStream('1280x720', null, { fps: 5, canvasId: 'share-canvas' })
        : await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 5 }, audio: false });
      await startShare(stream);
    } catch (e) {
      if (e && e.name !== 'NotAllowedError') toast(`Cannot share the screen: ${e.message || e}`, 'error');
    }
  }
  S.toggleShare = toggleShare;

  // bitrate=KBPS: the most video may use (to compare with confab-peer --bitrate).
  function capBitrate(pc) {
    const kbps = Number(params.get('bitrate'));
    if (!kbps) return;
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== 'video') continue;
      const p = sender.getParameters();
      if (!p.encodings || !p.encodings.length) p.encodings = [{}];
      p.encodings[0].maxBitrate = kbps * 1000;
      // Like Confab: keep the resolution, let the frame rate give (the pattern stays readable).
      p.degradationPreference = 'maintain-resolution';
      sender.setParameters(p).catch(() => {});
    }
  }

  // Our description, with the verification's commitment before it (offerer) or its reveal
  // after it (answerer) when one is due.
  function sendDescription(link) {
    const d = link.pc.localDescription;
    const v = link.verifier.localDescription(d.sdp);
    if (v && v.commit) signal(link.id, v);
    signal(link.id, { kind: 'description', description: { type: d.type, sdp: d.sdp } });
    if (v && !v.commit) signal(link.id, v);
    showVerification(link);
  }

  function onVerify(from, d) {
    // The offerer's commitment goes just before its offer: from someone we receive through the
    // SFU, it opens a direct link (as the offer does, onDescription); follow first.
    const through = S.links.get(from);
    if (through && through.sfu && S.sfu && typeof d.commit === 'string' && smallEnoughForMesh()) {
      S.meshReturn.moved(now());
      goMesh();
    }
    const link = S.links.get(from);
    // A link from the SFU has nothing to verify (as in the engine, it takes no such message).
    if (!link || link.sfu) return;
    const v = link.verifier.signal(d.commit, d.reveal);
    if (v) signal(link.id, v);
    showVerification(link);
  }

  // The code people read to each other, on the tile.
  function showVerification(link) {
    const r = link.verifier.result;
    if (!r || !link.tile) return;
    const el = link.tile.querySelector('.code');
    el.hidden = false;
    el.textContent = r.code || 'not verified';
    el.classList.toggle('bad', !r.code);
  }

  async function makeOffer(link) {
    link.makingOffer = true;
    try {
      await link.pc.setLocalDescription();
      sendDescription(link);
    } catch (e) {
      console.warn('offer failed', e);
    } finally {
      link.makingOffer = false;
    }
  }

  // Perfect negotiation (docs/protocol.md rule 5), with the browser's implicit rollback.
  async function onDescription(from, desc) {
    // Someone we receive through the SFU offers a direct link: the room shrank back to two and
    // their wait ran out first; follow.
    const through = S.links.get(from);
    if (through && through.sfu && S.sfu && desc && desc.type === 'offer' && smallEnoughForMesh()) {
      S.meshReturn.moved(now());
      goMesh();
    }
    const link = S.links.get(from);
    if (!link || link.sfu || !desc || (desc.type !== 'offer' && desc.type !== 'answer') || typeof desc.sdp !== 'string') return;
    const pc = link.pc;
    const collision = desc.type === 'offer' && (link.makingOffer || pc.signalingState !== 'stable');
    if (collision && !link.polite) return;
    if (desc.type === 'answer' && pc.signalingState !== 'have-local-offer') return;
    try {
      await pc.setRemoteDescription({ type: desc.type, sdp: desc.sdp });
      const v = link.verifier.remoteDescription(desc.sdp);
      if (v) signal(link.id, v);
      if (desc.type === 'offer' && !link.shareTransceiver) {
        // Confab's offer has a place for each side's screen: its second video section.
        const videos = pc.getTransceivers().filter((t) => t.receiver.track.kind === 'video');
        if (videos.length >= 2) {
          link.shareTransceiver = videos[1];
          link.shareTransceiver.direction = 'sendrecv';
          screenTo(link.shareTransceiver.sender);
        }
      }
      if (desc.type === 'offer') {
        await pc.setLocalDescription();
        sendDescription(link);
      }
      showVerification(link);
      for (const c of link.pending.splice(0)) await pc.addIceCandidate(c).catch(() => {});
    } catch (e) {
      console.warn('description failed', e);
    }
  }

  async function onCandidate(from, c) {
    const link = S.links.get(from);
    if (!link || link.sfu || !c || typeof c.candidate !== 'string') return;
    const cand = { candidate: c.candidate, sdpMid: c.sdpMid || null, sdpMLineIndex: c.sdpMLineIndex ?? null, usernameFragment: c.usernameFragment || null };
    if (cand.sdpMid === null && cand.sdpMLineIndex === null) cand.sdpMLineIndex = 0;
    if (!link.pc.remoteDescription) {
      if (link.pending.length < 64) link.pending.push(cand);
      return;
    }
    try {
      await link.pc.addIceCandidate(cand);
    } catch (e) {
      console.warn('candidate refused', e);
    }
  }

  function closeLink(id) {
    const link = S.links.get(id);
    if (!link) return;
    S.links.delete(id);
    link.pc.close();
    if (link.tile) link.tile.remove();
    if (link.shareTile) link.shareTile.remove();
  }

  // The peer came back under a new id: the same connection now talks to it.
  function rebindLink(from, to) {
    const link = S.links.get(from);
    if (!link) return;
    if (link.sfu) {
      // Through the SFU the link receiving them carries over (as the engine's, never over a
      // live link): a session they kept through the rejoin goes on sending on it, one they
      // publish anew offers afresh and replaces it. Ours for them is offered afresh under
      // their new id.
      if (S.sfu) S.sfu.session.release(from);
      dropSfuOffer(from);
      if (S.links.has(to)) {
        closeLink(from);
        return;
      }
    }
    if (S.links.has(to)) return;
    S.links.delete(from);
    link.id = to;
    if (link.tile) link.tile.dataset.key = to;
    if (link.shareTile) link.shareTile.dataset.key = `share:${to}`;
    S.links.set(to, link);
    if (link.sfu) {
      if (S.sfu) S.sfu.session.admit(to);
      return;
    }
    // A restart made while it was away went to its old id (rule 6).
    if (link.health.peerBack(now()) === 'restart-ice') restartIce(link);
  }

  function restartIce(link) {
    link.pc.restartIce();
    makeOffer(link);
  }

  // Link health: ICE restarts on the schedule the engine keeps, and giving up.
  setInterval(() => {
    const t = now();
    rules((c) => c.tick(t));
    checkMeshReturn();
    for (const link of [...S.links.values()]) {
      if (link.layers) checkLayer(link, t);
      const a = link.health.tick(t);
      if (a === 'restart-ice') {
        restartIce(link);
      } else if (a && a.fail) {
        toast(`Call with ${S.core.nameOf(link.id) || 'someone'}: ${FAILURE_TEXT[a.fail]}`, 'error');
        rules((c) => c.linkFailed(link.id, t));
      }
    }
  }, 1000);

  // A link from the SFU: which layer of the sender's camera its line carries (LayerChoice, the
  // rules the engine keeps): loss over the last 5 s, keyframes asked for, pictures decoded.
  async function checkLayer(link, t) {
    let stats;
    try {
      stats = await link.pc.getStats();
    } catch (e) {
      return;
    }
    let lost = 0;
    let received = 0;
    let requests = 0;
    let decoded = 0;
    stats.forEach((r) => {
      if (r.type !== 'inbound-rtp' || r.kind !== 'video' || link.shares.includes(r.mid)) return;
      lost += Math.max(0, r.packetsLost || 0);
      received += r.packetsReceived || 0;
      requests += (r.pliCount || 0) + (r.firCount || 0);
      decoded += r.framesDecoded || 0;
    });
    link.lossWindow.push([t, lost, received]);
    while (link.lossWindow.length > 1 && t - link.lossWindow[0][0] > 5000) link.lossWindow.shift();
    const dl = lost - link.lossWindow[0][1];
    const dr = received - link.lossWindow[0][2];
    const lossPct = dl + dr > 0 ? (100 * dl) / (dl + dr) : null;
    const want = link.layers.tick(t, { lossPct, keyframeRequests: requests, receiving: decoded > 0 });
    // The person's own subscription for us forwards it (they hand Janus the request).
    if (want && S.links.get(link.id) === link && link.sub !== null) {
      signal(link.id, { kind: 'sfu-layer', sub: link.sub, layer: want });
    }
  }

  // ------------------------------------------------------------------ calls through an SFU
  // As the engine does (ARCHITECTURE.md, "Calls through an SFU"): past the room's threshold the
  // call goes through the Janus VideoRoom the server named; where the rules open a link, a link
  // receiving that person from Janus is opened instead, and our media goes to Janus once.
  S.sfuInfo = null;
  S.sfu = null;
  // peer id -> the latest `sfu-offer` from them not taken yet: no link for them yet, or the
  // replacement of their link waits its turn (a timer in S.sfuTimers).
  S.sfuOffers = new Map();
  S.sfuTimers = new Map();
  function sfuInfo(x) {
    if (!x || typeof x !== 'object' || typeof x.url !== 'string' || !/^janus\+wss?:\/\/[^\s/]/.test(x.url)) return null;
    if (!Number.isSafeInteger(x.room) || x.room < 1 || typeof x.pin !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(x.pin)) return null;
    const token = typeof x.token === 'string' && /^[A-Za-z0-9]{1,64}$/.test(x.token) ? x.token : null;
    return { url: x.url, room: x.room, pin: x.pin, token, above: Number.isInteger(x.above) ? x.above : 6 };
  }
  function sameSfuPlace(a, b) {
    return !!a && !!b && a.url === b.url && a.room === b.room && a.pin === b.pin && a.token === b.token;
  }
  // Past the threshold, or the person already sends to us through the SFU (an offer of theirs
  // is waiting for a link).
  function shouldUseSfu(peer) {
    if (!S.sfuInfo) return false;
    return S.core.participants().length + 1 > S.sfuInfo.above || (peer !== undefined && S.sfuOffers.has(peer));
  }
  // A call through the SFU goes back to a direct link when the room is down to two and its
  // threshold lets two call directly (only two: more, set up at once, or a room hovering at the
  // threshold, cost more than staying).
  S.meshReturn = new MeshReturn();
  // Only the side that offers the direct link (the smaller id) acts on its own wait: the other
  // follows its offer, so neither leaves Janus to wait for a link that never comes.
  function checkMeshReturn() {
    const me = S.core.me;
    const leads = !!me && S.core.participants().every((p) => me < p.id);
    const small = !!S.sfu && S.core.inCall && smallEnoughForMesh() && leads;
    if (S.meshReturn.tick(now(), small)) goMesh();
  }
  // Someone away (whose rejoin the rules still wait for) counts as in the room, and a room seen
  // while our own connection is down is not judged.
  function smallEnoughForMesh() {
    const known = S.core.knownPeers();
    const room = known + 1;
    return !!S.sfuInfo && S.connected && S.core.participants().length === known
      && room <= 2 && room <= S.sfuInfo.above;
  }
  // Back to direct links: the session with Janus ends, and each link receiving someone from it
  // is replaced by a direct one (the smaller id offers, as when the mesh fills in); the call
  // rules see the same people, linked.
  function goMesh() {
    const me = S.core.me;
    if (!me) return;
    closeSfu();
    // Offers kept from the SFU would take us back there (shouldUseSfu).
    dropSfuOffers();
    // A kick from that session is no reason to give up a later one.
    S.sfuKickedAt = null;
    const present = new Set(S.core.participants().map((p) => p.id));
    for (const [id, link] of [...S.links]) {
      if (link.sfu) {
        closeLink(id);
        // Gone from the room (the rules may still wait for a rejoin): nobody to link to.
        if (present.has(id)) openLink(id, me < id, me > id);
      }
    }
  }
  function sfuFailed(message) {
    toast(`${message}; the call cannot go on`, 'error');
    closeSfu();
    rules((c, t) => c.hangUp(t));
  }
  function goSfu() {
    if (S.sfu || !S.sfuInfo || !S.core.me || !S.stream) return;
    // Each publish in this membership under a feed of its own.
    const session = new window.ConfabSfu.JanusSession(S.sfuInfo, S.core.me, {
      // Janus's offer of our media to someone our call let in: theirs to answer.
      offer: (peer, sub, sdp, shares) => {
        // (Only to someone still in our call: the session follows a step behind.)
        if (S.sfu === mine && S.links.has(peer)) signal(peer, { kind: 'sfu-offer', sub, sdp, ...(shares.length ? { shares } : {}) });
      },
      failed: (message) => sfuFailed(message),
      kicked: () => {
        if (S.sfu !== mine) return;
        // Away from the room longer than the server waits: publish anew once back in it.
        if (!S.connected) {
          closeSfu();
          S.sfuKicked = true;
        } else if (!S.sfuKickedAt || performance.now() - S.sfuKickedAt > 30000) {
          // In the room, yet our VideoRoom room went (a node that thought us gone, or Janus
          // restarted): the server makes it again within seconds, and our token is still
          // ours: publish again, once.
          S.sfuKickedAt = performance.now();
          setTimeout(republishSfu, 0);
        } else {
          sfuFailed('the media server let us go');
        }
      },
    });
    const pub = new RTCPeerConnection({ iceServers: [] });
    const mine = { session, pub, info: S.sfuInfo };
    S.sfu = mine;
    for (const t of S.stream.getTracks()) publishTrack(pub, t);
    // Our screen's place, there from the first offer like a link's (Janus is told it is a
    // screen: sfu.js, descriptions).
    mine.share = pub.addTransceiver('video', { direction: 'sendonly' });
    screenTo(mine.share.sender);
    preferCodec(pub);
    pub.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) session.trickle(e.candidate.toJSON());
    };
    for (const [id, link] of [...S.links]) {
      if (!link.sfu) {
        closeLink(id);
        openSubscriber(id);
      }
    }
    // Everyone we are linked with is in our call: subscribe for them (the session waits until
    // our media is up at Janus). Links receiving others stay: their own sessions serve them.
    for (const id of S.links.keys()) session.admit(id);
    (async () => {
      try {
        await session.start();
        if (S.sfu !== mine) return;
        await pub.setLocalDescription(await pub.createOffer());
        const sdp = pub.localDescription.sdp;
        const answer = await session.publish(sdp, window.ConfabSfu.descriptions(sdp));
        if (S.sfu !== mine) return;
        await pub.setRemoteDescription({ type: 'answer', sdp: answer });
      } catch (e) {
        if (S.sfu === mine) sfuFailed(e.message || String(e));
      }
    })();
  }
  // To Janus a camera of 640 pixels or more goes in two encodings, the full picture and one at
  // half size, as the desktop engine sends it (the same rids, highest first: Janus's order);
  // each receiver picks its layer (LayerChoice). A smaller camera sends one.
  const SIMULCAST_MIN_WIDTH = 640;
  const LAYER_ENCODINGS = [{ rid: 'f' }, { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 150000 }];
  function publishTrack(pub, track) {
    const width = (track.getSettings && track.getSettings().width) || 0;
    if (track.kind === 'video' && width >= SIMULCAST_MIN_WIDTH) {
      pub.addTransceiver(track, { direction: 'sendonly', streams: [S.stream], sendEncodings: LAYER_ENCODINGS });
    } else {
      pub.addTrack(track, S.stream);
    }
  }
  // Test hook: what the browser sends Janus of its camera, an entry per encoding.
  S.publishing = async () => {
    if (!S.sfu) return [];
    const out = [];
    const screen = S.sfu.share ? S.sfu.share.mid : null;
    (await S.sfu.pub.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.mid !== screen) {
        out.push({ rid: s.rid || null, width: s.frameWidth || 0, height: s.frameHeight || 0, framesEncoded: s.framesEncoded || 0, bytesSent: s.bytesSent || 0 });
      }
    });
    return out.sort((a, b) => b.width - a.width);
  };
  // A new session with the SFU, and everyone let in to it again. What we receive stays: the
  // others' sessions serve it.
  function republishSfu() {
    closeSfu();
    goSfu();
  }
  function closeSfu() {
    if (!S.sfu) return;
    const s = S.sfu;
    S.sfu = null;
    s.session.close();
    s.pub.close();
  }
  // A link receiving a person through the SFU: it answers the offers that person sends us of
  // their own subscription for us (`sfu-offer`; the server stamps who sent it), and nothing
  // else. Opening it lets them in to our own subscriptions too.
  function openSubscriber(id) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const link = {
      id, pc, sfu: true, offerer: false, polite: true, makingOffer: false, pending: [],
      health: new LinkHealth(false, now()), verifier: new Verifier('answerer', randomHex(16), 'sfu'),
      remote: new MediaStream(), tile: null, readings: null, shares: [],
      chat: null, chatIn: [], chatTokens: 0, chatAt: now(),
      layers: new LayerChoice(now()), lossWindow: [],
      // The subscription whose offer this link took (the person's handle at Janus), and when
      // the link was opened (a new subscription replaces it at most once every 2 s).
      sub: null, at: now(), negotiation: Promise.resolve(),
    };
    S.links.set(id, link);
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      if (link.sub === null) {
        console.warn('a candidate before any offer from the media server: dropped');
        return;
      }
      signal(link.id, { kind: 'sfu-candidate', sub: link.sub, candidate: e.candidate.toJSON() });
    };
    // Janus names every track after its mid: the sender told it which is a shared screen.
    receive(link, (e) => link.shares.includes(e.transceiver.mid));
    if (S.sfu) S.sfu.session.admit(id);
    // Their offer came before this link: take it now.
    const kept = S.sfuOffers.get(id);
    if (kept) {
      dropSfuOffer(id);
      takeSfuOffer(link, kept);
    }
  }
  // Answer an offer on the link (one at a time: the same subscription again renegotiates).
  function takeSfuOffer(link, o) {
    link.sub = o.sub;
    link.negotiation = link.negotiation.then(async () => {
      if (S.links.get(link.id) !== link || link.sub !== o.sub) return;
      try {
        link.shares = o.shares;
        await link.pc.setRemoteDescription({ type: 'offer', sdp: o.sdp });
        await link.pc.setLocalDescription();
        if (S.links.get(link.id) !== link) return;
        signal(link.id, { kind: 'sfu-answer', sub: o.sub, sdp: link.pc.localDescription.sdp });
      } catch (e) {
        console.warn('subscribing failed', e);
      }
    });
  }
  // People who published anew (a new subscription) are received on a new link: at most once
  // per 2 s a person (someone sending offer after offer must not make us rebuild their link at
  // the rate they send); a later offer waits its turn, only the latest kept.
  const REPLACE_EVERY_MS = 2000;
  const MAX_SFU_OFFERS = 64;
  function onSfuOffer(from, o) {
    // Only in a call: an offer kept from before would steer the next one to the SFU.
    if (!S.core.inCall) return;
    const link = S.links.get(from);
    if (link && !link.sfu) {
      // Someone we are linked with directly sends through the SFU: the call moved there;
      // follow (unless the room is small enough for a direct link), taking this on the new link.
      if (S.sfu || !S.sfuInfo || smallEnoughForMesh()) return;
      if (keepSfuOffer(from, o)) goSfu();
      return;
    }
    if (!link) {
      // Before our link for them (the rules open it): kept for it. A room of two calls
      // directly: an offer sent before the room shrank is not followed.
      if (!S.sfu && smallEnoughForMesh()) return;
      keepSfuOffer(from, o);
      return;
    }
    if (link.sub === null || link.sub === o.sub) {
      takeSfuOffer(link, o);
      return;
    }
    if (!keepSfuOffer(from, o)) return;
    const wait = link.at + REPLACE_EVERY_MS - now();
    if (wait > 0) {
      if (!S.sfuTimers.has(from)) {
        S.sfuTimers.set(from, setTimeout(() => {
          S.sfuTimers.delete(from);
          const next = S.sfuOffers.get(from);
          if (!next) return;
          S.sfuOffers.delete(from);
          onSfuOffer(from, next);
        }, wait));
      }
      return;
    }
    closeLink(from);
    // It takes the offer just kept.
    openSubscriber(from);
  }
  // Only for people in the room, and a bounded number of them.
  function keepSfuOffer(from, o) {
    if (!S.core.peers.has(from)) return false;
    if (S.sfuOffers.size >= MAX_SFU_OFFERS && !S.sfuOffers.has(from)) return false;
    S.sfuOffers.set(from, o);
    return true;
  }
  function dropSfuOffer(id) {
    S.sfuOffers.delete(id);
    clearTimeout(S.sfuTimers.get(id));
    S.sfuTimers.delete(id);
  }
  function dropSfuOffers() {
    for (const id of [...S.sfuOffers.keys(), ...S.sfuTimers.keys()]) dropSfuOffer(id);
  }
  // Signals about subscriptions through the SFU (docs/protocol.md, "Call flow"): every field
  // checked; anything that does not fit is dropped.
  const SFU_SDP_MAX = 65536;
  const sfuSub = (x) => Number.isSafeInteger(x) && x > 0;
  const sfuSdp = (x) => typeof x === 'string' && x.length > 0 && x.length <= SFU_SDP_MAX;
  function sfuShares(x) {
    if (x === undefined) return [];
    if (!Array.isArray(x) || x.length > 8) return null;
    return x.every((mid) => typeof mid === 'string' && mid.length > 0 && mid.length <= 32) ? [...x] : null;
  }
  function sfuCandidate(c) {
    if (!c || typeof c !== 'object' || typeof c.candidate !== 'string' || !c.candidate || c.candidate.length > 1024) return null;
    const out = { candidate: c.candidate };
    if (typeof c.sdpMid === 'string' && c.sdpMid.length <= 32) out.sdpMid = c.sdpMid;
    else if (c.sdpMid !== undefined && c.sdpMid !== null) return null;
    if (Number.isInteger(c.sdpMLineIndex) && c.sdpMLineIndex >= 0 && c.sdpMLineIndex <= 255) out.sdpMLineIndex = c.sdpMLineIndex;
    else if (c.sdpMLineIndex !== undefined && c.sdpMLineIndex !== null) return null;
    if (out.sdpMid === undefined && out.sdpMLineIndex === undefined) out.sdpMLineIndex = 0;
    return out;
  }
  function onSfuSignal(from, d) {
    try {
      if (!sfuSub(d.sub)) return;
      if (d.kind === 'sfu-offer') {
        const shares = sfuShares(d.shares);
        if (sfuSdp(d.sdp) && shares) onSfuOffer(from, { sub: d.sub, sdp: d.sdp, shares });
        return;
      }
      // The rest is for our own subscriptions: the session acts only on the handle it opened
      // for the sender.
      // Only from someone in our call through the SFU.
      if (!S.sfu || !(S.links.get(from) || {}).sfu) return;
      const session = S.sfu.session;
      if (d.kind === 'sfu-answer') {
        if (sfuSdp(d.sdp)) session.answer(from, d.sub, d.sdp);
      } else if (d.kind === 'sfu-candidate') {
        const c = sfuCandidate(d.candidate);
        if (c) session.candidate(from, d.sub, c);
      } else if (d.kind === 'sfu-layer') {
        if (d.layer === 'full' || d.layer === 'half') session.layer(from, d.sub, d.layer);
      }
    } catch (e) {
      console.warn('a signal about the media server went wrong', e);
    }
  }

  // ------------------------------------------------------------------ remote video
  function attachRemote(link) {
    if (!link.tile) {
      const tile = document.createElement('div');
      tile.className = 'tile has-video';
      tile.dataset.key = link.id;
      const v = document.createElement('video');
      v.autoplay = true;
      v.playsInline = true;
      tile.append(v);
      const cap = document.createElement('div');
      cap.className = 'caption';
      const n = document.createElement('span');
      n.className = 'name';
      n.textContent = S.core.nameOf(link.id) || '';
      const code = document.createElement('span');
      code.className = 'code';
      code.hidden = true;
      code.title = 'Verification code: read it to each other. The same code on both sides means nobody is in the middle.';
      cap.append(n, code);
      tile.append(cap);
      link.tile = tile;
      link.readings = window.ConfabMeasure.newReadings();
      $('grid').append(tile);
      window.ConfabMeasure.watch(v, link.readings, () => S.links.get(link.id) === link);
      showVerification(link);
    }
    const v = link.tile.querySelector('video');
    if (v.srcObject !== link.remote) v.srcObject = link.remote;
    v.play().catch(() => {});
    render();
  }

  // Someone's shared screen, in a tile of its own: shown while its pictures come (a still
  // screen still sends 5 a second), taken down 3 s after they stop, as the app does.
  const SHARE_GONE_MS = 3000;
  function attachShare(link) {
    if (!link.shareTile) {
      const tile = document.createElement('div');
      tile.className = 'tile has-video share';
      tile.dataset.key = `share:${link.id}`;
      tile.hidden = true;
      const v = document.createElement('video');
      v.autoplay = true;
      v.playsInline = true;
      v.muted = true;
      const cap = document.createElement('div');
      cap.className = 'caption';
      const n = document.createElement('span');
      n.className = 'name';
      cap.append(n);
      tile.append(v, cap);
      link.shareTile = tile;
      link.shareReadings = window.ConfabMeasure.newReadings();
      $('grid').append(tile);
      window.ConfabMeasure.watch(v, link.shareReadings, () => S.links.get(link.id) === link);
    }
    const v = link.shareTile.querySelector('video');
    v.srcObject = new MediaStream([link.share]);
    v.play().catch(() => {});
  }
  // Whether pictures come is read from the browser's own counters: a hidden video is not
  // drawn, so its frame callbacks (the readings) would not say.
  setInterval(async () => {
    let changed = false;
    for (const link of [...S.links.values()]) {
      if (!link.shareTile) continue;
      const mids = [link.shareMid, ...(link.shares || [])];
      let decoded = 0;
      try {
        (await link.pc.getStats()).forEach((r) => {
          if (r.type === 'inbound-rtp' && r.kind === 'video' && mids.includes(r.mid)) decoded += r.framesDecoded || 0;
        });
      } catch (_) {
        continue;
      }
      const t = performance.now();
      if (decoded > (link.shareDecoded || 0)) link.shareAt = t;
      link.shareDecoded = decoded;
      const on = link.shareAt !== undefined && t - link.shareAt < SHARE_GONE_MS;
      if (link.shareTile.hidden === on) {
        link.shareTile.hidden = !on;
        link.shareTile.querySelector('.name').textContent = `${S.core.nameOf(link.id) || 'Someone'}'s screen`;
        changed = true;
      }
    }
    if (changed) render();
  }, 500);

  // ------------------------------------------------------------------ ringing UI
  function showRing(id, name, joining = false) {
    S.ringing = id;
    $('ring-name').textContent = name;
    $('ring-what').textContent = joining ? 'wants to join the call' : 'is calling';
    if (!$('ring').open) $('ring').showModal();
  }
  function closeRing() {
    S.ringing = null;
    if ($('ring').open) $('ring').close();
  }
  $('ring-accept').onclick = () => {
    const id = S.ringing;
    closeRing();
    if (id) rules((c, t) => c.accept(id, t));
  };
  $('ring-decline').onclick = () => {
    const id = S.ringing;
    closeRing();
    if (id) rules((c, t) => c.decline(id, t));
  };

  // ------------------------------------------------------------------ rendering
  function setStatus(s) {
    S.connected = s === 'connected';
    $('status').dataset.state = s;
    $('status').textContent = { offline: 'Not connected', connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…' }[s];
  }

  function render() {
    const inRoom = !!S.room;
    $('join-screen').hidden = inRoom;
    $('room-screen').hidden = !inRoom;
    $('where').hidden = !inRoom;
    if (!inRoom) return;
    $('where').textContent = `Room ${S.room}`;
    const people = S.core.participants();
    const shown = window.ConfabNotices.displayNames(people, S.name);
    const ul = $('people');
    ul.innerHTML = '';
    for (const p of people) {
      const li = document.createElement('li');
      const av = document.createElement('div');
      av.className = 'avatar';
      av.textContent = initial(p.name);
      const who = document.createElement('div');
      who.className = 'who';
      who.textContent = shown.get(p.id);
      li.append(av, who);
      if (p.phase === 'idle') {
        const b = document.createElement('button');
        b.textContent = 'Call';
        b.onclick = () => rules((c, t) => c.call(p.id, t));
        li.append(b);
      }
      ul.append(li);
    }
    if (S.ringing && !people.some((p) => p.id === S.ringing && p.phase === 'incoming')) closeRing();
    const inCall = S.core.inCall;
    $('alone').hidden = people.length > 0;
    $('idle').hidden = inCall;
    $('call-all').disabled = people.length === 0;
    $('btn-hangup').hidden = !inCall;
    $('btn-mic').setAttribute('aria-pressed', String(!S.core.audio));
    $('btn-cam').setAttribute('aria-pressed', String(!S.core.video));
    let local = $('grid').querySelector('.tile.local');
    if (inCall && !local) {
      local = document.createElement('div');
      local.className = 'tile local has-video';
      const v = document.createElement('video');
      v.muted = true;
      v.autoplay = true;
      v.playsInline = true;
      v.srcObject = S.stream;
      local.append(v);
      $('grid').prepend(local);
    } else if (!inCall && local) {
      local.remove();
    }
    // Someone's screen on show takes the stage, the faces in a strip below (as in the app).
    const visible = [...$('grid').children].filter((t) => !t.hidden);
    const stage = visible.find((t) => t.classList.contains('share'));
    for (const t of visible) {
      t.classList.toggle('main', t === stage);
      t.style.order = t === stage ? '-1' : '';
    }
    $('grid').className = stage ? 'grid mode-stage' : `grid n${Math.min(visible.length, 7)}`;
    $('grid').style.setProperty('--strip', String(Math.max(1, visible.length - 1)));
    renderShare();
  }

  function leaveLocal() {
    for (const id of [...S.links.keys()]) closeLink(id);
    closeSfu();
    rules((c, t) => c.leave(t));
    S.room = null;
    S.rejoin = null;
    setStatus('offline');
    render();
  }

  // ------------------------------------------------------------------ controls
  function setMedia(audio, video) {
    for (const t of S.stream.getAudioTracks()) t.enabled = audio;
    for (const t of S.stream.getVideoTracks()) t.enabled = video;
    rules((c) => c.setMedia(audio, video));
  }
  const hangUp = () => rules((c, t) => c.hangUp(t));
  $('btn-mic').onclick = () => setMedia(!S.core.audio, S.core.video);
  $('btn-cam').onclick = () => setMedia(S.core.audio, !S.core.video);
  $('btn-hangup').onclick = hangUp;
  $('btn-share').onclick = toggleShare;
  $('call-all').onclick = () => rules((c, t) => c.call(null, t));
  $('chat-form').onsubmit = (e) => {
    e.preventDefault();
    if (sendChat($('chat-input').value)) $('chat-input').value = '';
  };
  $('btn-leave').onclick = () => {
    hangUp();
    S.leaving = true;
    send({ type: 'leave' });
    if (S.ws) S.ws.close();
    leaveLocal();
  };
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey && (e.key === 'd' || e.key === 'D')) {
      e.preventDefault();
      hangUp();
    }
    if (['INPUT', 'SELECT'].includes(document.activeElement && document.activeElement.tagName) || !S.room) return;
    if (e.key === 'm' || e.key === 'M') setMedia(!S.core.audio, S.core.video);
    if (e.key === 'v' || e.key === 'V') setMedia(S.core.audio, !S.core.video);
    if ((e.key === 'e' || e.key === 'E') && S.core.inCall) toggleShare();
  });
  window.addEventListener('beforeunload', () => {
    S.leaving = true;
    hangUp();
    send({ type: 'leave' });
  });

  async function join() {
    const name = $('f-name').value.trim();
    const room = $('f-room').value.trim();
    const sentence = (m) => (m ? `${m.charAt(0).toUpperCase()}${m.slice(1)}.` : null);
    const err = sentence(window.ConfabRules.validateName(name) || window.ConfabRules.validateRoom(room));
    if (err) {
      $('join-error').hidden = false;
      $('join-error').textContent = err;
      return;
    }
    $('join-error').hidden = true;
    $('join-btn').disabled = true;
    S.leaving = false;
    S.joinedAt = performance.now();
    try {
      if (!S.stream) S.stream = await localStream();
      $('preview').srcObject = S.stream;
      S.room = room;
      S.rejoin = null;
      S.name = name;
      S.password = $('f-password').value || null;
      await connect();
      if (hooks.call) rules((c, t) => c.callWhenPresent(t));
    } catch (e) {
      S.room = null;
      $('join-error').hidden = false;
      $('join-error').textContent = e.message;
      if (S.ws) {
        S.ws.onclose = null;
        S.ws.close();
      }
      setStatus('offline');
    } finally {
      $('join-btn').disabled = false;
    }
  }

  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    join();
  });
  if (params.get('room')) $('f-room').value = params.get('room');
  if (params.get('name')) $('f-name').value = params.get('name');
  fetch('client-config.json', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : {}))
    .catch(() => ({}))
    .then((cfg) => {
      S.configured = true;
      if (!cfg || cfg.testHooks !== true) return;
      hooks.join = params.get('join') === '1';
      hooks.call = params.get('call') === '1';
      hooks.accept = params.get('accept') === '1';
      hooks.source = params.get('source');
      hooks.size = params.get('size');
      hooks.tone = params.get('tone');
      hooks.say = params.get('say');
      hooks.share = params.get('share');
      S.core.autoAccept = hooks.accept;
      if (hooks.source) $('f-source').value = hooks.source;
      if (hooks.join) join();
      // For a benchmark driving the browser without WebDriver: the report goes to the
      // console (Chromium's --enable-logging=stderr prints it) after this many seconds.
      const reportAfter = Number(params.get('report'));
      if (reportAfter > 0) {
        setTimeout(async () => {
          console.log(`CONFAB-REPORT ${JSON.stringify(await S.report())}`);
        }, reportAfter * 1000);
      }
    });
})();
