// The web client's side of calls through an SFU (crates/confab-signal/web/sfu.js): whose feed
// is whose, and what the publisher tells Janus about its streams. The engine's rules are the
// same (crates/confab-engine/src/sfu.rs, tests named after the same attacks).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { Feeds, descriptions } = require(path.join(__dirname, '..', '..', 'crates/confab-signal/web/sfu.js'));

test('a feed is someone’s when they named it and publish it under their id', () => {
  const f = new Feeds();
  f.published([{ id: 11, display: 'ann' }]);
  assert.equal(f.feedOf('ann'), null, 'Ann has not named it');
  f.name('ann', 11);
  assert.equal(f.feedOf('ann'), 11);
  f.gone(11);
  assert.equal(f.feedOf('ann'), null, 'unpublished');
});

test('spoofed display at the SFU', () => {
  const f = new Feeds();
  f.published([{ id: 66, display: 'ann' }, { id: 11, display: 'ann' }]);
  f.name('ann', 11);
  assert.equal(f.feedOf('ann'), 11);
  f.name('mallory', 66);
  assert.equal(f.feedOf('mallory'), null);
});

test('claimed foreign feed', () => {
  const f = new Feeds();
  f.published([{ id: 11, display: 'ann' }, { id: 22, display: 'mallory' }]);
  f.name('ann', 11);
  f.name('mallory', 11);
  assert.equal(f.feedOf('mallory'), null);
  assert.equal(f.feedOf('ann'), 11);
});

test('feed flood', () => {
  const f = new Feeds();
  f.published(Array.from({ length: 10000 }, (_, i) => ({ id: i, display: `p${i}` })));
  for (let i = 0; i < 10000; i++) f.name(`p${i}`, i);
  assert.ok(f.present.size <= 64 && f.named.size <= 64);
  f.published([{ id: 'x', display: 1 }, null, 7]);
  assert.ok(f.present.size <= 64);
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

// A member's later feeds: derived as confab_protocol::sfu_feed derives them (the same table).
test('later feeds are derived from the token as the server derives them', async () => {
  const { sfuFeed, feedFor } = require(path.join(__dirname, '..', '..', 'crates/confab-signal/web/sfu.js'));
  const table = require(path.join(__dirname, '..', '..', 'crates/confab-protocol/tests/sfu-feeds.json'));
  assert.ok(table.cases.length >= 5);
  for (const c of table.cases) assert.equal(await sfuFeed(c.token, c.generation), c.feed, JSON.stringify(c));
  const info = { feed: 7, token: 't0k3n', generations: 3 };
  assert.equal(await feedFor(info, 0), 7, 'first the server’s');
  assert.equal(await feedFor(info, 1), 4704766694311655);
  assert.equal(await feedFor(info, 9), await feedFor(info, 3), 'past the last, the last');
  assert.equal(await feedFor({ feed: 7, token: 't0k3n', generations: 0 }, 5), 7, 'an older server');
  assert.equal(await feedFor({ feed: 7, token: null, generations: 3 }, 5), 7, 'no token');
});

// Someone out of our call: a publisher that takes over the feed they named is not them.
test('taken over feed after a hang up', () => {
  const f = new Feeds();
  f.published([{ id: 11, display: 'ann' }]);
  f.name('ann', 11);
  f.forget('ann');
  f.gone(11);
  f.published([{ id: 11, display: 'ann' }]);
  assert.equal(f.feedOf('ann'), null, 'Ann has not named a feed since she came back');
  f.name('ann', 12);
  f.published([{ id: 12, display: 'ann' }]);
  assert.equal(f.feedOf('ann'), 12);
});
