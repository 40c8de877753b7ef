//! The cluster's desired state in Redis, for plugins and config pushed to every host: plugin
//! blobs by their sha256, numbered revisions (each the whole desired state: the config text if
//! one was pushed, and the plugin each pushed connector runs), and each host's report on a
//! revision (applied, or refused and why).
//!
//! A revision is committed only on top of the one its writer read (compare-and-set in one
//! script), so two pushes at once never lose each other's change: the later one reads again.
//! The last [`KEPT_REVISIONS`] are kept; a host far behind jumps to the newest anyway. A blob
//! no kept revision names goes too ([`RedisRevisions::prune_blobs`]), once it is older than a
//! grace that covers a push between storing its blob and committing.

use super::RedisStore;
use crate::{BackendError, Result};
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;
use std::time::Duration;

/// The longest revision (JSON, a pushed config's text included).
pub const MAX_REVISION_BYTES: usize = 1 << 20;
/// The longest report one host writes on one revision.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// The most reports read back on one revision (as many as the members listed).
pub const MAX_REPORTS: usize = super::members::MAX_MEMBERS;
/// The largest compiled code shared for a plugin.
pub const MAX_CODE_BYTES: u64 = 64 << 20;
/// How long shared compiled code stays (it only spares hosts a compile; they can always make
/// it themselves).
pub const CODE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Revisions kept before the oldest is deleted.
pub const KEPT_REVISIONS: u64 = 64;
/// How long the reports on a revision are kept.
const REPORTS_TTL: Duration = Duration::from_secs(24 * 3600);

/// KEYS: latest, the key prefix of revisions. ARGV: the revision read, the new one's text,
/// revisions kept. Answers the new revision's number, or -1 when another was committed since.
const COMMIT: &str = r#"
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
if latest ~= tonumber(ARGV[1]) then return -1 end
local next = latest + 1
redis.call('SET', KEYS[2] .. next, ARGV[2])
redis.call('SET', KEYS[1], next)
local old = next - tonumber(ARGV[3])
if old > 0 then redis.call('DEL', KEYS[2] .. old) end
return next
"#;

static COMMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMMIT));

/// KEYS: the blob's key, the index of blobs. ARGV: the bytes, the name. Stores the bytes unless
/// the blob is there, and (re)dates it in the index by Redis's clock.
const PUT_BLOB: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(now[1]), ARGV[2])
return 1
"#;

static PUT_BLOB_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_BLOB));

/// KEYS: the index of blobs, the key prefix of blobs. ARGV: the grace in seconds, the most to
/// look at, then the names kept. Deletes the blobs dated before the grace that are not kept;
/// answers how many.
const PRUNE_BLOBS: &str = r#"
local now = tonumber(redis.call('TIME')[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
local kept = {}
for i = 3, #ARGV do kept[ARGV[i]] = true end
local deleted = 0
for _, name in ipairs(old) do
  if not kept[name] then
    redis.call('DEL', KEYS[2] .. name)
    redis.call('ZREM', KEYS[1], name)
    deleted = deleted + 1
  end
end
return deleted
"#;

static PRUNE_BLOBS_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PRUNE_BLOBS));

/// Blobs one prune looks at, at most (the rest wait for the next push).
pub const PRUNE_BATCH: u64 = 256;

/// Blobs, revisions and reports of one cluster.
#[derive(Debug, Clone)]
pub struct RedisRevisions {
    store: RedisStore,
}

impl RedisRevisions {
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn blob_key(&self, sha256: &str) -> String {
        self.store.key(&format!("blob:{sha256}"))
    }

    fn reports_key(&self, revision: u64) -> String {
        self.store.key(&format!("reports:{revision}"))
    }

    /// Stores `bytes` as the blob named `sha256` (the caller hashed them), unless it is there;
    /// either way it is dated now, so a prune in the next grace keeps it.
    pub async fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let mut invocation = PUT_BLOB_SCRIPT.prepare_invoke();
        invocation
            .key(self.blob_key(sha256))
            .key(self.store.key("blobs"))
            .arg(bytes)
            .arg(sha256);
        let mut connection = self.store.connection();
        let _: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(super::redis_error("storing a plugin blob"))?;
        Ok(())
    }

    /// Deletes the blobs stored more than `grace` ago that `kept` does not name (the blobs the
    /// kept revisions run); answers how many went.
    pub async fn prune_blobs(&self, kept: &[String], grace: Duration) -> Result<u64> {
        let mut invocation = PRUNE_BLOBS_SCRIPT.prepare_invoke();
        invocation
            .key(self.store.key("blobs"))
            .key(self.store.key("blob:"))
            .arg(grace.as_secs())
            .arg(PRUNE_BATCH);
        for name in kept {
            invocation.arg(name.as_str());
        }
        let mut connection = self.store.connection();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(super::redis_error("deleting unused plugin blobs"))
    }

    /// The blob named `sha256`; `None` when there is none. A blob over `max_bytes` is refused
    /// before it is read.
    pub async fn blob(&self, sha256: &str, max_bytes: u64) -> Result<Option<Vec<u8>>> {
        self.read_capped(&self.blob_key(sha256), sha256, max_bytes)
            .await
    }

    /// Stores `signed` (a signature and compiled code, opaque here) as the code of the plugin
    /// `sha256` for engines of `tag`, for [`CODE_TTL`].
    pub async fn put_code(&self, sha256: &str, tag: &str, signed: &[u8]) -> Result<()> {
        if u64::try_from(signed.len()).unwrap_or(u64::MAX) > MAX_CODE_BYTES {
            return Err(BackendError::Refused(format!(
                "compiled code of {} bytes is over the limit of {MAX_CODE_BYTES}",
                signed.len()
            )));
        }
        let mut connection = self.store.connection();
        let _: () = connection
            .set_ex(self.code_key(sha256, tag), signed, CODE_TTL.as_secs())
            .await
            .map_err(super::redis_error("sharing compiled code"))?;
        Ok(())
    }

    /// What [`Self::put_code`] stored, if it is still there (over [`MAX_CODE_BYTES`]: refused).
    pub async fn code(&self, sha256: &str, tag: &str) -> Result<Option<Vec<u8>>> {
        self.read_capped(&self.code_key(sha256, tag), sha256, MAX_CODE_BYTES)
            .await
    }

    fn code_key(&self, sha256: &str, tag: &str) -> String {
        self.store.key(&format!("code:{sha256}:{tag}"))
    }

    async fn read_capped(
        &self,
        key: &str,
        sha256: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>> {
        let mut connection = self.store.connection();
        let length: u64 = connection
            .strlen(key)
            .await
            .map_err(super::redis_error("measuring a plugin blob"))?;
        if length == 0 {
            return Ok(None);
        }
        if length > max_bytes {
            return Err(BackendError::Refused(format!(
                "plugin blob {sha256} is {length} bytes, over the limit of {max_bytes}"
            )));
        }
        connection
            .get(key)
            .await
            .map_err(super::redis_error("reading a plugin blob"))
    }

    /// The newest revision's number (0: nothing was ever pushed).
    pub async fn latest(&self) -> Result<u64> {
        let mut connection = self.store.connection();
        let latest: Option<u64> = connection
            .get(self.store.key("revision"))
            .await
            .map_err(super::redis_error("reading the cluster's revision"))?;
        Ok(latest.unwrap_or(0))
    }

    /// Revision `number`'s text; `None` when it was never committed or is no longer kept.
    pub async fn revision(&self, number: u64) -> Result<Option<String>> {
        let mut connection = self.store.connection();
        let text: Option<String> = connection
            .get(self.store.key(&format!("revision:{number}")))
            .await
            .map_err(super::redis_error("reading a cluster revision"))?;
        match text {
            Some(text) if text.len() > MAX_REVISION_BYTES => Err(BackendError::Refused(format!(
                "cluster revision {number} is {} bytes, over the limit of {MAX_REVISION_BYTES}",
                text.len()
            ))),
            other => Ok(other),
        }
    }

    /// Commits `text` as the revision after `read` (the newest one its writer read); `None`
    /// when another revision was committed since (read again and retry).
    pub async fn commit(&self, read: u64, text: &str) -> Result<Option<u64>> {
        if text.len() > MAX_REVISION_BYTES {
            return Err(BackendError::Refused(format!(
                "a cluster revision of {} bytes is over the limit of {MAX_REVISION_BYTES}",
                text.len()
            )));
        }
        let committed: i64 = self
            .store
            .run(
                "committing a cluster revision",
                &COMMIT_SCRIPT,
                &[&self.store.key("revision"), &self.store.key("revision:")],
                &[&read, &text, &KEPT_REVISIONS],
            )
            .await?;
        Ok(u64::try_from(committed).ok())
    }

    /// Records `member`'s `report` on `revision` (replacing an earlier one).
    pub async fn report(&self, revision: u64, member: &str, report: &str) -> Result<()> {
        if report.len() > MAX_REPORT_BYTES {
            return Err(BackendError::Refused(format!(
                "a host report of {} bytes is over the limit of {MAX_REPORT_BYTES}",
                report.len()
            )));
        }
        let key = self.reports_key(revision);
        let ttl = i64::try_from(REPORTS_TTL.as_secs()).unwrap_or(i64::MAX);
        let mut connection = self.store.connection();
        let _: () = redis::pipe()
            .atomic()
            .hset(&key, member, report)
            .ignore()
            .expire(&key, ttl)
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("writing a host's report"))?;
        Ok(())
    }

    /// The reports on `revision`, by member (at most [`MAX_REPORTS`]; longer ones left out).
    pub async fn reports(&self, revision: u64) -> Result<Vec<(String, String)>> {
        let mut connection = self.store.connection();
        let key = self.reports_key(revision);
        let count: usize = connection
            .hlen(&key)
            .await
            .map_err(super::redis_error("counting hosts' reports"))?;
        if count > MAX_REPORTS {
            return Err(BackendError::Refused(format!(
                "revision {revision} has {count} host reports, over the limit of {MAX_REPORTS}"
            )));
        }
        let all: Vec<(String, String)> = connection
            .hgetall(&key)
            .await
            .map_err(super::redis_error("reading hosts' reports"))?;
        let mut reports: Vec<(String, String)> = all
            .into_iter()
            .filter(|(_, report)| report.len() <= MAX_REPORT_BYTES)
            .collect();
        reports.sort();
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::testing::TestPrefix;

    #[tokio::test]
    async fn a_commit_lands_only_on_the_revision_its_writer_read() {
        let prefix = TestPrefix::new();
        let one_host = RedisRevisions::new(prefix.open().await);
        let other_host = RedisRevisions::new(prefix.open().await);
        assert_eq!(one_host.latest().await.unwrap(), 0);
        assert_eq!(one_host.revision(1).await.unwrap(), None);
        assert_eq!(one_host.commit(0, "first").await.unwrap(), Some(1));
        // The other host read 0 too: its commit is refused, nothing overwritten.
        assert_eq!(other_host.commit(0, "lost").await.unwrap(), None);
        assert_eq!(other_host.commit(1, "second").await.unwrap(), Some(2));
        assert_eq!(one_host.latest().await.unwrap(), 2);
        assert_eq!(
            one_host.revision(1).await.unwrap().as_deref(),
            Some("first")
        );
        assert_eq!(
            one_host.revision(2).await.unwrap().as_deref(),
            Some("second")
        );
    }

    #[tokio::test]
    async fn only_the_newest_revisions_are_kept() {
        let prefix = TestPrefix::new();
        let revisions = RedisRevisions::new(prefix.open().await);
        for read in 0..KEPT_REVISIONS + 2 {
            let text = format!("revision {}", read + 1);
            assert_eq!(revisions.commit(read, &text).await.unwrap(), Some(read + 1));
        }
        assert_eq!(revisions.revision(1).await.unwrap(), None);
        assert_eq!(revisions.revision(2).await.unwrap(), None);
        assert!(revisions.revision(3).await.unwrap().is_some());
        assert!(
            revisions
                .revision(KEPT_REVISIONS + 2)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn blobs_reports_and_revisions_over_their_caps_are_refused() {
        let prefix = TestPrefix::new();
        let revisions = RedisRevisions::new(prefix.open().await);
        revisions.put_blob("abc", b"0123456789").await.unwrap();
        assert_eq!(
            revisions.blob("abc", 10).await.unwrap().as_deref(),
            Some(&b"0123456789"[..])
        );
        assert_eq!(revisions.blob("missing", 10).await.unwrap(), None);
        let over = revisions.blob("abc", 9).await.expect_err("over the cap");
        assert!(over.to_string().contains("over the limit of 9"), "{over}");
        // A second put of one name keeps the first bytes (names are content hashes).
        revisions.put_blob("abc", b"other").await.unwrap();
        assert_eq!(
            revisions.blob("abc", 10).await.unwrap().as_deref(),
            Some(&b"0123456789"[..])
        );

        let long = "x".repeat(MAX_REVISION_BYTES + 1);
        let refused = revisions.commit(0, &long).await.expect_err("too long");
        assert!(refused.to_string().contains("over the limit"), "{refused}");
        assert_eq!(revisions.latest().await.unwrap(), 0, "nothing committed");

        revisions
            .report(1, "host-a", "{\"ok\":true}")
            .await
            .unwrap();
        revisions
            .report(1, "host-b", "{\"ok\":false}")
            .await
            .unwrap();
        revisions
            .report(1, "host-a", "{\"ok\":false}")
            .await
            .unwrap();
        let long_report = "x".repeat(MAX_REPORT_BYTES + 1);
        assert!(revisions.report(1, "host-c", &long_report).await.is_err());
        assert_eq!(
            revisions.reports(1).await.unwrap(),
            [
                ("host-a".to_string(), "{\"ok\":false}".to_string()),
                ("host-b".to_string(), "{\"ok\":false}".to_string()),
            ]
        );
        assert!(revisions.reports(2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn shared_code_is_kept_by_plugin_and_engine_for_a_day_and_capped() {
        let prefix = TestPrefix::new();
        let revisions = RedisRevisions::new(prefix.open().await);
        revisions
            .put_code("abc", "tag1", b"signed code")
            .await
            .unwrap();
        assert_eq!(
            revisions.code("abc", "tag1").await.unwrap().as_deref(),
            Some(&b"signed code"[..])
        );
        assert_eq!(revisions.code("abc", "tag2").await.unwrap(), None);
        let store = prefix.open().await;
        let mut connection = store.connection();
        let ttl: i64 = connection.ttl(store.key("code:abc:tag1")).await.unwrap();
        assert!((1..=86_400).contains(&ttl), "it expires: {ttl}");
        let huge = vec![0u8; usize::try_from(MAX_CODE_BYTES).unwrap() + 1];
        assert!(revisions.put_code("big", "tag1", &huge).await.is_err());
        // What another writer stored past the cap is refused before it is read.
        let _: () = connection
            .set(store.key("code:big:tag1"), &huge)
            .await
            .unwrap();
        let refused = revisions.code("big", "tag1").await.expect_err("over");
        assert!(refused.to_string().contains("over the limit"), "{refused}");
    }

    #[tokio::test]
    async fn blobs_no_kept_revision_names_go_once_past_their_grace() {
        let prefix = TestPrefix::new();
        let revisions = RedisRevisions::new(prefix.open().await);
        for name in ["kept", "old", "older"] {
            revisions.put_blob(name, name.as_bytes()).await.unwrap();
        }
        let kept = ["kept".to_string()];
        let hour = Duration::from_secs(3600);
        assert_eq!(
            revisions.prune_blobs(&kept, hour).await.unwrap(),
            0,
            "a blob stored within the grace may be a push about to commit"
        );
        assert!(revisions.blob("old", 16).await.unwrap().is_some());
        assert_eq!(
            revisions.prune_blobs(&kept, Duration::ZERO).await.unwrap(),
            2
        );
        assert_eq!(revisions.blob("old", 16).await.unwrap(), None);
        assert_eq!(revisions.blob("older", 16).await.unwrap(), None);
        assert_eq!(
            revisions.blob("kept", 16).await.unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        assert_eq!(
            revisions.prune_blobs(&kept, Duration::ZERO).await.unwrap(),
            0,
            "the kept one stays"
        );
    }
}
