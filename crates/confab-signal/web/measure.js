// The web client's test devices and measurements, kept apart from the call: the test pattern
// and tone (what confab-peer's --video test --audio tone send), and what a page read back from
// each remote video (frames, pattern frames in order, latency from the pattern's timestamp).
// Tests and benchmarks read window.confabWeb.report().
(() => {
  'use strict';

  // A canvas painting the test pattern at 30 fps plus a tone, as a MediaStream. `opts`:
  // `fps`, `canvasId` (a second canvas for a test screen), and no tone when `toneHz` is null.
  function testStream(size, toneHz, opts = {}) {
    const [w, h] = (size || '640x480').split('x').map(Number);
    const fps = opts.fps || 30;
    const canvas = document.getElementById(opts.canvasId || 'pattern-canvas');
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d');
    let n = 0;
    const paint = () => {
      window.ConfabPattern.paint(ctx, w, h, n++, Number(BigInt.asUintN(32, BigInt(window.ConfabPattern.nowUs()))));
    };
    paint();
    const timer = setInterval(paint, 1000 / fps);
    const video = canvas.captureStream(fps);
    let ac = null;
    let audio = [];
    if (toneHz !== null) {
      ac = new AudioContext();
      const osc = ac.createOscillator();
      osc.frequency.value = Number(toneHz || 440);
      const gain = ac.createGain();
      gain.gain.value = 0.3;
      const dest = ac.createMediaStreamDestination();
      osc.connect(gain).connect(dest);
      osc.start();
      ac.resume().catch(() => {});
      audio = dest.stream.getAudioTracks();
    }
    const stream = new MediaStream([...audio, ...video.getVideoTracks()]);
    stream.stopTest = () => {
      clearInterval(timer);
      if (ac) ac.close().catch(() => {});
    };
    return stream;
  }

  const FREEZE_MS = 300;

  function newReadings() {
    return { frames: 0, pattern: 0, outOfOrder: 0, outOfOrderAt: [], repeated: 0, last: null, latencies: [], first: 0, lastAt: 0, width: 0, height: 0, freezes: 0, freezeMs: 0 };
  }

  // A frame presented at `now` (ms): a gap of more than 300 ms since the last one is a
  // freeze (confab-peer counts its decoded pictures the same way).
  function presented(r, now) {
    if (!r.first) r.first = now;
    if (r.lastAt && now - r.lastAt > FREEZE_MS) {
      r.freezes++;
      r.freezeMs += now - r.lastAt;
    }
    r.lastAt = now;
    r.frames++;
  }

  // Reads the pattern of every frame the browser presents (requestVideoFrameCallback).
  function watch(video, readings, alive) {
    const c = document.createElement('canvas');
    const ctx = c.getContext('2d', { willReadFrequently: true });
    const onFrame = () => {
      if (!alive()) return;
      const w = video.videoWidth;
      const h = video.videoHeight;
      if (w && h) {
        // Only the top rows carry the blocks: copying just them keeps measuring cheap.
        const rows = Math.min(h, window.ConfabPattern.rowsNeeded(w));
        if (c.width !== w || c.height !== rows) {
          c.width = w;
          c.height = rows;
        }
        ctx.drawImage(video, 0, 0, w, rows, 0, 0, w, rows);
        const r = readings;
        presented(r, performance.now());
        r.width = w;
        r.height = h;
        const stamp = window.ConfabPattern.read(ctx.getImageData(0, 0, w, rows).data, w, rows);
        if (stamp) {
          r.pattern++;
          if (r.last !== null && stamp.frame < r.last) {
            r.outOfOrder++;
            // The first few, for a failing test to say what came after what.
            if (r.outOfOrderAt.length < 5) r.outOfOrderAt.push({ after: r.last, got: stamp.frame, nth: r.pattern });
          }
          else if (r.last !== null && stamp.frame === r.last) r.repeated++;
          else r.last = stamp.frame;
          const age = window.ConfabPattern.ageMs(stamp);
          if (age !== null) {
            r.latencies.push(age);
            if (r.latencies.length > 5000) r.latencies.splice(0, 2500);
          }
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  // One entry per remote peer: what was read from its video plus the browser's own stats.
  async function report(peers, joinedAt) {
    const out = [];
    for (const p of peers) {
      const r = p.readings || newReadings();
      const stats = { framesDecoded: 0, freezeCount: 0, codec: null, audioPackets: 0, audioLevel: 0 };
      if (p.pc) {
        const rep = await p.pc.getStats();
        const codecs = {};
        rep.forEach((s) => {
          if (s.type === 'codec') codecs[s.id] = s.mimeType;
        });
        const shareMids = p.share ? p.share.mids : [];
        rep.forEach((s) => {
          // A shared screen's stream is read apart (below), not as the camera.
          if (s.type === 'inbound-rtp' && s.kind === 'video' && !shareMids.includes(s.mid)) {
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
      // From the first frame to now: a stall at the end counts against the rate (a
      // benchmark divides by this, as confab-peer's figures run to its end).
      const watchedMs = r.first ? performance.now() - r.first : 0;
      const setup = r.first && joinedAt ? r.first - joinedAt : null;
      const q = (x) => (lat.length ? lat[Math.round((lat.length - 1) * x)] : null);
      const sr = p.share ? p.share.readings : null;
      const share = sr ? {
        shown: p.share.shown, stage: p.share.stage, frames: sr.frames, pattern_frames: sr.pattern, frames_out_of_order: sr.outOfOrder, out_of_order_at: sr.outOfOrderAt, width: sr.width, height: sr.height,
      } : null;
      out.push({
        id: p.id, name: p.name, phase: p.phase, share,
        frames: r.frames, pattern_frames: r.pattern, freezes: r.freezes, freeze_ms_total: r.freezeMs, watched_ms: watchedMs, frames_out_of_order: r.outOfOrder, out_of_order_at: r.outOfOrderAt, frames_repeated: r.repeated, last_frame: r.last,
        width: r.width, height: r.height,
        latency_ms_p50: q(0.5), latency_ms_p95: q(0.95), fps, setup_ms: setup, verification_code: p.verification_code || null, chat: p.chat || [], layer: p.layer || null, ...stats,
      });
    }
    return out;
  }

  window.ConfabMeasure = { testStream, newReadings, presented, watch, report };
})();
