//! Where a Herald channel lives in Redis: its pub/sub channel and its keys.
//!
//! A publication with history is appended to the channel's stream and
//! published in one Lua script, and a script may only touch keys of one
//! slot (Redis Cluster), all on the server that runs it (Redis sharded by
//! Herald). So the pub/sub channel and every key of a Herald channel share
//! one hash tag, built from the channel name alone:
//!
//! ```text
//! pub/sub channel   <esc(prefix)>{<esc(channel)>}
//! stream            <esc(prefix)>{<esc(channel)>}:h     XADD <offset>-0 d <data>
//! meta (hash)       <esc(prefix)>{<esc(channel)>}:m     e = epoch, o = latest offset
//! presence (hash)   <esc(prefix)>{<esc(channel)>}:p     socket id -> ClientInfo JSON
//! presence expiry   <esc(prefix)>{<esc(channel)>}:px    zset, socket id scored by expiry (ms)
//! ```
//!
//! `esc` percent-escapes `{` (`%7B`), `}` (`%7D`) and `%` (`%25`) and
//! leaves every other byte alone, so the first `{` of a name is always the
//! one Herald put there, the tag ends at the matching `}`, and a Herald
//! channel name can be read back from the Redis name without ambiguity.
//! The empty channel name becomes `%` (never produced by escaping a
//! non-empty name), so the tag is never empty (Redis would hash the whole
//! name, suffix included, and the keys would scatter). The prefix is
//! escaped too: a prefix with braces would otherwise hold the hash tag
//! (every channel in one slot) or, with `{}`, none at all.
//!
//! The slot of every one of these names is therefore
//! `CRC16(esc(channel)) mod 16384` (see [`crate::cluster::slots`]), which
//! is all the cluster broker needs to route any command of a channel. The
//! sharded broker routes by [`crate::shard_index`] of the Herald channel
//! name, and every name of a channel goes to that one server.

/// Suffix of a channel's stream (its history).
pub const STREAM: &str = ":h";
/// Suffix of a channel's meta hash (`e` epoch, `o` latest offset).
pub const META: &str = ":m";
/// Suffix of a channel's presence hash.
pub const PRESENCE: &str = ":p";
/// Suffix of a channel's presence expiry sorted set.
pub const PRESENCE_EXPIRY: &str = ":px";

/// Appends `s` to `out`, percent-escaping `{`, `}` and `%`.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

/// The Redis pub/sub channel of Herald channel `channel` under `prefix`;
/// every key of the channel is this name plus a suffix ([`ChannelKeys`]).
///
/// ```
/// use herald_broker_redis::keys::redis_channel;
/// assert_eq!(redis_channel("herald:", "room/1"), "herald:{room/1}");
/// assert_eq!(redis_channel("herald:", "{a}%"), "herald:{%7Ba%7D%25}");
/// assert_eq!(redis_channel("herald:", ""), "herald:{%}");
/// ```
pub fn redis_channel(prefix: &str, channel: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + channel.len() + 4);
    escape_into(&mut name, prefix);
    name.push('{');
    if channel.is_empty() {
        name.push('%');
    } else {
        escape_into(&mut name, channel);
    }
    name.push('}');
    name
}

/// The Herald channel a Redis pub/sub channel name stands for (the
/// inverse of [`redis_channel`]); `None` for a name Herald never makes
/// under `prefix`.
pub fn herald_channel(prefix: &str, name: &[u8]) -> Option<String> {
    let mut escaped_prefix = String::with_capacity(prefix.len());
    escape_into(&mut escaped_prefix, prefix);
    let tag = name
        .strip_prefix(escaped_prefix.as_bytes())?
        .strip_prefix(b"{")?
        .strip_suffix(b"}")?;
    if tag == b"%" {
        return Some(String::new());
    }
    let mut out = Vec::with_capacity(tag.len());
    let mut i = 0;
    while i < tag.len() {
        match tag[i] {
            b'{' | b'}' => return None,
            b'%' => {
                let byte = match tag.get(i + 1..i + 3)? {
                    b"7B" => b'{',
                    b"7D" => b'}',
                    b"25" => b'%',
                    _ => return None,
                };
                out.push(byte);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    if out.is_empty() {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Every Redis name of one Herald channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// The pub/sub channel.
    pub channel: String,
    /// The stream ([`STREAM`]).
    pub stream: String,
    /// The meta hash ([`META`]).
    pub meta: String,
    /// The presence hash ([`PRESENCE`]).
    pub presence: String,
    /// The presence expiry sorted set ([`PRESENCE_EXPIRY`]).
    pub presence_expiry: String,
}

impl ChannelKeys {
    /// The names of `channel` under `prefix`.
    pub fn new(prefix: &str, channel: &str) -> Self {
        let name = redis_channel(prefix, channel);
        Self {
            stream: format!("{name}{STREAM}"),
            meta: format!("{name}{META}"),
            presence: format!("{name}{PRESENCE}"),
            presence_expiry: format!("{name}{PRESENCE_EXPIRY}"),
            channel: name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::slots::key_slot;

    const TRICKY: &[&str] = &[
        "room/1",
        "",
        "{",
        "}",
        "{}",
        "}{",
        "{a}b",
        "a{b}c{d}",
        "%",
        "%7B",
        "%%{%}",
        "100%",
        "é{ü}🎉",
        "#herald/nodes",
        "a:b:h",
        " ",
    ];

    const PREFIXES: &[&str] = &["herald:", "", "{", "}", "{}", "app{x}:", "a{b", "%:", "{%}"];

    #[test]
    fn every_key_is_in_the_channel_slot() {
        for prefix in PREFIXES {
            for channel in TRICKY {
                let keys = ChannelKeys::new(prefix, channel);
                let slot = key_slot(keys.channel.as_bytes());
                for key in [
                    &keys.stream,
                    &keys.meta,
                    &keys.presence,
                    &keys.presence_expiry,
                ] {
                    assert_eq!(
                        key_slot(key.as_bytes()),
                        slot,
                        "{key:?} and {:?} (prefix {prefix:?}, channel {channel:?})",
                        keys.channel
                    );
                }
                // The tag is the escaped channel, whatever the prefix.
                let tag = if channel.is_empty() {
                    "%".to_owned()
                } else {
                    let mut t = String::new();
                    escape_into(&mut t, channel);
                    t
                };
                assert_eq!(slot, key_slot(format!("{{{tag}}}").as_bytes()));
            }
        }
    }

    #[test]
    fn channels_spread_over_slots_even_with_a_braced_prefix() {
        let a = key_slot(redis_channel("app{x}:", "room/1").as_bytes());
        let b = key_slot(redis_channel("app{x}:", "room/2").as_bytes());
        assert_ne!(a, b);
        assert_eq!(a, key_slot(redis_channel("herald:", "room/1").as_bytes()));
    }

    #[test]
    fn names_read_back() {
        for prefix in PREFIXES {
            for channel in TRICKY {
                let name = redis_channel(prefix, channel);
                assert_eq!(
                    herald_channel(prefix, name.as_bytes()).as_deref(),
                    Some(*channel),
                    "{name:?}"
                );
            }
        }
        for bad in [
            &b"herald:room"[..],
            b"herald:{room",
            b"herald:{}",
            b"herald:{a{b}",
            b"herald:{a%7}",
            b"herald:{a%zz}",
            b"herald:{\xff}",
            b"other:{room}",
            b"herald:{room}:h",
        ] {
            assert_eq!(
                herald_channel("herald:", bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn escaping_is_percent_style() {
        assert_eq!(redis_channel("p{}:", "a{b}%c"), "p%7B%7D:{a%7Bb%7D%25c}");
        assert_eq!(ChannelKeys::new("h:", "c").presence_expiry, "h:{c}:px");
    }
}
