//! The cluster shell: several `confab-signal` nodes serve the same rooms through Redis.
//!
//! The room rules stay in `confab_rooms` (a clustered [`confab_rooms::Rooms`]); this module only
//! carries their cluster work to Redis and Redis's news back, in three tasks:
//!
//! - **ops**: the room logic's [`ClusterOp`]s in order — a claim runs one Lua script that checks
//!   the password and the capacity and takes the seat atomically for every node; a release frees
//!   it; a signal for a member held elsewhere is published to that node's channel;
//! - **subscriber**: this node's channel `confab:to:NODE` (joins and leaves in rooms where it has
//!   members, published by the scripts; signals from other nodes);
//! - **heartbeat**: every second `confab:node:NODE` is set to expire in 3 s; the nodes of remote
//!   members are checked and a dead one's seats are reaped (one script, so every survivor may
//!   try and only one does the work) and announced as `peer-left`; every 5 s (and after any gap)
//!   each room's snapshot is read, a backstop for pub/sub's at-most-once delivery. Each
//!   heartbeat the node also pings itself through its channel: a subscription that hears none
//!   of three is dropped and made again (a connection can die without an error). A node that
//!   has not reached Redis for as long as a heartbeat lives has been reaped by the others: its
//!   people hear the other nodes' people leave too ([`confab_rooms::Rooms::store_lost`]), so
//!   both sides of a split see the same. When Redis comes back, the node registers its seats
//!   again before anything else (the others hear them join), each as a claim would be (a
//!   room filled, or made again with another password, meanwhile refuses it: that connection
//!   is closed so that its client joins again), and reads every room afresh (its people hear
//!   the others join).
//!
//! Keys: `confab:room:ROOM` (hash: `~pw`, `~ver`, and one field per member:
//! `NODE\nVER\nSFU\nREJOIN\nNAME`, VER the version its join made: members are listed in join
//! order; SFU its token at the SFU (an older node's `FEED:TOKEN`), or empty; REJOIN the
//! SHA-256 of its rejoin token, which a join on any node may present to free the seat at once
//! and take over its SFU token),
//! `confab:seats:NODE` (set of `ROOM\nID`), `confab:node:NODE` (heartbeat), `confab:ver` (the
//! version counter, one for all rooms so that a room made again never goes back in version).

use crate::hub::Hub;
use confab_protocol::PeerId;
use confab_rooms::{ClaimResult, ClusterOp, ConnId, RemotePeer, Seat, SfuSeat};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult, Script};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// How long a node's heartbeat lives; a node silent this long is reaped by the others.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SNAPSHOT_EVERY: u32 = 5;
/// One Redis command may take this long before the node treats Redis as down.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);
/// Cluster work queued at most; more is handled as if Redis were down (never waited for).
pub const OPS_QUEUE: usize = 4096;
/// Cluster work taken off the queue at once.
const OPS_BATCH: usize = 256;
/// Heartbeats whose ping may go unheard before the subscription is taken for dead.
const PINGS_UNHEARD: u64 = 2;

/// Shared by every script: frees one seat, raises the room's version and tells the room's
/// other nodes. Only the node holding the seat frees it.
const RELEASE_FN: &str = r#"
-- A seat's lines: NODE, VER, SFU, REJOIN, NAME (a seat of an older node: NODE, VER, NAME).
local function lines(v)
  local t = {}
  for line in string.gmatch(v .. '\n', '([^\n]*)\n') do table.insert(t, line) end
  if #t == 4 then return {t[1], t[2], t[3], '', t[4]} end
  if #t < 4 then return {t[1], t[2], '', '', t[#t]} end
  return t
end
local function members_of(h)
  local all = redis.call('HGETALL', h)
  local seated, nodes = {}, {}
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 1) ~= '~' then
      local t = lines(all[i + 1])
      table.insert(seated, {f, t[1], t[3], t[5], tonumber(t[2])})
      nodes[t[1]] = true
    end
  end
  -- In join order: a hash keeps no order once it outgrows its compact encoding.
  table.sort(seated, function(x, y) return x[5] < y[5] end)
  local members = {}
  for _, m in ipairs(seated) do
    table.insert(members, m[1])
    table.insert(members, m[2])
    table.insert(members, m[3])
    table.insert(members, m[4])
  end
  return members, nodes
end
local function publish(nodes, except, ev)
  for n, _ in pairs(nodes) do
    if n ~= except then redis.call('PUBLISH', 'confab:to:' .. n, ev) end
  end
end
local function release(room, id, node)
  local h = 'confab:room:' .. room
  redis.call('SREM', 'confab:seats:' .. node, room .. '\n' .. id)
  local v = redis.call('HGET', h, id)
  if not v then return 0 end
  local nl = string.find(v, '\n', 1, true)
  if string.sub(v, 1, nl - 1) ~= node then return 0 end
  redis.call('HDEL', h, id)
  local ver = redis.call('INCR', 'confab:ver')
  local members, nodes = members_of(h)
  if #members == 0 then
    redis.call('DEL', h)
  else
    redis.call('HSET', h, '~ver', ver)
    publish(nodes, node, cjson.encode({t = 'leave', room = room, id = id, ver = ver}))
  end
  return 1
end
local function seat(room, id, node, name, pw, sfu, rejoin)
  local h = 'confab:room:' .. room
  local members, nodes = members_of(h)
  if #members == 0 then
    redis.call('DEL', h)
    redis.call('HSET', h, '~pw', pw)
  end
  local ver = redis.call('INCR', 'confab:ver')
  redis.call('HSET', h, '~ver', ver, id,
             node .. '\n' .. ver .. '\n' .. sfu .. '\n' .. rejoin .. '\n' .. name)
  redis.call('SADD', 'confab:seats:' .. node, room .. '\n' .. id)
  publish(nodes, node, cjson.encode({t = 'join', room = room, id = id, name = name, node = node, ver = ver, sfu = sfu}))
  return ver, members
end
"#;

/// ARGV: room, id, node, name, password (hex SHA-256 or ""), capacity, SFU place ("" if none),
/// the digest of this membership's rejoin token, the digest of the token the join presented
/// ("" if none). A presented token frees the seat it names (after the password, before the
/// count), and its node is told to close that member's connection; the seat's SFU place
/// carries over to the new one (when both have one: the same person, proven by the token,
/// keeps their VideoRoom room); the token's digest is remembered as replaced in that room for
/// 10 minutes (`confab:gone:ROOM:DIGEST`; also when the room was empty, its seats reaped), so
/// that a node that missed the news does not register that seat again (`RESTORE`). Answers
/// `ok`, the version, the room's password, the seat's SFU place, then the other members.
const CLAIM: &str = r#"
local room, id, node, name, pw, cap = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local sfu, rejoin, replaces = ARGV[7], ARGV[8], ARGV[9]
local h = 'confab:room:' .. room
local members = members_of(h)
local want = redis.call('HGET', h, '~pw') or ''
if #members > 0 and want ~= '' and want ~= pw then return {'wrong-password'} end
if replaces ~= '' then
  redis.call('SET', 'confab:gone:' .. room .. ':' .. replaces, '1', 'EX', 600)
end
if #members > 0 then
  if replaces ~= '' then
    local all = redis.call('HGETALL', h)
    for i = 1, #all, 2 do
      local f = all[i]
      if string.sub(f, 1, 1) ~= '~' and f ~= id then
        local t = lines(all[i + 1])
        if t[4] == replaces then
          if sfu ~= '' and t[3] ~= '' then sfu = t[3] end
          release(room, f, t[1])
          if t[1] ~= node then
            redis.call('PUBLISH', 'confab:to:' .. t[1], cjson.encode({t = 'replaced', room = room, id = f}))
          end
          break
        end
      end
    end
    members = members_of(h)
  end
  if #members / 4 >= cap then return {'full'} end
else
  want = pw
end
local ver, before = seat(room, id, node, name, want, sfu, rejoin)
return {'ok', tostring(ver), want, sfu, unpack(before)}
"#;

/// ARGV: room, id, node.
const RELEASE: &str = "return release(ARGV[1], ARGV[2], ARGV[3])";

/// ARGV: node. Frees every seat of a node whose heartbeat has expired; answers the version
/// after that (-1 if the node is alive).
const REAP: &str = r#"
local node = ARGV[1]
if redis.call('EXISTS', 'confab:node:' .. node) == 1 then return -1 end
for _, s in ipairs(redis.call('SMEMBERS', 'confab:seats:' .. node)) do
  local nl = string.find(s, '\n', 1, true)
  release(string.sub(s, 1, nl - 1), string.sub(s, nl + 1), node)
end
redis.call('DEL', 'confab:seats:' .. node)
return tonumber(redis.call('GET', 'confab:ver') or '0')
"#;

/// ARGV: node, room capacity, then room, id, name, password, SFU place, rejoin digest for each
/// seat the node holds.
/// Registers the seats Redis does not have (after an outage, or after work that could not be
/// queued) and frees those it has that the node no longer holds. A seat is registered only as
/// a claim would be: the others may have filled the room, or made it again with another
/// password, meanwhile; those seats are answered (room, id, why, ...) and not registered. A
/// seat whose rejoin token a join elsewhere presented in its room (`confab:gone:`) is answered
/// as `replaced`, the others as `changed`.
const RESTORE: &str = r#"
local node, cap = ARGV[1], tonumber(ARGV[2])
local held, refused = {}, {}
for i = 3, #ARGV, 6 do held[ARGV[i] .. '\n' .. ARGV[i + 1]] = i end
for _, s in ipairs(redis.call('SMEMBERS', 'confab:seats:' .. node)) do
  if not held[s] then
    local nl = string.find(s, '\n', 1, true)
    release(string.sub(s, 1, nl - 1), string.sub(s, nl + 1), node)
  end
end
for i = 3, #ARGV, 6 do
  local h = 'confab:room:' .. ARGV[i]
  if not redis.call('HGET', h, ARGV[i + 1]) then
    local members = members_of(h)
    local want = redis.call('HGET', h, '~pw') or ''
    local gone = 'confab:gone:' .. ARGV[i] .. ':' .. ARGV[i + 5]
    if ARGV[i + 5] ~= '' and redis.call('EXISTS', gone) == 1 then
      table.insert(refused, ARGV[i])
      table.insert(refused, ARGV[i + 1])
      table.insert(refused, 'replaced')
    elseif #members > 0 and ((want ~= '' and want ~= ARGV[i + 3]) or #members / 4 >= cap) then
      table.insert(refused, ARGV[i])
      table.insert(refused, ARGV[i + 1])
      table.insert(refused, 'changed')
    else
      seat(ARGV[i], ARGV[i + 1], node, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
    end
  end
end
return refused
"#;

/// ARGV: room. The room's version and members.
const SNAPSHOT: &str = r#"
local h = 'confab:room:' .. ARGV[1]
local members = members_of(h)
local ver = redis.call('HGET', h, '~ver') or '0'
return {ver, unpack(members)}
"#;

/// A message on a node's channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
enum News {
    Join {
        room: String,
        id: String,
        name: String,
        node: String,
        ver: u64,
        /// The member's token at the SFU, empty if none.
        #[serde(default)]
        sfu: String,
    },
    Leave {
        room: String,
        id: String,
        ver: u64,
    },
    /// This node's member `id` was replaced by a join on another node that presented its
    /// rejoin token (its seat is free already): close its connection.
    Replaced {
        room: String,
        id: String,
    },
    Signal {
        room: String,
        from: String,
        to: String,
        text: String,
    },
    /// Sent by a node to itself each heartbeat: its subscription is alive while it hears them.
    Ping {
        n: u64,
    },
}

struct Scripts {
    claim: Script,
    release: Script,
    reap: Script,
    restore: Script,
    snapshot: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_fns = |body: &str| Script::new(&format!("{RELEASE_FN}\n{body}"));
        Scripts {
            claim: with_fns(CLAIM),
            release: with_fns(RELEASE),
            reap: with_fns(REAP),
            restore: with_fns(RESTORE),
            snapshot: with_fns(SNAPSHOT),
        }
    }
}

/// One node's connection to Redis and what its tasks share.
pub struct Store {
    client: Client,
    node: String,
    conn: Mutex<Option<MultiplexedConnection>>,
    scripts: Scripts,
    healthy: Arc<AtomicBool>,
    dirty: Arc<AtomicBool>,
    /// Set by the subscriber when it (re)subscribed: news may have been missed.
    missed_news: AtomicBool,
    /// The last ping this node sent itself, and the last one its subscriber heard.
    pings_sent: AtomicU64,
    pings_heard: AtomicU64,
    /// Tells the subscriber to drop its connection and subscribe again.
    resubscribe: Notify,
}

impl Store {
    /// `url` is `redis://HOST:PORT[/DB]`; nothing is connected yet.
    pub fn new(
        url: &str,
        node: String,
        healthy: Arc<AtomicBool>,
        dirty: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        let client = Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
        Ok(Store {
            client,
            node,
            conn: Mutex::new(None),
            scripts: Scripts::new(),
            healthy,
            dirty,
            missed_news: AtomicBool::new(true),
            pings_sent: AtomicU64::new(0),
            pings_heard: AtomicU64::new(0),
            resubscribe: Notify::new(),
        })
    }

    async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        let cached = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(c) = cached {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection after an error, so the next command connects afresh.
    fn failed(&self, what: &str, e: &redis::RedisError) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!("redis: {what} failed ({e}); serving local rooms until it is back");
        }
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Option<T> {
        let result = match self.conn().await {
            Ok(mut c) => f(&mut c).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed(what, &e);
                None
            }
        }
    }

    async fn claim(&self, seat: &Seat, capacity: usize) -> ClaimResult {
        let pw = seat.password.map(hex).unwrap_or_default();
        let reply: Option<Vec<String>> = self
            .run("claim", async |c| {
                self.scripts
                    .claim
                    .arg(&seat.room)
                    .arg(seat.id.as_str())
                    .arg(&self.node)
                    .arg(&seat.name)
                    .arg(pw)
                    .arg(capacity)
                    .arg(sfu_field(&seat.sfu))
                    .arg(seat.rejoin.map(|t| hex(t.digest())).unwrap_or_default())
                    .arg(seat.replaces.map(hex).unwrap_or_default())
                    .invoke_async(c)
                    .await
            })
            .await;
        let Some(reply) = reply else {
            self.dirty.store(true, Ordering::Relaxed);
            return ClaimResult::Unavailable;
        };
        match reply.first().map(String::as_str) {
            Some("ok") if reply.len() >= 4 => ClaimResult::Seated {
                ver: reply[1].parse().unwrap_or(0),
                password: unhex(&reply[2]),
                sfu: SfuSeat::decode(&reply[3]).filter(|s| Some(s) != seat.sfu.as_ref()),
                members: members(&reply[4..]),
            },
            Some("full") => ClaimResult::Full,
            Some("wrong-password") => ClaimResult::WrongPassword,
            other => {
                tracing::error!(?other, "redis: the claim script answered nonsense");
                ClaimResult::Unavailable
            }
        }
    }

    async fn release(&self, room: &str, id: &PeerId) {
        let done: Option<i64> = self
            .run("release", async |c| {
                self.scripts
                    .release
                    .arg(room)
                    .arg(id.as_str())
                    .arg(&self.node)
                    .invoke_async(c)
                    .await
            })
            .await;
        if done.is_none() {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Publishes each `(node, news)` to its node, in one round trip; for each, whether it was
    /// heard: false when Redis cannot be reached or nobody listens on that node's channel (it
    /// is gone, or cut off from Redis), the news lost either way.
    async fn publish(&self, news: &[(String, News)]) -> Vec<bool> {
        let mut pipe = redis::pipe();
        for (node, n) in news {
            let text = serde_json::to_string(n).unwrap_or_default();
            pipe.cmd("PUBLISH")
                .arg(format!("confab:to:{node}"))
                .arg(text);
        }
        let heard: Option<Vec<i64>> = self
            .run("publish", async |c| pipe.query_async(c).await)
            .await;
        match heard {
            Some(h) if h.len() == news.len() => h.into_iter().map(|n| n > 0).collect(),
            _ => vec![false; news.len()],
        }
    }

    async fn heartbeat(&self) -> bool {
        let key = format!("confab:node:{}", self.node);
        let ttl = HEARTBEAT_TTL.as_millis() as u64;
        self.run("heartbeat", async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("PX")
                .arg(ttl)
                .query_async::<()>(c)
                .await
        })
        .await
        .is_some()
    }

    /// Frees a dead node's seats; the version after that, `None` if the node is alive after
    /// all (or Redis is down).
    async fn reap(&self, node: &str) -> Option<u64> {
        let ver: i64 = self
            .run("reap", async |c| {
                self.scripts.reap.arg(node).invoke_async(c).await
            })
            .await?;
        u64::try_from(ver).ok()
    }

    /// Registers this node's seats again; the (room, id, replaced) of those the room no longer
    /// takes (`None` if Redis is down). `replaced`: a join on another node presented the
    /// seat's rejoin token.
    async fn restore(
        &self,
        seats: &[Seat],
        capacity: usize,
    ) -> Option<Vec<(String, PeerId, bool)>> {
        let refused: Vec<String> = self
            .run("restore", async |c| {
                let mut inv = self.scripts.restore.prepare_invoke();
                inv.arg(&self.node).arg(capacity);
                for s in seats {
                    inv.arg(&s.room)
                        .arg(s.id.as_str())
                        .arg(&s.name)
                        .arg(s.password.map(hex).unwrap_or_default())
                        .arg(sfu_field(&s.sfu))
                        .arg(s.rejoin.map(|t| hex(t.digest())).unwrap_or_default());
                }
                inv.invoke_async(c).await
            })
            .await?;
        Some(
            refused
                .chunks_exact(3)
                .map(|p| (p[0].clone(), PeerId(p[1].clone()), p[2] == "replaced"))
                .collect(),
        )
    }

    /// This node's name in the store.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// The room's version and members as the store has them (`None` if it cannot be asked).
    pub(crate) async fn snapshot(&self, room: &str) -> Option<(u64, Vec<RemotePeer>)> {
        let reply: Vec<String> = self
            .run("snapshot", async |c| {
                self.scripts.snapshot.arg(room).invoke_async(c).await
            })
            .await?;
        let ver = reply.first()?.parse().ok()?;
        Some((ver, members(&reply[1..])))
    }

    async fn forget_heartbeat(&self) {
        let key = format!("confab:node:{}", self.node);
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            self.run("shutdown", async |c| {
                redis::cmd("DEL").arg(&key).query_async::<i64>(c).await
            }),
        )
        .await;
    }
}

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A member's token at the SFU as stored, or empty.
fn sfu_field(sfu: &Option<SfuSeat>) -> String {
    sfu.as_ref().map(SfuSeat::encode).unwrap_or_default()
}

/// `id, node, sfu, name` from a script's reply.
fn members(flat: &[String]) -> Vec<RemotePeer> {
    flat.chunks_exact(4)
        .map(|t| RemotePeer {
            id: PeerId(t[0].clone()),
            node: t[1].clone(),
            sfu: SfuSeat::decode(&t[2]),
            name: t[3].clone(),
        })
        .collect()
}

/// Carries the room logic's cluster work to Redis, in order. What is waiting is taken at once
/// (up to [`OPS_BATCH`]): signals in a row go to Redis in one round trip.
pub async fn ops_loop(
    hub: Arc<Hub>,
    store: Arc<Store>,
    mut ops: mpsc::Receiver<ClusterOp>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(OPS_BATCH);
    // Signals waiting to be published, with the connection that sent each.
    let mut signals: Vec<(String, News)> = Vec::new();
    let mut senders: Vec<ConnId> = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            n = ops.recv_many(&mut batch, OPS_BATCH) => if n == 0 { return },
        }
        for op in batch.drain(..) {
            // In order: the signals before a claim or a release go first.
            match op {
                ClusterOp::Forward {
                    node,
                    room,
                    to,
                    text,
                    from,
                    sender,
                } => {
                    let news = News::Signal {
                        room,
                        from: sender.0,
                        to: to.0,
                        text,
                    };
                    signals.push((node, news));
                    senders.push(from);
                }
                ClusterOp::Claim {
                    conn,
                    seat,
                    capacity,
                } => {
                    publish_signals(&hub, &store, &mut signals, &mut senders).await;
                    let result = store.claim(&seat, capacity).await;
                    hub.claimed(conn, seat, result);
                }
                ClusterOp::Release { room, id } => {
                    publish_signals(&hub, &store, &mut signals, &mut senders).await;
                    store.release(&room, &id).await;
                }
            }
        }
        publish_signals(&hub, &store, &mut signals, &mut senders).await;
    }
}

async fn publish_signals(
    hub: &Hub,
    store: &Store,
    signals: &mut Vec<(String, News)>,
    senders: &mut Vec<ConnId>,
) {
    if signals.is_empty() {
        return;
    }
    let heard = store.publish(signals).await;
    for (from, heard) in senders.drain(..).zip(heard) {
        if !heard {
            hub.forward_failed(from);
        }
    }
    signals.clear();
}

/// Listens on this node's channel, reconnecting after any loss.
pub async fn subscriber_loop(hub: Arc<Hub>, store: Arc<Store>, cancel: CancellationToken) {
    let channel = format!("confab:to:{}", store.node);
    loop {
        let session = async {
            let mut pubsub = store.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            // Whatever was published while this node was not listening is read back from the
            // snapshots.
            store.missed_news.store(true, Ordering::Relaxed);
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Ok(text) = msg.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<News>(&text) {
                    Ok(News::Ping { n }) => {
                        store.pings_heard.fetch_max(n, Ordering::Relaxed);
                    }
                    Ok(news) => apply(&hub, news),
                    Err(e) => tracing::warn!("redis: unreadable news on {channel}: {e}"),
                }
            }
            RedisResult::Ok(())
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = store.resubscribe.notified() => {}
            r = session => {
                if let Err(e) = r {
                    tracing::debug!("redis: subscription lost: {e}");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}

fn apply(hub: &Hub, news: News) {
    match news {
        News::Join {
            room,
            id,
            name,
            node,
            ver,
            sfu,
        } => hub.remote_joined(
            &room,
            ver,
            RemotePeer {
                id: PeerId(id),
                name,
                node,
                sfu: SfuSeat::decode(&sfu),
            },
        ),
        News::Leave { room, id, ver } => hub.remote_left(&room, ver, &PeerId(id)),
        News::Replaced { room, id } => hub.replaced(&room, &PeerId(id)),
        News::Ping { .. } => {}
        News::Signal {
            room,
            from,
            to,
            text,
        } => hub.remote_signal(&room, &PeerId(from), &PeerId(to), text),
    }
}

/// Pings this node through its own channel; when the subscriber has heard none of the last
/// few, tells it to subscribe again. A subscription whose connection died without a word (a
/// NAT or firewall forgetting it, a half-open socket) errs nowhere: it only stops hearing.
async fn check_subscription(store: &Store) {
    let sent = store.pings_sent.fetch_add(1, Ordering::Relaxed) + 1;
    store
        .publish(&[(store.node.clone(), News::Ping { n: sent })])
        .await;
    if sent.saturating_sub(store.pings_heard.load(Ordering::Relaxed)) > PINGS_UNHEARD {
        tracing::warn!("redis: this node's subscription hears nothing; subscribing again");
        // The new subscription gets as long as the old one had.
        store.pings_heard.fetch_max(sent, Ordering::Relaxed);
        store.resubscribe.notify_one();
    }
}

/// Heartbeat, liveness of other nodes, snapshots, and re-registration after an outage.
pub async fn heartbeat_loop(hub: Arc<Hub>, store: Arc<Store>, cancel: CancellationToken) {
    let mut tick: u32 = 0;
    let mut was_up = false;
    // When this node's heartbeat was last refreshed, and whether it has let the other nodes'
    // people go since (it has been reaped by them by then).
    let mut last_up = Instant::now();
    let mut cut_off = false;
    loop {
        let started = Instant::now();
        let up = store.heartbeat().await;
        if !up && !cut_off && last_up.elapsed() >= HEARTBEAT_TTL {
            tracing::warn!("redis: out of reach for {HEARTBEAT_TTL:?}; other nodes' people leave");
            hub.with_rooms(|r, now, out| r.store_lost(now, out));
            cut_off = true;
        }
        if up {
            last_up = started;
            cut_off = false;
            if !was_up || store.dirty.swap(false, Ordering::Relaxed) {
                // Back (or first up): Redis may have lost everything, or reaped this node.
                hub.with_rooms(|r, _, _| r.forget_versions());
                let (seats, capacity) = hub.read_rooms(|r| (r.seats(), r.config().room_capacity));
                if let Some(refused) = store.restore(&seats, capacity).await {
                    tracing::info!(
                        seats = seats.len(),
                        refused = refused.len(),
                        "redis: this node's seats registered"
                    );
                    // Rooms the others filled, or made again with another password, while
                    // this node was cut off: those people must join again. Those who did,
                    // through another node, are let go.
                    for (room, id, replaced) in refused {
                        hub.with_rooms(|r, now, out| {
                            r.restore_refused(&room, &id, replaced, now, out)
                        });
                    }
                    store.missed_news.store(true, Ordering::Relaxed);
                } else {
                    store.dirty.store(true, Ordering::Relaxed);
                }
            }
            store.healthy.store(true, Ordering::Relaxed);
            check_subscription(&store).await;
            for node in hub.read_rooms(|r| r.remote_nodes()) {
                if let Some(ver) = store.reap(&node).await {
                    tracing::info!(node, "redis: a node stopped; its people left");
                    hub.node_gone(&node, ver);
                }
            }
            let missed = store.missed_news.swap(false, Ordering::Relaxed);
            if missed || tick % SNAPSHOT_EVERY == 0 {
                for room in hub.read_rooms(|r| r.room_names()) {
                    if let Some((ver, members)) = store.snapshot(&room).await {
                        if hub.remote_snapshot(&room, ver, members) {
                            // A seat of ours is not in the store (freed by a rejoin elsewhere
                            // whose news we missed, or lost): registered again, or let go.
                            store.dirty.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        was_up = up;
        tick = tick.wrapping_add(1);
        let wait = HEARTBEAT_EVERY.saturating_sub(started.elapsed());
        tokio::select! {
            _ = cancel.cancelled() => {
                store.forget_heartbeat().await;
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_digests_round_trip_through_hex() {
        let d = [0xab; 32];
        assert_eq!(unhex(&hex(d)), Some(d));
        assert_eq!(unhex(""), None);
        assert_eq!(unhex(&"zz".repeat(32)), None);
    }

    #[test]
    fn news_is_tagged_json() {
        let n = News::Leave {
            room: "r".into(),
            id: "i".into(),
            ver: 3,
        };
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(text, r#"{"t":"leave","room":"r","id":"i","ver":3}"#);
        assert!(serde_json::from_str::<News>(r#"{"t":"join","room":1}"#).is_err());
    }
}
