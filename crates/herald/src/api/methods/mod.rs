//! The API's methods: one path each (`POST /api/<method>`), the same names
//! in a batch. Each method takes its params (a JSON object, unknown fields
//! refused) and returns its result; [`call`] runs one by name.
//!
//! * [`publish`]: `publish`, `broadcast`.
//! * [`users`]: `send`, `disconnect`, `subscribe`, `unsubscribe`.
//! * [`reads`]: `presence`, `presence_stats`, `history`, `history_remove`.
//! * [`cluster`]: `channels`, `info`.
//!
//! `batch` (in `super::batch`) runs several of them in one call.

mod cluster;
mod publish;
mod reads;
mod users;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::Api;
use super::error::ApiError;
use crate::cluster::RESERVED_PREFIX;

/// Every method of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Publish,
    Broadcast,
    Send,
    Disconnect,
    Subscribe,
    Unsubscribe,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
    Channels,
    Info,
    Batch,
}

impl Method {
    /// Every method, in the order of the docs.
    pub(crate) const ALL: [Method; 13] = [
        Method::Publish,
        Method::Broadcast,
        Method::Send,
        Method::Disconnect,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Presence,
        Method::PresenceStats,
        Method::History,
        Method::HistoryRemove,
        Method::Channels,
        Method::Info,
        Method::Batch,
    ];

    /// Its name: the last segment of its path, the `method` of a batch
    /// command, the `method` label of its metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Broadcast => "broadcast",
            Method::Send => "send",
            Method::Disconnect => "disconnect",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::HistoryRemove => "history_remove",
            Method::Channels => "channels",
            Method::Info => "info",
            Method::Batch => "batch",
        }
    }

    /// The method named `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Runs `method` (not `batch`) with `params`; `None` params are `{}`.
pub(crate) async fn call(
    api: &Api,
    method: Method,
    params: Option<&RawValue>,
) -> Result<Box<RawValue>, ApiError> {
    let raw = params.map_or("{}", RawValue::get);
    match method {
        Method::Publish => encode(publish::publish(api, parse(raw)?).await?),
        Method::Broadcast => encode(publish::broadcast(api, parse(raw)?).await?),
        Method::Send => encode(users::send(api, parse(raw)?).await?),
        Method::Disconnect => encode(users::disconnect(api, parse(raw)?).await?),
        Method::Subscribe => encode(users::subscribe(api, parse(raw)?).await?),
        Method::Unsubscribe => encode(users::unsubscribe(api, parse(raw)?).await?),
        Method::Presence => encode(reads::presence(api, parse(raw)?).await?),
        Method::PresenceStats => encode(reads::presence_stats(api, parse(raw)?).await?),
        Method::History => encode(reads::history(api, parse(raw)?).await?),
        Method::HistoryRemove => encode(reads::history_remove(api, parse(raw)?).await?),
        Method::Channels => encode(cluster::channels(api, parse(raw)?).await?),
        Method::Info => encode(cluster::info(api, parse(raw)?)),
        Method::Batch => Err(ApiError::invalid_value("a batch cannot contain a batch")),
    }
}

/// The params of a method, or a 400 naming what does not fit.
fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    if !raw.trim_start().starts_with('{') {
        return Err(ApiError::bad_request("params must be a JSON object"));
    }
    serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid params: {e}")))
}

fn encode<T: Serialize>(value: T) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(&value).map_err(|e| ApiError::internal(e.to_string()))
}

/// Integer params as docs/openapi.yaml's `integer`: JSON integers, and
/// numbers with a zero fraction (`5.0`), which JSON Schema counts as
/// integers too and which a backend's JSON encoder may write for an integer
/// it holds as a float. Fractions, negative numbers and values out of the
/// field's range are refused (400).
pub(crate) mod integer {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, Deserializer, Visitor};

    struct Int<T>(PhantomData<T>);

    impl<T: TryFrom<u64>> Visitor<'_> for Int<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an integer from 0 to {}", max::<T>())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
            }
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            // 2^64 is the first f64 above u64::MAX.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                // Integral and in range: the cast is exact.
                self.visit_u64(v as u64)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }

    /// The largest value of `T` (for the error message): of the values
    /// 2^bits - 1, the largest `T` holds.
    fn max<T: TryFrom<u64>>() -> u64 {
        (1..=64)
            .rev()
            .map(|bits| u64::MAX >> (64 - bits))
            .find(|&m| T::try_from(m).is_ok())
            .unwrap_or(0)
    }

    /// An integer field.
    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        d.deserialize_any(Int(PhantomData))
    }

    /// An optional integer field (`null` is absent); with `#[serde(default)]`.
    pub(crate) fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        struct Present<T>(T);
        impl<'de, T: TryFrom<u64>> serde::Deserialize<'de> for Present<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize(d).map(Present)
            }
        }
        <Option<Present<T>> as serde::Deserialize>::deserialize(d).map(|o| o.map(|p| p.0))
    }
}

/// An empty result: `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// Refuses a reserved channel with 403 (the publishing and read paths
/// refuse it too, as a malformed name; the API tells it apart).
fn check_reserved(channel: &str) -> Result<(), ApiError> {
    if channel.starts_with(RESERVED_PREFIX) {
        return Err(ApiError::forbidden(format!(
            "Channel names starting with {RESERVED_PREFIX} are reserved"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        assert_eq!(Method::from_name("nope"), None);
        assert_eq!(Method::from_name("Publish"), None);
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        #[derive(Debug, serde::Deserialize)]
        struct P {
            #[serde(deserialize_with = "integer::deserialize")]
            n: u64,
            #[serde(default, deserialize_with = "integer::option")]
            code: Option<u16>,
        }
        let p = |s: &str| serde_json::from_str::<P>(s).map(|p| (p.n, p.code));
        assert_eq!(p(r#"{"n":5}"#).unwrap(), (5, None));
        assert_eq!(p(r#"{"n":5.0,"code":4500.0}"#).unwrap(), (5, Some(4500)));
        assert_eq!(p(r#"{"n":0,"code":null}"#).unwrap(), (0, None));
        assert_eq!(p(r#"{"n":1e3}"#).unwrap(), (1000, None));
        for bad in [
            r#"{"n":5.5}"#,
            r#"{"n":-1}"#,
            r#"{"n":-1.0}"#,
            r#"{"n":1e300}"#,
            r#"{"n":"5"}"#,
            r#"{"n":0,"code":65536}"#,
            r#"{"n":0,"code":70000.0}"#,
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        let e = p(r#"{"n":0,"code":70000}"#).unwrap_err().to_string();
        assert!(e.contains("an integer from 0 to 65535"), "{e}");
    }

    #[test]
    fn reserved_channels_are_forbidden() {
        assert_eq!(
            check_reserved("#herald/nodes").unwrap_err().status,
            http::StatusCode::FORBIDDEN
        );
        assert!(check_reserved("#herald").is_ok());
        assert!(check_reserved("news").is_ok());
    }
}
