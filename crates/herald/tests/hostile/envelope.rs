//! Property tests of the broker envelope ([`Publication::encode`] and
//! [`Publication::decode`]): every publication and presence event
//! round-trips with the same delivery frame, and no byte string, random
//! or a mutated real envelope, makes the decoder panic or build a frame
//! that is not JSON.

use herald::broker::{MessageKind, Publication, StreamPosition};
use proptest::prelude::*;
use serde_json::Value;
use serde_json::value::RawValue;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).expect("a Value encodes")
}

/// Any publication or presence event.
fn publication() -> impl Strategy<Value = Publication> {
    // Epochs are made by brokers (letters and digits); the envelope's
    // header is `|`-separated, so an epoch never holds one.
    let position = prop::option::of((1u64..u64::MAX, "[^|]{1,12}"));
    prop_oneof![
        3 => (any::<String>(), prop::option::of(json_value()), position).prop_map(|(c, d, p)| {
            Publication::at(
                c,
                d.as_ref().map(raw),
                p.map(|(o, e)| StreamPosition::new(o, e)),
            )
        }),
        1 => (any::<bool>(), any::<String>(), any::<String>(), prop::option::of(any::<String>()))
            .prop_map(|(join, c, client, user)| {
                let kind = if join { MessageKind::Join } else { MessageKind::Leave };
                Publication::presence(kind, c, &client, user.as_deref())
            }),
    ]
}

fn check_decoded(p: &Publication) -> Result<(), TestCaseError> {
    let frame: Value = serde_json::from_slice(&p.frame)
        .map_err(|e| TestCaseError::fail(format!("frame is not JSON ({e}): {:?}", p.frame)))?;
    prop_assert!(frame["event"].is_string());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelopes_round_trip(p in publication()) {
        let envelope = p.encode();
        let back = Publication::decode(&envelope).map_err(|e| TestCaseError::fail(format!("{e}: {envelope:?}")))?;
        prop_assert_eq!(&back.channel, &p.channel);
        prop_assert_eq!(back.kind, p.kind);
        prop_assert_eq!(&back.position, &p.position);
        prop_assert_eq!(&back.frame, &p.frame);
        prop_assert_eq!(back.data.as_deref().map(RawValue::get), p.data.as_deref().map(RawValue::get));
        prop_assert_eq!(back.encode(), envelope);
        check_decoded(&back)?;
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256), prefixed in any::<bool>()) {
        let input = if prefixed { [b"h1|".as_slice(), &bytes].concat() } else { bytes };
        if let Ok(p) = Publication::decode(&input) {
            check_decoded(&p)?;
        }
    }

    /// Real envelopes with bytes flipped, inserted or cut: decoded into a
    /// sound publication or refused.
    #[test]
    fn mutated_envelopes_decode_or_fail_cleanly(
        p in publication(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = p.encode().to_vec();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        if let Ok(p) = Publication::decode(&bytes) {
            check_decoded(&p)?;
            prop_assert_eq!(Publication::decode(&p.encode()).map(|q| q.frame), Ok(p.frame.clone()));
        }
    }
}
