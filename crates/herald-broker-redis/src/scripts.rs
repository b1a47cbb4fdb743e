//! The Lua scripts of history and presence, and how their replies are read.
//!
//! Why scripts: a publication with history must get its offset, join the
//! stream and be published as one step, or two publishers could publish
//! offsets n+1 and n out of order, or a subscriber could see an offset the
//! history does not hold. Redis runs a script atomically, and a script can
//! `PUBLISH` (or `SPUBLISH`) what it just appended. Presence scripts read
//! the server's clock (`TIME`), so expiry does not depend on the clocks of
//! the Herald nodes.
//!
//! Every script touches only the keys of one Herald channel, which share a
//! hash tag ([`crate::keys`]), so each runs on the one server (or slot) that
//! holds the channel. Scripts are sent with `EVALSHA` and loaded on
//! `NOSCRIPT` (redis-rs [`Script`]): a restarted or new server loads them on
//! first use.
//!
//! Replies come from the network: they are checked, never trusted (a bad
//! reply is an error, not a panic).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use herald::Publication;
use herald::broker::{ClientInfo, PresenceStats, StreamPosition};
use redis::{Script, Value};
use serde_json::value::RawValue;

/// Appends to the stream and publishes, atomically.
///
/// KEYS: stream, meta. ARGV: Herald channel, data (empty: none), a new
/// epoch (used when the channel has none), size, ttl (ms), `s` for
/// `SPUBLISH` (anything else: `PUBLISH`), the pub/sub channel.
///
/// The envelope is [`Publication::encode`]'s format, written by hand:
/// `h1|p|<offset>|<epoch>|<channel byte length>|<channel><data>`. The
/// stream entry's id is `<offset>-0`, so reads by offset are direct.
/// A channel without an epoch (new, expired, removed, or its server
/// restarted without persistence) gets the new one, and any stream left
/// without its meta is dropped first, so ids start again at 1.
const PUBLISH_LUA: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'o', 1)
local o = string.format('%d', offset)
redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[4], o .. '-0', 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local command = 'PUBLISH'
if ARGV[6] == 's' then command = 'SPUBLISH' end
redis.call(command, ARGV[7],
  'h1|p|' .. o .. '|' .. epoch .. '|' .. string.len(ARGV[1]) .. '|' .. ARGV[1] .. ARGV[2])
return {offset, epoch}
";

/// Reads a page of history and the stream's position.
///
/// KEYS: stream, meta. ARGV: a new epoch, ttl (ms), limit, since offset
/// (empty: the latest publications), since epoch. A channel without an
/// epoch gets the new one (offset 0, living ttl; an existing epoch's
/// lifetime is left alone). Returns `{top offset, epoch, entries}`, the
/// entries as `XRANGE` gives them (newest first for the latest).
const HISTORY_LUA: &str = r"
local meta = redis.call('HMGET', KEYS[2], 'e', 'o')
local epoch, top = meta[1], meta[2]
if not epoch then
  epoch = ARGV[1]
  top = '0'
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
if not top then top = '0' end
local limit = tonumber(ARGV[3])
local entries = {}
if limit > 0 then
  if ARGV[4] == '' then
    entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', limit)
  elseif ARGV[5] == epoch then
    entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[4] .. '-0', '+', 'COUNT', limit)
  end
end
return {top, epoch, entries}
";

/// Records presence entries with an expiry on the server's clock.
///
/// KEYS: presence hash, expiry zset. ARGV: ttl (ms), then socket id and
/// `ClientInfo` JSON pairs. Both keys live at least ttl more (a channel
/// nobody refreshes vanishes).
const PRESENCE_ADD_LUA: &str = r"
local t = redis.call('TIME')
local ttl = tonumber(ARGV[1])
local expires = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl)
for i = 2, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], expires, ARGV[i])
end
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return 1
";

/// Drops expired presence entries, then lists the rest or counts them.
///
/// KEYS: presence hash, expiry zset. ARGV: `list` (returns `HGETALL`) or
/// `stats` (returns `{clients, distinct users}`).
const PRESENCE_READ_LUA: &str = r"
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, client in ipairs(gone) do
  redis.call('HDEL', KEYS[1], client)
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
if ARGV[1] == 'list' then
  return redis.call('HGETALL', KEYS[1])
end
local users, distinct = {}, 0
local values = redis.call('HVALS', KEYS[1])
for _, v in ipairs(values) do
  local ok, info = pcall(cjson.decode, v)
  if ok and type(info) == 'table' and type(info.user) == 'string' and not users[info.user] then
    users[info.user] = true
    distinct = distinct + 1
  end
end
return {#values, distinct}
";

/// [`PUBLISH_LUA`].
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_LUA));
/// [`HISTORY_LUA`].
pub(crate) static HISTORY: LazyLock<Script> = LazyLock::new(|| Script::new(HISTORY_LUA));
/// [`PRESENCE_ADD_LUA`].
pub(crate) static PRESENCE_ADD: LazyLock<Script> = LazyLock::new(|| Script::new(PRESENCE_ADD_LUA));
/// [`PRESENCE_READ_LUA`].
pub(crate) static PRESENCE_READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(PRESENCE_READ_LUA));

/// An `EVALSHA` of `script` with `keys` and `args`.
pub(crate) fn evalsha(script: &Script, keys: &[&str], args: &[&[u8]]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for k in keys {
        cmd.arg(*k);
    }
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected script reply: {0}")]
pub(crate) struct ReplyError(String);

fn bad(what: impl Into<String>) -> ReplyError {
    ReplyError(what.into())
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// The `{offset, epoch}` of [`PUBLISH`].
pub(crate) fn read_position(v: &Value) -> Result<StreamPosition, ReplyError> {
    match items(v) {
        Some([offset, epoch]) => {
            let offset = number(offset)
                .filter(|o| *o > 0)
                .ok_or_else(|| bad("offset"))?;
            let epoch = text(epoch)
                .filter(|e| !e.is_empty())
                .ok_or_else(|| bad("epoch"))?;
            Ok(StreamPosition::new(offset, epoch))
        }
        _ => Err(bad(format!("{v:?}"))),
    }
}

/// The reply of [`HISTORY`]: the stream's position and its publications,
/// oldest first. `latest` says the entries came newest first.
pub(crate) fn read_history(
    channel: &Arc<str>,
    v: &Value,
    latest: bool,
) -> Result<(StreamPosition, Vec<Arc<Publication>>), ReplyError> {
    let Some([top, epoch, entries]) = items(v) else {
        return Err(bad(format!("{v:?}")));
    };
    let top = number(top).ok_or_else(|| bad("top offset"))?;
    let epoch: Arc<str> = Arc::from(text(epoch).ok_or_else(|| bad("epoch"))?);
    let entries = items(entries).ok_or_else(|| bad("entries"))?;
    let mut publications = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some([id, fields]) = items(entry) else {
            return Err(bad("stream entry"));
        };
        let offset = text(id)
            .and_then(|id| id.strip_suffix("-0"))
            .and_then(|o| o.parse::<u64>().ok())
            .filter(|o| *o > 0)
            .ok_or_else(|| bad("stream entry id"))?;
        let data = match items(fields) {
            Some([name, data]) if text(name) == Some("d") => data,
            _ => return Err(bad("stream entry fields")),
        };
        let data = match data {
            Value::BulkString(b) if b.is_empty() => None,
            other => {
                let json = text(other).ok_or_else(|| bad("stream entry data"))?;
                Some(
                    RawValue::from_string(json.to_owned())
                        .map_err(|_| bad("stream entry data is not JSON"))?,
                )
            }
        };
        let position = StreamPosition::new(offset, epoch.clone());
        publications.push(Arc::new(Publication::at(
            channel.clone(),
            data,
            Some(position),
        )));
    }
    if latest {
        publications.reverse();
    }
    Ok((StreamPosition::new(top, epoch), publications))
}

/// The `HGETALL` of [`PRESENCE_READ`] (`list`). Entries whose info is not
/// a `ClientInfo` are left out (another writer on the same prefix).
pub(crate) fn read_presence(v: &Value) -> Result<BTreeMap<String, ClientInfo>, ReplyError> {
    let mut out = BTreeMap::new();
    match v {
        Value::Map(pairs) => {
            for (k, v) in pairs {
                insert_presence(&mut out, k, v);
            }
        }
        other => {
            let flat = items(other).ok_or_else(|| bad(format!("{other:?}")))?;
            for pair in flat.chunks(2) {
                if let [k, v] = pair {
                    insert_presence(&mut out, k, v);
                }
            }
        }
    }
    Ok(out)
}

fn insert_presence(out: &mut BTreeMap<String, ClientInfo>, client: &Value, info: &Value) {
    if let (Some(client), Some(info)) = (text(client), text(info))
        && let Ok(info) = serde_json::from_str::<ClientInfo>(info)
    {
        out.insert(client.to_owned(), info);
    }
}

/// The `{clients, users}` of [`PRESENCE_READ`] (`stats`).
pub(crate) fn read_stats(v: &Value) -> Result<PresenceStats, ReplyError> {
    match items(v) {
        Some([clients, users]) => Ok(PresenceStats {
            clients: number(clients).ok_or_else(|| bad("clients"))?,
            users: number(users).ok_or_else(|| bad("users"))?,
        }),
        _ => Err(bad(format!("{v:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, data: &str) -> Value {
        Value::Array(vec![bulk(id), Value::Array(vec![bulk("d"), bulk(data)])])
    }

    #[test]
    fn positions() {
        let v = Value::Array(vec![Value::Int(7), bulk("Ep0chAAA")]);
        assert_eq!(
            read_position(&v).unwrap(),
            StreamPosition::new(7, "Ep0chAAA")
        );
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(0), bulk("e")]),
            Value::Array(vec![Value::Int(-3), bulk("e")]),
            Value::Array(vec![Value::Int(3), bulk("")]),
            Value::Array(vec![Value::Int(3)]),
        ] {
            assert!(read_position(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn history_pages() {
        let channel: Arc<str> = Arc::from("c");
        let v = Value::Array(vec![
            bulk("9"),
            bulk("ep"),
            Value::Array(vec![entry("9-0", "{\"a\":9}"), entry("8-0", "")]),
        ]);
        let (pos, pubs) = read_history(&channel, &v, true).unwrap();
        assert_eq!(pos, StreamPosition::new(9, "ep"));
        let offsets: Vec<u64> = pubs
            .iter()
            .map(|p| p.position.as_ref().unwrap().offset)
            .collect();
        assert_eq!(offsets, [8, 9], "oldest first");
        assert!(pubs[0].data.is_none(), "empty data is none");
        let expected = Publication::at(
            "c",
            Some(RawValue::from_string("{\"a\":9}".into()).unwrap()),
            Some(StreamPosition::new(9, "ep")),
        );
        assert_eq!(pubs[1].frame, expected.frame);
        for bad in [
            Value::Array(vec![bulk("x"), bulk("ep"), Value::Array(vec![])]),
            Value::Array(vec![
                bulk("1"),
                bulk("ep"),
                Value::Array(vec![entry("1-1", "1")]),
            ]),
            Value::Array(vec![
                bulk("1"),
                bulk("ep"),
                Value::Array(vec![entry("z-0", "1")]),
            ]),
            Value::Array(vec![
                bulk("1"),
                bulk("ep"),
                Value::Array(vec![entry("1-0", "{")]),
            ]),
            Value::Array(vec![bulk("1"), bulk("ep")]),
        ] {
            assert!(read_history(&channel, &bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn presence_lists_and_stats() {
        let v = Value::Array(vec![
            bulk("s1"),
            bulk(r#"{"user":"u","info":null}"#),
            bulk("s2"),
            bulk("not json"),
        ]);
        let list = read_presence(&v).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list["s1"].user.as_deref(), Some("u"));
        let stats = read_stats(&Value::Array(vec![Value::Int(3), Value::Int(1)])).unwrap();
        assert_eq!((stats.clients, stats.users), (3, 1));
        assert!(read_stats(&Value::Int(3)).is_err());
    }

    #[test]
    fn evalsha_packs_keys_then_args() {
        let cmd = evalsha(&PUBLISH, &["k1", "k2"], &[b"a"]);
        let packed = String::from_utf8(cmd.get_packed_command()).unwrap();
        assert!(packed.contains(PUBLISH.get_hash()));
        assert!(packed.ends_with("$1\r\n2\r\n$2\r\nk1\r\n$2\r\nk2\r\n$1\r\na\r\n"));
    }
}
