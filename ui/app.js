// Confab's window. It renders the state the engine sends and turns clicks into commands; all
// call logic lives in Rust. Talks to Rust only through window.__TAURI__ (commands, events, one
// channel for video frames).
(() => {
  'use strict';
  const { invoke, Channel } = window.__TAURI__.core;
  const { listen } = window.__TAURI__.event;
  const $ = (id) => document.getElementById(id);
  const Codes = window.ConfabCodes;

  let snap = null;
  let hosting = null;
  let ringing = null; // peer id whose ring is shown
  let devices = null;
  const tiles = new Map(); // key -> { el, canvas, ctx, drawn: number[], stamp }

  // ---------------------------------------------------------------------------- helpers
  function toast(text, kind = 'info', ms = 5500) {
    const el = document.createElement('div');
    el.className = `toast ${kind}`;
    el.textContent = text;
    $('toasts').append(el);
    setTimeout(() => el.remove(), ms);
    while ($('toasts').children.length > 4) $('toasts').firstChild.remove();
  }
  const errText = (e) => (e && e.message) || String(e);
  const initial = (name) => (name || '?').trim().charAt(0).toUpperCase() || '?';
  async function run(cmd, args, { quiet = false } = {}) {
    try {
      return await invoke(cmd, args);
    } catch (e) {
      if (!quiet) toast(errText(e), 'error');
      throw e;
    }
  }
  // The room and name rules are ui/rules.js, the same table as the Rust rules.
  const sentence = (m) => (m ? `${m.charAt(0).toUpperCase()}${m.slice(1)}.` : null);
  const validRoom = (r) => sentence(window.ConfabRules.validateRoom(r));
  const validName = (n) => sentence(window.ConfabRules.validateName(n));

  // ---------------------------------------------------------------------------- video
  // Each tile's pictures are an MJPEG stream its <img> loads from the app (127.0.0.1, a token
  // in the address; src-tauri/src/stream.rs): WebKit decodes and paints them with no script
  // per picture. The channel says which tiles have pictures. Where streams fail (or with
  // --video-channel) the pictures themselves come over the channel and are drawn on a canvas;
  // so do the pictures of the tiles beyond the few the window can stream. Where the window
  // has a native video surface (Linux, src-tauri/src/surface.rs), the tiles in the call are
  // holes in the (transparent) page instead, with their pictures painted underneath.
  let streamBase = null; // the streams' address but the tile key and load count, or null
  let nativeVideo = false; // the window has a native video surface
  const live = new Set(); // tiles with pictures now
  const streamed = new Map(); // key -> the <img> loading its stream
  const ways = new Map(); // live tiles whose pictures do not stream: key -> 'channel' | 'native'
  const placed = new Map(); // native tiles: where Rust was last told each is, as JSON
  let streamLoads = 0;
  // WebKit (and WebView2) open at most 6 connections to one host: a 7th stream would wait
  // for ever, without an error. Tiles beyond those take the channel.
  let maxStreams = 6;
  let streamsBroken = false; // a stream failed: the channel from now on
  let wantStreams = true; // what the window last asked for
  let openings = 0;
  function openVideo(streams) {
    // A new channel each time: Rust dropping the one it had closes it on this side too.
    const video = new Channel();
    video.onmessage = (buf) => onMessage(buf);
    const mine = ++openings;
    invoke('open_video', { channel: video, streams })
      .then((got) => {
        // Only the last asking counts (if Rust took them in another order, the streams of
        // an opening it no longer has are refused, and the window falls back).
        if (mine !== openings) return;
        streamBase = got.streams || null;
        nativeVideo = !!got.native;
        ways.clear(); // Rust forgot them with the opening (and the surface its tiles)
        placed.clear();
        document.querySelectorAll('[data-key].native').forEach((t) => t.classList.remove('native', 'has-video'));
        document.body.classList.toggle('streams', !!streamBase);
        document.documentElement.classList.toggle('native-video', nativeVideo);
        if (nativeVideo) sendColors();
        syncStreams();
      })
      .catch((e) => toast(`Video cannot be shown: ${errText(e)}`, 'error'));
  }
  openVideo(true);
  const decoder = new TextDecoder();
  // Set from get_launch: a benchmark reads capture -> on-screen latency (see onFrame and
  // measureStreams).
  let measure = false;

  function tileEl(key) {
    if (key === 'local' && $('room-screen').hidden) return $('preview-tile');
    // What we share: a small preview in the share bar (a picture a second), while sharing.
    if (key === 'local-share') return $('share-bar').hidden ? null : $('share-preview');
    const t = tiles.get(key);
    return t ? t.el : null;
  }

  // Screens others share ('share:<their id>'): a tile appears with the first picture and goes
  // when the share ends.
  const shares = new Set();

  // Kinds: 1 a picture (channel), 2 the tile's pictures ended, 3 the tile has pictures (streams).
  function onMessage(buf) {
    const bytes = new Uint8Array(buf);
    const kind = bytes[0];
    const klen = bytes[1];
    const key = decoder.decode(bytes.subarray(2, 2 + klen));
    if (key.startsWith('share:') && (kind === 2) === shares.has(key)) {
      if (kind === 2) shares.delete(key);
      else shares.add(key);
      render();
    }
    if (kind === 2) {
      live.delete(key);
      const el = tileEl(key);
      if (el) el.classList.remove('has-video');
      syncStreams();
    } else if (kind === 3) {
      live.add(key);
      syncStreams();
    } else if (kind === 1) {
      if (!live.has(key)) {
        live.add(key);
        syncStreams();
      }
      onFrame(buf, bytes, klen, key);
    }
  }

  // Up to maxStreams live tiles load their stream into their <img> (the tile is `.streamed`);
  // a tile that moved (the self view from the join screen to the grid) or went stops loading.
  // Others' tiles stream before our own views (the self view, the share preview), and among
  // them a streamed tile keeps its stream (a switch costs a reconnect). The other live tiles
  // take their pictures over the channel (Rust is told), drawn on their canvas. A stream that
  // fails: the channel for every tile.
  const ownView = (key) => key.startsWith('local');
  const streamRank = (key) => [ownView(key) ? 1 : 0, streamed.has(key) ? 0 : 1, key];
  const byRank = (a, b) => {
    const [x, y] = [streamRank(a), streamRank(b)];
    return x[0] - y[0] || x[1] - y[1] || (x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0);
  };
  function syncStreams() {
    const want = !streamsBroken;
    if (want !== wantStreams) {
      wantStreams = want;
      streamBase = null;
      document.body.classList.remove('streams');
      openVideo(want);
    }
    const chosen = new Set(
      [...live]
        .filter((key) => streamBase && !nativeTile(key) && tileEl(key) && tileEl(key).querySelector('img.video'))
        .sort(byRank)
        .slice(0, maxStreams),
    );
    for (const key of new Set([...live, ...streamed.keys(), ...ways.keys()])) {
      const el = chosen.has(key) ? tileEl(key) : null;
      const img = el && el.querySelector('img.video');
      // Natively: a live tile in the call, where the window has a surface. Over the channel:
      // a live tile shown here that does not stream. Said before a new load, with the same
      // count as the loads (Rust orders the two by it).
      const shown = live.has(key) && !!tileEl(key);
      const way = shown && nativeTile(key) ? 'native' : shown && streamBase && !img ? 'channel' : 'stream';
      if (way !== (ways.get(key) || 'stream')) {
        const was = ways.get(key);
        if (way === 'stream') ways.delete(key);
        else ways.set(key, way);
        invoke('tile_way', { tile: key, way, count: ++streamLoads }).catch(() => {});
        if (was === 'native') {
          placed.delete(key);
          document.querySelectorAll(`[data-key="${CSS.escape(key)}"].native`).forEach((t) => {
            t.classList.remove('native', 'has-video');
          });
        }
        // Its picture shows (unless the camera is off: see render).
        if (way === 'native') tileEl(key).classList.add('native', 'has-video');
      }
      const old = streamed.get(key);
      if (old === img) continue;
      if (old) {
        old.removeAttribute('src');
        const was = old.closest('[data-key]');
        // Its canvas may hold an old picture: the placeholder until the channel's first.
        was.classList.remove('streamed', 'has-video');
        const canvas = was.querySelector('canvas');
        if (canvas) canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
      }
      if (img) {
        img.onload = () => img.closest('[data-key]').classList.add('has-video');
        img.onerror = () => streamFailed(img);
        // A new address each time: never a picture from the cache.
        img.src = `${streamBase}${encodeURIComponent(key)}&n=${++streamLoads}`;
        el.classList.add('streamed');
        streamed.set(key, img);
      } else {
        streamed.delete(key);
      }
    }
    startMeasuring();
    placeNative();
  }

  // The native surface paints the tiles in the call (not the join screen's preview or the
  // share bar's, which sit on opaque cards).
  function nativeTile(key) {
    const el = nativeVideo && tileEl(key);
    return !!el && !!el.closest('#grid');
  }

  // Where each tile the native surface paints is (CSS pixels of the window), told to Rust
  // when it changes; null while it cannot be seen. Checked after each change of the layout,
  // size or visibility; every 250 ms for what moves without telling, said again even if
  // unchanged (commands can be taken out of order: the last word must be the right one).
  function placeNative(again = false) {
    for (const [key, way] of ways) {
      if (way !== 'native') continue;
      const el = tileEl(key);
      const seen = tileView.get(key);
      let place = null;
      if (el && !document.hidden && !el.hidden && !(seen && seen.visible === false)) {
        const r = el.getBoundingClientRect();
        if (r.width >= 1 && r.height >= 1) {
          place = {
            x: r.left,
            y: r.top,
            width: r.width,
            height: r.height,
            radius: parseFloat(getComputedStyle(el).borderTopLeftRadius) || 0,
            mirror: el.classList.contains('local'),
            z: el.classList.contains('floating') ? 1 : 0,
          };
        }
      }
      const said = JSON.stringify(place);
      if (placed.get(key) === said && !again) continue;
      placed.set(key, said);
      invoke('place_tile', { tile: key, place }).catch(() => {});
    }
  }
  setInterval(() => {
    if (ways.size) placeNative(true);
  }, 250);
  window.addEventListener('resize', () => placeNative());

  // The page's background and a tile's, which the native surface paints around and under
  // the holes (the page itself is transparent there).
  const colorProbe = document.createElement('canvas').getContext('2d');
  const rgb = (css) => {
    colorProbe.fillStyle = '#000';
    colorProbe.fillStyle = css.trim() || '#000';
    const hex = colorProbe.fillStyle; // #rrggbb
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) || 0);
  };
  function sendColors() {
    const css = getComputedStyle(document.documentElement);
    invoke('video_colors', { page: rgb(css.getPropertyValue('--bg')), tile: rgb(css.getPropertyValue('--tile')) }).catch(() => {});
  }
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    if (nativeVideo) sendColors();
  });

  // Test hook: how many tiles the window streams at most.
  window.confabSetMaxStreams = (n) => {
    maxStreams = n;
    syncStreams();
  };

  // A stream that does not load: every tile goes back to pictures over the channel.
  function streamFailed(img) {
    if (!streamBase || !img.getAttribute('src') || streamsBroken) return;
    console.warn('video streams fail here: pictures go over the channel');
    streamsBroken = true;
    syncStreams();
  }

  // Streams, while a benchmark measures: before each paint of the window, the pattern is
  // read back from each remote tile's picture; a new frame number gives its capture -> on
  // screen latency. (Rust counts the pictures each stream took.)
  const probe = document.createElement('canvas');
  const seenFrame = new Map();
  const remoteTile = (key) => !key.startsWith('local') && !key.startsWith('share:');
  let measuring = false; // the loop runs only while a remote tile streams
  function startMeasuring() {
    if (measure && !measuring && [...streamed.keys()].some(remoteTile)) {
      measuring = true;
      requestAnimationFrame(measureStreams);
    }
  }
  function measureStreams() {
    measuring = [...streamed.keys()].some(remoteTile);
    for (const [key, img] of streamed) {
      if (!remoteTile(key)) continue;
      const w = img.naturalWidth;
      if (!w || !img.complete) continue;
      const h = Math.min(window.ConfabPattern.rowsNeeded(w), img.naturalHeight);
      if (probe.width !== w || probe.height !== h) {
        probe.width = w;
        probe.height = h;
      }
      const ctx = probe.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(img, 0, 0, w, h, 0, 0, w, h);
      const stamp = window.ConfabPattern.readCanvas(ctx, w, h);
      if (!stamp || seenFrame.get(key) === stamp.frame) continue;
      seenFrame.set(key, stamp.frame);
      const latencyMs = window.ConfabPattern.ageMs(stamp);
      if (latencyMs !== null) invoke('frame_ack', { tile: key, latencyMs }).catch(() => {});
    }
    if (measuring) requestAnimationFrame(measureStreams);
  }

  async function onFrame(buf, bytes, klen, key) {
    let latencyMs = null;
    const view = new DataView(buf, 2 + klen, 4);
    const w = view.getUint16(0);
    const h = view.getUint16(2);
    try {
      const bmp = await createImageBitmap(new Blob([bytes.subarray(6 + klen)], { type: 'image/jpeg' }));
      const el = tileEl(key);
      if (el) {
        const canvas = el.querySelector('canvas');
        if (canvas.width !== w || canvas.height !== h) {
          canvas.width = w;
          canvas.height = h;
        }
        const ctx = canvas.getContext('2d');
        ctx.drawImage(bmp, 0, 0);
        el.classList.add('has-video');
        if (measure && remoteTile(key)) {
          // What people see: the pattern's capture time read back from the drawn picture.
          const stamp = window.ConfabPattern.readCanvas(ctx, w, h);
          if (stamp) latencyMs = window.ConfabPattern.ageMs(stamp);
        }
        const t = tiles.get(key);
        if (t) {
          const now = performance.now();
          t.drawn.push(now);
          while (t.drawn.length && now - t.drawn[0] > 2000) t.drawn.shift();
        }
      }
      bmp.close();
    } catch (e) {
      // A damaged frame: skip it.
    } finally {
      invoke('frame_ack', latencyMs === null ? { tile: key } : { tile: key, latencyMs }).catch(() => {});
    }
  }

  // Rust sizes each tile's frames to what the screen shows.
  // A tile nobody can see (the window hidden or minimized, the tile scrolled out of view) is
  // sized 0: Rust then sends it no pictures until it shows again.
  const tileView = new Map(); // key -> {width, visible}
  function sendSize(key) {
    const t = tileView.get(key);
    if (!t || !(t.width > 0)) return;
    const width = document.hidden || !t.visible ? 0 : t.width;
    if (width === t.sent) return;
    t.sent = width;
    invoke('tile_size', { tile: key, width }).catch(() => {});
  }
  const sizes = new ResizeObserver((entries) => {
    for (const e of entries) {
      const key = e.target.dataset.key;
      if (!key) continue;
      const t = tileView.get(key) || { visible: true };
      t.width = Math.round(e.contentRect.width * (window.devicePixelRatio || 1));
      tileView.set(key, t);
      sendSize(key);
    }
    placeNative();
  });
  const onScreen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const key = e.target.dataset.key;
      if (!key) continue;
      const t = tileView.get(key) || {};
      t.visible = e.isIntersecting;
      tileView.set(key, t);
      sendSize(key);
    }
    placeNative();
  });
  document.addEventListener('visibilitychange', () => {
    for (const key of tileView.keys()) sendSize(key);
    placeNative();
  });
  const watchTile = (el) => {
    sizes.observe(el);
    onScreen.observe(el);
  };
  watchTile($('preview-tile'));

  function ensureTile(key, name) {
    let t = tiles.get(key);
    if (!t) {
      const el = $('tile-tpl').content.firstElementChild.cloneNode(true);
      el.dataset.key = key;
      if (key === 'local') el.classList.add('local');
      t = { el, drawn: [] };
      tiles.set(key, t);
      watchTile(el);
    }
    t.el.querySelector('.name').textContent = name;
    t.el.querySelector('.avatar').textContent = initial(name);
    return t;
  }

  // Test hook: what the pattern reader sees in a tile's picture, its stream's or its canvas's
  // (null if not a pattern frame, or none yet; 'native' if the native surface paints it: read
  // the screen instead).
  window.confabReadTile = (key) => {
    const el = tileEl(key);
    if (!el) return null;
    // Painted under the page by the native surface: the page has no picture to read.
    if (ways.get(key) === 'native') return 'native';
    const img = streamed.get(key);
    let c = el.querySelector('canvas');
    if (img && img.closest('[data-key]') === el) {
      if (!img.naturalWidth) return null;
      c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      c.getContext('2d').drawImage(img, 0, 0);
    }
    if (!c.width || !c.height) return null;
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return window.ConfabPattern.read(data, c.width, c.height);
  };

  // ---------------------------------------------------------------------------- layout
  // What people chose (pin, full window, self view hidden or in a corner) and who speaks; the
  // rules are in layout.js. The self view's place is remembered.
  const Layout = window.ConfabLayout;
  let choice = Layout.initial();
  let speaking = null;
  let laidOut = [];
  try {
    const kept = JSON.parse(localStorage.getItem('confab.selfView') || '{}');
    if (Layout.CORNERS.includes(kept.corner)) choice.corner = kept.corner;
    choice.selfHidden = kept.hidden === true;
  } catch (_) { /* a bad stored value is ignored */ }

  function choose(next) {
    if (next === choice) return;
    choice = next;
    try {
      localStorage.setItem('confab.selfView', JSON.stringify({ corner: choice.corner, hidden: choice.selfHidden }));
    } catch (_) { /* storage may be off */ }
    layOut();
  }

  function layOut(keys = laidOut) {
    laidOut = keys;
    const grid = $('grid');
    const out = Layout.arrange(keys, choice, speaking && speaking.key);
    for (const k of out.order) {
      const t = tiles.get(k);
      if (!t) continue;
      t.el.hidden = false;
      t.el.classList.toggle('main', k === out.main);
      t.el.classList.remove('floating', ...Layout.CORNERS.map((c) => `corner-${c}`));
      t.el.querySelector('.pin').setAttribute('aria-pressed', String(choice.pinned === k));
      grid.append(t.el); // in order
    }
    for (const k of out.hidden) {
      const t = tiles.get(k);
      if (t) t.el.hidden = true;
    }
    if (out.floating) {
      const t = tiles.get(out.floating);
      if (t) {
        t.el.hidden = false;
        t.el.classList.remove('main', ...Layout.CORNERS.map((c) => `corner-${c}`));
        t.el.classList.add('floating', `corner-${out.corner}`);
        grid.append(t.el);
      }
    }
    grid.className = `grid n${Math.min(out.order.length, 7)} mode-${out.mode}`;
    grid.dataset.mode = out.mode;
    $('btn-fill-exit').hidden = out.mode !== 'focus';
    placeNative();
  }

  // Tile buttons and gestures: pin, fill the window, double-click to fill, drag the self view.
  $('grid').addEventListener('click', (e) => {
    const tile = e.target.closest('.tile');
    if (!tile) return;
    const key = tile.dataset.key;
    if (e.target.closest('.pin')) choose({ ...choice, pinned: choice.pinned === key ? null : key });
    else if (e.target.closest('.fill')) choose({ ...choice, focus: choice.focus === key ? null : key });
  });
  $('grid').addEventListener('dblclick', (e) => {
    const tile = e.target.closest('.tile');
    if (tile) choose({ ...choice, focus: choice.focus === tile.dataset.key ? null : tile.dataset.key });
  });
  $('grid').addEventListener('pointerdown', (e) => {
    const tile = e.target.closest('.tile.floating');
    if (!tile || e.target.closest('button')) return;
    e.preventDefault();
    tile.setPointerCapture(e.pointerId);
    const up = (u) => {
      tile.removeEventListener('pointerup', up);
      const box = $('grid').getBoundingClientRect();
      choose({ ...choice, corner: Layout.nearestCorner(u.clientX - box.left, u.clientY - box.top, box.width, box.height) });
    };
    tile.addEventListener('pointerup', up);
  });
  $('btn-fill-exit').onclick = () => choose({ ...choice, focus: null });

  function showHelp() {
    const list = $('help-list');
    list.innerHTML = '';
    for (const [key, what] of Layout.SHORTCUTS) {
      const dt = document.createElement('dt');
      const kbd = document.createElement('kbd');
      kbd.textContent = key;
      dt.append(kbd);
      const dd = document.createElement('dd');
      dd.textContent = what;
      list.append(dt, dd);
    }
    if (!$('help').open) $('help').showModal();
  }
  $('help-close').onclick = () => $('help').close();
  $('btn-help').onclick = showHelp;

  // ---------------------------------------------------------------------------- chat
  // Lines come as `chat` events (others) and as the reply to send_chat (ours); they are drawn
  // as text, links as buttons that ask the app to open the system browser.
  const Chat = window.ConfabChat;
  let chatUnread = 0;
  let chatWasInCall = false;

  function chatLine(line, mine) {
    const li = document.createElement('li');
    if (mine) li.classList.add('mine');
    if (line.shared_by) li.classList.add('earlier');
    const meta = document.createElement('div');
    meta.className = 'meta';
    const who = document.createElement('strong');
    who.textContent = mine ? 'You' : line.name;
    meta.append(who, line.shared_by ? ` · earlier, shared by ${line.shared_by}` : ` · ${Chat.clock(Date.now())}`);
    const text = document.createElement('div');
    text.className = 'text';
    for (const part of Chat.parts(line.text)) {
      if (!part.url) {
        text.append(part.text);
        continue;
      }
      const a = document.createElement('a');
      a.textContent = part.text;
      a.href = '#';
      a.title = `Open ${part.url} in your browser`;
      a.onclick = (e) => {
        e.preventDefault();
        run('open_url', { url: part.url }).catch(() => {});
      };
      text.append(a);
    }
    li.append(meta, text);
    const list = $('chat-lines');
    const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(li);
    while (list.children.length > 200) list.firstElementChild.remove();
    if (atEnd || mine) list.scrollTop = list.scrollHeight;
    chatUnread = Chat.unread(chatUnread, !$('chat').hidden, !mine);
    showUnread();
  }

  function showUnread() {
    const b = $('chat-unread');
    b.hidden = chatUnread === 0;
    b.textContent = String(chatUnread);
    $('btn-chat').title = chatUnread ? `Chat: ${chatUnread} unread (T)` : 'Chat (T)';
  }

  function openChat(open) {
    $('chat').hidden = !open;
    $('btn-chat').setAttribute('aria-pressed', String(open));
    if (open) {
      chatUnread = 0;
      showUnread();
      $('chat-input').focus();
    }
  }

  async function sendChat() {
    const input = $('chat-input');
    const text = input.value;
    if (!text.trim()) return;
    try {
      const line = await run('send_chat', { text });
      input.value = '';
      chatLine(line, true);
    } catch (_) { /* run() showed why; the text stays to try again */ }
  }

  $('btn-chat').onclick = () => openChat($('chat').hidden);
  $('chat-close').onclick = () => openChat(false);
  $('chat-form').onsubmit = (e) => {
    e.preventDefault();
    sendChat();
  };
  $('chat-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      sendChat();
    }
    if (e.key === 'Escape') openChat(false);
  });

  // A new call starts a new chat; the button is there while in a call.
  function chatForCall(inCall) {
    $('btn-chat').hidden = !inCall;
    if (inCall && !chatWasInCall) {
      $('chat-lines').innerHTML = '';
      chatUnread = 0;
      showUnread();
    }
    if (!inCall) openChat(false);
    $('btn-stats').hidden = !inCall;
    if (!inCall && !$('stats').hidden) openStats(false);
    chatWasInCall = inCall;
  }

  // ---------------------------------------------------------------------------- stats
  // While the panel is open: the engine's figures every second, the last minute drawn.
  const Stats = window.ConfabStats;
  const statsHistory = Stats.history();
  let statsTimer = null;

  async function pollStats() {
    let list;
    try {
      list = await invoke('get_stats');
    } catch (_) {
      return;
    }
    const t = performance.now();
    Stats.add(statsHistory, list, t);
    const shown = window.ConfabNotices.displayNames(snap ? snap.participants : [], snap && snap.name);
    const box = $('stats-people');
    box.innerHTML = '';
    // Our own microphone first: what processing runs on it.
    const mine = Stats.processingRows(await invoke('get_audio_processing').catch(() => null));
    if (mine.length) {
      const sec = document.createElement('section');
      sec.dataset.peer = 'me';
      const h = document.createElement('h3');
      h.textContent = 'Your microphone';
      const dl = document.createElement('dl');
      for (const row of mine) {
        const dt = document.createElement('dt');
        dt.textContent = row.label;
        const dd = document.createElement('dd');
        dd.textContent = row.text;
        dl.append(dt, document.createElement('span'), dd);
      }
      sec.append(h, dl);
      box.append(sec);
    }
    if (!list.length) box.append('No one connected yet.');
    for (const s of list) {
      const sec = document.createElement('section');
      sec.dataset.peer = s.id;
      const h = document.createElement('h3');
      h.textContent = shown.get(s.id) || s.name;
      const dl = document.createElement('dl');
      for (const row of Stats.rows(s, statsHistory)) {
        const dt = document.createElement('dt');
        dt.textContent = row.label;
        const graph = document.createElement('span');
        if (row.points) {
          const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
          svg.setAttribute('viewBox', '0 0 90 20');
          const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
          line.setAttribute('points', Stats.sparkline(row.points, t, 90, 20));
          svg.append(line);
          graph.append(svg);
        }
        const dd = document.createElement('dd');
        dd.textContent = row.text;
        dl.append(dt, graph, dd);
      }
      sec.append(h, dl);
      box.append(sec);
    }
  }

  function openStats(open) {
    $('stats').hidden = !open;
    $('btn-stats').setAttribute('aria-pressed', String(open));
    clearInterval(statsTimer);
    statsTimer = null;
    if (open) {
      pollStats();
      statsTimer = setInterval(pollStats, 1000);
    }
  }
  $('btn-stats').onclick = () => openStats($('stats').hidden);
  $('stats-close').onclick = () => openStats(false);

  // ---------------------------------------------------------------------------- rendering
  const STATUS = { offline: 'Not connected', connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…' };
  const PHASE = { idle: '', ringing: 'Ringing…', incoming: 'Calling you', connecting: 'Connecting…', connected: 'In the call' };

  function render() {
    const s = snap;
    const pill = $('status');
    pill.dataset.state = s.connection;
    pill.textContent = STATUS[s.connection] || s.connection;
    const inRoom = !!s.room;
    const wasRoom = !$('room-screen').hidden;
    $('join-screen').hidden = inRoom;
    $('room-screen').hidden = !inRoom;
    if (inRoom !== wasRoom) {
      invoke('set_preview', { enabled: !inRoom }).catch(() => {});
      if (!inRoom) $('preview-tile').classList.remove('has-video');
    }
    const where = $('where');
    where.hidden = !inRoom;
    if (inRoom) {
      where.innerHTML = '';
      const b = document.createElement('strong');
      b.textContent = s.room;
      where.append('Room ', b, ` · ${s.server || ''}`);
    }
    if (!inRoom) {
      syncStreams(); // the self view back in the join screen's preview
      return;
    }

    // People (equal names are told apart)
    const shown = window.ConfabNotices.displayNames(s.participants, s.name);
    const ul = $('people');
    ul.innerHTML = '';
    for (const p of s.participants) {
      const li = document.createElement('li');
      const av = document.createElement('div');
      av.className = 'avatar';
      av.textContent = initial(p.name);
      const who = document.createElement('div');
      who.className = 'who';
      const n = document.createElement('div');
      n.textContent = shown.get(p.id);
      const w = document.createElement('div');
      w.className = 'what';
      w.textContent = PHASE[p.phase] || (p.in_call ? 'In a call' : 'Here');
      who.append(n, w);
      li.append(av, who);
      if (p.phase === 'idle') {
        const btn = document.createElement('button');
        btn.title = `Call ${p.name}`;
        btn.innerHTML = '<svg class="icon"><use href="#i-phone"/></svg>';
        btn.onclick = () => run('call', { peer: p.id }).catch(() => {});
        li.append(btn);
      }
      ul.append(li);
    }
    $('alone').hidden = s.participants.length > 0;
    $('admit-all').checked = !!s.admit_all;
    $('invite').hidden = !hosting;
    if (hosting) $('invite-address').textContent = hosting.address;

    // Tiles
    const want = [];
    if (s.in_call) {
      want.push(['local', `${s.name || 'You'} (you)`, s.audio, s.video]);
      for (const p of s.participants) {
        if (p.phase === 'connected' || p.phase === 'connecting') want.push([p.id, shown.get(p.id), p.audio, p.video]);
        if (p.phase === 'connected' && shares.has(`share:${p.id}`)) want.push([`share:${p.id}`, `${shown.get(p.id)}'s screen`, true, true]);
      }
    }
    const keep = new Set(want.map((w) => w[0]));
    for (const [k, t] of tiles) {
      if (!keep.has(k)) {
        sizes.unobserve(t.el);
        onScreen.unobserve(t.el);
        tileView.delete(t.el.dataset.key);
        t.el.remove();
        tiles.delete(k);
      }
    }
    const codes = new Map((s.verification || []).map((v) => [v.id, v]));
    for (const [key, name, audio, vid] of want) {
      const t = ensureTile(key, name);
      t.el.querySelector('.muted').hidden = audio;
      // The verification code people read to each other (equal unless someone is in the middle).
      const v = codes.get(key);
      const code = t.el.querySelector('.code');
      // Through the room's media server there is no end-to-end link to verify: say so.
      const relayed = !v && s.through_sfu && key !== 'local' && !key.startsWith('share:');
      code.hidden = !v && !relayed;
      if (code.dataset.title === undefined) code.dataset.title = code.title;
      if (v) {
        code.querySelector('.code-text').textContent = v.code || 'not verified';
        code.classList.toggle('bad', !v.code);
        code.classList.remove('relayed');
        code.title = v.problem ? `This call could not be verified: ${v.problem}` : code.dataset.title;
      } else if (relayed) {
        code.querySelector('.code-text').textContent = 'via server';
        code.classList.remove('bad');
        code.classList.add('relayed');
        code.title = 'This call goes through the room\'s media server (a big room): there is no verification code and no chat.';
      }
      if (!vid) t.el.classList.remove('has-video');
      // A stream (or the surface) goes on while the camera is off; back on, its picture shows
      // again.
      else if ((streamed.get(key)?.naturalWidth || ways.get(key) === 'native') && live.has(key)) t.el.classList.add('has-video');
    }
    layOut(want.map((w) => w[0]));
    $('idle').hidden = s.in_call;
    chatForCall(s.in_call);
    $('call-all').disabled = s.participants.length === 0;
    $('idle-text').textContent = s.participants.length === 0
      ? 'You are the first one here. Others can join this room now.'
      : 'You are in the room. Call someone to start.';

    // Controls
    setToggle($('btn-mic'), !s.audio, 'i-mic', 'i-mic-off', s.audio ? 'Mute (M)' : 'Unmute (M)');
    setToggle($('btn-cam'), !s.video, 'i-cam', 'i-cam-off', s.video ? 'Camera off (V)' : 'Camera on (V)');
    $('btn-call').hidden = s.in_call;
    $('btn-call').disabled = s.participants.length === 0;
    $('btn-hangup').hidden = !s.in_call;
    showSharing(s);

    // A ring the state no longer shows is over.
    if (ringing && !s.participants.some((p) => p.id === ringing && p.phase === 'incoming')) closeRing();
    syncStreams();
  }

  function setToggle(btn, pressed, on, off, title) {
    btn.setAttribute('aria-pressed', String(pressed));
    btn.title = title;
    btn.querySelector('use').setAttribute('href', `#${pressed ? off : on}`);
  }

  // The dot on each tile: pictures drawn over the last 2 s (decoded, for streams), and the link's round trip and
  // loss from the engine (asked every 2 s while in a call), judged by ConfabStats.quality.
  let netById = new Map();
  let fpsById = new Map(); // decoded, for tiles whose pictures stream (their draws are unseen)
  let netAsked = 0;
  function quality() {
    const now = performance.now();
    if (snap && snap.in_call && now - netAsked >= 2000) {
      netAsked = now;
      invoke('get_stats')
        .then((list) => {
          netById = new Map(list.map((s) => [s.id, s.network]));
          fpsById = new Map(list.map((s) => [s.id, s.video.fps]));
        })
        .catch(() => {});
    }
    for (const [key, t] of tiles) {
      if (key === 'local') continue;
      while (t.drawn.length && now - t.drawn[0] > 2000) t.drawn.shift();
      const q = t.el.querySelector('.quality');
      const p = snap && snap.participants.find((x) => x.id === key);
      const unseen = streamed.has(key) || ways.get(key) === 'native'; // drawn without script
      const fps = p && p.video ? (unseen ? fpsById.get(key) : t.drawn.length / 2) : null;
      const judged = p ? Stats.quality(fps, netById.get(key)) : { q: '', title: '' };
      q.dataset.q = judged.q;
      q.title = judged.title;
    }
  }
  setInterval(quality, 1000);

  // ---------------------------------------------------------------------------- ringing
  let ringAudio = null;
  function startRingSound() {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(ctx.destination);
      for (const f of [440, 480]) {
        const o = ctx.createOscillator();
        o.frequency.value = f;
        o.connect(gain);
        o.start();
      }
      const t0 = ctx.currentTime;
      for (let i = 0; i < 15; i++) {
        gain.gain.setValueAtTime(0.08, t0 + i * 4);
        gain.gain.setValueAtTime(0, t0 + i * 4 + 1.6);
      }
      ringAudio = ctx;
    } catch (e) {
      ringAudio = null;
    }
  }
  // An incoming call, or (in a call) someone asking to join it: Admit / Deny.
  function showRing(from, name, joining = false) {
    ringing = from;
    $('ring-name').textContent = name;
    $('ring-what').textContent = joining ? 'wants to join the call' : 'is calling';
    $('ring-hint').hidden = !joining;
    $('ring-accept').title = joining ? 'Admit' : 'Accept';
    $('ring-decline').title = joining ? 'Deny' : 'Decline';
    $('ring-avatar').textContent = initial(name);
    if (!$('ring').open) $('ring').showModal();
    startRingSound();
  }
  function closeRing() {
    ringing = null;
    if ($('ring').open) $('ring').close();
    if (ringAudio) {
      ringAudio.close().catch(() => {});
      ringAudio = null;
    }
  }
  $('ring-accept').onclick = () => {
    const p = ringing;
    closeRing();
    if (p) run('accept_call', { peer: p }).catch(() => {});
  };
  $('ring-decline').onclick = () => {
    const p = ringing;
    closeRing();
    if (p) run('decline_call', { peer: p }).catch(() => {});
  };
  $('ring').addEventListener('cancel', (e) => {
    e.preventDefault();
    $('ring-decline').click();
  });

  // ---------------------------------------------------------------------------- events
  function onNotice(n) {
    if (n.kind === 'incoming-call') showRing(n.from, n.name);
    if (n.kind === 'join-request') showRing(n.from, n.name, true);
    if (n.kind === 'ring-cancelled' && ringing === n.from) closeRing();
    const t = window.ConfabNotices.toast(n);
    if (t) toast(t[0], t[1]);
  }

  listen('engine', (e) => {
    const ev = e.payload;
    switch (ev.type) {
      case 'state': snap = ev; render(); break;
      case 'notice': onNotice(ev); break;
      case 'chat': chatLine(ev, false); break;
      case 'error': toast(ev.message, ev.code === Codes.reconnecting ? 'warn' : 'error', 7000); break;
      case 'levels': {
        for (const l of ev.peers) {
          const t = tiles.get(l.id);
          if (t) t.el.classList.toggle('speaking', l.level > 0.02);
        }
        if (tiles.get('local')) tiles.get('local').el.classList.toggle('speaking', ev.local > 0.02 && snap && snap.audio);
        const was = speaking && speaking.key;
        speaking = Layout.speaker(speaking, ev.peers.map((l) => ({ key: l.id, level: l.level })), performance.now());
        if ((speaking && speaking.key) !== was) layOut();
        break;
      }
      default: break;
    }
  });

  // A known name with a certificate it did not have before: another device, or someone in the
  // middle. The code on the tile tells which, if both read it aloud.
  listen('identity-changed', (e) => {
    const c = e.payload;
    toast(`${c.name} is on another device than before${c.code ? ` (code ${c.code})` : ''}. Compare the code on their tile aloud to be sure it is them.`, 'warn', 15000);
  });

  listen('devices-changed', () => {
    toast('Your devices changed');
    loadDevices();
  });

  listen('invite', (e) => {
    const inv = e.payload;
    $('f-server').value = inv.server;
    $('f-room').value = inv.room;
    if (inv.name) $('f-name').value = inv.name;
    // A link never joins by itself: the user checks where it leads and presses Join.
    if (snap && snap.room) {
      toast(`Invited to room ${inv.room} on ${inv.server}. Leave this room to join it.`, 'warn', 9000);
    } else {
      toast(`Invited to room ${inv.room} on ${inv.server}. Check the details, then press Join.`, 'info', 9000);
      $('join-btn').focus();
    }
  });

  // ---------------------------------------------------------------------------- join screen
  function formError(msg) {
    const el = $('join-error');
    el.hidden = !msg;
    el.textContent = msg || '';
  }
  function busy(btn, on, text) {
    btn.disabled = on;
    btn.classList.toggle('busy', on);
    if (text) btn.querySelector('.label').textContent = text;
  }

  $('join-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('f-name').value;
    const room = $('f-room').value.trim();
    const server = $('f-server').value.trim();
    const problem = validName(name) || validRoom(room) || (!server && 'Type the server address.');
    if (problem) return formError(problem);
    formError(null);
    // An unencrypted server outside the private networks is joined only on a second press.
    const insecureOk = $('join-btn').dataset.insecureFor === server;
    busy($('join-btn'), true, 'Joining');
    let label = 'Join';
    try {
      await invoke('join_room', { server, room, name, password: $('f-password').value || null, insecureOk });
      delete $('join-btn').dataset.insecureFor;
    } catch (err) {
      formError(errText(err));
      if (err && err.code === Codes.wrongPassword) $('pw-details').open = true;
      if (err && err.code === Codes.insecureServer) {
        $('join-btn').dataset.insecureFor = server;
        label = 'Join anyway';
      }
    } finally {
      busy($('join-btn'), false, label);
    }
  });

  // Hosting is state Rust sends (the `hosting` event); an empty room gets a name nobody guesses.
  function showHosting(h) {
    hosting = h;
    $('hosting').hidden = !h;
    if (h) $('hosting-address').textContent = h.address;
    if (snap) render();
  }
  listen('hosting', (e) => showHosting(e.payload));
  $('stop-hosting').onclick = () => run('stop_hosting').catch(() => {});
  $('admit-all').onchange = (e) => run('set_admit_all', { enabled: e.target.checked }).catch(() => {});

  $('host-btn').onclick = async () => {
    const name = $('f-name').value;
    const room = $('f-room').value.trim();
    const problem = validName(name) || (room && validRoom(room));
    if (problem) return formError(problem);
    formError(null);
    busy($('host-btn'), true, 'Starting');
    try {
      const h = await invoke('host_lan_room', { room, name, password: $('f-password').value || null });
      showHosting(h);
      toast(`Hosting room ${h.room} at ${h.address}`);
    } catch (err) {
      formError(errText(err));
    } finally {
      busy($('host-btn'), false, 'Host on this computer');
    }
  };

  $('copy-link').onclick = async () => {
    if (!hosting) return;
    try {
      await navigator.clipboard.writeText(hosting.link);
      toast('Invite link copied');
    } catch (e) {
      toast(hosting.link, 'info', 15000);
    }
  };

  // ---------------------------------------------------------------------------- network
  // One server a line; Rust parses it (the one grammar confab-peer --ice-server takes too) and
  // answers a bad line with words.
  $('save-ice').onclick = async () => {
    try {
      await invoke('set_ice_servers', { text: $('f-ice').value });
      formError(null);
      toast('Network settings saved; they apply to the next call');
    } catch (e) {
      formError(errText(e));
    }
  };

  // "Relay only" (under the gear): kept in the settings; the engine uses it from the next call.
  $('pop-relay').onchange = async () => {
    const on = $('pop-relay').checked;
    try {
      const s = await invoke('get_settings');
      s.relay_only = on;
      await invoke('save_settings', { settings: s });
      toast(on ? 'Relay only: the next call goes through your TURN server' : 'Relay only is off for the next call');
    } catch (e) {
      $('pop-relay').checked = !on;
      toast(errText(e), 'error');
    }
  };

  // ---------------------------------------------------------------------------- devices
  function fill(select, list, selected, defaultLabel) {
    select.innerHTML = '';
    const add = (id, name) => {
      const o = document.createElement('option');
      o.value = id;
      o.textContent = name;
      select.append(o);
    };
    add('', defaultLabel);
    for (const d of list) add(d.id, d.name);
    add('none', 'None');
    select.value = [...select.options].some((o) => o.value === selected) ? selected : '';
  }
  async function loadDevices() {
    try {
      devices = await invoke('list_devices');
    } catch (e) {
      toast(`Devices cannot be listed: ${errText(e)}`, 'error');
      return;
    }
    const sel = devices.selected;
    for (const [a, b] of [['sel-camera', 'pop-camera'], ['sel-mic', 'pop-mic'], ['sel-speaker', 'pop-speaker']]) {
      const kind = a.endsWith('camera') ? 'cameras' : a.endsWith('mic') ? 'microphones' : 'speakers';
      const current = a.endsWith('camera') ? sel.camera : a.endsWith('mic') ? sel.microphone : sel.speaker;
      const label = kind === 'cameras' ? 'Default camera' : kind === 'microphones' ? 'Default microphone' : 'Default speaker';
      fill($(a), devices[kind], current, label);
      fill($(b), devices[kind], current, label);
    }
  }
  function onDevice(which, value) {
    for (const id of [`sel-${which}`, `pop-${which}`]) $(id).value = value;
    const arg = which === 'mic' ? { microphone: value } : which === 'camera' ? { camera: value } : { speaker: value };
    run('select_devices', arg).catch(() => {});
  }
  for (const which of ['camera', 'mic', 'speaker']) {
    $(`sel-${which}`).onchange = (e) => onDevice(which, e.target.value);
    $(`pop-${which}`).onchange = (e) => onDevice(which, e.target.value);
  }

  // ---------------------------------------------------------------------------- controls
  const toggleMic = () => snap && run('set_mic_enabled', { enabled: !snap.audio }).catch(() => {});
  const toggleCam = () => snap && run('set_camera_enabled', { enabled: !snap.video }).catch(() => {});
  const hangUp = () => snap && snap.in_call && run('hang_up').catch(() => {});
  $('btn-mic').onclick = toggleMic;
  $('btn-cam').onclick = toggleCam;
  $('btn-hangup').onclick = hangUp;
  $('btn-call').onclick = () => run('call', { peer: null }).catch(() => {});
  $('call-all').onclick = () => run('call', { peer: null }).catch(() => {});
  $('btn-leave').onclick = () => run('leave_room').catch(() => {});
  $('btn-devices').onclick = () => {
    $('devices-pop').hidden = !$('devices-pop').hidden;
    if (!$('devices-pop').hidden) loadDevices();
  };

  // ---------------------------------------------------------------------------- microphone test
  // The join screen's test: Rust records 3 s (the level comes on a channel), then plays it
  // back; the answer says whether anything was heard.
  function showMicLevel(level) {
    const db = level > 0 ? 20 * Math.log10(level) : -100;
    const fill = Math.max(0, Math.min(1, (db + 60) / 60));
    $('mic-meter-fill').style.width = `${Math.round(fill * 100)}%`;
  }
  async function testMic() {
    const btn = $('mic-test');
    const status = $('mic-test-status');
    if (btn.disabled) return;
    btn.disabled = true;
    status.dataset.result = '';
    status.textContent = 'Opening the microphone…';
    const progress = new Channel();
    progress.onmessage = (p) => {
      showMicLevel(p.level);
      status.textContent = p.phase === 'recording'
        ? `Recording: say something (${Math.max(1, Math.ceil(p.left_ms / 1000))} s)`
        : 'Playing back what you said…';
    };
    try {
      const r = await invoke('check_microphone', { progress });
      status.dataset.result = r.stopped ? 'stopped' : r.heard ? 'heard' : 'silent';
      status.textContent = r.stopped
        ? 'The test stopped.'
        : r.heard
          ? 'Your microphone works. Did you hear yourself? If not, choose another speaker.'
          : 'Nothing was heard: check the microphone chosen above, and that it is not muted.';
    } catch (e) {
      status.dataset.result = 'error';
      status.textContent = errText(e);
    }
    showMicLevel(0);
    btn.disabled = false;
  }
  $('mic-test').onclick = testMic;

  // ---------------------------------------------------------------------------- sharing
  // The picker lists what Rust can capture (screens first, then windows, each with a picture);
  // the engine shares it on a track of its own. The bar and the button show what the state says.
  let sharePick = null;
  function showSharing(s) {
    const sharing = s.in_call && s.sharing;
    $('btn-share').hidden = !s.in_call;
    setToggle($('btn-share'), !!sharing, 'i-share', 'i-share-stop', sharing ? 'Stop sharing (E)' : 'Share your screen (E)');
    $('share-bar').hidden = !sharing;
    // A picture still on its way when the share ended must not linger for the next one.
    if (!sharing) $('share-preview').classList.remove('has-video');
    $('share-what').textContent = sharing || '';
    if (!s.in_call && $('share-picker').open) $('share-picker').close();
  }
  function pickShare(card) {
    for (const c of document.querySelectorAll('.share-card')) c.setAttribute('aria-selected', String(c === card));
    sharePick = card && card.dataset.id;
    $('share-go').disabled = !sharePick;
  }
  function shareCard(item) {
    const card = document.createElement('button');
    card.type = 'button';
    card.className = 'share-card';
    card.setAttribute('role', 'option');
    card.setAttribute('aria-selected', 'false');
    card.dataset.id = item.id;
    const pic = document.createElement('div');
    pic.className = 'share-thumb';
    if (item.thumbnail) {
      const img = document.createElement('img');
      img.src = item.thumbnail;
      img.alt = '';
      pic.append(img);
    } else {
      pic.textContent = 'No preview';
    }
    const title = document.createElement('span');
    title.className = 'share-name';
    title.textContent = item.title;
    title.title = item.title;
    const size = document.createElement('span');
    size.className = 'hint';
    size.textContent = `${item.width} × ${item.height}`;
    card.append(pic, title, size);
    card.onclick = () => pickShare(card);
    card.ondblclick = () => startShare(item.id);
    return card;
  }
  let desktopPicking = false; // the desktop's own picker is open (Wayland)
  let shareAttempt = 0; // each opening of the dialog; an older one's late answer is ignored
  async function openSharePicker() {
    if (!snap || !snap.in_call) return;
    const mine = ++shareAttempt;
    const dlg = $('share-picker');
    for (const id of ['share-screens', 'share-windows']) $(id).innerHTML = '';
    for (const id of ['share-screens-title', 'share-windows-title', 'share-error']) $(id).hidden = true;
    $('share-status').hidden = false;
    $('share-status').textContent = 'Looking for screens and windows…';
    $('share-go').hidden = false;
    pickShare(null);
    if (!dlg.open) dlg.showModal();
    let list;
    try {
      list = await invoke('list_shareable');
    } catch (e) {
      $('share-status').hidden = true;
      $('share-error').textContent = errText(e);
      $('share-error').hidden = false;
      return;
    }
    if (!dlg.open) return;
    const desktops = list.find((i) => i.kind === 'picker');
    if (desktops) {
      // Wayland: the desktop shows its own picker; this dialog says so until it is done, and
      // closing it gives the desktop's picker up too.
      $('share-status').textContent = 'Choose what to share in your desktop’s window…';
      // Nothing to pick here: the desktop's window is where the choice is made.
      $('share-go').hidden = true;
      desktopPicking = true;
      let failed = null;
      try {
        await invoke('share', { source: desktops.id });
      } catch (e) {
        failed = e;
      }
      const cancelled = failed && failed.code === Codes.cancelled;
      // The dialog was opened again meanwhile: it belongs to that attempt now.
      if (mine !== shareAttempt) {
        if (failed && !cancelled) toast(errText(failed), 'error');
        return;
      }
      desktopPicking = false;
      if (!failed || cancelled) {
        dlg.close();
      } else if (dlg.open) {
        $('share-status').hidden = true;
        $('share-error').textContent = errText(failed);
        $('share-error').hidden = false;
      } else {
        toast(errText(failed), 'error');
      }
      return;
    }
    $('share-status').hidden = true;
    for (const [kind, grid] of [['screen', 'share-screens'], ['window', 'share-windows']]) {
      const items = list.filter((i) => i.kind === kind);
      $(`${grid}-title`).hidden = items.length === 0;
      for (const item of items) $(grid).append(shareCard(item));
    }
    const first = document.querySelector('.share-card');
    if (first) {
      pickShare(first);
      first.focus();
    }
  }
  async function startShare(id) {
    $('share-picker').close();
    if (id) await run('share', { source: id }).catch(() => {});
  }
  const stopShare = () => run('share', { source: null }).catch(() => {});
  const toggleShare = () => snap && snap.in_call && (snap.sharing ? stopShare() : openSharePicker());
  $('btn-share').onclick = toggleShare;
  $('share-stop').onclick = stopShare;
  $('share-cancel').onclick = () => $('share-picker').close();
  // Closed (Cancel, Escape) while the desktop's picker is open: that one is given up too.
  $('share-picker').addEventListener('close', () => {
    if (desktopPicking) {
      desktopPicking = false;
      stopShare();
    }
  });
  $('share-go').onclick = () => startShare(sharePick);
  $('share-picker').addEventListener('keydown', (e) => {
    // Enter on a picture shares it (on Cancel or Share, the button does its own thing).
    if (e.key === 'Enter' && sharePick && e.target.classList.contains('share-card')) {
      e.preventDefault();
      startShare(sharePick);
      return;
    }
    // Arrow keys move the choice through the pictures.
    const cards = [...document.querySelectorAll('.share-card')];
    const at = cards.findIndex((c) => c.dataset.id === sharePick);
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (step && cards.length) {
      e.preventDefault();
      const next = cards[(at + step + cards.length) % cards.length];
      pickShare(next);
      next.focus();
    }
  });

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey && (e.key === 'd' || e.key === 'D')) {
      e.preventDefault();
      hangUp();
      return;
    }
    if (e.key === 'Escape') $('devices-pop').hidden = true;
    const typing = ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement && document.activeElement.tagName);
    if (typing || e.ctrlKey || e.metaKey || e.altKey || !snap || !snap.room) return;
    if (e.key === 'm' || e.key === 'M') toggleMic();
    if (e.key === 'v' || e.key === 'V') toggleCam();
    if ((e.key === 'e' || e.key === 'E') && !$('share-picker').open) toggleShare();
    if (e.key === '?') showHelp();
    if ((e.key === 'i' || e.key === 'I') && snap.in_call) {
      openStats($('stats').hidden);
      return;
    }
    if (e.key === 'Escape' && !$('stats').hidden) openStats(false);
    if ((e.key === 't' || e.key === 'T') && snap.in_call) {
      e.preventDefault();
      openChat(true);
      return;
    }
    if (snap.in_call && ['p', 'f', 's', 'c', 'Escape'].includes(e.key.length === 1 ? e.key.toLowerCase() : e.key)) {
      choose(Layout.onKey(choice, e.key, laidOut, speaking && speaking.key));
    }
  });
  // Microphone processing (under the gear): saved, and in force from the next frame.
  const PROCESSING_WORDS = { echo_cancellation: 'Echo cancellation', noise_suppression: 'Noise suppression', auto_gain: 'Automatic gain' };
  for (const box of document.querySelectorAll('[data-processing]')) {
    box.onchange = async () => {
      const key = box.dataset.processing;
      try {
        const s = await invoke('get_settings');
        s.audio_processing = { ...s.audio_processing, [key]: box.checked };
        await invoke('save_settings', { settings: s });
        toast(`${PROCESSING_WORDS[key]} ${box.checked ? 'on' : 'off'}`);
      } catch (e) {
        box.checked = !box.checked;
        toast(errText(e), 'error');
      }
    };
  }

  // ---------------------------------------------------------------------------- start
  (async () => {
    try {
      const s = await invoke('get_settings');
      $('f-ice').value = await invoke('get_ice_servers');
      $('pop-relay').checked = !!s.relay_only;
      for (const box of document.querySelectorAll('[data-processing]')) box.checked = s.audio_processing[box.dataset.processing] !== false;
      $('f-name').value = s.name;
      $('f-room').value = s.room;
      $('f-server').value = s.server;
      for (const [list, items] of [['recent-rooms', s.recent_rooms], ['recent-servers', s.recent_servers]]) {
        for (const v of items) {
          const o = document.createElement('option');
          o.value = v;
          $(list).append(o);
        }
      }
      const launch = await invoke('get_launch');
      measure = launch.measure === true;
      startMeasuring();
      if (launch.server) $('f-server').value = launch.server;
      if (launch.room) $('f-room').value = launch.room;
      if (launch.name) $('f-name').value = launch.name;
      for (const n of launch.notices) toast(n, 'warn', 12000);
      snap = await invoke('get_state');
      showHosting(await invoke('get_hosting'));
      render();
    } catch (e) {
      toast(`Confab could not start properly: ${errText(e)}`, 'error', 15000);
    }
    await loadDevices();
    if (!snap || !snap.room) invoke('set_preview', { enabled: true }).catch(() => {});
    if (!$('f-name').value) $('f-name').focus();
  })();
})();
