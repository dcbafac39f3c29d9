//! One link's health: how long it may take to connect, when a broken connection gets an ICE
//! restart, and when it is given up. Fed the connection's state and time; answers with what to
//! do. `callcore.js` has the same rules (`LinkHealth`), and both pass
//! `scenarios/link-health.json`.

use crate::Millis;
use serde::Serialize;

/// The schedule. The defaults are the protocol's (`docs/protocol.md`, rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthRules {
    /// A link that never connected is given up after this long.
    pub setup_deadline_ms: Millis,
    /// A connection broken this long gets an ICE restart (by the side that made the first offer).
    pub restart_after_ms: Millis,
    /// At most one restart per this interval.
    pub restart_every_ms: Millis,
    /// Restarts tried before waiting for the end.
    pub max_restarts: u32,
    /// A connection broken this long is given up.
    pub give_up_after_ms: Millis,
}

impl Default for HealthRules {
    fn default() -> Self {
        HealthRules {
            setup_deadline_ms: 30_000,
            restart_after_ms: 2_000,
            restart_every_ms: 5_000,
            max_restarts: 5,
            give_up_after_ms: 30_000,
        }
    }
}

/// The peer connection's state, as far as health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Connected,
    /// `disconnected` or `failed`: media does not flow.
    Broken,
}

/// Why a link was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
pub enum LinkFailure {
    #[error(
        "the call could not be connected within 30 s (a firewall may block it; a TURN server helps)"
    )]
    SetupTimeout,
    #[error("the connection to this person broke and could not be restored")]
    Broken,
}

impl LinkFailure {
    pub fn code(self) -> &'static str {
        match self {
            LinkFailure::SetupTimeout => "setup-timeout",
            LinkFailure::Broken => "broken",
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthAction {
    Nothing,
    /// Make an offer with an ICE restart.
    RestartIce,
    /// Give the link up.
    Fail(LinkFailure),
}

#[derive(Debug, Clone)]
pub struct LinkHealth {
    rules: HealthRules,
    /// This side made the first offer (and so restarts ICE).
    offerer: bool,
    opened_at: Millis,
    ever_connected: bool,
    broken_since: Option<Millis>,
    restarts: u32,
    last_restart: Option<Millis>,
    /// Our own network moved under this connection (see [`LinkHealth::path_gone`]): this side
    /// restarts ICE whichever side made the first offer, until it connects again.
    path_gone: bool,
    /// Our signaling connection is up: a restart's offer can arrive. While it is down no
    /// restart is made (its offer would be lost, or queued and sent stale after the rejoin,
    /// crossing the restart [`LinkHealth::signaling_back`] makes).
    signaling_up: bool,
}

impl LinkHealth {
    pub fn new(rules: HealthRules, offerer: bool, now: Millis) -> Self {
        LinkHealth {
            rules,
            offerer,
            opened_at: now,
            ever_connected: false,
            broken_since: None,
            restarts: 0,
            last_restart: None,
            path_gone: false,
            signaling_up: true,
        }
    }

    /// This side restarts ICE: it made the first offer, or its own path is gone (the other
    /// side cannot know that yet; a collision is settled by the negotiation's politeness).
    fn restarts_ice(&self) -> bool {
        self.offerer || self.path_gone
    }

    fn restart(&mut self, now: Millis) -> HealthAction {
        self.restarts += 1;
        self.last_restart = Some(now);
        HealthAction::RestartIce
    }

    pub fn ever_connected(&self) -> bool {
        self.ever_connected
    }

    /// Broken now (ICE said so, or our path is gone), not yet connected again.
    pub fn broken(&self) -> bool {
        self.broken_since.is_some()
    }

    /// Restarts tried since the connection last worked.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The connection's state changed. Returns true the first time it connects.
    pub fn on_state(&mut self, state: ConnState, now: Millis) -> bool {
        match state {
            ConnState::Connected => {
                self.broken_since = None;
                self.restarts = 0;
                self.path_gone = false;
                let first = !self.ever_connected;
                self.ever_connected = true;
                first
            }
            ConnState::Broken => {
                self.broken_since.get_or_insert(now);
                false
            }
            ConnState::Connecting => false,
        }
    }

    /// Our signaling connection dropped: no restarts until it is back.
    pub fn signaling_down(&mut self) {
        self.signaling_up = false;
    }

    /// Our signaling connection is back after a drop. A broken link's last restart went out
    /// on the dead connection, or was held back while it was down (a network change takes
    /// both down): the side that restarts does so now rather than at its next turn, within
    /// the same limit of restarts.
    pub fn signaling_back(&mut self, now: Millis) -> HealthAction {
        self.signaling_up = true;
        self.restart_if_broken(now)
    }

    /// The other end is back under a new id (it rejoined: the link is rebound to that id). A
    /// restart made while it was away went to its old id and was lost: the side that
    /// restarts does so now rather than at its next turn (up to 5 s later), within the same
    /// limit of restarts.
    pub fn peer_back(&mut self, now: Millis) -> HealthAction {
        if !self.signaling_up {
            return HealthAction::Nothing;
        }
        self.restart_if_broken(now)
    }

    fn restart_if_broken(&mut self, now: Millis) -> HealthAction {
        if self.restarts_ice()
            && self.ever_connected
            && self.broken_since.is_some()
            && self.restarts < self.rules.max_restarts
        {
            return self.restart(now);
        }
        HealthAction::Nothing
    }

    /// Our side of the path is gone: the system would now send this connection's packets from
    /// another address, or could not send them at all (an interface went down, another
    /// network took over). The connection is broken now, not in the seconds ICE takes to
    /// notice, and this side restarts ICE at once, whichever side made the first offer. When
    /// our signaling connection went with the path (told first: [`LinkHealth::signaling_down`])
    /// the offer could not arrive: [`LinkHealth::signaling_back`] restarts once we have
    /// rejoined.
    pub fn path_gone(&mut self, now: Millis) -> HealthAction {
        if !self.ever_connected {
            return HealthAction::Nothing;
        }
        self.broken_since.get_or_insert(now);
        self.path_gone = true;
        if self.signaling_up && self.restarts < self.rules.max_restarts {
            return self.restart(now);
        }
        HealthAction::Nothing
    }

    /// Called about once a second.
    pub fn tick(&mut self, now: Millis) -> HealthAction {
        if !self.ever_connected {
            if now.saturating_sub(self.opened_at) > self.rules.setup_deadline_ms {
                return HealthAction::Fail(LinkFailure::SetupTimeout);
            }
            return HealthAction::Nothing;
        }
        let Some(since) = self.broken_since else {
            return HealthAction::Nothing;
        };
        let broken_for = now.saturating_sub(since);
        if broken_for > self.rules.give_up_after_ms {
            return HealthAction::Fail(LinkFailure::Broken);
        }
        let due = self
            .last_restart
            .is_none_or(|t| now.saturating_sub(t) > self.rules.restart_every_ms);
        if self.restarts_ice()
            && self.signaling_up
            && broken_for > self.rules.restart_after_ms
            && due
            && self.restarts < self.rules.max_restarts
        {
            return self.restart(now);
        }
        HealthAction::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(h: &mut LinkHealth, from: Millis, to: Millis) -> Vec<(Millis, HealthAction)> {
        (from..=to)
            .step_by(1000)
            .map(|t| (t, h.tick(t)))
            .filter(|(_, a)| *a != HealthAction::Nothing)
            .collect()
    }

    #[test]
    fn setup_deadline() {
        let mut h = LinkHealth::new(HealthRules::default(), true, 0);
        assert_eq!(h.tick(30_000), HealthAction::Nothing);
        assert_eq!(
            h.tick(30_001),
            HealthAction::Fail(LinkFailure::SetupTimeout)
        );
    }

    #[test]
    fn the_offerer_restarts_ice_on_a_schedule_then_gives_up() {
        let mut h = LinkHealth::new(HealthRules::default(), true, 0);
        assert!(h.on_state(ConnState::Connected, 100));
        h.on_state(ConnState::Broken, 1_000);
        let got = ticks(&mut h, 1_000, 40_000);
        let restarts: Vec<Millis> = got
            .iter()
            .filter(|(_, a)| *a == HealthAction::RestartIce)
            .map(|(t, _)| *t)
            .collect();
        // First after 2 s broken, then at most one per 5 s, at most 5.
        assert_eq!(restarts, vec![4_000, 10_000, 16_000, 22_000, 28_000]);
        assert_eq!(
            got.iter().find(|(_, a)| matches!(a, HealthAction::Fail(_))),
            Some(&(32_000, HealthAction::Fail(LinkFailure::Broken))),
            "given up once broken for more than 30 s"
        );
    }

    #[test]
    fn the_answerer_never_restarts_and_recovery_resets_the_count() {
        let mut h = LinkHealth::new(HealthRules::default(), false, 0);
        h.on_state(ConnState::Connected, 0);
        h.on_state(ConnState::Broken, 1_000);
        assert!(ticks(&mut h, 1_000, 20_000).is_empty());
        assert!(
            !h.on_state(ConnState::Connected, 20_500),
            "not the first time"
        );
        assert!(ticks(&mut h, 21_000, 60_000).is_empty());

        let mut o = LinkHealth::new(HealthRules::default(), true, 0);
        o.on_state(ConnState::Connected, 0);
        o.on_state(ConnState::Broken, 0);
        assert_eq!(o.tick(3_000), HealthAction::RestartIce);
        assert_eq!(o.restarts(), 1);
        o.on_state(ConnState::Connected, 3_500);
        assert_eq!(o.restarts(), 0);
        o.on_state(ConnState::Broken, 10_000);
        assert_eq!(o.tick(12_500), HealthAction::RestartIce);
    }

    #[test]
    fn a_side_whose_path_is_gone_restarts_at_once_even_as_the_answerer() {
        let mut h = LinkHealth::new(HealthRules::default(), false, 0);
        assert_eq!(
            h.path_gone(50),
            HealthAction::Nothing,
            "not connected yet: the setup deadline covers it"
        );
        h.on_state(ConnState::Connected, 100);
        assert_eq!(h.path_gone(1_000), HealthAction::RestartIce);
        // And on the schedule after that, like an offerer.
        assert_eq!(
            ticks(&mut h, 2_000, 12_000),
            vec![(7_000, HealthAction::RestartIce)]
        );
        // Connected again: an answerer again.
        h.on_state(ConnState::Connected, 12_500);
        h.on_state(ConnState::Broken, 13_000);
        assert!(ticks(&mut h, 13_000, 30_000).is_empty());

        // With the signaling connection gone too, the restart waits for the rejoin.
        let mut w = LinkHealth::new(HealthRules::default(), false, 0);
        w.on_state(ConnState::Connected, 0);
        w.signaling_down();
        assert_eq!(w.path_gone(1_000), HealthAction::Nothing);
        assert_eq!(w.signaling_back(1_800), HealthAction::RestartIce);
        assert_eq!(w.restarts(), 1);
    }

    #[test]
    fn no_restart_while_our_signaling_connection_is_down() {
        let mut h = LinkHealth::new(HealthRules::default(), true, 0);
        h.on_state(ConnState::Connected, 0);
        h.on_state(ConnState::Broken, 1_000);
        h.signaling_down();
        assert!(ticks(&mut h, 1_000, 12_000).is_empty(), "held back");
        assert_eq!(h.signaling_back(12_500), HealthAction::RestartIce);
        assert_eq!(
            ticks(&mut h, 13_000, 20_000),
            vec![(18_000, HealthAction::RestartIce)],
            "then on the schedule"
        );
        // Still given up after 30 s broken, signaling or not.
        h.signaling_down();
        assert_eq!(h.tick(31_001), HealthAction::Fail(LinkFailure::Broken));
    }
}
