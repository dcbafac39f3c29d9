// The stats panel's bookkeeping, DOM-free (tests/js/stats.test.js): the last 60 s of each
// figure per person, the rows shown (whatever the engine reports; figures it does not have yet
// are left out), and the points of a sparkline.
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ConfabStats = api;
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';

  const WINDOW_MS = 60_000;

  // The engine's `network` figures (absent before the link measured anything).
  const net = (s) => s.network || {};
  // "host → relay": the selected candidate pair's types, ours first.
  const path = (n) => (n.local_candidate && n.remote_candidate ? `${n.local_candidate} → ${n.remote_candidate}` : null);

  // Our camera as sent on a link: as captured, or smaller while the line is narrow.
  const SCALE = { 1: 'full size', 2: 'half size (narrow line)', 4: 'quarter size (narrow line)' };

  // [label, how to read it from a PeerStats, unit, graphed]
  const ROWS = [
    ['Round trip', (s) => net(s).rtt_ms, 'ms', true],
    ['Loss (to me)', (s) => net(s).loss_pct, '%', true],
    ['Loss (from me)', (s) => net(s).send_loss_pct, '%', true],
    ['Receiving', (s) => net(s).recv_kbps, 'kbit/s', true],
    ['Sending', (s) => net(s).send_kbps, 'kbit/s', true],
    ['Line (estimate)', (s) => net(s).estimate_kbps, 'kbit/s', true],
    ['My picture to them', (s) => SCALE[net(s).camera_scale] || null, '', false],
    ['Frames', (s) => s.video && s.video.fps, 'fps', true],
    ['Picture', (s) => (s.video && s.video.width ? `${s.video.width}×${s.video.height}` : null), '', false],
    ['Codec', (s) => s.video && s.video.codec, '', false],
    ['Delay (capture → picture)', (s) => s.video && s.video.latency_ms_p50, 'ms', true],
    ['Audio level', (s) => s.audio && s.audio.level, '', true],
    ['Audio made up (lost)', (s) => s.audio && s.audio.concealed_ms, 'ms', false],
    ['Audio rebuilt (FEC)', (s) => s.audio && s.audio.fec_recovered, 'packets', false],
    ['Path', (s) => path(net(s)), '', false],
    ['Freezes', (s) => s.video && s.video.freezes, '', false],
    ['Verification', (s) => s.verification_code, '', false],
  ];

  function history() {
    return new Map(); // peer id → Map(label → [[t, v], …])
  }

  // Adds one stats reading (the engine's list) at time `t`; drops what is older than 60 s and
  // the people no longer reported.
  function add(hist, list, t) {
    const seen = new Set();
    for (const s of list) {
      seen.add(s.id);
      if (!hist.has(s.id)) hist.set(s.id, new Map());
      const h = hist.get(s.id);
      for (const [label, read, , graphed] of ROWS) {
        if (!graphed) continue;
        const v = read(s);
        if (typeof v !== 'number' || !Number.isFinite(v)) continue;
        if (!h.has(label)) h.set(label, []);
        const pts = h.get(label);
        pts.push([t, v]);
        while (pts.length && t - pts[0][0] > WINDOW_MS) pts.shift();
      }
    }
    for (const id of [...hist.keys()]) if (!seen.has(id)) hist.delete(id);
    return hist;
  }

  function format(v, unit) {
    if (typeof v === 'number') {
      const n = Math.abs(v) >= 100 || Number.isInteger(v) ? Math.round(v) : v.toFixed(v < 1 ? 2 : 1);
      return unit ? `${n} ${unit}` : String(n);
    }
    return String(v);
  }

  // The rows for one person: [{label, text, points}] for the figures the engine has.
  function rows(s, hist) {
    const h = hist.get(s.id) || new Map();
    const out = [];
    for (const [label, read, unit, graphed] of ROWS) {
      const v = read(s);
      if (v === null || v === undefined || v === '') continue;
      out.push({ label, text: format(v, unit), points: graphed ? h.get(label) || [] : null });
    }
    return out;
  }

  // The dot on a person's tile: 'good', 'fair' or 'poor' from the pictures drawn per second
  // (null when their camera is off), the round trip and the loss together; the worst figure
  // decides, and the title says which figures it saw. '' when nothing is known yet.
  const LIMITS = { fps: [20, 8], rtt_ms: [250, 500], loss_pct: [3, 10] };
  function quality(fps, network) {
    const n = network || {};
    const parts = [];
    let level = -1; // -1 unknown, 0 good, 1 fair, 2 poor
    const judge = (v, [fair, poor], higherIsWorse) => {
      const bad = (x) => (higherIsWorse ? v > x : v < x);
      level = Math.max(level, bad(poor) ? 2 : bad(fair) ? 1 : 0);
    };
    if (typeof fps === 'number') {
      judge(fps, LIMITS.fps, false);
      parts.push(`${Math.round(fps)} frames per second`);
    }
    if (typeof n.rtt_ms === 'number') {
      judge(n.rtt_ms, LIMITS.rtt_ms, true);
      parts.push(`${Math.round(n.rtt_ms)} ms round trip`);
    }
    if (typeof n.loss_pct === 'number') {
      judge(n.loss_pct, LIMITS.loss_pct, true);
      parts.push(`${n.loss_pct < 10 ? n.loss_pct.toFixed(1) : Math.round(n.loss_pct)} % lost`);
    }
    const q = ['', 'good', 'fair', 'poor'][level + 1];
    const word = { good: 'Good connection', fair: 'Fair connection', poor: 'Poor connection' }[q];
    return { q, title: q ? `${word}: ${parts.join(', ')}` : '' };
  }

  // The rows about our own microphone's processing (the engine's ProcessingStats): which of
  // the three are on, and what the echo canceller reports once it has something to say.
  function processingRows(p) {
    if (!p || !p.settings) return [];
    const s = p.settings;
    const on = [['echo_cancellation', 'echo cancellation'], ['noise_suppression', 'noise suppression'], ['auto_gain', 'automatic gain']]
      .filter(([k]) => s[k]).map(([, w]) => w);
    const rows = [{ label: 'Processing', text: on.length ? on.join(', ') : 'off' }];
    if (s.echo_cancellation && typeof p.erle_db === 'number' && Number.isFinite(p.erle_db)) {
      rows.push({ label: 'Echo reduced by', text: format(p.erle_db, 'dB') });
    }
    if (s.echo_cancellation && typeof p.estimated_delay_ms === 'number') {
      rows.push({ label: 'Echo delay', text: format(p.estimated_delay_ms, 'ms') });
    }
    if (p.panics) rows.push({ label: 'Processing restarts', text: String(p.panics) });
    return rows;
  }

  // SVG polyline points for a sparkline `w`×`h` over the last 60 s ending at `t`; the scale
  // starts at 0 and fits the largest value.
  function sparkline(points, t, w, h) {
    if (!points || points.length < 2) return '';
    const max = Math.max(...points.map((p) => p[1]), 1e-9);
    return points
      .map(([pt, v]) => {
        const x = Math.max(0, w - ((t - pt) / WINDOW_MS) * w);
        const y = h - (v / max) * (h - 2) - 1;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join(' ');
  }

  return { history, add, rows, processingRows, quality, sparkline, format, WINDOW_MS };
});
