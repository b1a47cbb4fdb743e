//! Channel namespaces: what a channel keeps (history, presence) and who may
//! use it, chosen by its name.
//!
//! A channel `NAME:rest` takes the [`ChannelOptions`] of namespace `NAME`; a
//! channel without a colon takes those of the server's default options
//! ([`ServerBuilder::channels`](crate::ServerBuilder::channels), `[channels]`
//! in a config file). A channel whose prefix names no namespace is, by
//! default, a plain channel with the default options (its whole name is the
//! channel); with [`UnknownNamespaces::Refuse`] it is refused with
//! `UnknownNamespaceError`.
//!
//! The rules ([`Rule`]) are checked before middleware: a middleware can
//! still refuse what a rule allows, never allow what a rule refuses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::ErrorPayload;

use crate::broker::HistoryPolicy;
use crate::hooks::HookEndpoint;
use crate::socket::Socket;

/// Error name of a refused subscribe or publish (a namespace rule, or
/// middleware choosing the same name).
pub const FORBIDDEN: &str = "ForbiddenError";
/// Error name of a channel in a namespace that does not exist, with
/// [`UnknownNamespaces::Refuse`].
pub const UNKNOWN_NAMESPACE: &str = "UnknownNamespaceError";
/// Error name of a history or presence request on a channel that keeps none.
pub const NOT_AVAILABLE: &str = "NotAvailableError";

/// Most publications a channel may keep.
pub const MAX_HISTORY_SIZE: usize = 1_000_000;

/// Who may subscribe to, or publish on, the channels of a namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rule {
    /// Every client.
    #[default]
    Any,
    /// Clients with a valid auth token.
    Authenticated,
    /// No client: only server code (for publishing: [`crate::Exchange`]).
    None,
}

impl Rule {
    /// The config-file spelling (`any`, `authenticated`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Any => "any",
            Rule::Authenticated => "authenticated",
            Rule::None => "none",
        }
    }

    /// Whether `socket` passes the rule.
    pub fn allows(self, socket: &Socket) -> bool {
        match self {
            Rule::Any => true,
            Rule::Authenticated => socket.is_authenticated(),
            Rule::None => false,
        }
    }
}

impl std::str::FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(Rule::Any),
            "authenticated" => Ok(Rule::Authenticated),
            "none" => Ok(Rule::None),
            other => Err(format!(
                "unknown rule {other:?}: expected \"any\", \"authenticated\" or \"none\""
            )),
        }
    }
}

/// What to do with a channel `NAME:rest` when no namespace `NAME` exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownNamespaces {
    /// Treat the whole name as a plain channel with the default options.
    #[default]
    Plain,
    /// Refuse it with `UnknownNamespaceError`.
    Refuse,
}

/// The options of a namespace (or of the channels without one).
///
/// ```
/// use std::time::Duration;
/// use herald::{ChannelOptions, Rule};
///
/// let chat = ChannelOptions {
///     history_size: 1000,
///     history_ttl: Duration::from_secs(600),
///     recover: true,
///     presence: true,
///     join_leave: true,
///     subscribe: Rule::Authenticated,
///     publish: Rule::Authenticated,
///     ..ChannelOptions::default()
/// };
/// let server = herald::Server::builder().namespace("chat", chat).build();
/// # let _ = server;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Publications kept per channel; 0 keeps no history (the default).
    pub history_size: usize,
    /// How long a channel's history lives after its last publication.
    /// Default 10 minutes.
    pub history_ttl: Duration,
    /// Whether clients may recover missed publications on subscribe
    /// (needs history). Default false.
    pub recover: bool,
    /// Whether the server keeps who is subscribed, across the cluster.
    /// Default false.
    pub presence: bool,
    /// Whether subscribers receive `#herald/join` and `#herald/leave`
    /// events. Default false.
    pub join_leave: bool,
    /// Who may subscribe. Default [`Rule::Any`].
    pub subscribe: Rule,
    /// Who may publish. Default [`Rule::Any`].
    pub publish: Rule,
    /// The backend hook asked about each client subscribe (after the rule
    /// and the middleware; see [`crate::hooks`]). Default none.
    pub subscribe_hook: Option<HookEndpoint>,
    /// The backend hook asked about each client publication (after the
    /// rule and the middleware); it may replace the data. Default none.
    pub publish_hook: Option<HookEndpoint>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            history_size: 0,
            history_ttl: Duration::from_secs(600),
            recover: false,
            presence: false,
            join_leave: false,
            subscribe: Rule::Any,
            publish: Rule::Any,
            subscribe_hook: None,
            publish_hook: None,
        }
    }
}

impl ChannelOptions {
    /// Whether the channels keep history.
    pub fn has_history(&self) -> bool {
        self.history_size > 0
    }

    /// Checks the options; `what` names them in the error (`namespace
    /// "chat"`).
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.history_size > MAX_HISTORY_SIZE {
            return Err(format!(
                "{what}: history_size {} is more than {MAX_HISTORY_SIZE}",
                self.history_size
            ));
        }
        if self.has_history() && self.history_ttl.is_zero() {
            return Err(format!("{what}: history_ttl must be greater than zero"));
        }
        if self.recover && !self.has_history() {
            return Err(format!("{what}: recover needs history (set history_size)"));
        }
        for (key, hook) in [
            ("subscribe_hook", &self.subscribe_hook),
            ("publish_hook", &self.publish_hook),
        ] {
            if let Some(hook) = hook {
                hook.validate(&format!("{what} {key}"))?;
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a namespace: ASCII letters, digits, `_` and `-`.
pub fn valid_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The options of one namespace, with what the server derives from them.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The namespace name, empty for the default options.
    pub(crate) name: Arc<str>,
    pub(crate) options: ChannelOptions,
    /// The history policy handed to the broker, when the channels keep
    /// history.
    pub(crate) history: Option<HistoryPolicy>,
}

impl Resolved {
    fn new(name: &str, options: ChannelOptions) -> Arc<Self> {
        let name: Arc<str> = Arc::from(name);
        let history = options.has_history().then(|| HistoryPolicy {
            size: options.history_size,
            ttl: options.history_ttl,
            namespace: name.clone(),
        });
        Arc::new(Self {
            name,
            options,
            history,
        })
    }
}

/// Every namespace of a server, and how a channel name finds its own.
#[derive(Debug)]
pub(crate) struct Namespaces {
    default: Arc<Resolved>,
    named: BTreeMap<String, Arc<Resolved>>,
    unknown: UnknownNamespaces,
}

impl Namespaces {
    /// Validates and indexes the options.
    pub(crate) fn new(
        default: &ChannelOptions,
        named: &BTreeMap<String, ChannelOptions>,
        unknown: UnknownNamespaces,
    ) -> Result<Self, String> {
        default.validate("[channels]")?;
        let mut index = BTreeMap::new();
        for (name, options) in named {
            if !valid_namespace_name(name) {
                return Err(format!(
                    "namespace {name:?}: a namespace name is ASCII letters, digits, '_' and '-'"
                ));
            }
            options.validate(&format!("namespace {name:?}"))?;
            index.insert(name.clone(), Resolved::new(name, options.clone()));
        }
        Ok(Self {
            default: Resolved::new("", default.clone()),
            named: index,
            unknown,
        })
    }

    /// The options of `channel`.
    pub(crate) fn resolve(&self, channel: &str) -> Result<&Arc<Resolved>, ErrorPayload> {
        let Some((prefix, _)) = channel.split_once(':') else {
            return Ok(&self.default);
        };
        match self.named.get(prefix) {
            Some(ns) => Ok(ns),
            None if self.unknown == UnknownNamespaces::Refuse => Err(ErrorPayload::new(
                UNKNOWN_NAMESPACE,
                format!("Channel {channel} is in namespace {prefix}, which does not exist"),
            )),
            None => Ok(&self.default),
        }
    }

    /// Whether any channel can keep presence (the refresh task is needed).
    pub(crate) fn any_presence(&self) -> bool {
        self.default.options.presence || self.named.values().any(|n| n.options.presence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_history() -> ChannelOptions {
        ChannelOptions {
            history_size: 10,
            recover: true,
            ..ChannelOptions::default()
        }
    }

    #[test]
    fn channels_find_their_namespace() {
        let mut named = BTreeMap::new();
        named.insert("chat".to_owned(), with_history());
        let ns =
            Namespaces::new(&ChannelOptions::default(), &named, UnknownNamespaces::Plain).unwrap();
        assert_eq!(&*ns.resolve("chat:room:1").unwrap().name, "chat");
        assert!(ns.resolve("chat:x").unwrap().history.is_some());
        assert_eq!(&*ns.resolve("news").unwrap().name, "");
        assert_eq!(
            &*ns.resolve("other:x").unwrap().name,
            "",
            "plain by default"
        );
        assert_eq!(&*ns.resolve(":x").unwrap().name, "");
        assert!(ns.resolve("news").unwrap().history.is_none());

        let strict = Namespaces::new(
            &ChannelOptions::default(),
            &named,
            UnknownNamespaces::Refuse,
        )
        .unwrap();
        let e = strict.resolve("other:x").unwrap_err();
        assert_eq!(e.name, UNKNOWN_NAMESPACE);
        assert!(strict.resolve("news").is_ok());
    }

    #[test]
    fn bad_options_are_named() {
        let recover_only = ChannelOptions {
            recover: true,
            ..ChannelOptions::default()
        };
        let e = recover_only.validate("namespace \"x\"").unwrap_err();
        assert!(
            e.contains("namespace \"x\"") && e.contains("recover"),
            "{e}"
        );
        let mut named = BTreeMap::new();
        named.insert("bad name".to_owned(), ChannelOptions::default());
        let e = Namespaces::new(&ChannelOptions::default(), &named, UnknownNamespaces::Plain)
            .unwrap_err();
        assert!(e.contains("bad name"), "{e}");
        let zero_ttl = ChannelOptions {
            history_size: 1,
            history_ttl: Duration::ZERO,
            ..ChannelOptions::default()
        };
        assert!(zero_ttl.validate("x").is_err());
        assert_eq!("authenticated".parse::<Rule>(), Ok(Rule::Authenticated));
        assert!("everyone".parse::<Rule>().is_err());
    }
}
