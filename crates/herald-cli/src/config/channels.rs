//! `[channels]` and `[namespaces.NAME]`: the channel options a config file
//! may set, over the defaults of [`herald::ChannelOptions`].
//!
//! Both tables have the same option keys (`[channels]` adds
//! `unknown_namespaces`); one macro declares them, so the two cannot drift
//! apart. They are plain structs rather than a `#[serde(flatten)]`, which
//! would lose the line of a bad value and hide the keys from
//! [`super::keys`].

use std::time::Duration;

use herald::{ChannelOptions, UnknownNamespaces};
use serde::{Deserialize, Serialize};

use super::de;

/// `to.f = v` for every field `f` that is `Some(v)` in `from`.
macro_rules! set_some {
    ($from:expr => $to:expr; $($field:ident),*) => {
        $( if let Some(v) = $from.$field.clone() { $to.$field = v; } )*
    };
}
pub(super) use set_some;

macro_rules! options_section {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Publications kept per channel (0: no history).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub history_size: Option<usize>,
            /// How long a channel's history lives after its last publication.
            #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
            pub history_ttl: Option<Duration>,
            /// Whether clients may recover on subscribe (needs history).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub recover: Option<bool>,
            /// Whether the namespace keeps presence.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub presence: Option<bool>,
            /// Whether subscribers receive join/leave events.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub join_leave: Option<bool>,
            /// Who may subscribe: `any`, `authenticated` or `none`.
            #[serde(default, with = "de::rule", skip_serializing_if = "Option::is_none")]
            pub subscribe: Option<herald::Rule>,
            /// Who may publish: `any`, `authenticated` or `none`.
            #[serde(default, with = "de::rule", skip_serializing_if = "Option::is_none")]
            pub publish: Option<herald::Rule>,
            $($extra)*
        }

        impl $name {
            /// The options with the keys that are set applied over the defaults.
            pub fn options(&self) -> ChannelOptions {
                let mut o = ChannelOptions::default();
                set_some!(self => o; history_size, history_ttl, recover, presence, join_leave, subscribe, publish);
                o
            }

            /// Sets every option key to its value in `o` (for `print-config`).
            pub fn set_options(&mut self, o: &ChannelOptions) {
                self.history_size = Some(o.history_size);
                self.history_ttl = Some(o.history_ttl);
                self.recover = Some(o.recover);
                self.presence = Some(o.presence);
                self.join_leave = Some(o.join_leave);
                self.subscribe = Some(o.subscribe);
                self.publish = Some(o.publish);
            }
        }
    };
}

options_section!(
    /// `[namespaces.NAME]`: the options of the channels `NAME:...` (every
    /// key optional; see [`herald::ChannelOptions`] for the defaults).
    NamespaceSection {}
);

options_section!(
    /// `[channels]`: the options of channels without a namespace, and what
    /// a channel in an unknown namespace is.
    ChannelsSection {
        /// `plain` (default) or `refuse`.
        #[serde(default, with = "de::unknown_namespaces", skip_serializing_if = "Option::is_none")]
        pub unknown_namespaces: Option<UnknownNamespaces>,
    }
);
