//! A second registry implementation for the tests: the `container-registry` crate's binary
//! (a small OCI registry in Rust, axum on the filesystem). The engine's scenarios run against
//! it as well as against distribution, because registries differ in exactly the corners a
//! mirror touches: it refuses a body on a blob `PUT` (only `PATCH` + an empty `PUT`), has no
//! tag listing and no mounts, answers HEAD without `Docker-Content-Digest`, ignores `Range`,
//! stores no manifest under a digest, and serves only two-part repository names
//! (`team/app`). It asks for credentials (any user and password will do).
//!
//! `.ci/run` installs it (`cargo install --locked`) and sets `CONTAINER_REGISTRY_BIN`; without
//! that, the default install path under `target/tools/` and then `PATH` are tried. A missing
//! binary fails the test with the command that installs it: the tests must run against it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

/// The crate version the tests are written against.
pub const VERSION: &str = "0.3.1";

/// The command that installs the binary where the tests look first.
pub fn install_command() -> String {
    format!(
        "cargo install --locked --features bin container-registry --version {VERSION} --root {}",
        default_root().display()
    )
}

fn default_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/container-registry")
}

/// The binary: `$CONTAINER_REGISTRY_BIN`, the default install path, or `PATH`.
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CONTAINER_REGISTRY_BIN") {
        return PathBuf::from(bin);
    }
    let default = default_root().join("bin/container-registry");
    if default.exists() {
        return default;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("container-registry"))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "the container-registry binary is missing; install it with:\n  {}\n(or set CONTAINER_REGISTRY_BIN; bash .ci/run does both)",
            install_command()
        )
    })
}

/// One running `container-registry` on a free 127.0.0.1 port with its own storage; killed
/// when dropped.
pub struct OtherRegistry {
    child: Child,
    port: u16,
    _storage: TempDir,
}

impl OtherRegistry {
    pub fn start() -> OtherRegistry {
        let storage = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(storage.path().join("registry.log")).expect("log");
        let port = super::free_port();
        let child = Command::new(binary())
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage")
            .arg(storage.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start container-registry");
        let registry = OtherRegistry {
            child,
            port,
            _storage: storage,
        };
        let started = Instant::now();
        while !super::port_open(&registry.host()) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "container-registry did not start on {}",
                registry.host()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A `config.json` with credentials for it and for `also` (proxies in front of it): it
    /// wants credentials, any will do.
    pub fn config_json(&self, also: &[String]) -> String {
        let auth = base64::engine::general_purpose::STANDARD.encode("mirror:any-password");
        let entries: Vec<String> = std::iter::once(self.host())
            .chain(also.iter().cloned())
            .map(|host| format!(r#""{host}": {{"auth": "{auth}"}}"#))
            .collect();
        format!(r#"{{"auths": {{{}}}}}"#, entries.join(", "))
    }

    /// The digest of the manifest `repo:reference` by its bytes (it states none), with
    /// its media type; `None` when it does not have it.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let auth = base64::engine::general_purpose::STANDARD.encode("mirror:any-password");
        let mut answer = ureq::get(&format!(
            "http://{}/v2/{repo}/manifests/{reference}",
            self.host()
        ))
        .header("Authorization", &format!("Basic {auth}"))
        .header("User-Agent", super::HARNESS_USER_AGENT)
        .call()
        .ok()?;
        let body = answer.body_mut().read_to_vec().ok()?;
        Some(super::sha256_digest(&body))
    }
}

impl Drop for OtherRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
