//! Channel name → NATS subject.
//!
//! SocketCluster channel names are arbitrary strings; NATS subjects are split
//! into tokens by `.`, cannot contain whitespace, and give `*` and `>` a
//! meaning of their own. A channel is therefore carried on the subject
//!
//! ```text
//! <prefix>.<token>
//! ```
//!
//! where `<token>` is **one** subject token made from the channel name by a
//! percent-style escaping of its UTF-8 bytes:
//!
//! * ASCII letters, digits and `- _ / : @ + = ! ~ ,` stand for themselves, so
//!   the usual names stay readable in NATS tooling (`news` → `herald.ch.news`,
//!   `chat/room-1` → `herald.ch.chat/room-1`);
//! * every other byte, `%` itself included, becomes `%XX` (two upper-case hex
//!   digits): `a.b` → `a%2Eb`, `room 1` → `room%201`, `*` → `%2A`,
//!   `é` → `%C3%A9`;
//! * the empty name becomes the lone token `%` (never produced otherwise, as
//!   every escaped `%` is followed by two hex digits).
//!
//! The escaping is reversible ([`decode_token`]), hence injective: two
//! channels never share a subject. Tokens never contain `.`, whitespace, `*`
//! or `>`, so a channel subject is never a wildcard and never spans tokens.
//!
//! **Long names.** A NATS server closes a connection whose protocol line
//! exceeds its `max_control_line` (4 KiB by default), and a subscription is
//! re-sent on every reconnect: a single over-long channel name could make the
//! broker connection flap forever. A subject that would be longer than the
//! configured limit (1024 bytes by default) is therefore replaced by
//! `<prefix>.#<sha1 of the name, 40 hex digits>`. `#` is always escaped in the
//! readable form, so digests and escaped names never meet; two names with the
//! same digest would share a subject, which the broker tolerates because every
//! received publication is checked against the channel it was subscribed for.

use sha1::{Digest, Sha1};

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "herald.ch";

/// Length of a digest token: `#` and 40 hex digits.
const DIGEST_TOKEN_LEN: usize = 41;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes that stand for themselves in a token.
fn is_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'/' | b':' | b'@' | b'+' | b'=' | b'!' | b'~' | b','
        )
}

/// The escaped, readable token of a channel name (no length limit).
pub fn encode_channel(channel: &str) -> String {
    if channel.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(channel.len());
    for &b in channel.as_bytes() {
        if is_literal(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xF)] as char);
        }
    }
    out
}

/// The digest token of a channel name: `#` and the SHA-1 of the name in hex.
pub fn digest_token(channel: &str) -> String {
    let digest = Sha1::digest(channel.as_bytes());
    let mut out = String::with_capacity(DIGEST_TOKEN_LEN);
    out.push('#');
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xF)] as char);
    }
    out
}

/// Reads a readable token back into its channel name. Returns `None` for a
/// digest token (`#…`, not reversible) and for text that no channel name
/// encodes to.
pub fn decode_token(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    if token.is_empty() {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            let decoded = (hi << 4) | lo;
            if is_literal(decoded) {
                // A literal byte is never escaped: not an encoder's output.
                return None;
            }
            out.push(decoded);
            i += 3;
        } else if is_literal(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `prefix` can head channel subjects: non-empty tokens without
/// whitespace or wildcards, not starting with `$` (reserved by NATS).
pub fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && !prefix.starts_with('$')
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && token.bytes().all(|b| b.is_ascii_graphic())
        })
}

/// The token of a history namespace: its escape, or its digest when long
/// (namespaces are configuration, but keep their subjects short anyway).
fn namespace_token(namespace: &str) -> String {
    let token = encode_channel(namespace);
    if token.len() > 64 {
        digest_token(namespace)
    } else {
        token
    }
}

/// `text` cut to `max` bytes with every byte outside `[A-Za-z0-9_-]`
/// replaced by `_`: the readable part of a stream or bucket name.
fn name_part(text: &str, max: usize) -> String {
    text.bytes()
        .take(max)
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

/// The first 4 bytes of the SHA-1 of `parts`, in hex.
fn short_digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(8);
    for b in &digest[..4] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xF)] as char);
    }
    out
}

/// Maps channel names to subjects under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct SubjectMap {
    prefix: String,
    max_len: usize,
}

impl SubjectMap {
    /// A map under `prefix`; subjects longer than `max_len` use a digest.
    pub(crate) fn new(prefix: &str, max_len: usize) -> Result<Self, String> {
        if !is_valid_prefix(prefix) {
            return Err(format!(
                "invalid subject prefix {prefix:?}: expected dot-separated tokens without \
                 whitespace or wildcards"
            ));
        }
        if prefix.len() + 1 + DIGEST_TOKEN_LEN > max_len {
            return Err(format!(
                "subject prefix {prefix:?} leaves no room under the subject length limit {max_len}"
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            max_len,
        })
    }

    /// The subject carrying `channel`.
    pub(crate) fn channel(&self, channel: &str) -> String {
        format!("{}.{}", self.prefix, self.channel_token(channel))
    }

    /// The token of `channel` under the prefix: its readable escape, or
    /// its digest when the subject would be too long.
    fn channel_token(&self, channel: &str) -> String {
        let token = encode_channel(channel);
        if self.prefix.len() + 1 + token.len() > self.max_len {
            digest_token(channel)
        } else {
            token
        }
    }

    /// The subject that stores `channel`'s history in the stream of
    /// `namespace`: `<prefix>.h.<namespace token>.<channel token>`, whose
    /// last token is the one of the channel's live subject (the stream's
    /// RePublish maps one to the other).
    pub(crate) fn history(&self, namespace: &str, channel: &str) -> String {
        format!(
            "{}.h.{}.{}",
            self.prefix,
            namespace_token(namespace),
            self.channel_token(channel)
        )
    }

    /// The subjects of `namespace`'s history stream:
    /// `<prefix>.h.<namespace token>.*`. Two namespaces never share one
    /// (their tokens differ), and no channel subject is among them (those
    /// have one token after the prefix).
    pub(crate) fn history_filter(&self, namespace: &str) -> String {
        format!("{}.h.{}.*", self.prefix, namespace_token(namespace))
    }

    /// Where a history stream republishes what it stores: the live subject
    /// of the channel named by the wildcard.
    pub(crate) fn republish_destination(&self) -> String {
        format!("{}.{{{{wildcard(1)}}}}", self.prefix)
    }

    /// The name of `namespace`'s history stream: readable parts of the
    /// prefix and the namespace, and a digest of both so that names never
    /// collide (stream names are limited to `[A-Za-z0-9_-]` here).
    pub(crate) fn stream_name(&self, namespace: &str) -> String {
        format!(
            "HERALD_{}_{}_{}",
            name_part(&self.prefix, 24),
            name_part(namespace, 24),
            short_digest(&[self.prefix.as_bytes(), b"\n", namespace.as_bytes()])
        )
    }

    /// The presence KV bucket of this prefix (`[A-Za-z0-9_-]`, unique per
    /// prefix).
    pub(crate) fn presence_bucket(&self) -> String {
        format!(
            "herald_presence_{}_{}",
            name_part(&self.prefix, 40),
            short_digest(&[self.prefix.as_bytes()])
        )
    }

    /// A subject under the prefix for the broker's own traffic (two tokens
    /// after the prefix, so it never meets a channel subject).
    pub(crate) fn internal(&self, kind: &str, id: &str) -> String {
        format!("{}._{kind}.{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_names_stay_readable() {
        assert_eq!(encode_channel("news"), "news");
        assert_eq!(encode_channel("chat/room-1"), "chat/room-1");
        assert_eq!(encode_channel("user:42@eu"), "user:42@eu");
    }

    #[test]
    fn special_bytes_are_escaped() {
        assert_eq!(encode_channel("a.b"), "a%2Eb");
        assert_eq!(encode_channel("room 1"), "room%201");
        assert_eq!(encode_channel("*"), "%2A");
        assert_eq!(encode_channel(">"), "%3E");
        assert_eq!(encode_channel("%"), "%25");
        assert_eq!(encode_channel("#"), "%23");
        assert_eq!(encode_channel("$SYS"), "%24SYS");
        assert_eq!(encode_channel("é"), "%C3%A9");
        assert_eq!(encode_channel("a\tb\r\n"), "a%09b%0D%0A");
        assert_eq!(encode_channel(""), "%");
    }

    #[test]
    fn decoding_reverses_encoding() {
        let samples = [
            "",
            "%",
            "%%",
            "%25",
            "a.b",
            "a%2Eb",
            "..",
            "*",
            ">",
            "a b",
            "#x",
            "é∂🚀",
            "news",
        ];
        for s in samples {
            assert_eq!(
                decode_token(&encode_channel(s)).as_deref(),
                Some(s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn decoding_rejects_what_no_name_encodes_to() {
        for t in ["", "a.b", "a b", "%2", "%zz", "%41", "%2e", "#abc", "%FF"] {
            assert_eq!(decode_token(t), None, "{t:?}");
        }
    }

    /// Random names over an alphabet rich in special characters: every
    /// token is one valid, non-wildcard subject token, and decodes back to
    /// its name (so the mapping is injective).
    #[test]
    fn random_names_round_trip_into_single_tokens() {
        let alphabet: Vec<char> = "ab.*> %#$\t\n-_/:é🚀\u{0}~,".chars().collect();
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let len = rand::random_range(0..12);
            let name: String = (0..len)
                .map(|_| alphabet[rand::random_range(0..alphabet.len())])
                .collect();
            let token = encode_channel(&name);
            assert!(!token.is_empty());
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'.' && b != b'*' && b != b'>'),
                "{name:?} -> {token:?}"
            );
            assert_eq!(decode_token(&token).as_deref(), Some(name.as_str()));
            if let Some(other) = seen.insert(token.clone(), name.clone()) {
                assert_eq!(other, name, "two names share {token:?}");
            }
        }
    }

    #[test]
    fn long_names_use_a_digest_under_the_limit() {
        let map = SubjectMap::new("herald.ch", 64).unwrap();
        assert_eq!(map.channel("news"), "herald.ch.news");
        let long = "x".repeat(100);
        let subject = map.channel(&long);
        assert!(subject.len() <= 64, "{subject}");
        assert!(subject.starts_with("herald.ch.#"));
        assert_eq!(subject.len(), "herald.ch.".len() + DIGEST_TOKEN_LEN);
        assert_ne!(subject, map.channel(&"x".repeat(101)));
        // Escaping counts towards the limit.
        let dots = ".".repeat(20);
        assert!(map.channel(&dots).starts_with("herald.ch.#"));
    }

    #[test]
    fn prefixes_are_validated() {
        for ok in ["herald.ch", "a", "app-1.herald", "x_y.z"] {
            assert!(SubjectMap::new(ok, 1024).is_ok(), "{ok}");
        }
        for bad in [
            "", ".a", "a.", "a..b", "a.*", "a.>", "a b", "$SYS.x", "a\tb",
        ] {
            assert!(SubjectMap::new(bad, 1024).is_err(), "{bad}");
        }
        assert!(SubjectMap::new("herald.ch", 20).is_err());
    }

    #[test]
    fn history_subjects_end_with_the_live_token() {
        let map = SubjectMap::new("p.q", 64).unwrap();
        assert_eq!(map.history("chat", "a.b"), "p.q.h.chat.a%2Eb");
        assert_eq!(map.history("", "x"), "p.q.h.%.x");
        assert_eq!(map.history_filter("chat"), "p.q.h.chat.*");
        assert_eq!(map.republish_destination(), "p.q.{{wildcard(1)}}");
        // A long name: the live subject uses the digest, and so does the
        // history subject (even though it is longer than the limit), so
        // that the RePublish lands on the live subject.
        let long = "x".repeat(100);
        let live = map.channel(&long);
        let token = live.rsplit('.').next().unwrap();
        assert!(token.starts_with('#'));
        assert!(map.history("ns", &long).ends_with(&format!(".{token}")));
        // Hostile namespaces are one token too.
        assert_eq!(map.history_filter("a.b *"), "p.q.h.a%2Eb%20%2A.*");
        let long_ns = "n".repeat(200);
        assert!(map.history_filter(&long_ns).starts_with("p.q.h.#"));
    }

    #[test]
    fn stream_and_bucket_names_are_safe_and_distinct() {
        let valid = |n: &str| {
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let a = SubjectMap::new("a.b", 1024).unwrap();
        let b = SubjectMap::new("a_b", 1024).unwrap();
        let names = [
            a.stream_name(""),
            a.stream_name("chat"),
            a.stream_name("ch.at"),
            a.stream_name("ch_at"),
            b.stream_name("chat"),
            a.presence_bucket(),
            b.presence_bucket(),
        ];
        for n in &names {
            assert!(valid(n), "{n}");
            assert!(n.len() < 100, "{n}");
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(a.stream_name("chat"), a.stream_name("chat"), "stable");
        assert!(a.stream_name("chat").starts_with("HERALD_a_b_chat_"));
    }

    #[test]
    fn internal_subjects_never_meet_channels() {
        let map = SubjectMap::new("p", 1024).unwrap();
        let internal = map.internal("sync", "abc");
        assert_eq!(internal, "p._sync.abc");
        // Channel subjects have exactly one token after the prefix.
        assert_eq!(map.channel("_sync.abc"), "p._sync%2Eabc");
    }
}
