//! The remote cache (`hft build --remote URL`): a second, empty local cache builds with zero
//! executed stages by pulling everything; a tampered remote blob is rejected and never
//! stored; `--remote-read-only` never writes; an unreachable remote costs a warning only.
//! The S3 test runs against s3s-fs on loopback (`scripts/ci/s3.sh` installs it).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Project;

const HFT: &str = env!("CARGO_BIN_EXE_hft");

/// Two symbols and a few training steps: every stage kind, in seconds.
const TINY: &str = "\
name: tiny
seed: 3
data:
  source: local
  path: trainingdata
  symbols: [AAA, BBB]
  features: [close, log_return, rsi_14]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}
training: {max_steps: 4, batch_size: 16, warmup_steps: 1}
";

const STAGES: usize = 7;

fn tiny_project(tag: &str) -> Project {
    let p = Project::new(tag);
    p.write("trainingdata/AAA.csv", &common::csv_bars(300, 1));
    p.write("trainingdata/BBB.csv", &common::csv_bars(300, 2));
    p.write("experiments/tiny.yaml", TINY);
    p
}

/// One `hft build --json` run.
struct Build {
    code: i32,
    stderr: String,
    /// stage id -> (state, output name -> digest)
    stages: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

impl Build {
    fn count(&self, state: &str) -> usize {
        self.stages.values().filter(|(s, _)| s == state).count()
    }

    fn outputs(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.stages
            .iter()
            .map(|(id, (_, o))| (id.clone(), o.clone()))
            .collect()
    }
}

fn hft(p: &Project, cache: &Path, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    Command::new(HFT)
        .arg("build")
        .args(["-j", "2", "--cache-dir"])
        .arg(cache)
        .args(args)
        .current_dir(&p.dir)
        .env_remove("HFT_CACHE_DIR")
        .env_remove("HFT_REMOTE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn build(p: &Project, cache: &Path, args: &[&str], env: &[(&str, String)]) -> Build {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = hft(p, cache, &all, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let mut stages = BTreeMap::new();
    for s in doc["experiments"][0]["stages"].as_array().unwrap() {
        let outputs = s["outputs"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        stages.insert(
            s["id"].as_str().unwrap().to_string(),
            (s["state"].as_str().unwrap().to_string(), outputs),
        );
    }
    Build {
        code: out.status.code().unwrap_or(-1),
        stderr,
        stages,
    }
}

/// Every file under `dir`, relative path -> bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for entry in walk(dir) {
        let bytes = fs::read(&entry).unwrap();
        out.insert(entry.strip_prefix(dir).unwrap().to_path_buf(), bytes);
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every blob of a local cache hashes to its name: nothing corrupt was stored.
fn assert_cache_sound(cache: &Path) {
    for (rel, bytes) in files(&cache.join("objects")) {
        let name: String = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            hft::store::Digest::of(&bytes).to_hex(),
            name,
            "corrupt blob {} in {}",
            rel.display(),
            cache.display()
        );
    }
}

/// Builds into cache A pushing to `remote`, then into an empty cache B pulling everything;
/// returns A's build. Shared by the file:// and S3 tests.
fn push_then_pull(p: &Project, remote: &str, env: &[(&str, String)]) -> Build {
    let a = build(p, &p.path("cache-a"), &["--remote", remote], env);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.count("ran"), STAGES, "{:?}", a.stages);
    let b = build(p, &p.path("cache-b"), &["--remote", remote], env);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert_eq!(
        b.count("pulled"),
        STAGES,
        "nothing executes: {:?}",
        b.stages
    );
    assert_eq!(b.outputs(), a.outputs(), "identical output digests");
    assert_cache_sound(&p.path("cache-b"));
    // Pulled entries are ordinary local entries from then on.
    let again = build(p, &p.path("cache-b"), &["--remote", remote], env);
    assert_eq!(again.count("cached"), STAGES, "{:?}", again.stages);
    a
}

/// The object holding the features stage's output, and its digest.
fn features_digest(a: &Build) -> String {
    a.stages["features"].1.values().next().unwrap().clone()
}

/// Rebuilds into a fresh cache after the remote object of `digest` was tampered with.
fn assert_tamper_rejected(p: &Project, remote: &str, digest: &str, env: &[(&str, String)]) {
    let cache = p.path("cache-c");
    let c = build(p, &cache, &["--remote", remote], env);
    assert_eq!(c.code, 1, "a poisoned blob fails the build: {}", c.stderr);
    assert_eq!(c.stages["features"].0, "failed", "{:?}", c.stages);
    assert_eq!(c.stages["train"].0, "skipped", "{:?}", c.stages);
    assert!(c.stderr.contains("remote cache poisoned"), "{}", c.stderr);
    assert!(
        c.stderr.contains(&format!("{remote}/objects/{digest}")),
        "{}",
        c.stderr
    );
    assert!(
        c.stderr.contains(digest),
        "expected digest named: {}",
        c.stderr
    );
    assert!(c.stderr.contains("k1-"), "key named: {}", c.stderr);
    assert_cache_sound(&cache);
    let digest = hft::store::Digest::from_hex(digest).unwrap();
    let local = cache
        .join("objects")
        .join(&digest.to_hex()[..2])
        .join(&digest.to_hex()[2..]);
    assert!(!local.exists(), "the tampered blob is not stored");
    // A build without the remote is unaffected: it executes the stage itself.
    let local_only = build(p, &cache, &[], &[]);
    assert_eq!(local_only.code, 0, "{}", local_only.stderr);
}

#[test]
fn an_empty_cache_pulls_everything_and_tampering_is_rejected() {
    let p = tiny_project("remote-file");
    let remote_dir = p.path("remote");
    let remote = format!("file://{}", remote_dir.display());
    let a = push_then_pull(&p, &remote, &[]);
    assert_eq!(
        fs::read_dir(remote_dir.join("actions")).unwrap().count(),
        STAGES,
        "one record per stage key"
    );
    // The text report says `pulled` and the summary counts it.
    let text = hft(&p, &p.path("cache-t"), &["--remote", &remote], &[]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("pulled   k1-"), "{stdout}");
    assert!(
        stdout.contains(&format!("0 stages ran, {STAGES} pulled, 0 cached")),
        "{stdout}"
    );

    let digest = features_digest(&a);
    let object = remote_dir.join("objects").join(&digest);
    let original = fs::read(&object).unwrap();
    let mut bytes = original.clone();
    bytes[0] ^= 0xff;
    fs::write(&object, &bytes).unwrap();
    assert_tamper_rejected(&p, &remote, &digest, &[]);

    // A writer that executes the stage (its record is gone from the remote) finds the
    // damaged object of the same size and replaces it.
    let features_record = walk(&remote_dir.join("actions"))
        .into_iter()
        .find(|path| {
            fs::read_to_string(path)
                .unwrap()
                .contains("\"stage\": \"features\"")
        })
        .unwrap();
    fs::remove_file(&features_record).unwrap();
    let writer = hft(&p, &p.path("cache-w"), &["--remote", &remote], &[]);
    let stderr = String::from_utf8_lossy(&writer.stderr);
    assert!(writer.status.success(), "{stderr}");
    assert!(
        stderr.contains("did not hold the bytes its name promises; replacing it"),
        "{stderr}"
    );
    assert_eq!(
        fs::read(&object).unwrap(),
        original,
        "the object is repaired"
    );
    let stdout = String::from_utf8_lossy(&writer.stdout);
    assert!(stdout.contains("remote cache: pulled "), "{stdout}");
    assert!(
        stdout.contains("pushed 2 ("),
        "the blob and its record: {stdout}"
    );

    // A record served under another key's name is rejected the same way.
    let stage_of = |path: &Path| -> String {
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        doc["stage"].as_str().unwrap().to_string()
    };
    let records: BTreeMap<String, PathBuf> = walk(&remote_dir.join("actions"))
        .into_iter()
        .map(|path| (stage_of(&path), path))
        .collect();
    fs::copy(&records["ingest:AAA"], &records["dataset"]).unwrap();
    let d = build(&p, &p.path("cache-d"), &["--remote", &remote], &[]);
    assert_eq!(d.code, 1, "{}", d.stderr);
    assert_eq!(d.stages["dataset"].0, "failed", "{:?}", d.stages);
    assert!(d.stderr.contains("names stage key"), "{}", d.stderr);
    assert!(
        !p.path("cache-d/actions")
            .join(records["dataset"].file_name().unwrap())
            .exists()
    );
}

#[test]
fn a_read_only_remote_is_never_written() {
    let p = tiny_project("remote-ro");
    let remote_dir = p.path("remote");
    let remote = format!("file://{}", remote_dir.display());
    let ro = build(
        &p,
        &p.path("cache-a"),
        &["--remote", &remote, "--remote-read-only"],
        &[],
    );
    assert_eq!(ro.code, 0, "{}", ro.stderr);
    assert_eq!(ro.count("ran"), STAGES);
    assert!(
        !remote_dir.exists(),
        "a read-only remote gets nothing, not even a folder"
    );
    // Filled by a writer, it serves the read-only consumer, which still writes nothing.
    let a = build(&p, &p.path("cache-w"), &["--remote", &remote], &[]);
    assert_eq!(a.count("ran"), STAGES);
    let before = files(&remote_dir);
    let ci = build(
        &p,
        &p.path("cache-ci"),
        &["--remote", &remote, "--remote-read-only"],
        &[],
    );
    assert_eq!(ci.count("pulled"), STAGES, "{:?}", ci.stages);
    // A stage the remote lacks (another seed) runs locally and is not pushed.
    let changed = build(
        &p,
        &p.path("cache-ci"),
        &["--remote", &remote, "--remote-read-only", "--set", "seed=4"],
        &[],
    );
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    assert!(changed.count("ran") > 0, "{:?}", changed.stages);
    assert_eq!(files(&remote_dir), before, "the remote is unchanged");
}

#[test]
fn an_unreachable_remote_warns_once_and_builds_locally() {
    let p = tiny_project("remote-down");
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = s3_env(port);
    let b = build(&p, &p.path("cache"), &["--remote", "s3://bucket/x"], &env);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert_eq!(b.count("ran"), STAGES);
    assert_eq!(
        b.stderr.matches("building locally without it").count(),
        1,
        "{}",
        b.stderr
    );
    let bad = hft(&p, &p.path("cache"), &["--remote", "ftp://x/y"], &[]);
    assert_eq!(bad.status.code(), Some(2), "a malformed URL is bad input");
    let alone = hft(&p, &p.path("cache"), &["--remote-read-only"], &[]);
    assert_eq!(
        alone.status.code(),
        Some(2),
        "--remote-read-only needs a remote"
    );
    let from_env = hft(
        &p,
        &p.path("cache"),
        &["--remote-read-only"],
        &[("HFT_REMOTE", "ftp://x/y".to_string())],
    );
    let stderr = String::from_utf8_lossy(&from_env.stderr);
    assert!(
        stderr.contains("--remote ftp://x/y"),
        "HFT_REMOTE is --remote: {stderr}"
    );
}

/// The client environment for s3s-fs on `port` with keys K / S.
fn s3_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "K".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "S".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".to_string()),
    ]
}

/// s3s-fs from `$HFT_S3S_FS` or PATH.
fn s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HFT_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// An s3s-fs server, stopped when dropped.
struct S3Server(Child);

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn s3_remote_on_loopback() {
    let Some(server) = s3s_fs() else {
        eprintln!(
            "SKIPPED s3_remote_on_loopback: no s3s-fs on PATH or at $HFT_S3S_FS \
             (scripts/ci/s3.sh installs it)"
        );
        return;
    };
    let p = tiny_project("remote-s3");
    let root = p.path("s3root");
    fs::create_dir_all(root.join("bucket")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&server)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "K", "--secret-key", "S"])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
    let _server = S3Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let env = s3_env(port);
    let remote = "s3://bucket/ci";
    let a = push_then_pull(&p, remote, &env);
    let digest = features_digest(&a);
    let object = root.join("bucket/ci/objects").join(&digest);
    let mut bytes = fs::read(&object).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&object, &bytes).unwrap();
    assert_tamper_rejected(&p, remote, &digest, &env);
}
