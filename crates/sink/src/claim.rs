//! Claims: at most one worker writes a unit at a time, with nothing shared but the store.
//!
//! Data file names are deterministic per unit, so two workers writing the same unit at once
//! would delete and overwrite each other's parts (one attempt's cleanup removes what the other
//! just completed). A claim, `_etl/claims/<unit_id>.json`, is created with a conditional put
//! (`PutMode::Create`: S3's `If-None-Match: *`), which exactly one worker wins. The holder
//! renews it every [`RENEW_EVERY`] with a put conditional on the version it last wrote
//! (`If-Match`); a worker that finds it busy waits, and then re-reads the unit's state: a unit
//! the other worker committed meanwhile is not written again.
//!
//! A claim whose holder died must not block the unit for long:
//! - it expires [`CLAIM_TTL`] after its last renewal, and is then taken over with a put
//!   conditional on the version read, so that of two workers taking it over only one wins;
//! - on the holder's own host (same host name and boot), a holder whose process is gone (or
//!   whose pid now belongs to another process) is dead at once, so a rerun after a crash or
//!   `kill -9` does not wait for the expiry.
//!
//! A holder that cannot renew before expiry (a network partition, a paused process) is told
//! through [`Lease::lost`] and stops without committing. The manifest's own conditional write
//! is the last fence against a holder that did not notice in time.
//!
//! Local disk has no conditional update; there a stale claim is deleted and created afresh,
//! which is exact for the crash-and-rerun case but not a lock between two live takers racing on
//! the same expired claim. Claims on S3-compatible stores are exact.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_core::{CancellationToken, Claim, Lease, Unit, UnitRecord};
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::SinkError;
use crate::layout::{self, MetaKind};
use crate::manifest::{delete_if_exists, get_json};

/// How long a claim stays valid after its last renewal.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(60);
/// How often a held claim is renewed (three chances before it expires).
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How often a busy claim is looked at again.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// The content of a claim object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClaimBody {
    pub unit: String,
    /// Unique per state store: `host/pid/start/instance`.
    pub owner: String,
    pub host: String,
    pub boot_id: String,
    pub pid: u32,
    /// The process start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so a
    /// reused pid is not mistaken for the holder.
    pub process_start: u64,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Who this process is, as written into its claims.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    host: String,
    boot_id: String,
    pid: u32,
    process_start: u64,
    /// Tells apart the state stores of one process (each is a worker of its own).
    instance: u64,
}

impl Identity {
    pub(crate) fn current() -> Self {
        let pid = std::process::id();
        let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string()).ok();
        Self {
            host: read("/proc/sys/kernel/hostname")
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "unknown-host".into()),
            boot_id: read("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            pid,
            process_start: process_start(pid).unwrap_or(0),
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn owner(&self) -> String {
        format!("{}/{}/{}/{}", self.host, self.pid, self.process_start, self.instance)
    }

    fn body(&self, unit: &str, acquired_at: DateTime<Utc>) -> ClaimBody {
        let now = Utc::now();
        ClaimBody {
            unit: unit.to_string(),
            owner: self.owner(),
            host: self.host.clone(),
            boot_id: self.boot_id.clone(),
            pid: self.pid,
            process_start: self.process_start,
            acquired_at,
            expires_at: now + chrono::Duration::from_std(CLAIM_TTL).unwrap_or_default(),
        }
    }

    /// Whether `claim` is known to be held by no live process: expired, or written by a process
    /// of this host (same boot) that no longer runs.
    fn is_stale(&self, claim: &ClaimBody, now: DateTime<Utc>) -> Option<&'static str> {
        if claim.expires_at <= now {
            return Some("it expired");
        }
        if claim.host != self.host || self.boot_id.is_empty() {
            return None;
        }
        if claim.boot_id != self.boot_id {
            return Some("its host rebooted since");
        }
        if claim.pid == self.pid && claim.process_start == self.process_start {
            return None;
        }
        match process_start(claim.pid) {
            Some(start) if start == claim.process_start => None,
            _ => Some("its process on this host is gone"),
        }
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time), `None` when there is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Takes the claim of `unit` in `store` under `root`, waiting while a live worker holds it.
pub(crate) async fn acquire(
    store: Arc<dyn ObjectStore>,
    root: &Path,
    identity: &Identity,
    unit: &Unit,
    since: DateTime<Utc>,
) -> Result<Claim, SinkError> {
    layout::check_unit_id(&unit.id)?;
    let location = layout::meta_object(root, MetaKind::Claims, &unit.id);
    let mut waited_for: Option<String> = None;
    let version = loop {
        let body = identity.body(&unit.id, Utc::now());
        match put(store.as_ref(), &location, &body, PutMode::Create).await {
            Ok(version) => break version,
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(SinkError::store("creating the unit's claim", &location, e)),
        }
        let Some((held, version)) = read(store.as_ref(), &location).await? else {
            continue; // released in between
        };
        if let Some(why) = identity.is_stale(&held, Utc::now()) {
            match put(store.as_ref(), &location, &body, PutMode::Update(version)).await {
                Ok(version) => {
                    tracing::warn!(unit = %unit.id, previous = %held.owner, "took over the unit's claim: {why}");
                    break version;
                }
                Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => continue,
                Err(object_store::Error::NotImplemented { .. }) => {
                    // Local disk: no conditional update. Delete and race on the create again.
                    delete_if_exists(store.as_ref(), &location, "removing a stale claim").await?;
                    tracing::warn!(unit = %unit.id, previous = %held.owner, "removed the unit's stale claim: {why}");
                    continue;
                }
                Err(e) => return Err(SinkError::store("taking over the unit's claim", &location, e)),
            }
        }
        if waited_for.as_deref() != Some(held.owner.as_str()) {
            tracing::info!(
                unit = %unit.id,
                holder = %held.owner,
                expires_at = %held.expires_at,
                "another worker is writing this unit; waiting for it"
            );
            waited_for = Some(held.owner.clone());
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let lease = HeldClaim::start(Arc::clone(&store), location, identity.clone(), unit.id.clone(), version);

    // The other worker may have committed the unit while this one waited (or just before).
    let state = layout::meta_object(root, MetaKind::State, &unit.id);
    if let Some(record) = get_json::<UnitRecord>(store.as_ref(), &state, "reading unit state").await?
        && (record.is_final() || record.committed_at >= since)
    {
        Box::new(lease).release().await;
        return Ok(Claim::CommittedElsewhere(record));
    }
    Ok(Claim::Held(Box::new(lease)))
}

/// Writes a claim body with `mode`; the version written.
async fn put(
    store: &dyn ObjectStore,
    location: &Path,
    body: &ClaimBody,
    mode: PutMode,
) -> Result<UpdateVersion, object_store::Error> {
    let bytes = serde_json::to_vec_pretty(body).expect("a claim serializes");
    let opts = PutOptions {
        mode,
        ..Default::default()
    };
    let result = store.put_opts(location, PutPayload::from(bytes), opts).await?;
    Ok(UpdateVersion {
        e_tag: result.e_tag,
        version: result.version,
    })
}

/// The current claim and its version; `None` when there is none. A claim that does not parse
/// (a torn write on a store without atomic puts) counts as expired.
async fn read(store: &dyn ObjectStore, location: &Path) -> Result<Option<(ClaimBody, UpdateVersion)>, SinkError> {
    let result = match store.get(location).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(SinkError::store("reading the unit's claim", location, e)),
    };
    let version = UpdateVersion {
        e_tag: result.meta.e_tag.clone(),
        version: result.meta.version.clone(),
    };
    let bytes = match result.bytes().await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(SinkError::store("reading the unit's claim", location, e)),
    };
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(path = %location, "unreadable claim, treated as expired: {e}");
        ClaimBody {
            unit: String::new(),
            owner: "unreadable claim".into(),
            host: String::new(),
            boot_id: String::new(),
            pid: 0,
            process_start: 0,
            acquired_at: DateTime::<Utc>::MIN_UTC,
            expires_at: DateTime::<Utc>::MIN_UTC,
        }
    });
    Ok(Some((body, version)))
}

/// A claim this process holds, renewed by a background task until released.
struct HeldClaim {
    store: Arc<dyn ObjectStore>,
    location: Path,
    identity: Identity,
    lost: CancellationToken,
    stop: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

impl HeldClaim {
    fn start(
        store: Arc<dyn ObjectStore>,
        location: Path,
        identity: Identity,
        unit: String,
        version: UpdateVersion,
    ) -> Self {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            Arc::clone(&store),
            location.clone(),
            identity.clone(),
            unit,
            version,
            lost.clone(),
            stop.clone(),
        ));
        Self {
            store,
            location,
            identity,
            lost,
            stop,
            renewer,
        }
    }
}

/// Renews the claim every [`RENEW_EVERY`] until `stop`; cancels `lost` when it cannot.
async fn renew(
    store: Arc<dyn ObjectStore>,
    location: Path,
    identity: Identity,
    unit: String,
    mut version: UpdateVersion,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let acquired_at = Utc::now();
    let mut valid_until = tokio::time::Instant::now() + CLAIM_TTL;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
        let body = identity.body(&unit, acquired_at);
        let attempt = match put(store.as_ref(), &location, &body, PutMode::Update(version.clone())).await {
            Err(object_store::Error::NotImplemented { .. }) => {
                // Local disk: check it is still ours, then overwrite.
                match read(store.as_ref(), &location).await {
                    Ok(Some((held, _))) if held.owner == body.owner => {
                        put(store.as_ref(), &location, &body, PutMode::Overwrite).await
                    }
                    Ok(other) => {
                        let holder = other.map_or_else(|| "nobody".to_string(), |(h, _)| h.owner);
                        tracing::error!(unit = %unit, %holder, "lost the unit's claim; the unit stops without committing");
                        lost.cancel();
                        return;
                    }
                    Err(e) => Err(object_store::Error::Generic {
                        store: "claim",
                        source: Box::new(e),
                    }),
                }
            }
            other => other,
        };
        match attempt {
            Ok(v) => {
                version = v;
                valid_until = tokio::time::Instant::now() + CLAIM_TTL;
            }
            Err(e @ (object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. })) => {
                tracing::error!(unit = %unit, "lost the unit's claim to another worker ({e}); the unit stops without committing");
                lost.cancel();
                return;
            }
            Err(e) => {
                if tokio::time::Instant::now() + RENEW_EVERY >= valid_until {
                    tracing::error!(unit = %unit, "could not renew the unit's claim before it expires ({e}); the unit stops without committing");
                    lost.cancel();
                    return;
                }
                tracing::warn!(unit = %unit, "renewing the unit's claim failed, will try again: {e}");
            }
        }
    }
}

impl Lease for HeldClaim {
    fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let _ = self.renewer.await;
            if self.lost.is_cancelled() {
                return;
            }
            // Only our own claim is removed (a stale holder must not free a taker's claim).
            match read(self.store.as_ref(), &self.location).await {
                Ok(Some((held, _))) if held.owner == self.identity.owner() => {
                    if let Err(e) =
                        delete_if_exists(self.store.as_ref(), &self.location, "releasing the unit's claim").await
                    {
                        tracing::warn!(path = %self.location, "could not release the unit's claim (it expires by itself): {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path = %self.location, "could not release the unit's claim (it expires by itself): {e}")
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_gone_pid_is_stale() {
        let me = Identity::current();
        let now = Utc::now();
        let mine = me.body("u", now);
        assert_eq!(me.is_stale(&mine, now), None);
        if me.boot_id.is_empty() {
            return; // not Linux: only expiry applies
        }
        let mut other = mine.clone();
        other.pid = u32::MAX - 1;
        assert_eq!(me.is_stale(&other, now), Some("its process on this host is gone"));
        let mut reused = mine.clone();
        reused.process_start += 1;
        assert_eq!(me.is_stale(&reused, now), Some("its process on this host is gone"));
        let mut rebooted = mine.clone();
        rebooted.boot_id = "another-boot".into();
        assert_eq!(me.is_stale(&rebooted, now), Some("its host rebooted since"));
        let mut elsewhere = other.clone();
        elsewhere.host = "another-host".into();
        assert_eq!(
            me.is_stale(&elsewhere, now),
            None,
            "a live claim of another host is respected"
        );
        assert_eq!(
            me.is_stale(&elsewhere, elsewhere.expires_at),
            Some("it expired"),
            "until it expires"
        );
    }
}
