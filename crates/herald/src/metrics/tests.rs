use std::collections::HashSet;

use super::*;

#[test]
fn the_catalogue_names_each_metric_once_and_follows_prometheus_conventions() {
    let mut seen = HashSet::new();
    for m in CATALOGUE {
        assert!(seen.insert(m.name), "{} listed twice", m.name);
        assert!(m.name.starts_with("herald_"), "{}", m.name);
        assert!(
            m.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
            "{}",
            m.name
        );
        match m.kind {
            Kind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
            Kind::Gauge => assert!(!m.name.ends_with("_total"), "{}", m.name),
            Kind::Histogram => assert!(m.name.ends_with("_seconds"), "{}", m.name),
        }
        assert!(!m.help.is_empty(), "{} has no description", m.name);
        if m.name.starts_with("herald_broker_") {
            assert_eq!(m.labels.first(), Some(&"broker"), "{}", m.name);
        }
    }
}

#[test]
fn close_codes_outside_the_known_ones_share_one_label() {
    assert_eq!(close_code_label(1000), "1000");
    assert_eq!(close_code_label(4100), "4100");
    assert_eq!(close_code_label(4001), "4001");
    assert_eq!(close_code_label(4321), "other");
    assert_eq!(close_code_label(0), "other");
    let labels: HashSet<_> = (0..=u16::MAX).map(close_code_label).collect();
    assert!(labels.len() < 32, "{} distinct labels", labels.len());
}

#[test]
fn label_values_are_snake_case() {
    let refusals = [
        Refusal::BadRequest,
        Refusal::Tls,
        Refusal::ShuttingDown,
        Refusal::UpgradeMiddleware,
        Refusal::Origin,
        Refusal::RateLimited,
        Refusal::AtCapacity,
        Refusal::ConnectionsPerUser,
        Refusal::ConnectionsPerIp,
        Refusal::Timeout,
        Refusal::MessageBeforeHandshake,
        Refusal::Malformed,
        Refusal::HandshakeMiddleware,
        Refusal::ConnectHook,
    ];
    let limits = [
        Limit::MessageSize,
        Limit::InboundRate,
        Limit::ChannelsPerSocket,
        Limit::ChannelName,
        Limit::InvokesInFlight,
        Limit::ConnectionsPerUser,
        Limit::ConnectionsPerIp,
        Limit::MalformedFrames,
    ];
    let all: Vec<&str> = refusals
        .iter()
        .map(|r| r.label())
        .chain(limits.iter().map(|l| l.label()))
        .collect();
    for label in all {
        assert!(
            label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{label}"
        );
    }
}
