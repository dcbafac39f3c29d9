// The shared scenario tables (crates/confab-call/scenarios/*.json) run against the web client's
// port of the call rules (crates/confab-signal/web/callcore.js). The Rust rules run the same
// files in crates/confab-call/tests/scenarios.rs.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', '..');
const { CallCore, LinkHealth, LayerChoice, MeshReturn, Verifier } = require(path.join(root, 'crates/confab-signal/web/callcore.js'));
const load = (name) => JSON.parse(fs.readFileSync(path.join(root, 'crates/confab-call/scenarios', name), 'utf8'));

function step(core, at, input) {
  const [kind, arg] = typeof input === 'string' ? [input, null] : Object.entries(input)[0];
  let error = null;
  switch (kind) {
    case 'welcome': core.welcome(arg.id, arg.peers, at); break;
    case 'peer-joined': core.peerJoined(arg.id, arg.name, at); break;
    case 'peer-left': core.peerLeft(arg.id, at); break;
    case 'disconnected': core.disconnected(); break;
    case 'signal': core.signal(arg.from, arg.data, at); break;
    case 'link-connected': core.linkConnected(arg.peer, at); break;
    case 'link-failed': core.linkFailed(arg.peer, at); break;
    case 'call': error = core.call(arg.peer, at); break;
    case 'call-when-present': error = core.callWhenPresent(at); break;
    case 'accept': error = core.accept(arg.peer, at); break;
    case 'decline': error = core.decline(arg.peer, at); break;
    case 'hang-up': core.hangUp(at); break;
    case 'leave': core.leave(at); break;
    case 'set-media': core.setMedia(arg.audio, arg.video); break;
    case 'tick': core.tick(at); break;
    default: throw new Error(`unknown input ${kind}`);
  }
  const out = core.drain().filter((a) => a.action !== 'changed');
  return { out, error };
}

function stateOf(core) {
  const phases = {};
  for (const p of core.participants()) phases[p.id] = p.phase;
  return { in_call: core.inCall, phases };
}

const flow = load('call-flow.json');
for (const s of flow.scenarios) {
  test(`call flow: ${s.about}`, () => {
    const core = new CallCore(s.session, s.secret, s.auto_accept);
    s.steps.forEach((st, i) => {
      const { out, error } = step(core, st.at, st.in);
      const where = `step ${i} ${JSON.stringify(st.in)}`;
      assert.deepStrictEqual(out, st.out || [], `${where}: actions`);
      assert.strictEqual(error, st.error || null, `${where}: error`);
      if (st.state) assert.deepStrictEqual(stateOf(core), st.state, `${where}: state`);
    });
  });
}

const health = load('link-health.json');
for (const s of health.scenarios) {
  test(`link health: ${s.about}`, () => {
    const h = new LinkHealth(s.offerer, 0);
    s.steps.forEach((st, i) => {
      let out = [];
      const inputs = {
        tick: (at) => h.tick(at),
        'signaling-back': (at) => h.signalingBack(at),
        'peer-back': (at) => h.peerBack(at),
        'path-gone': (at) => h.pathGone(at),
      };
      if (typeof st.in === 'string' && inputs[st.in]) {
        const a = inputs[st.in](st.at);
        if (a !== null) out = [a];
      } else if (st.in === 'signaling-down') {
        h.signalingDown();
      } else if (h.onState(st.in.state, st.at)) {
        out = ['first-connected'];
      }
      assert.deepStrictEqual(out, st.out || [], `step ${i} ${JSON.stringify(st.in)}`);
    });
  });
}

const layers = load('layers.json');
for (const s of layers.scenarios) {
  test(`layers: ${s.about}`, () => {
    const c = new LayerChoice(0);
    s.steps.forEach((st, i) => {
      const a = c.tick(st.at, { lossPct: st.in.loss, keyframeRequests: st.in.requests, receiving: st.in.receiving });
      assert.deepStrictEqual(a === null ? [] : [a], st.out || [], `step ${i} at ${st.at}`);
    });
  });
}

const meshReturn = load('mesh-return.json');
for (const s of meshReturn.scenarios) {
  test(`mesh return: ${s.about}`, () => {
    const m = new MeshReturn();
    s.steps.forEach((st, i) => {
      let out = [];
      if (st.in.moved) m.moved(st.at);
      else if (m.tick(st.at, st.in.small)) out = ['mesh'];
      assert.deepStrictEqual(out, st.out || [], `step ${i} at ${st.at}`);
    });
  });
}

const verify = load('verify.json');
for (const s of verify.scenarios) {
  test(`verify: ${s.about}`, () => {
    const v = new Verifier(s.role, s.random, s.binding);
    s.steps.forEach((st, i) => {
      const [kind, arg] = Object.entries(st.in)[0];
      const sent = kind === 'local-description' ? v.localDescription(arg)
        : kind === 'remote-description' ? v.remoteDescription(arg)
          : v.signal(arg.commit, arg.reveal);
      assert.deepStrictEqual(sent === null ? [] : [sent], st.out, `step ${i} sent`);
      assert.deepStrictEqual(v.result, st.result, `step ${i} result`);
    });
  });
}

test('sha256 matches Node\'s for ASCII, UTF-8 and block edges', () => {
  const { sha256Hex } = require(path.join(root, 'crates/confab-signal/web/callcore.js'));
  const crypto = require('node:crypto');
  for (const t of ['', 'abc', 'Zoë 🎥', 'a'.repeat(55), 'a'.repeat(56), 'a'.repeat(64), 'x'.repeat(1000)]) {
    assert.strictEqual(sha256Hex(t), crypto.createHash('sha256').update(t, 'utf8').digest('hex'), JSON.stringify(t.slice(0, 10)));
  }
});

test('the tables are not empty', () => {
  assert.ok(flow.scenarios.length >= 20);
  assert.ok(health.scenarios.length >= 4);
});
