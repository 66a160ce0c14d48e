//! Limits per peer (issue 15 §4): who may hold how many connections and
//! requests, and whose connection is closed when a newcomer needs room.
//!
//! Without them one local user could lock everyone out: 100 idle
//! connections filled `daemon.max_clients` and every other client, the PAM
//! helper included, was told `busy` until the idle ones timed out. The rules,
//! applied by [`Table::admit`] when a connection arrives and by
//! [`Table::begin`] when a request does:
//!
//! 1. **Connections per uid** (`daemon.max_clients_per_uid`): a uid at its cap
//!    that opens one more loses its own longest-waiting connection (it only
//!    hurts itself); when none of its connections is waiting, the newcomer is
//!    told `busy`.
//! 2. **Crowded**: while at least 3/4 of `max_clients` are connected, a
//!    connection that has waited longer than `daemon.busy_client_timeout_ms`
//!    for its next complete request is closed (slow and idle clients make
//!    room sooner).
//! 3. **Full**: a newcomer takes the slot of the longest-waiting connection
//!    of the uid holding the most connections, provided that uid holds more
//!    than the newcomer's uid (a uid with no connection is therefore always
//!    admitted while any connection anywhere is only waiting); else `busy`.
//! 4. **Requests in progress per uid** (`daemon.max_requests_per_uid`): more
//!    are answered `busy`. Requests in progress and door-event streams are
//!    never closed to make room.
//!
//! Root (uid 0; the PAM helper under `pam_exec`, administration with sudo)
//! has no per-uid cap but its waiting connections make room like anyone's.
//! When the pool is full and no connection can make room (every one is
//! serving a request or streaming door events: 16 uids at their request
//! caps fill the default pool), root still gets one of [`ROOT_RESERVE`]
//! connections beyond `max_clients`, so a login is never refused for `busy`
//! by other users' traffic.
//!
//! The table is pure: uids and times are passed in, and each connection
//! carries a handle `H` (the daemon's: a clone of the socket, shut down by
//! the caller when its connection is evicted), so the unit tests below run
//! the policy with made-up uids.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::daemon::config::Daemon;

/// The uid without per-uid caps.
pub const ROOT: u32 = 0;

/// Connections root may hold beyond `max_clients` when none can make room.
pub const ROOT_RESERVE: usize = 4;

/// The limits, from `[daemon]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once, all uids.
    pub max_clients: usize,
    /// Connections per uid (not root).
    pub per_uid: usize,
    /// Requests in progress per uid (not root).
    pub requests_per_uid: usize,
    /// While crowded, the longest a connection may wait for its next request.
    pub crowded_wait: Duration,
}

impl Limits {
    pub fn from_config(d: &Daemon) -> Limits {
        Limits {
            max_clients: d.max_clients,
            per_uid: d.max_clients_per_uid,
            requests_per_uid: d.max_requests_per_uid,
            crowded_wait: Duration::from_millis(d.busy_client_timeout_ms.min(d.client_timeout_ms)),
        }
    }

    /// From this many connections on, the daemon is crowded: 3/4 of
    /// `max_clients`, rounded up.
    pub fn crowded_at(&self) -> usize {
        (self.max_clients * 3).div_ceil(4).max(1)
    }
}

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for (or reading) its next request: may be closed for room.
    Waiting,
    /// A request is being served.
    Serving,
    /// A door-event subscription.
    Streaming,
}

/// Why a connection was closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its uid opened one more than `max_clients_per_uid`.
    UidLimit,
    /// The daemon was crowded and it had waited past `busy_client_timeout_ms`.
    Crowded,
    /// The daemon was full and its uid held the most connections.
    Full,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::UidLimit => "its uid opened more than daemon.max_clients_per_uid",
            Why::Crowded => "idle past daemon.busy_client_timeout_ms while crowded",
            Why::Full => "the daemon was full and its uid held the most connections",
        })
    }
}

/// A connection closed to make room; the caller shuts its handle down.
#[derive(Debug)]
pub struct Evicted<H> {
    pub id: u64,
    pub uid: u32,
    /// How long it had been waiting.
    pub waited: Duration,
    pub why: Why,
    pub handle: H,
}

/// Why a connection or a request is refused (`busy` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "uid {uid} already has {max} connections, none of them idle (daemon.max_clients_per_uid)"
    )]
    UidConnections { uid: u32, max: usize },
    #[error("uid {uid} already has {max} requests in progress (daemon.max_requests_per_uid)")]
    UidRequests { uid: u32, max: usize },
    #[error("{max} clients are being served; try again")]
    Full { max: usize },
    /// The connection was closed to make room (nothing to answer).
    #[error("the connection was closed to make room")]
    Gone,
}

/// The outcome of [`Table::admit`]: the new connection's id or why not, and
/// the connections closed on the way (also when refused).
#[derive(Debug)]
pub struct Admission<H> {
    pub outcome: Result<u64, Refused>,
    pub evicted: Vec<Evicted<H>>,
}

#[derive(Debug)]
struct Conn<H> {
    uid: u32,
    state: State,
    /// When it entered its state.
    since: Instant,
    handle: H,
}

/// The connections being served.
#[derive(Debug)]
pub struct Table<H> {
    next: u64,
    conns: BTreeMap<u64, Conn<H>>,
}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Table {
            next: 0,
            conns: BTreeMap::new(),
        }
    }
}

impl<H> Table<H> {
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections of `uid`, and how many of them are serving a request.
    pub fn of_uid(&self, uid: u32) -> (usize, usize) {
        self.conns
            .values()
            .filter(|c| c.uid == uid)
            .fold((0, 0), |(n, s), c| {
                (n + 1, s + usize::from(c.state == State::Serving))
            })
    }

    /// The state of connection `id` (None once closed).
    pub fn state(&self, id: u64) -> Option<State> {
        self.conns.get(&id).map(|c| c.state)
    }

    /// The longest-waiting connection (of `uid`, if given).
    fn longest_waiting(&self, uid: Option<u32>) -> Option<(Instant, u64)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.state == State::Waiting && uid.is_none_or(|u| c.uid == u))
            .map(|(id, c)| (c.since, *id))
            .min()
    }

    fn evict(&mut self, id: u64, why: Why, now: Instant, out: &mut Vec<Evicted<H>>) {
        if let Some(c) = self.conns.remove(&id) {
            out.push(Evicted {
                id,
                uid: c.uid,
                waited: now.saturating_duration_since(c.since),
                why,
                handle: c.handle,
            });
        }
    }

    /// The connection to close so that `uid` gets a slot in a full table:
    /// the longest-waiting one of the uid holding the most connections, if
    /// that uid holds more than `uid`; else one of `uid`'s own.
    fn victim(&self, uid: u32) -> Option<u64> {
        let mut held: HashMap<u32, usize> = HashMap::new();
        for c in self.conns.values() {
            *held.entry(c.uid).or_default() += 1;
        }
        // Per uid with a waiting connection: its longest-waiting one.
        let mut oldest: HashMap<u32, (Instant, u64)> = HashMap::new();
        for (id, c) in &self.conns {
            if c.state == State::Waiting {
                let e = oldest.entry(c.uid).or_insert((c.since, *id));
                *e = (*e).min((c.since, *id));
            }
        }
        let mine = held.get(&uid).copied().unwrap_or(0);
        let top = oldest
            .iter()
            .map(|(u, first)| {
                (
                    held.get(u).copied().unwrap_or(0),
                    std::cmp::Reverse(*first),
                    *u,
                )
            })
            .max();
        match top {
            Some((n, std::cmp::Reverse((_, id)), u)) if u == uid || n > mine => Some(id),
            _ => oldest.get(&uid).map(|(_, id)| *id),
        }
    }

    /// A connection from `uid` arrives at `now`: admit it (closing others
    /// per the rules above) or refuse it. `handle` is dropped when refused.
    pub fn admit(&mut self, uid: u32, handle: H, lim: &Limits, now: Instant) -> Admission<H> {
        let mut evicted = Vec::new();
        if uid != ROOT && self.of_uid(uid).0 >= lim.per_uid {
            // Its own longest-waiting connections go (more than one only
            // after a reload lowered the cap).
            while self.of_uid(uid).0 >= lim.per_uid {
                let Some((_, id)) = self.longest_waiting(Some(uid)) else {
                    return Admission {
                        outcome: Err(Refused::UidConnections {
                            uid,
                            max: lim.per_uid,
                        }),
                        evicted,
                    };
                };
                self.evict(id, Why::UidLimit, now, &mut evicted);
            }
        }
        if self.len() >= lim.crowded_at() {
            let stale: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    c.state == State::Waiting
                        && now.saturating_duration_since(c.since) >= lim.crowded_wait
                })
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                self.evict(id, Why::Crowded, now, &mut evicted);
            }
        }
        while self.len() >= lim.max_clients {
            let Some(id) = self.victim(uid) else {
                if uid == ROOT && self.len() < lim.max_clients + ROOT_RESERVE {
                    break;
                }
                return Admission {
                    outcome: Err(Refused::Full {
                        max: lim.max_clients,
                    }),
                    evicted,
                };
            };
            self.evict(id, Why::Full, now, &mut evicted);
        }
        let id = self.next;
        self.next += 1;
        self.conns.insert(
            id,
            Conn {
                uid,
                state: State::Waiting,
                since: now,
                handle,
            },
        );
        Admission {
            outcome: Ok(id),
            evicted,
        }
    }

    /// Connection `id` has a complete request: may it be served?
    pub fn begin(&mut self, id: u64, lim: &Limits, now: Instant) -> Result<(), Refused> {
        let uid = self.conns.get(&id).ok_or(Refused::Gone)?.uid;
        if uid != ROOT && self.of_uid(uid).1 >= lim.requests_per_uid {
            return Err(Refused::UidRequests {
                uid,
                max: lim.requests_per_uid,
            });
        }
        self.set(id, State::Serving, now)
    }

    /// Connection `id` waits for its next request (after an answer).
    pub fn wait(&mut self, id: u64, now: Instant) -> Result<(), Refused> {
        self.set(id, State::Waiting, now)
    }

    /// Connection `id` becomes a door-event stream.
    pub fn stream(&mut self, id: u64, now: Instant) -> Result<(), Refused> {
        self.set(id, State::Streaming, now)
    }

    fn set(&mut self, id: u64, state: State, now: Instant) -> Result<(), Refused> {
        let c = self.conns.get_mut(&id).ok_or(Refused::Gone)?;
        c.state = state;
        c.since = now;
        Ok(())
    }

    /// Connection `id` has ended (nothing if it was evicted).
    pub fn remove(&mut self, id: u64) {
        self.conns.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALICE: u32 = 1000;
    const BOB: u32 = 1001;
    const CAROL: u32 = 1002;

    fn lim(max_clients: usize, per_uid: usize, requests_per_uid: usize) -> Limits {
        Limits {
            max_clients,
            per_uid,
            requests_per_uid,
            crowded_wait: Duration::from_millis(1000),
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// Admit, expecting success; returns the id and the evicted ids.
    fn ok(t: &mut Table<()>, uid: u32, l: &Limits, now: Instant) -> (u64, Vec<(u64, Why)>) {
        let a = t.admit(uid, (), l, now);
        let ev = a.evicted.iter().map(|e| (e.id, e.why)).collect();
        (a.outcome.unwrap(), ev)
    }

    #[test]
    fn crowded_is_three_quarters() {
        assert_eq!(lim(64, 8, 4).crowded_at(), 48);
        assert_eq!(lim(10, 8, 4).crowded_at(), 8);
        assert_eq!(lim(1, 1, 1).crowded_at(), 1);
    }

    #[test]
    fn a_uid_at_its_cap_loses_its_own_longest_waiting_connection() {
        let l = lim(64, 3, 2);
        let t0 = Instant::now();
        let mut t = Table::default();
        let a: Vec<u64> = (0..3).map(|i| ok(&mut t, ALICE, &l, ms(t0, i)).0).collect();
        // a[0] has just been answered: it waits since later than a[1].
        t.begin(a[0], &l, ms(t0, 5)).unwrap();
        t.wait(a[0], ms(t0, 6)).unwrap();
        let (_, ev) = ok(&mut t, ALICE, &l, ms(t0, 7));
        assert_eq!(ev, vec![(a[1], Why::UidLimit)]);
        assert_eq!(t.of_uid(ALICE), (3, 0));
        assert_eq!(t.state(a[1]), None);
        assert_eq!(t.begin(a[1], &l, ms(t0, 8)), Err(Refused::Gone));
    }

    #[test]
    fn a_uid_whose_connections_are_all_busy_is_refused() {
        let l = lim(64, 2, 2);
        let t0 = Instant::now();
        let mut t = Table::default();
        for i in 0..2 {
            let (id, _) = ok(&mut t, ALICE, &l, t0);
            if i == 0 {
                t.begin(id, &l, t0).unwrap();
            } else {
                t.stream(id, t0).unwrap();
            }
        }
        let a = t.admit(ALICE, (), &l, ms(t0, 1));
        assert_eq!(
            a.outcome,
            Err(Refused::UidConnections { uid: ALICE, max: 2 })
        );
        assert!(a.evicted.is_empty());
        // Others are not affected.
        ok(&mut t, BOB, &l, ms(t0, 1));
    }

    #[test]
    fn root_has_no_per_uid_cap() {
        let l = lim(64, 2, 1);
        let t0 = Instant::now();
        let mut t = Table::default();
        let ids: Vec<u64> = (0..10).map(|_| ok(&mut t, ROOT, &l, t0).0).collect();
        for id in &ids {
            t.begin(*id, &l, t0).unwrap();
        }
        assert_eq!(t.of_uid(ROOT), (10, 10));
    }

    #[test]
    fn a_full_table_of_one_uids_idle_connections_admits_another_uid() {
        // The issue: one uid fills the pool with idle connections.
        let l = lim(8, 8, 4);
        let t0 = Instant::now();
        let mut t = Table::default();
        let a: Vec<u64> = (0..8).map(|i| ok(&mut t, ALICE, &l, ms(t0, i)).0).collect();
        let (_, ev) = ok(&mut t, BOB, &l, ms(t0, 10));
        assert_eq!(ev, vec![(a[0], Why::Full)]);
        // Root (the PAM helper) likewise.
        let (_, ev) = ok(&mut t, ROOT, &l, ms(t0, 11));
        assert_eq!(ev, vec![(a[1], Why::Full)]);
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn equal_holders_do_not_take_each_others_slots() {
        let l = lim(4, 4, 4);
        let t0 = Instant::now();
        let mut t = Table::default();
        let a0 = ok(&mut t, ALICE, &l, ms(t0, 0)).0;
        let b0 = ok(&mut t, BOB, &l, ms(t0, 1)).0;
        ok(&mut t, ALICE, &l, ms(t0, 2));
        ok(&mut t, BOB, &l, ms(t0, 3));
        // Full; Bob (2) may not take Alice's slots (2): his own
        // longest-waiting connection goes.
        let (_, ev) = ok(&mut t, BOB, &l, ms(t0, 4));
        assert_eq!(ev, vec![(b0, Why::Full)]);
        assert_eq!((t.of_uid(ALICE).0, t.of_uid(BOB).0), (2, 2));
        // Carol (0) takes the longest-waiting one of the largest holders.
        let (_, ev) = ok(&mut t, CAROL, &l, ms(t0, 5));
        assert_eq!(ev, vec![(a0, Why::Full)]);
    }

    #[test]
    fn requests_in_progress_and_streams_are_never_closed_but_root_has_a_reserve() {
        let l = lim(4, 4, 4);
        let t0 = Instant::now();
        let mut t = Table::default();
        for _ in 0..3 {
            let id = ok(&mut t, BOB, &l, t0).0;
            t.begin(id, &l, t0).unwrap();
        }
        let a = ok(&mut t, ALICE, &l, t0).0;
        t.stream(a, t0).unwrap();
        let r = t.admit(CAROL, (), &l, ms(t0, 60_000));
        assert_eq!(r.outcome, Err(Refused::Full { max: 4 }));
        assert!(r.evicted.is_empty());
        assert_eq!(t.len(), 4);
        // Root (the PAM helper) gets in, up to ROOT_RESERVE beyond the pool,
        // closing nobody; then it is refused too, and so are the others.
        for i in 0..ROOT_RESERVE {
            let (id, ev) = ok(&mut t, ROOT, &l, ms(t0, 60_001 + i as u64));
            assert!(ev.is_empty());
            t.begin(id, &l, ms(t0, 60_001)).unwrap();
        }
        assert_eq!(t.len(), 4 + ROOT_RESERVE);
        for uid in [ROOT, CAROL] {
            assert_eq!(
                t.admit(uid, (), &l, ms(t0, 60_010)).outcome,
                Err(Refused::Full { max: 4 })
            );
        }
    }

    #[test]
    fn a_newcomer_without_connections_beats_a_uid_with_one_idle() {
        let l = lim(3, 8, 8);
        let t0 = Instant::now();
        let mut t = Table::default();
        let r = ok(&mut t, ROOT, &l, t0).0;
        t.begin(r, &l, t0).unwrap();
        let a = ok(&mut t, ALICE, &l, ms(t0, 1)).0;
        let a2 = ok(&mut t, ALICE, &l, ms(t0, 2)).0;
        t.begin(a2, &l, ms(t0, 2)).unwrap();
        // Full: root 1 (serving), Alice 2 (one waiting). Bob (0) takes a.
        let (_, ev) = ok(&mut t, BOB, &l, ms(t0, 3));
        assert_eq!(ev, vec![(a, Why::Full)]);
        // Alice (1, serving) may not take Bob's (1, waiting), and has no
        // waiting connection of her own: busy.
        let r = t.admit(ALICE, (), &l, ms(t0, 4));
        assert_eq!(r.outcome, Err(Refused::Full { max: 3 }));
        assert!(r.evicted.is_empty());
    }

    #[test]
    fn requests_in_progress_per_uid() {
        let l = lim(64, 8, 2);
        let t0 = Instant::now();
        let mut t = Table::default();
        let a: Vec<u64> = (0..3).map(|_| ok(&mut t, ALICE, &l, t0).0).collect();
        let b = ok(&mut t, BOB, &l, t0).0;
        t.begin(a[0], &l, t0).unwrap();
        t.begin(a[1], &l, t0).unwrap();
        assert_eq!(
            t.begin(a[2], &l, t0),
            Err(Refused::UidRequests { uid: ALICE, max: 2 })
        );
        assert_eq!(t.state(a[2]), Some(State::Waiting));
        t.begin(b, &l, t0).unwrap();
        t.wait(a[0], ms(t0, 1)).unwrap();
        t.begin(a[2], &l, ms(t0, 1)).unwrap();
        t.remove(a[1]);
        t.remove(a[1]);
        assert_eq!(t.of_uid(ALICE), (2, 1));
    }

    #[test]
    fn crowded_drops_stale_waiting_connections_only() {
        let l = lim(8, 8, 8);
        let t0 = Instant::now();
        let mut t = Table::default();
        let a: Vec<u64> = (0..5).map(|i| ok(&mut t, ALICE, &l, ms(t0, i)).0).collect();
        t.begin(a[0], &l, ms(t0, 10)).unwrap();
        // 5 < 6 (crowded at 3/4 of 8): nothing is dropped, however old.
        let (b, ev) = ok(&mut t, BOB, &l, ms(t0, 5000));
        assert!(ev.is_empty());
        // 6 connections: crowded. Waiting for ≥ 1 s: a[1..5] (not a[0],
        // serving; not b, 500 ms).
        let (_, ev) = ok(&mut t, CAROL, &l, ms(t0, 5500));
        let dropped: Vec<u64> = ev.iter().map(|e| e.0).collect();
        assert_eq!(dropped, a[1..5].to_vec());
        assert!(ev.iter().all(|e| e.1 == Why::Crowded));
        assert_eq!(t.state(b), Some(State::Waiting));
        assert_eq!(t.len(), 3);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit(u32),
        Begin(usize),
        Wait(usize),
        Stream(usize),
        Remove(usize),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..4).prop_map(Op::Admit),
            2 => any::<usize>().prop_map(Op::Begin),
            2 => any::<usize>().prop_map(Op::Wait),
            1 => any::<usize>().prop_map(Op::Stream),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => (0u64..700).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Whatever the sequence: the caps hold, only waiting connections are
        /// closed, a uid without connections is admitted whenever some
        /// connection is waiting (root not using its reserve), and root
        /// whenever below the reserve.
        #[test]
        fn the_rules_hold(
            max in 1usize..12,
            per_uid in 1usize..6,
            reqs in 1usize..4,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let l = lim(max, per_uid, reqs);
            let t0 = Instant::now();
            let mut now = t0;
            let mut t: Table<u64> = Table::default();
            // The model: every live id and its state.
            let mut live: BTreeMap<u64, (u32, State)> = BTreeMap::new();
            for op in ops {
                let pick = |i: usize, live: &BTreeMap<u64, (u32, State)>| {
                    live.keys().nth(i % live.len().max(1)).copied()
                };
                match op {
                    Op::Admit(uid) => {
                        let none_of_mine = t.of_uid(uid).0 == 0;
                        let any_waiting = live.values().any(|(_, s)| *s == State::Waiting);
                        let room = t.len() < max;
                        // Root beyond the pool: one eviction may not be enough.
                        let overflow = t.len() > max;
                        let root_room = t.len() < max + ROOT_RESERVE;
                        let a = t.admit(uid, 0, &l, now);
                        for e in &a.evicted {
                            let (u, s) = live.remove(&e.id).unwrap();
                            prop_assert_eq!(s, State::Waiting);
                            prop_assert_eq!(u, e.uid);
                        }
                        match a.outcome {
                            Ok(id) => { live.insert(id, (uid, State::Waiting)); }
                            Err(r) => {
                                prop_assert!(
                                    !(none_of_mine && ((any_waiting && !overflow) || room)),
                                    "{r}"
                                );
                                prop_assert!(!(uid == ROOT && root_room), "root refused: {r}");
                            }
                        }
                    }
                    Op::Begin(i) => if let Some(id) = pick(i, &live) {
                        if t.begin(id, &l, now).is_ok() {
                            live.get_mut(&id).unwrap().1 = State::Serving;
                        }
                    },
                    Op::Wait(i) => if let Some(id) = pick(i, &live) {
                        t.wait(id, now).unwrap();
                        live.get_mut(&id).unwrap().1 = State::Waiting;
                    },
                    Op::Stream(i) => if let Some(id) = pick(i, &live) {
                        t.stream(id, now).unwrap();
                        live.get_mut(&id).unwrap().1 = State::Streaming;
                    },
                    Op::Remove(i) => if let Some(id) = pick(i, &live) {
                        t.remove(id);
                        live.remove(&id);
                    },
                    Op::Tick(d) => now += Duration::from_millis(d),
                }
                prop_assert_eq!(t.len(), live.len());
                // Others stay within the pool; root at most ROOT_RESERVE beyond.
                prop_assert!(t.len() <= max + ROOT_RESERVE);
                prop_assert!(t.len() - t.of_uid(ROOT).0 <= max);
                for uid in 1..4 {
                    let (n, s) = t.of_uid(uid);
                    prop_assert!(n <= per_uid && s <= reqs);
                }
                for (id, (_, s)) in &live {
                    prop_assert_eq!(t.state(*id), Some(*s));
                }
            }
        }
    }
}
