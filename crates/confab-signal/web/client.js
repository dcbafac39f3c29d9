// Confab in the browser: protocol v1 and the call flow of docs/protocol.md, spoken exactly as
// the engine speaks it, with the browser's own RTCPeerConnection and getUserMedia.
//
// URL parameters: room, name, join=1 (join at once), call=1 (also call everyone),
// accept=1 (accept rings without asking), source=test|camera, tone=HZ, codec=h264|vp8,
// size=WxH, password.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const RING_TIMEOUT = 30000;

  const S = {
    ws: null,
    me: null,
    room: null,
    name: null,
    session: Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join(''),
    peers: new Map(), // id -> peer
    inCall: false,
    audio: true,
    video: true,
    autoAccept: params.get('accept') === '1',
    wantCall: params.get('call') === '1',
    codec: (params.get('codec') || 'h264').toLowerCase(),
    stream: null,
    ringing: null,
  };
  window.confabWeb = S;

  // ------------------------------------------------------------------ UI helpers
  function toast(text, kind = 'info') {
    const el = document.createElement('div');
    el.className = `toast ${kind}`;
    el.textContent = text;
    $('toasts').append(el);
    setTimeout(() => el.remove(), 6000);
  }
  const initial = (n) => (n || '?').trim().charAt(0).toUpperCase();

  // ------------------------------------------------------------------ local media
  async function testStream() {
    const [w, h] = (params.get('size') || '640x480').split('x').map(Number);
    const canvas = $('pattern-canvas');
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d');
    let n = 0;
    const paint = () => {
      window.ConfabPattern.paint(ctx, w, h, n++, Number(BigInt.asUintN(32, BigInt(window.ConfabPattern.nowUs()))));
    };
    paint();
    setInterval(paint, 1000 / 30);
    const video = canvas.captureStream(30);
    const ac = new AudioContext();
    const osc = ac.createOscillator();
    osc.frequency.value = Number(params.get('tone') || 440);
    const gain = ac.createGain();
    gain.gain.value = 0.3;
    const dest = ac.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    ac.resume().catch(() => {});
    return new MediaStream([...dest.stream.getAudioTracks(), ...video.getVideoTracks()]);
  }

  async function localStream() {
    const source = params.get('source') || $('f-source').value;
    if (source === 'test') return testStream();
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
    } catch (e) {
      toast(`Camera or microphone unavailable (${e.message}); using the test pattern`, 'warn');
      return testStream();
    }
  }

  // ------------------------------------------------------------------ signaling
  function send(msg) {
    if (S.ws && S.ws.readyState === 1) S.ws.send(JSON.stringify(msg));
  }
  function signal(to, data) {
    send({ type: 'signal', to, data });
  }
  function stateSignal() {
    return { kind: 'state', in_call: S.inCall, audio: S.audio, video: S.video, session: S.session };
  }
  function broadcastState() {
    for (const p of present()) signal(p.id, stateSignal());
    render();
  }

  function connect(room, name, password) {
    return new Promise((resolve, reject) => {
      const proto = location.protocol === 'https:' ? 'wss' : 'ws';
      const ws = new WebSocket(`${proto}://${location.host}/ws`);
      S.ws = ws;
      let welcomed = false;
      setStatus('connecting');
      ws.onopen = () => send({ type: 'join', room, name, ...(password ? { password } : {}) });
      ws.onerror = () => reject(new Error('Cannot reach the server.'));
      ws.onclose = () => {
        if (S.ws !== ws) return;
        if (!welcomed) {
          reject(new Error('The server closed the connection.'));
          return;
        }
        setStatus('offline');
        if (S.leaving || !S.room) {
          leaveLocal();
          return;
        }
        // Dropped (docs/protocol.md rule 9): keep the calls, reconnect, carry them over.
        for (const p of [...S.peers.values()]) {
          if (p.pc) p.away = p.away || Date.now();
          else S.peers.delete(p.id);
        }
        toast('Lost the connection to the server; reconnecting…', 'warn');
        reconnect(room, name, password, 0);
      };
      ws.onmessage = (ev) => {
        let m;
        try {
          m = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        if (m.type === 'welcome') {
          welcomed = true;
          S.me = m.id;
          S.room = m.room;
          S.name = name;
          for (const p of m.peers) {
            const known = S.peers.get(p.id);
            if (known) {
              known.away = null;
              known.name = p.name;
            } else addPeer(p.id, p.name);
          }
          setStatus('connected');
          broadcastState();
          resolve();
        } else if (m.type === 'error') {
          if (!S.room) reject(new Error(m.message));
          else toast(m.message, 'error');
        } else {
          onServer(m);
        }
      };
    });
  }

  function reconnect(room, name, password, attempt) {
    const delay = Math.min(250 * 2 ** attempt, 10000);
    setTimeout(() => {
      if (S.leaving) return;
      connect(room, name, password).catch(() => reconnect(room, name, password, attempt + 1));
    }, delay);
  }

  const present = () => [...S.peers.values()].filter((p) => !p.away);

  function addPeer(id, name) {
    S.peers.set(id, { id, name, inCall: false, audio: true, video: true, session: null, phase: 'idle', since: Date.now(), pc: null });
  }

  function onServer(m) {
    if (m.type === 'peer-joined') {
      addPeer(m.id, m.name);
      signal(m.id, stateSignal());
      render();
    } else if (m.type === 'peer-left') {
      const p = S.peers.get(m.id);
      if (!p) return;
      if (p.pc && (p.phase === 'connecting' || p.phase === 'connected')) {
        // Media may still flow: wait for the peer to come back under a new id.
        p.away = Date.now();
        render();
        return;
      }
      closeLink(p);
      S.peers.delete(m.id);
      if (S.ringing === m.id) closeRing();
      maybeEndCall();
      render();
    } else if (m.type === 'signal') {
      const p = S.peers.get(m.from);
      if (!p || !m.data || typeof m.data.kind !== 'string') return;
      onSignal(p, m.data);
    }
  }

  // ------------------------------------------------------------------ call flow (docs/protocol.md)
  function setPhase(p, phase) {
    p.phase = phase;
    p.since = Date.now();
    render();
  }

  // A peer back under a new id announces the session of one that went away: its link
  // carries over. Only an away peer's link moves, and never onto an id that has one.
  function rebind(p, session) {
    if (!session || p.phase !== 'idle' || p.pc) return p;
    const old = [...S.peers.values()].find((q) => q !== p && q.away && q.session === session);
    if (!old) return p;
    S.peers.delete(old.id);
    S.peers.delete(p.id);
    old.id = p.id;
    old.name = p.name;
    old.away = null;
    S.peers.set(old.id, old);
    return old;
  }

  function onSignal(p, d) {
    switch (d.kind) {
      case 'state':
        p = rebind(p, d.session);
        p.inCall = !!d.in_call;
        p.audio = !!d.audio;
        p.video = !!d.video;
        p.session = d.session || null;
        if (S.inCall && p.inCall && p.phase === 'idle' && S.me < p.id) ring(p);
        render();
        break;
      case 'ring':
        if (p.phase === 'ringing') {
          setPhase(p, 'connecting');
          if (S.me < p.id) openLink(p, true);
          else {
            signal(p.id, { kind: 'accept' });
            openLink(p, false);
          }
        } else if (p.phase === 'idle') {
          if (S.inCall || S.autoAccept) acceptNow(p);
          else {
            setPhase(p, 'incoming');
            showRing(p);
          }
        }
        break;
      case 'accept':
        if (p.phase === 'ringing') {
          setPhase(p, 'connecting');
          openLink(p, true);
        }
        break;
      case 'decline':
        if (p.phase === 'ringing') {
          setPhase(p, 'idle');
          toast(`${p.name} declined the call`, 'warn');
          maybeEndCall();
        }
        break;
      case 'hang-up':
        if (p.phase === 'incoming') {
          setPhase(p, 'idle');
          if (S.ringing === p.id) closeRing();
        } else if (p.phase !== 'idle') {
          closeLink(p);
          setPhase(p, 'idle');
          toast(`${p.name} left the call`);
          maybeEndCall();
        }
        break;
      case 'description':
        onDescription(p, d.description);
        break;
      case 'candidate':
        onCandidate(p, d.candidate);
        break;
      default:
        break;
    }
  }

  function ring(p) {
    setPhase(p, 'ringing');
    signal(p.id, { kind: 'ring' });
  }

  function acceptNow(p) {
    setPhase(p, 'connecting');
    signal(p.id, { kind: 'accept' });
    openLink(p, false);
    enterCall();
  }

  function enterCall() {
    if (S.inCall) return;
    S.inCall = true;
    broadcastState();
    for (const p of present()) {
      if (p.phase === 'incoming') acceptNow(p);
      else if (p.phase === 'idle' && p.inCall) ring(p);
    }
  }

  function call(target) {
    const targets = target ? [target] : present();
    if (!targets.length) return toast('There is nobody else in the room to call', 'warn');
    const was = S.inCall;
    S.inCall = true;
    if (!was) broadcastState();
    for (const p of targets) {
      if (p.phase === 'idle') ring(p);
      else if (p.phase === 'incoming') acceptNow(p);
    }
    if (!was) for (const p of present()) if (p.inCall && p.phase === 'idle') ring(p);
    render();
  }

  function hangUp() {
    for (const p of S.peers.values()) {
      if (p.phase === 'ringing' || p.phase === 'connecting' || p.phase === 'connected') {
        signal(p.id, { kind: 'hang-up' });
        closeLink(p);
        setPhase(p, 'idle');
      }
    }
    if (S.inCall) {
      S.inCall = false;
      broadcastState();
      toast('Call ended');
    }
  }

  function maybeEndCall() {
    if (!S.inCall) return;
    const anyone = [...S.peers.values()].some((p) => ['ringing', 'connecting', 'connected'].includes(p.phase));
    if (!anyone) {
      S.inCall = false;
      broadcastState();
      toast('Call ended');
    }
  }

  setInterval(() => {
    const now = Date.now();
    for (const p of [...S.peers.values()]) {
      if (p.away && now - p.away > 30000) {
        closeLink(p);
        S.peers.delete(p.id);
        maybeEndCall();
        render();
        continue;
      }
      if ((p.phase === 'ringing' || p.phase === 'incoming') && now - p.since > RING_TIMEOUT) {
        if (p.phase === 'ringing') signal(p.id, { kind: 'hang-up' });
        if (S.ringing === p.id) closeRing();
        setPhase(p, 'idle');
        maybeEndCall();
      }
    }
  }, 1000);

  // ------------------------------------------------------------------ peer connections
  function preferCodec(pc) {
    if (!RTCRtpSender.getCapabilities) return;
    const caps = RTCRtpSender.getCapabilities('video');
    if (!caps) return;
    const want = S.codec === 'vp8' ? 'video/vp8' : 'video/h264';
    const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === want);
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== want);
    for (const t of pc.getTransceivers()) {
      if (t.sender.track && t.sender.track.kind === 'video' && t.setCodecPreferences) {
        try {
          t.setCodecPreferences([...first, ...rest]);
        } catch (e) { /* keep the browser's order */ }
      }
    }
  }

  function openLink(p, offerer) {
    if (p.pc) return;
    const pc = new RTCPeerConnection({ iceServers: [] });
    p.pc = pc;
    p.offerer = offerer;
    p.makingOffer = false;
    p.pending = [];
    p.remote = new MediaStream();
    for (const t of S.stream.getTracks()) pc.addTrack(t, S.stream);
    preferCodec(pc);
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) signal(p.id, { kind: 'candidate', candidate: e.candidate.toJSON() });
    };
    pc.ontrack = (e) => {
      p.remote.addTrack(e.track);
      attachRemote(p);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && p.phase === 'connecting') {
        setPhase(p, 'connected');
        capBitrate(pc);
      }
      // Like the engine: the first offerer restarts ICE when the connection breaks.
      if ((pc.connectionState === 'disconnected' || pc.connectionState === 'failed') && p.offerer) {
        setTimeout(() => {
          if (p.pc === pc && pc.connectionState !== 'connected') {
            pc.restartIce();
            makeOffer(p);
          }
        }, 2000);
      }
    };
    if (offerer) makeOffer(p);
  }

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

  async function makeOffer(p) {
    p.makingOffer = true;
    try {
      await p.pc.setLocalDescription();
      signal(p.id, { kind: 'description', description: { type: p.pc.localDescription.type, sdp: p.pc.localDescription.sdp } });
    } catch (e) {
      console.warn('offer failed', e);
    } finally {
      p.makingOffer = false;
    }
  }

  async function onDescription(p, desc) {
    if (!p.pc || !desc || !desc.type || typeof desc.sdp !== 'string') return;
    const pc = p.pc;
    const collision = desc.type === 'offer' && (p.makingOffer || pc.signalingState !== 'stable');
    const polite = S.me > p.id;
    if (collision && !polite) return;
    try {
      await pc.setRemoteDescription(desc);
      if (desc.type === 'offer') {
        await pc.setLocalDescription();
        signal(p.id, { kind: 'description', description: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
      }
      for (const c of p.pending.splice(0)) await pc.addIceCandidate(c).catch(() => {});
    } catch (e) {
      console.warn('description failed', e);
    }
  }

  async function onCandidate(p, c) {
    if (!p.pc || !c || typeof c.candidate !== 'string') return;
    const cand = { candidate: c.candidate, sdpMid: c.sdpMid || null, sdpMLineIndex: c.sdpMLineIndex ?? null, usernameFragment: c.usernameFragment || null };
    if (cand.sdpMid === null && cand.sdpMLineIndex === null) cand.sdpMLineIndex = 0;
    if (!p.pc.remoteDescription) {
      p.pending.push(cand);
      return;
    }
    try {
      await p.pc.addIceCandidate(cand);
    } catch (e) {
      console.warn('candidate refused', e);
    }
  }

  function closeLink(p) {
    if (p.pc) {
      p.pc.close();
      p.pc = null;
    }
    if (p.tile) {
      p.tile.remove();
      p.tile = null;
    }
  }

  // ------------------------------------------------------------------ remote video: draw and read
  function attachRemote(p) {
    if (!p.tile) {
      const tile = document.createElement('div');
      tile.className = 'tile has-video';
      tile.dataset.key = p.id;
      const v = document.createElement('video');
      v.autoplay = true;
      v.playsInline = true;
      tile.append(v);
      const cap = document.createElement('div');
      cap.className = 'caption';
      const n = document.createElement('span');
      n.className = 'name';
      n.textContent = p.name;
      cap.append(n);
      tile.append(cap);
      p.tile = tile;
      p.readings = { frames: 0, pattern: 0, outOfOrder: 0, last: null, latencies: [] };
      $('grid').append(tile);
      watch(p, v);
    }
    const v = p.tile.querySelector('video');
    if (v.srcObject !== p.remote) v.srcObject = p.remote;
    v.play().catch(() => {});
    render();
  }

  // Reads the pattern of every frame the browser presents (requestVideoFrameCallback).
  function watch(p, v) {
    const c = document.createElement('canvas');
    const ctx = c.getContext('2d', { willReadFrequently: true });
    const onFrame = () => {
      if (!p.tile) return;
      const w = v.videoWidth;
      const h = v.videoHeight;
      if (w && h) {
        // Only the top rows carry the blocks: copying just them keeps measuring cheap.
        const rows = Math.min(h, window.ConfabPattern.rowsNeeded(w));
        if (c.width !== w || c.height !== rows) {
          c.width = w;
          c.height = rows;
        }
        ctx.drawImage(v, 0, 0, w, rows, 0, 0, w, rows);
        const r = p.readings;
        const now = performance.now();
        if (!r.first) r.first = now;
        r.lastAt = now;
        r.frames++;
        r.width = w;
        r.height = h;
        const stamp = window.ConfabPattern.read(ctx.getImageData(0, 0, w, rows).data, w, rows);
        if (stamp) {
          r.pattern++;
          if (r.last !== null && stamp.frame < r.last) r.outOfOrder++;
          else if (r.last !== null && stamp.frame === r.last) r.repeated = (r.repeated || 0) + 1;
          else r.last = stamp.frame;
          const age = window.ConfabPattern.ageMs(stamp);
          if (age !== null) {
            r.latencies.push(age);
            if (r.latencies.length > 5000) r.latencies.splice(0, 2500);
          }
        }
      }
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
  }

  // Test and benchmark hook: what this page received from each peer.
  S.report = async () => {
    const out = [];
    for (const p of S.peers.values()) {
      const r = p.readings || { frames: 0, pattern: 0, outOfOrder: 0, latencies: [] };
      const stats = { framesDecoded: 0, freezeCount: 0, codec: null, audioPackets: 0, audioLevel: 0 };
      if (p.pc) {
        const report = await p.pc.getStats();
        const codecs = {};
        report.forEach((s) => {
          if (s.type === 'codec') codecs[s.id] = s.mimeType;
        });
        report.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') {
            stats.framesDecoded = s.framesDecoded || 0;
            stats.freezeCount = s.freezeCount || 0;
            stats.codec = codecs[s.codecId] || null;
          }
          if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            stats.audioPackets = s.packetsReceived || 0;
            stats.audioLevel = s.audioLevel || 0;
          }
        });
      }
      const lat = [...r.latencies].sort((a, b) => a - b);
      const fps = r.frames > 1 && r.lastAt > r.first ? ((r.frames - 1) * 1000) / (r.lastAt - r.first) : 0;
      const setup = r.first && S.joinedAt ? r.first - S.joinedAt : null;
      const q = (x) => (lat.length ? lat[Math.round((lat.length - 1) * x)] : null);
      out.push({
        id: p.id, name: p.name, phase: p.phase,
        frames: r.frames, pattern_frames: r.pattern, frames_out_of_order: r.outOfOrder, frames_repeated: r.repeated || 0, last_frame: r.last,
        width: r.width || 0, height: r.height || 0,
        latency_ms_p50: q(0.5), latency_ms_p95: q(0.95), fps, setup_ms: setup, ...stats,
      });
    }
    return out;
  };

  // ------------------------------------------------------------------ ringing UI
  function showRing(p) {
    S.ringing = p.id;
    $('ring-name').textContent = p.name;
    if (!$('ring').open) $('ring').showModal();
  }
  function closeRing() {
    S.ringing = null;
    if ($('ring').open) $('ring').close();
  }
  $('ring-accept').onclick = () => {
    const p = S.peers.get(S.ringing);
    closeRing();
    if (p && p.phase === 'incoming') acceptNow(p);
  };
  $('ring-decline').onclick = () => {
    const p = S.peers.get(S.ringing);
    closeRing();
    if (p && p.phase === 'incoming') {
      setPhase(p, 'idle');
      signal(p.id, { kind: 'decline', reason: 'declined' });
    }
  };

  // ------------------------------------------------------------------ rendering
  function setStatus(s) {
    $('status').dataset.state = s;
    $('status').textContent = { offline: 'Not connected', connecting: 'Connecting…', connected: 'Connected' }[s];
  }

  function render() {
    const inRoom = !!S.room;
    $('join-screen').hidden = inRoom;
    $('room-screen').hidden = !inRoom;
    $('where').hidden = !inRoom;
    if (!inRoom) return;
    $('where').textContent = `Room ${S.room}`;
    const ul = $('people');
    ul.innerHTML = '';
    for (const p of present()) {
      const li = document.createElement('li');
      const av = document.createElement('div');
      av.className = 'avatar';
      av.textContent = initial(p.name);
      const who = document.createElement('div');
      who.className = 'who';
      who.textContent = p.name;
      li.append(av, who);
      if (p.phase === 'idle') {
        const b = document.createElement('button');
        b.textContent = 'Call';
        b.onclick = () => call(p);
        li.append(b);
      }
      ul.append(li);
    }
    $('alone').hidden = present().length > 0;
    $('idle').hidden = S.inCall;
    $('call-all').disabled = present().length === 0;
    $('btn-hangup').hidden = !S.inCall;
    $('btn-mic').setAttribute('aria-pressed', String(!S.audio));
    $('btn-cam').setAttribute('aria-pressed', String(!S.video));
    let local = $('grid').querySelector('.tile.local');
    if (S.inCall && !local) {
      local = document.createElement('div');
      local.className = 'tile local has-video';
      const v = document.createElement('video');
      v.muted = true;
      v.autoplay = true;
      v.playsInline = true;
      v.srcObject = S.stream;
      local.append(v);
      $('grid').prepend(local);
    } else if (!S.inCall && local) {
      local.remove();
    }
    $('grid').className = `grid n${Math.min($('grid').children.length, 7)}`;
  }

  function leaveLocal() {
    for (const p of S.peers.values()) closeLink(p);
    S.peers.clear();
    S.inCall = false;
    S.room = null;
    S.me = null;
    render();
  }

  // ------------------------------------------------------------------ controls
  function setMedia(audio, video) {
    S.audio = audio;
    S.video = video;
    for (const t of S.stream.getAudioTracks()) t.enabled = audio;
    for (const t of S.stream.getVideoTracks()) t.enabled = video;
    broadcastState();
  }
  $('btn-mic').onclick = () => setMedia(!S.audio, S.video);
  $('btn-cam').onclick = () => setMedia(S.audio, !S.video);
  $('btn-hangup').onclick = hangUp;
  $('call-all').onclick = () => call(null);
  $('btn-leave').onclick = () => {
    hangUp();
    S.leaving = true;
    send({ type: 'leave' });
    S.ws.close();
    leaveLocal();
  };
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey && (e.key === 'd' || e.key === 'D')) {
      e.preventDefault();
      hangUp();
    }
    if (['INPUT', 'SELECT'].includes(document.activeElement && document.activeElement.tagName) || !S.room) return;
    if (e.key === 'm' || e.key === 'M') setMedia(!S.audio, S.video);
    if (e.key === 'v' || e.key === 'V') setMedia(S.audio, !S.video);
  });
  window.addEventListener('beforeunload', () => {
    S.leaving = true;
    hangUp();
    send({ type: 'leave' });
  });

  async function join() {
    const name = $('f-name').value.trim();
    const room = $('f-room').value.trim();
    const err = !name ? 'Type your name.' : !/^[A-Za-z0-9._-]{1,64}$/.test(room) ? "A room name may only hold letters, digits, '.', '_' and '-'." : null;
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
      await connect(room, name, $('f-password').value || params.get('password') || null);
      if (S.wantCall) {
        const tryCall = () => (S.peers.size ? call(null) : setTimeout(tryCall, 200));
        tryCall();
      }
    } catch (e) {
      $('join-error').hidden = false;
      $('join-error').textContent = e.message;
      if (S.ws) {
        S.ws.onclose = null;
        S.ws.close();
      }
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
  if (params.get('source')) $('f-source').value = params.get('source');
  if (params.get('join') === '1') join();
})();
