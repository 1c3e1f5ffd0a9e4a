//! The flag session mirror: this replica's in-memory copy of when each recent flag session
//! flags its key, so that CheckFlags answers a batch of checks without one PostgreSQL index
//! probe per check. It owns the copy, its catch-up with the table, and the answers from it.
//!
//! # Why its answers are the table's
//! - **Read-your-writes across replicas.** Before a call answers from the mirror, it waits for
//!   a catch-up read that *started after the call arrived*: a session enabled or disabled on any
//!   replica before the call was sent is in that read. One read serves every call that was
//!   waiting for it, so under load most calls share one round trip; with one call in flight it
//!   is one small statement, where the database path was one probe per check.
//! - **Nothing written is missed.** Every row version carries the id of the transaction that
//!   wrote it (`changed_in`: a column default for inserts, and the disable statement sets it;
//!   migration 0003, no trigger). Each read returns PostgreSQL's
//!   snapshot; the next read returns the rows whose writer that snapshot did not see. So after
//!   a read the mirror holds exactly what the table held in the read's snapshot.
//! - **Coverage.** The mirror keeps the sessions that end after `covered_from` (about
//!   `horizon` ago, raised when it would hold more than `max_sessions`). A session that ended
//!   before cannot flag a check at or after `covered_from`, so such checks are answered here;
//!   a call with any check before it (a late event) goes to the database, one statement.
//! - **Deletes are not read.** Only retention deletes sessions, and only those that expired
//!   longer than the retention ago; the horizon is at most half the retention (see
//!   [`MirrorSettings::new`]), so a deleted session could only have flagged checks the mirror
//!   does not answer.

use crate::domain::{FlagCheck, SessionWindow};
use crate::error::FlagError;
use crate::store::Store;
use chrono::{DateTime, TimeDelta, Utc};
use signins_common::clock::Clock;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;
use uuid::Uuid;

/// How often sessions that ended before the horizon are dropped (a pass over the mirror).
const PRUNE_INTERVAL: TimeDelta = TimeDelta::seconds(60);

/// The mirror's size and reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorSettings {
    /// How far back checks are answered from memory.
    pub horizon: Duration,
    /// The most session windows held.
    pub max_sessions: usize,
}

impl MirrorSettings {
    /// The settings for a service that deletes sessions `retention` after they expire, or
    /// `None` when the mirror is off (`horizon` or `max_sessions` zero). The horizon is capped
    /// at half the retention: retention's deletes, which the mirror does not read, then only
    /// remove sessions that cannot flag a check the mirror answers, even between replicas
    /// whose clocks disagree by less than half the retention.
    pub fn new(horizon: Duration, max_sessions: usize, retention: Duration) -> Option<Self> {
        let horizon = horizon.min(retention / 2);
        (!horizon.is_zero() && max_sessions > 0).then_some(Self {
            horizon,
            max_sessions,
        })
    }
}

/// Microseconds since PostgreSQL's epoch, rounded as tokio-postgres sends a timestamp (toward
/// zero), so a check's time compares here exactly as it would in SQL.
fn pg_micros(time: DateTime<Utc>) -> Option<i64> {
    static PG_EPOCH: LazyLock<DateTime<Utc>> =
        LazyLock::new(|| DateTime::UNIX_EPOCH + TimeDelta::seconds(946_684_800));
    time.signed_duration_since(*PG_EPOCH).num_microseconds()
}

/// One session's window in microseconds ([`pg_micros`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    id: Uuid,
    enabled: i64,
    ends: i64,
}

/// A flag key's 128-bit keyed hash: the mirror stores no ids or strings of keys.
type KeyHash = u128;

/// The map's hasher: its keys are already uniform random bits.
#[derive(Default)]
struct KeyHashHasher(u64);

impl Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        // Truncation intended: the low half of a uniform hash is uniform.
        self.0 = value as u64;
    }
}

/// The windows held, by flag key, and from when they answer.
#[derive(Debug, Default)]
struct Windows {
    by_key: HashMap<KeyHash, Vec<Window>, BuildHasherDefault<KeyHashHasher>>,
    count: usize,
    /// Every session ending after this is held; `None` before the first load.
    covered_from: Option<i64>,
}

impl Windows {
    /// The id of the session of `key` in force at `at`. Sessions of one key never overlap
    /// (the exclusion constraint), so at most one window holds `at`.
    fn in_force(&self, key: KeyHash, at: i64) -> Option<Uuid> {
        self.by_key
            .get(&key)?
            .iter()
            .find(|window| window.enabled <= at && at < window.ends)
            .map(|window| window.id)
    }

    /// Takes in one row version read from the table: it replaces what was held of the same
    /// session, and is kept only if it can flag a check the mirror answers.
    fn apply(&mut self, key: KeyHash, window: Window) {
        let covered_from = self.covered_from.unwrap_or(i64::MIN);
        let keep = window.ends > covered_from && window.ends > window.enabled;
        let windows = self.by_key.entry(key).or_default();
        let before = windows.len();
        windows.retain(|held| held.id != window.id);
        self.count -= before - windows.len();
        if keep {
            windows.push(window);
            self.count += 1;
        } else if windows.is_empty() {
            self.by_key.remove(&key);
        }
    }

    /// Moves `covered_from` up to `to` (never down) and drops what ended by then.
    fn cover_from(&mut self, to: i64) {
        if self.covered_from.is_some_and(|covered| covered >= to) {
            return;
        }
        self.covered_from = Some(to);
        let mut count = 0;
        self.by_key.retain(|_, windows| {
            windows.retain(|window| window.ends > to);
            count += windows.len();
            !windows.is_empty()
        });
        self.count = count;
        if self.by_key.capacity() > 4 * self.by_key.len().max(1024) {
            self.by_key.shrink_to_fit();
        }
    }

    /// Drops the windows that end first until at most `max` remain.
    fn limit_to(&mut self, max: usize) {
        if self.count <= max {
            return;
        }
        let mut ends: Vec<i64> = self
            .by_key
            .values()
            .flatten()
            .map(|window| window.ends)
            .collect();
        let drop = self.count - max;
        let (_, cut, _) = ends.select_nth_unstable(drop - 1);
        let cut = *cut;
        self.cover_from(cut);
    }
}

/// Where the catch-up stands; held by the one read in flight.
#[derive(Debug, Default)]
struct CatchUp {
    /// The snapshot of the last read; `None` before the first load.
    snapshot: Option<String>,
    last_prune: Option<DateTime<Utc>>,
}

/// See the module documentation.
pub struct FlagSessionMirror {
    store: Store,
    clock: Arc<dyn Clock>,
    horizon: TimeDelta,
    max_sessions: usize,
    key_hashers: (RandomState, RandomState),
    catch_up: tokio::sync::Mutex<CatchUp>,
    /// Catch-up reads started and finished, numbered in order (they run one at a time).
    reads_started: AtomicU64,
    reads_finished: AtomicU64,
    windows: RwLock<Windows>,
}

impl std::fmt::Debug for FlagSessionMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagSessionMirror")
            .field("horizon", &self.horizon)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl FlagSessionMirror {
    /// An empty mirror; the first check loads it.
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: MirrorSettings) -> Self {
        Self {
            store,
            clock,
            horizon: TimeDelta::from_std(settings.horizon).unwrap_or(TimeDelta::MAX),
            max_sessions: settings.max_sessions,
            key_hashers: (RandomState::new(), RandomState::new()),
            catch_up: tokio::sync::Mutex::new(CatchUp::default()),
            reads_started: AtomicU64::new(0),
            reads_finished: AtomicU64::new(0),
            windows: RwLock::new(Windows::default()),
        }
    }

    /// The hash of the flag key (tenant, user, device, browser): two independently keyed
    /// 64-bit hashes, so two keys share one with a chance of 2^-128.
    fn key_hash(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        device_id: &str,
        browser_id: &str,
    ) -> KeyHash {
        let hash = |state: &RandomState| {
            let mut hasher = state.build_hasher();
            tenant_id.hash(&mut hasher);
            user_id.hash(&mut hasher);
            // A str's hash ends with a separator, so ("ab", "c") and ("a", "bc") differ.
            device_id.hash(&mut hasher);
            browser_id.hash(&mut hasher);
            hasher.finish()
        };
        let (high, low) = &self.key_hashers;
        (u128::from(hash(high)) << 64) | u128::from(hash(low))
    }

    /// The earliest time the mirror answers for at `now`.
    fn horizon_at(&self, now: DateTime<Utc>) -> Option<i64> {
        now.checked_sub_signed(self.horizon).and_then(pg_micros)
    }

    /// The session in force at each check's time, in request order; `None` when a check lies
    /// before what the mirror covers, for the caller to ask the database instead.
    pub async fn check(
        &self,
        checks: &[FlagCheck],
    ) -> Result<Option<Vec<Option<Uuid>>>, FlagError> {
        let mut times = Vec::with_capacity(checks.len());
        for check in checks {
            let Some(at) = pg_micros(check.at) else {
                return Ok(None);
            };
            times.push(at);
        }
        let earliest = times.iter().copied().min().unwrap_or(i64::MAX);
        let Some(horizon) = self.horizon_at(self.clock.now()) else {
            return Ok(None);
        };
        // Decided before the round trip where possible, so a late event costs one statement.
        let covered_now = self.read_windows().covered_from.unwrap_or(i64::MIN);
        if earliest < horizon.max(covered_now) {
            return Ok(None);
        }
        self.catch_up().await?;
        let windows = self.read_windows();
        let covered = windows.covered_from.unwrap_or(i64::MAX).max(horizon);
        if earliest < covered {
            return Ok(None);
        }
        Ok(Some(
            checks
                .iter()
                .zip(times)
                .map(|(check, at)| {
                    let key = &check.key;
                    let hash =
                        self.key_hash(key.tenant_id, key.user_id, &key.device_id, &key.browser_id);
                    windows.in_force(hash, at)
                })
                .collect(),
        ))
    }

    /// Loads the mirror now rather than in the first CheckFlags call.
    pub async fn load(&self) -> Result<(), FlagError> {
        self.catch_up().await
    }

    fn read_windows(&self) -> std::sync::RwLockReadGuard<'_, Windows> {
        self.windows.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_windows(&self) -> std::sync::RwLockWriteGuard<'_, Windows> {
        self.windows.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a read that started after this call arrived has been applied: either
    /// another call's, finished while this one waited for its turn, or this call's own.
    async fn catch_up(&self) -> Result<(), FlagError> {
        let arrived_after = self.reads_started.load(Ordering::SeqCst);
        let mut state = self.catch_up.lock().await;
        if self.reads_finished.load(Ordering::SeqCst) > arrived_after {
            return Ok(());
        }
        let number = self.reads_started.fetch_add(1, Ordering::SeqCst) + 1;
        let now = self.clock.now();
        let caught_up = match state.snapshot.clone() {
            Some(snapshot) => self.read_changes(&snapshot, now, &mut state).await?,
            None => None,
        };
        let snapshot = match caught_up {
            Some(snapshot) => snapshot,
            None => self.load_all(now, &mut state).await?,
        };
        state.snapshot = Some(snapshot);
        self.reads_finished.store(number, Ordering::SeqCst);
        Ok(())
    }

    /// Replaces the mirror with the sessions ending after `now - horizon` (at most
    /// `max_sessions` of them, those that end last); returns the snapshot read in.
    async fn load_all(&self, now: DateTime<Utc>, state: &mut CatchUp) -> Result<String, FlagError> {
        let from = now.checked_sub_signed(self.horizon).unwrap_or(now);
        let limit = i64::try_from(self.max_sessions.saturating_add(1)).unwrap_or(i64::MAX);
        let mut windows = Windows {
            covered_from: pg_micros(from),
            ..Windows::default()
        };
        let snapshot = self
            .store
            .recent_windows(from, limit, &mut |session| {
                self.apply(&mut windows, session);
            })
            .await?;
        windows.limit_to(self.max_sessions);
        *self.write_windows() = windows;
        state.last_prune = Some(now);
        Ok(snapshot)
    }

    /// Applies the rows written since `snapshot`; returns the snapshot read in, or `None` when
    /// more rows changed than the mirror may hold (a bulk load): then a full load is cheaper
    /// than holding them all.
    async fn read_changes(
        &self,
        snapshot: &str,
        now: DateTime<Utc>,
        state: &mut CatchUp,
    ) -> Result<Option<String>, FlagError> {
        // Usually a handful of rows: gathered, then applied at once, so a check never sees
        // half a read.
        let mut changed = Vec::new();
        let mut too_many = false;
        let snapshot = self
            .store
            .windows_changed_since(snapshot, &mut |session| {
                if changed.len() >= self.max_sessions {
                    too_many = true;
                } else if let Some(window) = self.window_of(session) {
                    changed.push(window);
                }
            })
            .await?;
        if too_many {
            tracing::info!(
                max_sessions = self.max_sessions,
                "more flag sessions changed than the mirror holds; reloading it"
            );
            return Ok(None);
        }
        let prune = state
            .last_prune
            .is_none_or(|last| now - last >= PRUNE_INTERVAL || now < last);
        {
            let mut windows = self.write_windows();
            for (key, window) in changed {
                windows.apply(key, window);
            }
            if prune && let Some(horizon) = self.horizon_at(now) {
                windows.cover_from(horizon);
            }
            windows.limit_to(self.max_sessions);
        }
        if prune {
            state.last_prune = Some(now);
        }
        Ok(Some(snapshot))
    }

    fn window_of(&self, session: SessionWindow<'_>) -> Option<(KeyHash, Window)> {
        let key = self.key_hash(
            session.tenant_id,
            session.user_id,
            session.device_id,
            session.browser_id,
        );
        let window = Window {
            id: session.id,
            enabled: pg_micros(session.enabled_at)?,
            ends: pg_micros(session.ends_at)?,
        };
        Some((key, window))
    }

    fn apply(&self, windows: &mut Windows, session: SessionWindow<'_>) {
        if let Some((key, window)) = self.window_of(session) {
            windows.apply(key, window);
        }
    }

    /// How many session windows are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.read_windows().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(id: u128, enabled: i64, ends: i64) -> Window {
        Window {
            id: Uuid::from_u128(id),
            enabled,
            ends,
        }
    }

    fn covered(from: i64) -> Windows {
        Windows {
            covered_from: Some(from),
            ..Windows::default()
        }
    }

    #[test]
    fn a_window_is_half_open() {
        let mut windows = covered(0);
        windows.apply(7, window(1, 100, 200));
        assert_eq!(windows.in_force(7, 99), None);
        assert_eq!(windows.in_force(7, 100), Some(Uuid::from_u128(1)));
        assert_eq!(windows.in_force(7, 199), Some(Uuid::from_u128(1)));
        assert_eq!(windows.in_force(7, 200), None);
        assert_eq!(windows.in_force(8, 150), None);
    }

    #[test]
    fn a_newer_row_version_replaces_the_held_one() {
        let mut windows = covered(0);
        windows.apply(7, window(1, 100, 200));
        // Disabled at 150.
        windows.apply(7, window(1, 100, 150));
        assert_eq!(windows.count, 1);
        assert_eq!(windows.in_force(7, 160), None);
        assert_eq!(windows.in_force(7, 149), Some(Uuid::from_u128(1)));
        // Disabled in the microsecond it started: it flags nothing and is dropped.
        windows.apply(7, window(1, 100, 100));
        assert_eq!(windows.count, 0);
        assert!(windows.by_key.is_empty());
    }

    #[test]
    fn sessions_of_one_key_follow_each_other() {
        let mut windows = covered(0);
        windows.apply(7, window(1, 100, 200));
        windows.apply(7, window(2, 200, 300));
        assert_eq!(windows.in_force(7, 199), Some(Uuid::from_u128(1)));
        assert_eq!(windows.in_force(7, 200), Some(Uuid::from_u128(2)));
        assert_eq!(windows.count, 2);
    }

    #[test]
    fn a_version_ending_before_the_coverage_removes_the_held_one() {
        let mut windows = covered(500);
        windows.apply(7, window(1, 400, 600));
        // Disabled by a replica whose clock is far behind: it now ends before the coverage.
        windows.apply(7, window(1, 400, 450));
        assert_eq!(windows.count, 0);
        assert_eq!(windows.in_force(7, 550), None);
    }

    #[test]
    fn the_limit_drops_the_windows_that_end_first_and_raises_the_coverage() {
        let mut windows = covered(0);
        for i in 0u8..10 {
            windows.apply(u128::from(i), window(u128::from(i), 0, 100 + i64::from(i)));
        }
        windows.limit_to(4);
        assert_eq!(windows.count, 4);
        assert_eq!(windows.covered_from, Some(105));
        assert_eq!(windows.in_force(6, 105), Some(Uuid::from_u128(6)));
        assert_eq!(windows.in_force(5, 104), None);
        windows.cover_from(50);
        assert_eq!(windows.covered_from, Some(105), "coverage never moves down");
    }

    #[test]
    fn pg_micros_rounds_toward_zero_like_tokio_postgres() {
        let epoch = DateTime::UNIX_EPOCH + TimeDelta::seconds(946_684_800);
        assert_eq!(pg_micros(epoch), Some(0));
        assert_eq!(pg_micros(epoch + TimeDelta::nanoseconds(1_999)), Some(1));
        assert_eq!(pg_micros(epoch - TimeDelta::nanoseconds(1_999)), Some(-1));
    }

    #[test]
    fn the_horizon_is_at_most_half_the_retention() {
        let hour = Duration::from_secs(3600);
        let settings = MirrorSettings::new(hour, 10, Duration::from_secs(1800)).unwrap();
        assert_eq!(settings.horizon, Duration::from_secs(900));
        assert_eq!(MirrorSettings::new(Duration::ZERO, 10, hour), None);
        assert_eq!(MirrorSettings::new(hour, 0, hour), None);
    }
}
