//! `[channels]` and `[namespaces.NAME]`: the channel options a config file
//! may set, over the defaults of [`herald::ChannelOptions`].

use std::time::Duration;

use herald::{ChannelOptions, Rule, UnknownNamespaces};
use serde::Deserialize;

use super::de::{rule, unknown_namespaces};

/// The options a namespace table may set (every key optional; see
/// [`herald::ChannelOptions`] for the defaults).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSection {
    /// Publications kept per channel (0: no history).
    pub history_size: Option<usize>,
    /// How long a channel's history lives after its last publication.
    #[serde(default, with = "humantime_serde")]
    pub history_ttl: Option<Duration>,
    /// Whether clients may recover on subscribe (needs history).
    pub recover: Option<bool>,
    /// Whether the namespace keeps presence.
    pub presence: Option<bool>,
    /// Whether subscribers receive join/leave events.
    pub join_leave: Option<bool>,
    /// Who may subscribe: `any`, `authenticated` or `none`.
    #[serde(default, deserialize_with = "rule")]
    pub subscribe: Option<Rule>,
    /// Who may publish: `any`, `authenticated` or `none`.
    #[serde(default, deserialize_with = "rule")]
    pub publish: Option<Rule>,
}

/// `[channels]`: the options of channels without a namespace, and what a
/// channel in an unknown namespace is.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsSection {
    /// The channel options.
    #[serde(flatten)]
    pub options: NamespaceSection,
    /// `plain` (default) or `refuse`.
    #[serde(default, deserialize_with = "unknown_namespaces")]
    pub unknown_namespaces: Option<UnknownNamespaces>,
}

impl NamespaceSection {
    /// The options with the keys that are set applied over the defaults.
    pub fn options(&self) -> ChannelOptions {
        let mut o = ChannelOptions::default();
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { o.$field = v; } )* };
        }
        set!(
            history_size,
            history_ttl,
            recover,
            presence,
            join_leave,
            subscribe,
            publish
        );
        o
    }
}
