// The stats panel's bookkeeping (ui/stats.js).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const S = require(path.join(__dirname, '..', '..', 'ui', 'stats.js'));

const reading = (id, fps, extra = {}) => ({
  id, name: id, verification_code: '123 456',
  video: { codec: 'H264', width: 640, height: 480, fps, latency_ms_p50: 21.4 },
  audio: { level: 0.2 }, ...extra,
});

test('a minute of each figure is kept, per person', () => {
  const h = S.history();
  for (let t = 0; t <= 90_000; t += 1000) S.add(h, [reading('a', 30)], t);
  const fps = h.get('a').get('Frames');
  assert.equal(fps.length, 61);
  assert.equal(fps[0][0], 30_000);
  // Someone who left is forgotten.
  S.add(h, [reading('b', 25)], 91_000);
  assert.deepEqual([...h.keys()], ['b']);
});

test('rows show what the engine reports, formatted, and skip what it does not', () => {
  const h = S.add(S.history(), [reading('a', 29.7, { network: { rtt_ms: 48, loss_pct: 1.25, send_kbps: null, local_candidate: 'host', remote_candidate: 'relay' } })], 0);
  const rows = S.rows(reading('a', 29.7, { network: { rtt_ms: 48, loss_pct: 1.25, send_kbps: null, local_candidate: 'host', remote_candidate: 'relay' } }), h);
  const byLabel = Object.fromEntries(rows.map((r) => [r.label, r.text]));
  assert.equal(byLabel['Round trip'], '48 ms');
  assert.equal(byLabel['Loss (to me)'], '1.3 %');
  assert.equal(byLabel.Frames, '29.7 fps');
  assert.equal(byLabel.Picture, '640×480');
  assert.equal(byLabel.Codec, 'H264');
  assert.equal(byLabel.Path, 'host → relay');
  assert.equal(byLabel.Verification, '123 456');
  assert.ok(!('Sending' in byLabel), 'no figure, no row');
  assert.ok(!('My picture to them' in byLabel), 'none sent yet, no row');
  const narrow = S.rows(reading('a', 12, { network: { estimate_kbps: 264.4, camera_scale: 4 } }), h);
  const n = Object.fromEntries(narrow.map((r) => [r.label, r.text]));
  assert.equal(n['Line (estimate)'], '264 kbit/s');
  assert.equal(n['My picture to them'], 'quarter size (narrow line)');
  assert.ok(rows.find((r) => r.label === 'Frames').points.length === 1);
  assert.equal(rows.find((r) => r.label === 'Codec').points, null);
});

test('sparklines span the last minute and fit the largest value', () => {
  const pts = [[0, 0], [30_000, 10], [60_000, 5]];
  const line = S.sparkline(pts, 60_000, 120, 24).split(' ').map((p) => p.split(',').map(Number));
  assert.deepEqual(line.map((p) => p[0]), [0, 60, 120]);
  assert.equal(line[1][1], 1, 'the largest value touches the top');
  assert.equal(line[0][1], 23, 'zero at the bottom');
  assert.equal(S.sparkline([[0, 1]], 0, 100, 20), '', 'one point is no line');
});

test('the quality dot weighs pictures, round trip and loss together; the worst decides', () => {
  assert.deepEqual(S.quality(null, null), { q: '', title: '' }, 'nothing known, no dot');
  assert.equal(S.quality(30, { rtt_ms: 40, loss_pct: 0 }).q, 'good');
  assert.equal(S.quality(30, { rtt_ms: 40, loss_pct: 0 }).title, 'Good connection: 30 frames per second, 40 ms round trip, 0.0 % lost');
  assert.equal(S.quality(30, { rtt_ms: 320, loss_pct: 0 }).q, 'fair', 'a long round trip alone');
  assert.equal(S.quality(30, { rtt_ms: 40, loss_pct: 12 }).q, 'poor', 'heavy loss alone, smooth pictures or not');
  assert.equal(S.quality(12, { rtt_ms: 40, loss_pct: 0 }).q, 'fair', 'few pictures alone');
  assert.equal(S.quality(5, { rtt_ms: 600, loss_pct: 4 }).q, 'poor');
  // Camera off: the network alone.
  const off = S.quality(null, { rtt_ms: 90, loss_pct: 5 });
  assert.equal(off.q, 'fair');
  assert.equal(off.title, 'Fair connection: 90 ms round trip, 5.0 % lost');
  // Before the first measurement of the link: pictures alone.
  assert.equal(S.quality(25, { rtt_ms: null, loss_pct: null }).q, 'good');
});

test('the panel says which microphone processing runs, and the echo canceller figures once there', () => {
  assert.deepEqual(S.processingRows(null), []);
  const all = { settings: { echo_cancellation: true, noise_suppression: true, auto_gain: true }, erle_db: 23.46, estimated_delay_ms: 40, panics: 0 };
  assert.deepEqual(S.processingRows(all), [
    { label: 'Processing', text: 'echo cancellation, noise suppression, automatic gain' },
    { label: 'Echo reduced by', text: '23.5 dB' },
    { label: 'Echo delay', text: '40 ms' },
  ]);
  const off = { settings: { echo_cancellation: false, noise_suppression: false, auto_gain: false }, erle_db: null, panics: 2 };
  assert.deepEqual(S.processingRows(off), [
    { label: 'Processing', text: 'off' },
    { label: 'Processing restarts', text: '2' },
  ]);
});
