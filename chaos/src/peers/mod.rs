//! The pools under test, behind one trait ([`Subject`]): ours and its peers, each peer at its
//! documented defaults and with recommended timeouts.
//!
//! A peer is one file: its [`Peer`] (`PEER`, with its setups and how each is opened) and its
//! `Subject` implementation, plus its name in the `peers!` list below. The application
//! handlers the suite runs on every pool, with their SQL, are in [`handlers`].

pub mod handlers;
pub mod kind;
pub mod subject;

pub use handlers::Handler;
pub use kind::{ACQUIRE_TIMEOUT, MAX_SIZE, OpenArgs, Peer, PoolKind, QUERY_TIMEOUT, Setup};
pub use subject::{Answer, BoxFut, OpenError, Subject};

/// Declares the peer modules and lists them, in report order: a new peer is one more name.
macro_rules! peers {
    ($($peer:ident),+ $(,)?) => {
        $(pub mod $peer;)+
        /// Every pool the suite can put under test, in report order.
        pub const PEERS: &[&Peer] = &[$(&$peer::PEER),+];
    };
}

peers!(ours, deadpool, bb8, sqlx);

pub use ours::{POOL, POOL_QUERY, pool_config};

/// Every setup of every peer, in report order.
pub fn all_kinds() -> Vec<PoolKind> {
    PEERS
        .iter()
        .flat_map(|p| p.setups.iter().map(PoolKind::of))
        .collect()
}

/// The kind a report names.
pub fn kind_named(name: &str) -> Option<PoolKind> {
    all_kinds().into_iter().find(|k| k.name() == name)
}

/// Which pools to run (`--pool`): one peer with all its setups, or all of them.
#[derive(Clone, Copy)]
pub struct PoolChoice(Option<&'static Peer>);

impl PoolChoice {
    /// Every pool, side by side.
    pub const ALL: PoolChoice = PoolChoice(None);
    /// Ours, by both paths.
    pub const POOL: PoolChoice = PoolChoice(Some(&ours::PEER));

    /// The pools this choice puts under test.
    pub fn kinds(self) -> Vec<PoolKind> {
        match self.0 {
            Some(peer) => peer.setups.iter().map(PoolKind::of).collect(),
            None => all_kinds(),
        }
    }

    /// The `--pool` value.
    pub fn name(self) -> &'static str {
        self.0.map_or("all", |p| p.name)
    }
}

impl PartialEq for PoolChoice {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for PoolChoice {}

impl std::fmt::Debug for PoolChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

static CHOICES: std::sync::LazyLock<Vec<PoolChoice>> = std::sync::LazyLock::new(|| {
    PEERS
        .iter()
        .map(|p| PoolChoice(Some(*p)))
        .chain([PoolChoice::ALL])
        .collect()
});

impl clap::ValueEnum for PoolChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &CHOICES
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = self.0.map_or("All of them, side by side.", |p| p.about);
        Some(clap::builder::PossibleValue::new(self.name()).help(help))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setup_has_a_distinct_name_and_ours_come_first() {
        let kinds = all_kinds();
        let mut names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(&names[..2], ["pool", "pool+query"]);
        assert!(kinds[0].is_ours() && kinds[1].is_ours() && !kinds[2].is_ours());
        names.sort();
        names.dedup();
        assert_eq!(names.len(), kinds.len());
        assert_eq!(
            kind_named("bb8+timeouts").map(|k| k.name()),
            Some("bb8+timeouts")
        );
        assert_eq!(PoolChoice::POOL.kinds(), vec![POOL, POOL_QUERY]);
        assert_eq!(PoolChoice::ALL.kinds().len(), kinds.len());
    }
}
