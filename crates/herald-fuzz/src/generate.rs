//! Structured generators: inputs built to be valid, or nearly valid, for
//! each format, so that the fuzzer reaches past the first syntax check
//! (every event of the protocol with the data shapes it expects, cids of
//! every JSON number form, batches, deep nesting; envelopes of every kind;
//! JWTs with every header trick and claim type, some correctly signed).

use base64::Engine as _;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};

const EVENTS: &[&str] = &[
    "#handshake",
    "#authenticate",
    "#removeAuthToken",
    "#subscribe",
    "#unsubscribe",
    "#publish",
    "#kickOut",
    "#setAuthToken",
    "#herald/history",
    "#herald/presence",
    "#herald/presenceStats",
    "#herald/join",
    "#herald/unrecoverable",
    "echo",
    "",
];

fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A random string: ASCII, escapes, control characters, non-BMP.
pub fn string(rng: &mut SmallRng) -> String {
    let n = rng.random_range(0..12);
    (0..n)
        .map(|_| match rng.random_range(0..8) {
            0 => '"',
            1 => '\\',
            2 => char::from(rng.random_range(0u8..0x20)),
            3 => 'é',
            4 => '💩',
            5 => '|',
            _ => char::from(rng.random_range(b'a'..=b'z')),
        })
        .collect()
}

/// A JSON number of any form, as text.
pub fn number(rng: &mut SmallRng) -> String {
    match rng.random_range(0..9) {
        0 => rng.random::<u64>().to_string(),
        1 => rng.random::<i64>().to_string(),
        2 => format!("{}", rng.random::<f64>() * 1e300),
        3 => "18446744073709551616".to_owned(),
        4 => format!("{}e{}", rng.random_range(1..9), rng.random_range(-400..400)),
        5 => "-0".to_owned(),
        6 => format!("0.{}", "0".repeat(rng.random_range(1..400))),
        7 => "1".repeat(rng.random_range(1..500)),
        _ => rng.random_range(0..100).to_string(),
    }
}

/// A random JSON value, nested up to `depth`.
pub fn value(rng: &mut SmallRng, depth: u32) -> Value {
    let leaf = depth == 0 || rng.random_bool(0.4);
    if leaf {
        return match rng.random_range(0..5) {
            0 => Value::Null,
            1 => Value::Bool(rng.random()),
            2 => serde_json::from_str(&number(rng)).unwrap_or(Value::from(0)),
            _ => Value::String(string(rng)),
        };
    }
    let n = rng.random_range(0..5);
    if rng.random_bool(0.5) {
        Value::Array((0..n).map(|_| value(rng, depth - 1)).collect())
    } else {
        Value::Object(
            (0..n)
                .map(|_| (string(rng), value(rng, depth - 1)))
                .collect(),
        )
    }
}

fn cid_field(rng: &mut SmallRng) -> String {
    match rng.random_range(0..6) {
        0 => String::new(),
        1 => format!(",\"cid\":\"{}\"", rng.random_range(0..9)),
        2 => ",\"cid\":null".to_owned(),
        _ => format!(",\"cid\":{}", number(rng)),
    }
}

/// The data an event expects, or something else half the time.
fn event_data(rng: &mut SmallRng, event: &str) -> Value {
    if rng.random_bool(0.3) {
        return value(rng, 3);
    }
    match event {
        "#handshake" => json!({"authToken": value(rng, 1)}),
        "#subscribe" => {
            let mut d = json!({"channel": string(rng), "data": value(rng, 2)});
            if rng.random_bool(0.5) {
                d["recover"] = json!({"offset": value(rng, 0), "epoch": string(rng)});
            }
            d
        }
        "#publish" => {
            json!({"channel": string(rng), "data": value(rng, 3), "offset": value(rng, 0), "epoch": value(rng, 0)})
        }
        "#kickOut" => json!({"channel": string(rng), "message": value(rng, 1)}),
        "#setAuthToken" => json!({"token": value(rng, 0)}),
        "#unsubscribe" | "#authenticate" => Value::String(string(rng)),
        _ => value(rng, 3),
    }
}

/// One protocol frame as text.
pub fn frame(rng: &mut SmallRng) -> String {
    if rng.random_bool(0.1) {
        // A reply.
        return format!(
            "{{\"rid\":{},\"data\":{},\"error\":{}}}",
            number(rng),
            value(rng, 2),
            value(rng, 2)
        );
    }
    let event = if rng.random_bool(0.9) {
        Value::from(*pick(rng, EVENTS))
    } else {
        value(rng, 1)
    };
    let data = event_data(rng, event.as_str().unwrap_or(""));
    format!("{{\"event\":{event},\"data\":{data}{}}}", cid_field(rng))
}

/// A whole WebSocket message: a frame, a batch, deep nesting, a ping.
pub fn message(rng: &mut SmallRng) -> Vec<u8> {
    match rng.random_range(0..10) {
        0 => {
            let n = rng.random_range(0..40);
            let frames: Vec<String> = (0..n).map(|_| frame(rng)).collect();
            format!("[{}]", frames.join(",")).into_bytes()
        }
        1 => {
            // Many tiny items: what a batch costs per item.
            let n = rng.random_range(1..4000);
            let item = *pick(rng, &["{}", "1", "[]", "{\"event\":\"x\"}", "\"\""]);
            format!("[{}]", vec![item; n].join(",")).into_bytes()
        }
        2 => {
            let d = rng.random_range(1..400);
            let (open, close) = *pick(
                rng,
                &[
                    ("[", "]"),
                    ("{\"a\":", "}"),
                    ("{\"event\":\"e\",\"data\":", "}"),
                ],
            );
            format!("{}1{}", open.repeat(d), close.repeat(d)).into_bytes()
        }
        3 => Vec::new(),
        _ => frame(rng).into_bytes(),
    }
}

/// A broker envelope: a real one, or one with a hand-made header.
pub fn envelope(rng: &mut SmallRng) -> Vec<u8> {
    if rng.random_bool(0.5) {
        let channel = string(rng);
        let data = rng
            .random_bool(0.8)
            .then(|| serde_json::value::to_raw_value(&value(rng, 3)).expect("a Value encodes"));
        let p = match rng.random_range(0..4) {
            0 => herald::Publication::presence(
                herald::broker::MessageKind::Join,
                channel,
                &string(rng),
                Some(&string(rng)),
            ),
            1 => herald::Publication::at(
                channel,
                data,
                Some(herald::StreamPosition::new(
                    rng.random_range(1..u64::MAX),
                    "ep0ch",
                )),
            ),
            _ => herald::Publication::new(channel, data),
        };
        return p.encode().to_vec();
    }
    let kind = *pick(rng, &["p", "j", "l", "x", ""]);
    let channel = string(rng);
    let len = if rng.random_bool(0.8) {
        channel.len().to_string()
    } else {
        number(rng)
    };
    let offset = if rng.random_bool(0.7) {
        rng.random_range(0..5).to_string()
    } else {
        number(rng)
    };
    let epoch = if rng.random_bool(0.5) {
        String::new()
    } else {
        string(rng)
    };
    format!(
        "h1|{kind}|{offset}|{epoch}|{len}|{channel}{}",
        value(rng, 3)
    )
    .into_bytes()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT: correctly signed with `secret` at times, otherwise forged in one
/// of the usual ways (alg none, other algorithms, key ids, bad encodings).
pub fn token(rng: &mut SmallRng, secret: &[u8]) -> Vec<u8> {
    let mut claims = serde_json::Map::new();
    for claim in ["sub", "exp", "nbf", "iat", "aud", "iss"] {
        if rng.random_bool(0.5) {
            let v = match (claim, rng.random_range(0..3)) {
                ("exp" | "nbf" | "iat", 0) => Value::from(rng.random_range(0..4_000_000_000u64)),
                ("aud", 0) => json!(["fuzz", string(rng)]),
                ("aud", 1) => json!("fuzz"),
                ("iss", 0) => json!("https://fuzz.test"),
                _ => value(rng, 2),
            };
            claims.insert(claim.to_owned(), v);
        }
    }
    let claims = Value::Object(claims);
    if rng.random_bool(0.3) {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        if rng.random_bool(0.3) {
            header.kid = Some(string(rng));
        }
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        if let Ok(t) = jsonwebtoken::encode(&header, &claims, &key) {
            return t.into_bytes();
        }
    }
    let alg = *pick(
        rng,
        &[
            "none", "None", "HS256", "HS512", "RS256", "ES256", "EdDSA", "",
        ],
    );
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if rng.random_bool(0.3) {
        header["kid"] = json!(*pick(rng, &["../../dev/null", "' OR 1=1 --", "k1", ""]));
    }
    if rng.random_bool(0.2) {
        header = value(rng, 2);
    }
    let header = b64(header.to_string().as_bytes());
    let payload = b64(claims.to_string().as_bytes());
    let signature = match rng.random_range(0..4) {
        0 => String::new(),
        1 => b64(&rng.random::<[u8; 32]>()),
        2 => "!!notbase64!!".to_owned(),
        _ => b64(string(rng).as_bytes()),
    };
    let parts = match rng.random_range(0..8) {
        0 => format!("{header}.{payload}"),
        1 => format!("{header}.{payload}.{signature}.{signature}"),
        2 => format!("{header}=.{payload}==.{signature}"),
        _ => format!("{header}.{payload}.{signature}"),
    };
    parts.into_bytes()
}
