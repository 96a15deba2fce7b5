//! The remote cache (`hft build --remote URL`): a second store, shared between machines,
//! that a build consults after a local miss and fills after executing a stage.
//!
//! ```text
//! <prefix>/actions/<key>.json   the stage key's ActionRecord, as the local store writes it
//! <prefix>/objects/<hex>        blobs, named by the blake3 digest of their bytes
//! ```
//!
//! Trust: an action record says which blobs a key produced; it cannot be checked (that
//! would mean executing the stage), so write access to the remote is what must be guarded.
//! A blob can be checked, and is: every downloaded blob is re-hashed before it is stored
//! locally, and one whose bytes do not hash to its name (or whose size differs from the
//! record) is a hard error for that stage, never stored and never used (cache poisoning).
//!
//! Availability: a remote that cannot be reached (or refuses us) is a warning, once, and
//! the rest of the build runs without it; it never fails a build. Blobs are uploaded before
//! the record that names them, so a reader never finds a record whose blobs are missing
//! because an upload was cut short.
//!
//! object_store is async; each call runs to completion on a small current-thread tokio
//! runtime owned by the [`Remote`], so the rest of hft stays synchronous.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::{ActionRecord, Digest, StageKey, Store};

/// The environment variable that sets `--remote`.
pub const REMOTE_ENV: &str = "HFT_REMOTE";

/// A remote cache: an object store (S3, HTTP/WebDAV, a local folder) and a prefix in it.
pub struct Remote {
    /// The URL as given, for messages.
    url: String,
    objects: Arc<dyn ObjectStore>,
    /// Where `actions/` and `objects/` live inside the store.
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
    read_only: bool,
    /// Set once the remote failed to answer: the rest of the build runs without it.
    offline: AtomicBool,
    /// What this build moved: (objects, bytes) pulled and pushed, records included.
    pulled: Transfers,
    pushed: Transfers,
}

/// Objects and bytes moved one way.
#[derive(Debug, Default)]
struct Transfers {
    objects: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl Transfers {
    fn add(&self, bytes: usize) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u64) {
        (
            self.objects.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A downloaded blob (or record) that is not what the remote said it is. Fails the stage;
/// the bytes are never stored nor used.
#[derive(Debug, Clone, PartialEq)]
pub struct Poisoned(pub String);

impl std::fmt::Display for Poisoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Remote {
    /// Opens the remote at `url`: `s3://bucket/prefix` (credentials, region and endpoint
    /// from the standard `AWS_*` environment variables), `file:///absolute/folder`, or
    /// `http(s)://host/path` (a WebDAV server). Nothing is contacted yet. `read_only`: the
    /// remote is only read (CI consumers), never written.
    pub fn open(url: &str, read_only: bool) -> Result<Remote, String> {
        let bad = |why: String| {
            format!(
                "--remote {url}: {why} (expected s3://bucket/prefix, file:///folder or https://host/path)"
            )
        };
        // reqwest's TLS is rustls without a bundled provider (see Cargo.toml): install ring's.
        // An error means some provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its I/O runtime: {e}")))?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("not a URL".to_string()))?;
        let (objects, prefix): (Arc<dyn ObjectStore>, String) = match scheme {
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket name".to_string()));
                }
                let mut s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry_config());
                // Set key by key: replacing the client options would drop AWS_ALLOW_HTTP.
                for (key, value) in CLIENT_TIMEOUTS {
                    s3 = s3.with_config(object_store::aws::AmazonS3ConfigKey::Client(key), value);
                }
                let s3 = s3.build().map_err(|e| bad(e.to_string()))?;
                (Arc::new(s3), prefix.to_string())
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad("a file:// remote needs an absolute path".to_string()));
                }
                // Rooted at `/` rather than at the folder, so that opening creates nothing and
                // a missing folder is an empty remote (the first push creates it).
                let local = object_store::local::LocalFileSystem::new();
                (Arc::new(local), rest.to_string())
            }
            "http" | "https" => {
                let mut http = object_store::http::HttpBuilder::new()
                    .with_url(url)
                    .with_retry(retry_config())
                    .with_config(ClientConfigKey::AllowHttp, (scheme == "http").to_string());
                for (key, value) in CLIENT_TIMEOUTS {
                    http = http.with_config(key, value);
                }
                let http = http.build().map_err(|e| bad(e.to_string()))?;
                (Arc::new(http), String::new())
            }
            other => return Err(bad(format!("unsupported scheme `{other}`"))),
        };
        Ok(Remote {
            url: url.trim_end_matches('/').to_string(),
            objects,
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            runtime,
            read_only,
            offline: AtomicBool::new(false),
            pulled: Transfers::default(),
            pushed: Transfers::default(),
        })
    }

    /// The URL it was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this remote is never written.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn action_path(&self, key: &StageKey) -> ObjectPath {
        self.prefix
            .clone()
            .join("actions")
            .join(format!("{}.json", key.0))
    }

    fn object_path(&self, digest: &Digest) -> ObjectPath {
        self.prefix.clone().join("objects").join(digest.to_hex())
    }

    /// Where `path` is, for messages: the remote's URL and the object's place in it.
    fn describe(&self, path: &ObjectPath) -> String {
        let relative = path.as_ref();
        let relative = relative
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(relative)
            .trim_start_matches('/');
        format!("{}/{relative}", self.url)
    }

    /// Stops using the remote for the rest of the build, saying so the first time.
    fn go_offline(&self, what: &str, error: &object_store::Error) {
        if !self.offline.swap(true, Ordering::SeqCst) {
            crate::term::warn(&format!(
                "remote cache {}: cannot {what}: {error}; building locally without it for \
                 the rest of this build (check the URL, the network and the AWS_* credentials)",
                self.url
            ));
        }
    }

    /// Reads one object: `Ok(None)` when it does not exist or the remote is unreachable.
    fn get(&self, path: &ObjectPath) -> Option<Vec<u8>> {
        if self.offline.load(Ordering::SeqCst) {
            return None;
        }
        let result = self.runtime.block_on(async {
            let got = self.objects.get(path).await?;
            got.bytes().await
        });
        match result {
            Ok(bytes) => Some(bytes.to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => {
                self.go_offline(&format!("read {}", self.describe(path)), &e);
                None
            }
        }
    }

    /// Looks `key` up in the remote. On a hit every output blob not already in the local
    /// store is downloaded, verified against its digest and stored, then the record is
    /// stored locally, and the record is returned. `Ok(None)`: a miss (or the remote is
    /// unreachable, or the local store cannot take the download: a warning says so).
    /// `Err`: the remote served bytes that are not what they claim; nothing was used.
    pub fn fetch(&self, store: &Store, key: &StageKey) -> Result<Option<ActionRecord>, Poisoned> {
        let record_path = self.action_path(key);
        let Some(bytes) = self.get(&record_path) else {
            return Ok(None);
        };
        self.pulled.add(bytes.len());
        let record: ActionRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                crate::term::warn(&format!(
                    "remote cache: {} is not an action record ({e}); building {} locally",
                    self.describe(&record_path),
                    key.short()
                ));
                return Ok(None);
            }
        };
        if record.key != *key {
            return Err(Poisoned(format!(
                "remote cache poisoned: {} names stage key {}, not {key}; it was not used \
                 (remove it from the remote and build again)",
                self.describe(&record_path),
                record.key
            )));
        }
        for (name, output) in &record.outputs {
            if store.has_blob(output) {
                continue;
            }
            let object = self.object_path(&output.digest);
            let Some(blob) = self.get(&object) else {
                if !self.offline.load(Ordering::SeqCst) {
                    crate::term::warn(&format!(
                        "remote cache: output `{name}` of {key} ({}) is missing; building it \
                         locally",
                        self.describe(&object)
                    ));
                }
                return Ok(None);
            };
            self.pulled.add(blob.len());
            let actual = Digest::of(&blob);
            if actual != output.digest || blob.len() as u64 != output.size {
                return Err(Poisoned(format!(
                    "remote cache poisoned: output `{name}` of stage key {key}: {} hashes to \
                     {actual} ({} bytes), not {} ({} bytes); it was neither stored nor used \
                     (remove the object from the remote and build again)",
                    self.describe(&object),
                    blob.len(),
                    output.digest,
                    output.size
                )));
            }
            if let Err(e) = store.put_blob(&blob) {
                crate::term::warn(&format!(
                    "cannot store output `{name}` of {key} pulled from the remote cache: {e}"
                ));
                return Ok(None);
            }
        }
        if let Err(e) = store.put_action(&record) {
            crate::term::warn(&format!(
                "cannot store the action record of {key} pulled from the remote cache: {e}"
            ));
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// What this build pulled and pushed: ((objects, bytes) pulled, (objects, bytes)
    /// pushed), action records included.
    pub fn transferred(&self) -> ((u64, u64), (u64, u64)) {
        (self.pulled.get(), self.pushed.get())
    }

    /// [`Remote::push`] for a stage whose outputs are in the local store: a blob this process
    /// just stored comes from memory, any other (one a Slurm job wrote) is read and verified.
    /// A blob that cannot be read is not pushed, and neither is the record.
    pub fn push_from_store(&self, store: &Store, record: &ActionRecord) {
        if self.read_only || self.offline.load(Ordering::SeqCst) {
            return;
        }
        let mut blobs = std::collections::BTreeMap::new();
        for (name, output) in &record.outputs {
            match store.get_blob_shared(&output.digest) {
                Some(bytes) => {
                    blobs.insert(name.clone(), bytes);
                }
                None => return,
            }
        }
        self.push(record, &blobs);
    }

    /// Uploads an executed stage: each output blob the remote lacks, then the record. Does
    /// nothing on a read-only or unreachable remote; a failure is a warning (once) and stops
    /// using the remote, never a failed stage.
    pub fn push(
        &self,
        record: &ActionRecord,
        blobs: &std::collections::BTreeMap<String, Arc<Vec<u8>>>,
    ) {
        if self.read_only || self.offline.load(Ordering::SeqCst) {
            return;
        }
        let Ok(record_bytes) = serde_json::to_vec_pretty(record) else {
            return;
        };
        let uploaded: Result<(), (ObjectPath, object_store::Error)> =
            self.runtime.block_on(async {
                for (name, output) in &record.outputs {
                    // Never a record naming a blob the remote may lack.
                    let Some(bytes) = blobs.get(name) else {
                        return Ok(());
                    };
                    let path = self.object_path(&output.digest);
                    // Content-addressed: an object already there of this size is read back
                    // and kept only if it holds these bytes; a damaged or poisoned one (same
                    // size, other bytes) is replaced, so writers repair the remote.
                    match self.objects.head(&path).await {
                        Ok(meta) if meta.size == output.size => {
                            let held = match self.objects.get(&path).await {
                                Ok(got) => got.bytes().await.ok(),
                                Err(_) => None,
                            };
                            if held.is_some_and(|b| Digest::of(&b) == output.digest) {
                                continue;
                            }
                            crate::term::warn(&format!(
                                "remote cache: {} did not hold the bytes its name promises; \
                                 replacing it",
                                self.describe(&path)
                            ));
                        }
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err((path, e)),
                    }
                    let payload = PutPayload::from(Vec::clone(bytes));
                    if let Err(e) = self.objects.put(&path, payload).await {
                        return Err((path, e));
                    }
                    self.pushed.add(bytes.len());
                }
                let path = self.action_path(&record.key);
                let record_len = record_bytes.len();
                match self
                    .objects
                    .put(&path, PutPayload::from(record_bytes))
                    .await
                {
                    Ok(_) => {
                        self.pushed.add(record_len);
                        Ok(())
                    }
                    Err(e) => Err((path, e)),
                }
            });
        if let Err((path, e)) = uploaded {
            self.go_offline(&format!("write {}", self.describe(&path)), &e);
        }
    }
}

/// Few, quick retries: an unreachable remote must cost a build seconds, not minutes.
fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

/// A dead host is noticed in seconds; a whole multi-GB dataset still fits in one request.
const CLIENT_TIMEOUTS: [(ClientConfigKey, &str); 2] = [
    (ClientConfigKey::ConnectTimeout, "5s"),
    (ClientConfigKey::Timeout, "15m"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_anything_is_contacted() {
        for bad in [
            "bucket/prefix",
            "ftp://host/x",
            "file://relative/folder",
            "s3:///prefix",
        ] {
            let err = Remote::open(bad, false).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        let remote = Remote::open("s3://bucket/some/prefix/", true).unwrap();
        assert!(remote.is_read_only());
        let key = StageKey("k1-abc".to_string());
        assert_eq!(
            remote.action_path(&key).as_ref(),
            "some/prefix/actions/k1-abc.json"
        );
        assert_eq!(
            remote.describe(&remote.action_path(&key)),
            "s3://bucket/some/prefix/actions/k1-abc.json"
        );
    }

    #[test]
    fn a_record_pushed_from_one_store_is_fetched_verified_into_another() {
        let dir = std::env::temp_dir().join(format!("hft-remote-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (
            Store::open(&dir.join("a")).unwrap(),
            Store::open(&dir.join("b")).unwrap(),
        );
        let remote = Remote::open(&format!("file://{}", dir.join("r").display()), false).unwrap();
        let out = a.put_blob(b"weights").unwrap();
        let key = StageKey::compute(&[b"unit"]);
        let record = ActionRecord {
            key: key.clone(),
            stage: "init".to_string(),
            outputs: std::collections::BTreeMap::from([("weights".to_string(), out.clone())]),
            summary: serde_json::Value::Null.into(),
            hft_version: "test".to_string(),
            wall_ms: 0,
            created: 0,
            digest: None,
        };
        remote.push_from_store(&a, &record);
        assert_eq!(remote.fetch(&b, &key).unwrap(), Some(record));
        assert_eq!(b.get_blob(&out.digest).unwrap(), b"weights");
        assert!(b.get_action(&key).is_some());
        // Same size, other bytes: rejected, and the fresh store gets nothing.
        let object = dir.join("r/objects").join(out.digest.to_hex());
        std::fs::write(&object, b"weightz").unwrap();
        let c = Store::open(&dir.join("c")).unwrap();
        let err = remote.fetch(&c, &key).unwrap_err();
        assert!(err.0.contains(&out.digest.to_hex()), "{err}");
        assert!(c.get_blob(&out.digest).is_none() && c.get_action(&key).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
