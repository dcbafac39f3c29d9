// The web client's side of calls through an SFU (crates/confab-signal/web/sfu.js): a publisher
// subscribes its own feed for the people its call let in (and nobody else), and what it tells
// Janus about its streams. The engine's rules are the same (crates/confab-engine/src/sfu.rs).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { JanusSession, descriptions } = require(path.join(__dirname, '..', '..', 'crates/confab-signal/web/sfu.js'));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A Janus of our own over a fake WebSocket: a subscription of our feed is refused (428) until
// our publisher's PeerConnection is up (webrtcup), and `refuse` more times after.
function fakeJanus() {
  const j = { sent: [], detached: [], up: false, refuse: 0, next: 100, ws: null };
  const reply = (m) => setTimeout(() => j.ws.onmessage({ data: JSON.stringify(m) }), 0);
  globalThis.WebSocket = class {
    constructor() {
      j.ws = this;
      setTimeout(() => this.onopen(), 0);
    }
    close() {}
    send(text) {
      const m = JSON.parse(text);
      j.sent.push(m);
      const t = m.transaction;
      const event = (data, jsep) => reply({ janus: 'event', transaction: t, sender: m.handle_id, plugindata: { data }, ...(jsep ? { jsep } : {}) });
      if (m.janus === 'create') reply({ janus: 'success', transaction: t, data: { id: 1 } });
      else if (m.janus === 'attach') reply({ janus: 'success', transaction: t, data: { id: j.next++ } });
      else if (m.janus === 'detach') {
        j.detached.push(m.handle_id);
        reply({ janus: 'success', transaction: t });
      } else if (m.janus === 'message' && m.body.ptype === 'publisher') event({ id: 77, private_id: 555 });
      else if (m.janus === 'message' && m.body.ptype === 'subscriber') {
        assert.equal(m.body.feed, 77, 'our own feed');
        assert.equal(m.body.private_id, 555, 'our own private_id');
        if (!j.up || j.refuse-- > 0) event({ error_code: 428, error: 'No such feed' });
        else event({ streams: [{ mid: '0' }, { mid: '2', feed_description: 'share' }] }, { type: 'offer', sdp: `offer-${m.handle_id}` });
      } else if (m.janus === 'message') event({});
    }
  };
  j.push = reply;
  return j;
}

async function session() {
  const j = fakeJanus();
  const offers = [];
  const told = { kicked: 0 };
  const s = new JanusSession({ url: 'janus+ws://janus', room: 5, pin: 'p', token: 'tok' }, 'me', {
    offer: (...a) => offers.push(a), failed() {}, kicked() { told.kicked++; },
  });
  await s.start();
  return { j, s, offers, told };
}

// The server removes our own room once we are no longer in the Confab room: the session
// ends and says so (the page publishes anew when back), once.
test('our room removed by the server ends the session', async () => {
  const { j, s, told } = await session();
  j.push({ janus: 'event', sender: s.publisher, plugindata: { data: { videoroom: 'destroyed', room: 5 } } });
  await sleep(20);
  assert.equal(told.kicked, 1);
  assert.ok(s.closed);
  j.push({ janus: 'event', sender: s.publisher, plugindata: { data: { videoroom: 'destroyed', room: 5 } } });
  await sleep(20);
  assert.equal(told.kicked, 1, 'once');
});

test('nobody is subscribed for before our media is up at Janus, everyone let in after', async () => {
  const { j, s, offers } = await session();
  s.admit('bob');
  s.admit('carol');
  await sleep(20);
  assert.equal(offers.length, 0);
  j.push({ janus: 'webrtcup', sender: 999 });
  await sleep(20);
  assert.equal(offers.length, 0, 'someone else\'s handle');
  j.up = true;
  j.refuse = 2;
  j.push({ janus: 'webrtcup', sender: s.publisher });
  await sleep(800);
  assert.deepEqual(offers.map((o) => o[0]).sort(), ['bob', 'carol']);
  const bob = offers.find((o) => o[0] === 'bob');
  assert.deepEqual(bob.slice(2), [`offer-${bob[1]}`, ['2']]);
  s.close();
});

test('answers, candidates and layers only from the person a subscription is for', async () => {
  const { j, s, offers } = await session();
  j.up = true;
  j.push({ janus: 'webrtcup', sender: s.publisher });
  s.admit('bob');
  s.admit('carol');
  await sleep(50);
  const sub = offers.find((o) => o[0] === 'bob')[1];
  j.sent.length = 0;
  s.answer('bob', sub + 1000, 'x');
  s.answer('carol', sub, 'x');
  s.candidate('carol', sub, { candidate: 'c', sdpMid: '0' });
  s.layer('carol', sub, 'half');
  assert.equal(j.sent.length, 0);
  s.answer('bob', sub, 'answer');
  assert.deepEqual([j.sent[0].handle_id, j.sent[0].body, j.sent[0].jsep], [sub, { request: 'start', room: 5 }, { type: 'answer', sdp: 'answer' }]);
  for (let i = 0; i < 100; i++) s.answer('bob', sub, 'again');
  assert.equal(j.sent.length, 1, 'one answer an offer');
  j.sent.length = 0;
  for (let i = 0; i < 1000; i++) s.candidate('bob', sub, { candidate: `c${i}`, sdpMid: '0' });
  assert.equal(j.sent.filter((m) => m.janus === 'trickle' && m.handle_id === sub).length, 64, 'a candidate flood');
  j.sent.length = 0;
  s.layer('bob', sub, 'full');
  s.layer('bob', sub, 'full');
  for (let i = 0; i < 100; i++) s.layer('bob', sub, i % 2 ? 'full' : 'half');
  assert.deepEqual(j.sent.map((m) => m.body.substream), [1], 'layers flipped to and fro: once a second');
  // Janus renegotiates: the same sub, a new offer.
  j.push({ janus: 'event', sender: sub, plugindata: { data: { videoroom: 'updated' } }, jsep: { type: 'offer', sdp: 'again' } });
  await sleep(20);
  assert.deepEqual(offers.at(-1), ['bob', sub, 'again', ['2']]);
  s.close();
});

test('someone let go is unsubscribed at once, also while their handle attaches', async () => {
  const { j, s, offers } = await session();
  j.up = true;
  j.push({ janus: 'webrtcup', sender: s.publisher });
  s.admit('bob');
  await sleep(50);
  const sub = offers[0][1];
  s.release('bob');
  assert.ok(j.detached.includes(sub));
  j.sent.length = 0;
  s.answer('bob', sub, 'x');
  s.candidate('bob', sub, { candidate: 'c' });
  assert.equal(j.sent.length, 0);
  s.admit('dave');
  s.release('dave');
  await sleep(50);
  assert.equal(offers.length, 1, 'nothing for dave');
  assert.ok(j.detached.includes(j.next - 1), 'his handle detached');
  s.admit('erin');
  s.release('erin');
  s.admit('erin');
  await sleep(50);
  assert.equal(offers.filter((o) => o[0] === 'erin').length, 1, 'let in again: one subscription');
  s.close();
});

test('the publisher names its shared screen for Janus', () => {
  const sdp = 'v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:s a1\r\n' +
    'm=video 9 X 102\r\na=mid:1\r\na=msid:s v1\r\nm=video 9 X 102\r\na=mid:2\r\na=msid:s confab-1-share-7\r\n';
  assert.deepEqual(descriptions(sdp), [
    { mid: '0', description: 'microphone' },
    { mid: '1', description: 'camera' },
    { mid: '2', description: 'share' },
  ]);
  // A browser's screen has an id of its own: its place says it (the second video section);
  // a section without a track (no msid) is described all the same.
  const chrome = 'v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:s a1\r\n' +
    'm=video 9 X 102\r\na=mid:1\r\na=msid:s v1\r\nm=video 9 X 102\r\na=mid:2\r\n';
  assert.deepEqual(descriptions(chrome), [
    { mid: '0', description: 'microphone' },
    { mid: '1', description: 'camera' },
    { mid: '2', description: 'share' },
  ]);
});

