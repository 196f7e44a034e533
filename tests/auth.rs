//! Credentials and registry access against real registries: htpasswd basic auth, token auth
//! with a token issuer run by the test (scoped tokens, mounts, expiry, identity tokens),
//! credential helpers, TLS with a test CA — and no secret in any output.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use support::cli::*;
use support::token::TokenIssuer;
use support::*;

impl Workspace {
    /// Runs `image-mirror run ARGS` with no ambient credentials, certs.d under the workspace
    /// (empty unless a test fills it), and `env` on top.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = image_mirror(&self.path("no-docker-config"));
        cmd.env("IMAGE_MIRROR_CERTS_DIRS", self.path("certs.d"))
            .arg("run")
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run image-mirror")
    }
}

fn all_output(out: &Output) -> String {
    format!("{}\n{}", text(&out.stdout), text(&out.stderr))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A token-auth registry and its issuer, with users `reader` (pull everywhere) and `pusher`
/// (pull everywhere, push under `dst/`, `other/` and `idt/`).
fn token_registry() -> (Registry, Arc<TokenIssuer>) {
    let issuer = TokenIssuer::start();
    issuer.user("reader", "reader-pass", &[("*", "pull")]);
    issuer.user(
        "pusher",
        "pusher-pass",
        &[
            ("*", "pull"),
            ("dst/", "pull,push"),
            ("other/", "pull,push"),
            ("idt/", "pull,push"),
        ],
    );
    let reg = Registry::start_with(RegistryConfig {
        token: Some(issuer.clone()),
        ..Default::default()
    });
    (reg, issuer)
}

fn basic_config(ws: &Workspace, host: &str, user: &str, password: &str) -> PathBuf {
    ws.write(
        &format!("config-{user}.json"),
        &format!(
            r#"{{"auths": {{"{host}": {{"auth": "{}"}}}}}}"#,
            b64(&format!("{user}:{password}"))
        ),
    )
}

#[test]
fn basic_auth_with_every_way_of_writing_auths() {
    let plain = Registry::start();
    let reg = Registry::start_with(RegistryConfig {
        htpasswd: vec![
            ("admin".into(), "admin-pass".into()),
            ("robot+a".into(), "robot-a-pass".into()),
        ],
        ..Default::default()
    });
    let (s, d) = (plain.host(), reg.host());
    let img = seed_docker_image(&plain, "team/app", "1", &[layer(1, 3000)]);
    let ws = Workspace::new();
    let configs = [
        // `auth` (base64 user:password) under host:port
        format!(
            r#"{{"auths": {{"{d}": {{"auth": "{}"}}}}}}"#,
            b64("robot+a:robot-a-pass")
        ),
        // username/password under a URL key
        format!(
            r#"{{"auths": {{"http://{d}": {{"username": "robot+a", "password": "robot-a-pass"}}}}}}"#
        ),
        // namespaced key beats the host key (whose password is wrong)
        format!(
            r#"{{"auths": {{"{d}": {{"auth": "{}"}}, "{d}/ns1": {{"auth": "{}"}}}}}}"#,
            b64("robot+a:wrong"),
            b64("robot+a:robot-a-pass")
        ),
    ];
    for (i, config) in configs.iter().enumerate() {
        let config = ws.write(&format!("config{i}.json"), config);
        let mapping = ws.write(
            &format!("mapping{i}"),
            &format!("{s}/team/app:1 {d}/ns1/app{i}:1\n"),
        );
        let out = ws.run(&["--insecure", "-a", p(&config), p(&mapping)], &[]);
        expect_code(&out, 0);
        assert_eq!(
            reg.manifest_digest(&format!("ns1/app{i}"), "1").as_deref(),
            Some(img.digest.as_str())
        );
        reg.assert_complete(&format!("ns1/app{i}"), "1");
    }

    // The host key's wrong password applies outside the namespace: a clear error, exit 1.
    let config = ws.path("config2.json");
    let mapping = ws.write("mapping-other", &format!("{s}/team/app:1 {d}/ns2/app:1\n"));
    let mark = reg.mark();
    let out = ws.run(&["--insecure", "-a", p(&config), p(&mapping)], &[]);
    expect_code(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("permission to {d}/ns2/app for user robot+a")),
        "{stderr}"
    );
    assert!(!all_output(&out).contains("robot-a-pass"));
    assert!(
        reg.tool_requests_since(mark).iter().all(|r| !r.is_write()),
        "nothing may be written with refused credentials"
    );

    // No credentials at all: anonymous, refused, and the message says none were found.
    let out = ws.run(&["--insecure", p(&mapping)], &[]);
    expect_code(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no pull permission to {d}/ns2/app for anonymous access"
        )) && stderr.contains("no registry config was found"),
        "{stderr}"
    );
}

#[test]
fn token_auth_pull_only_user_push_user_and_scoped_mount() {
    let plain = Registry::start();
    let (reg, issuer) = token_registry();
    let (s, t) = (plain.host(), reg.host());
    let seeded = seed_docker_image(&reg, "src/app", "1", &[layer(10, 4000), layer(11, 5000)]);
    let ws = Workspace::new();
    let reader = basic_config(&ws, &t, "reader", "reader-pass");
    let pusher = basic_config(&ws, &t, "pusher", "pusher-pass");

    // A pull-only user can mirror from the token registry...
    let from = ws.write("from", &format!("{t}/src/app:1 {s}/copy/app:1\n"));
    let out = ws.run(&["--insecure", "-a", p(&reader), p(&from)], &[]);
    expect_code(&out, 0);
    plain.assert_complete("copy/app", "1");
    let pulls: Vec<_> = issuer
        .grants()
        .into_iter()
        .filter(|g| g.user.as_deref() == Some("reader"))
        .collect();
    assert!(!pulls.is_empty());
    for g in &pulls {
        assert_eq!(g.requested, ["repository:src/app:pull"], "{g:?}");
    }

    // ...but not to it: a clear error naming registry, repository, action and user.
    let to = ws.write("to", &format!("{s}/copy/app:1 {t}/dst/app:1\n"));
    let mark = reg.mark();
    let out = ws.run(&["--insecure", "-a", p(&reader), p(&to)], &[]);
    expect_code(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no push permission to {t}/dst/app for user reader"
        )),
        "{stderr}"
    );
    assert!(
        reg.tool_requests_since(mark)
            .iter()
            .filter(|r| r.is_write())
            .all(|r| r.status == 401),
        "only refused writes"
    );
    assert_eq!(reg.manifest_digest("dst/app", "1"), None);

    // A push user can; its token for the destination asks pull and push on it only.
    let out = ws.run(&["--insecure", "-a", p(&pusher), p(&to)], &[]);
    expect_code(&out, 0);
    reg.assert_complete("dst/app", "1");
    assert!(
        issuer
            .grants()
            .iter()
            .any(|g| g.user.as_deref() == Some("pusher")
                && g.requested == ["repository:dst/app:pull,push"]
                && g.granted == ["repository:dst/app:pull,push"])
    );

    // Within the registry, blobs are mounted with a token that also holds pull on the
    // source repository; nothing is uploaded.
    let within = ws.write("within", &format!("{t}/dst/app:1 {t}/other/app:1\n"));
    let mark = reg.mark();
    let out = ws.run(&["--insecure", "-a", p(&pusher), p(&within)], &[]);
    expect_code(&out, 0);
    reg.assert_complete("other/app", "1");
    let requests = reg.tool_requests_since(mark);
    let mounts: Vec<_> = requests.iter().filter(|r| r.is_mount()).collect();
    assert_eq!(mounts.len(), seeded.blobs.len(), "{requests:#?}");
    assert!(mounts.iter().all(|r| r.status == 201), "{mounts:#?}");
    assert!(
        !requests
            .iter()
            .any(|r| r.method == "PUT" && r.path().contains("/blobs/uploads/")),
        "no blob upload: {requests:#?}"
    );
    assert!(issuer.grants().iter().any(|g| g.requested
        == ["repository:other/app:pull,push", "repository:dst/app:pull"]
        && g.granted.len() == 2));
}

#[test]
fn expired_tokens_are_refreshed_mid_run() {
    let plain = Registry::start();
    let (reg, issuer) = token_registry();
    let (s, t) = (plain.host(), reg.host());
    seed_docker_image(&plain, "team/a", "1", &[layer(20, 3000)]);
    let ws = Workspace::new();
    let pusher = basic_config(&ws, &t, "pusher", "pusher-pass");

    // 1. The first push token arrives already expired (exp two minutes ago, beyond the
    //    registry's 60 s leeway): the registry answers 401, the tool gets a new token and
    //    goes on.
    issuer.expire_next("repository:dst/fresh:pull,push", 1);
    let mapping = ws.write("m1", &format!("{s}/team/a:1 {t}/dst/fresh:1\n"));
    let mark = reg.mark();
    let out = ws.run(&["--insecure", "-a", p(&pusher), p(&mapping)], &[]);
    expect_code(&out, 0);
    reg.assert_complete("dst/fresh", "1");
    let push_grants: Vec<_> = issuer
        .grants()
        .into_iter()
        .filter(|g| g.requested == ["repository:dst/fresh:pull,push"])
        .collect();
    assert!(push_grants.len() >= 2, "{push_grants:#?}");
    assert!(push_grants[0].expired && !push_grants[1].expired);
    let refused = reg
        .tool_requests_since(mark)
        .into_iter()
        .filter(|r| r.status == 401 && r.path() != "/v2/")
        .count();
    assert!(refused >= 1, "the dead token was used and refused");

    // 2. Tokens that live 4 s (the registry refuses them after that: see
    //    `TokenIssuer::set_lifetime`), a run that lasts longer: the source token service
    //    answers slowly for one repository (6 s), so the destination's token, fetched for the
    //    first image, is dead by the time the second image is written; the tool fetches a
    //    new one before using it (expires_in), not after a refusal.
    seed_docker_image(&reg, "src/fast", "1", &[layer(30, 2000)]);
    seed_docker_image(&reg, "src/slow", "1", &[layer(31, 2000)]);
    issuer.set_lifetime(4);
    issuer.delay("src/slow", Duration::from_secs(6));
    let mapping = ws.write(
        "m2",
        &format!("{t}/src/fast:1 {t}/dst/b:fast\n{t}/src/slow:1 {t}/dst/b:slow\n"),
    );
    let before = issuer.grants().len();
    let mark = reg.mark();
    let out = ws.run(&["--insecure", "-a", p(&pusher), p(&mapping)], &[]);
    expect_code(&out, 0);
    reg.assert_complete("dst/b", "fast");
    reg.assert_complete("dst/b", "slow");
    let dst_push = issuer.grants()[before..]
        .iter()
        .filter(|g| g.requested == ["repository:dst/b:pull,push"])
        .count();
    assert!(
        dst_push >= 2,
        "the destination token was not refreshed: {dst_push}"
    );
    // (`GET /v2/` without credentials is how the tool learns the challenge: 401 by design.)
    let refused: Vec<_> = reg
        .tool_requests_since(mark)
        .into_iter()
        .filter(|r| r.status == 401 && r.path() != "/v2/")
        .collect();
    assert!(
        refused.is_empty(),
        "refreshed before expiry, not after a 401: {refused:#?}"
    );
}

#[test]
fn identity_tokens_are_exchanged_with_a_refresh_grant() {
    let plain = Registry::start();
    let (reg, issuer) = token_registry();
    issuer.refresh_token("rt-identity-token-0123", "pusher");
    let (s, t) = (plain.host(), reg.host());
    seed_docker_image(&plain, "team/a", "1", &[layer(40, 3000)]);
    let ws = Workspace::new();
    let config = ws.write(
        "config.json",
        &format!(
            r#"{{"auths": {{"{t}": {{"auth": "{}", "identitytoken": "rt-identity-token-0123"}}}}}}"#,
            b64("pusher:")
        ),
    );
    let mapping = ws.write("m", &format!("{s}/team/a:1 {t}/idt/app:1\n"));
    let out = ws.run(&["--insecure", "-a", p(&config), p(&mapping)], &[]);
    expect_code(&out, 0);
    reg.assert_complete("idt/app", "1");
    let grants = issuer.grants();
    assert!(!grants.is_empty());
    assert!(
        grants
            .iter()
            .all(|g| g.grant_type == "refresh_token" && g.user.as_deref() == Some("pusher")),
        "{grants:#?}"
    );
}

/// Writes `docker-credential-NAME` scripts into `bin`: `test` answers for `host` only (and
/// "credentials not found" otherwise, as docker's helpers do), `broken` always fails.
fn helpers(bin: &Path, host: &str, user: &str, password: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).expect("bin dir");
    let scripts = [
        (
            "docker-credential-test",
            format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n\
                 if [ \"$server\" = \"{host}\" ]; then\n  \
                 printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n\
                 else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n"
            ),
        ),
        (
            "docker-credential-broken",
            "#!/bin/sh\necho 'error: the vault is sealed'\nexit 3\n".to_owned(),
        ),
    ];
    for (name, script) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, script).expect("write helper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

#[test]
fn credential_helpers_through_cred_helpers_and_creds_store() {
    let plain = Registry::start();
    let (reg, _issuer) = token_registry();
    let (s, t) = (plain.host(), reg.host());
    seed_docker_image(&plain, "team/a", "1", &[layer(50, 3000)]);
    let ws = Workspace::new();
    let bin = ws.path("bin");
    helpers(&bin, &t, "pusher", "pusher-pass");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path.as_str())];
    let mapping = ws.write("m", &format!("{s}/team/a:1 {t}/dst/helper:1\n"));

    for (i, config) in [
        format!(r#"{{"credHelpers": {{"{t}": "test"}}}}"#),
        // credsStore for every registry: the plain source gets "not found" → anonymous.
        r#"{"credsStore": "test", "auths": {}}"#.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let config = ws.write(&format!("config{i}.json"), config);
        let out = ws.run(&["--insecure", "-a", p(&config), p(&mapping)], &env);
        expect_code(&out, 0);
        reg.assert_complete("dst/helper", "1");
        assert!(!all_output(&out).contains("pusher-pass"));
        reg.delete_manifest(
            "dst/helper",
            &reg.manifest_digest("dst/helper", "1").expect("tag"),
        );
    }

    // A failing helper stops the run before anything is contacted: exit 2, naming the helper
    // and the registry.
    for (helper, expected) in [
        ("broken", "the vault is sealed"),
        ("absent", "is not on PATH"),
    ] {
        let config = ws.write(
            &format!("config-{helper}.json"),
            &format!(r#"{{"credHelpers": {{"{t}": "{helper}"}}}}"#),
        );
        let (mark_src, mark_dst) = (plain.mark(), reg.mark());
        let out = ws.run(&["--insecure", "-a", p(&config), p(&mapping)], &env);
        expect_code(&out, 2);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("docker-credential-{helper}"))
                && stderr.contains(&t)
                && stderr.contains(expected),
            "{stderr}"
        );
        assert!(plain.tool_requests_since(mark_src).is_empty());
        assert!(reg.tool_requests_since(mark_dst).is_empty());
    }
}

#[test]
fn bad_credential_files_exit_2_naming_the_file() {
    let plain = Registry::start();
    let ws = Workspace::new();
    let h = plain.host();
    let mapping = ws.write("m", &format!("{h}/a/b:1 {h}/c/d:1\n"));
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            ws.write("broken.json", "{\"auths\": {"),
            "not a valid auth file",
        ),
        (
            ws.write("badauth.json", r#"{"auths": {"quay.io": {"auth": "%%%"}}}"#),
            "auths[\"quay.io\"]",
        ),
        (ws.path("missing.json"), "missing.json"),
        // A directory cannot be read as a file (root reads any file, whatever its mode).
        (ws.dir().to_path_buf(), "registry config"),
    ];
    for (config, expected) in &cases {
        let mark = plain.mark();
        let out = ws.run(&["--insecure", "-a", p(config), p(&mapping)], &[]);
        expect_code(&out, 2);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains(p(config)),
            "{stderr}"
        );
        assert!(plain.tool_requests_since(mark).is_empty());
    }
    // REGISTRY_AUTH_FILE names a file explicitly too.
    let out = ws.run(
        &["--insecure", p(&mapping)],
        &[("REGISTRY_AUTH_FILE", p(&cases[0].0))],
    );
    expect_code(&out, 2);
}

/// A registry that requires a client certificate (`http.tls.clientcas`): without one in
/// certs.d the run fails with a hint; with `NAME.cert` + `NAME.key` there it copies; a
/// certificate without its key stops the run before anything is contacted.
#[test]
fn mutual_tls_with_a_client_certificate_from_certs_d() {
    let ca = support::tls::TestCa::new("image-mirror test registry CA");
    let clients = support::tls::TestCa::new("image-mirror test client CA");
    let mtls = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        client_auth: Some(support::ClientAuth {
            ca_pem: clients.cert_pem.clone(),
            harness: clients.client_cert("harness"),
        }),
        ..Default::default()
    });
    let plain = Registry::start();
    let (m, s) = (mtls.host(), plain.host());
    let img = seed_docker_image(&plain, "team/app", "1", &[layer(61, 3000)]);
    let ws = Workspace::new();
    let insecure_plain = format!("--insecure-registry={s}");
    let dir = ws.path("certs.d").join(&m);
    std::fs::create_dir_all(&dir).expect("certs.d dir");
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).expect("write CA");
    let mapping = ws.write("m", &format!("{s}/team/app:1 {m}/mirror/app:1\n"));

    // No client certificate: exit 1, and the message says what the registry wants.
    let out = ws.run(&[&insecure_plain, "--retries=0", p(&mapping)], &[]);
    expect_code(&out, 1);
    let all = all_output(&out);
    assert!(all.contains("asks for a client certificate"), "{all}");
    assert_eq!(mtls.manifest_digest("mirror/app", "1"), None);

    // A certificate without its key: exit 2, naming both files; nothing contacted.
    let ours = clients.client_cert("image-mirror");
    std::fs::write(dir.join("client.cert"), &ours.cert_pem).expect("write client cert");
    let before = (plain.mark(), mtls.mark());
    let out = ws.run(&[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("missing key") && stderr.contains("client.key"),
        "{stderr}"
    );
    assert!(plain.tool_requests_since(before.0).is_empty());
    assert!(mtls.tool_requests_since(before.1).is_empty());

    // A key that is not the certificate's: exit 2 as well.
    let other = clients.client_cert("someone else");
    std::fs::write(dir.join("client.key"), &other.key_pem).expect("write wrong key");
    let out = ws.run(&[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("client.cert") && stderr.contains("unusable with its key"),
        "{stderr}"
    );

    // The pair: copied, identical digest.
    std::fs::write(dir.join("client.key"), &ours.key_pem).expect("write client key");
    let out = ws.run(&[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 0);
    assert_eq!(
        mtls.manifest_digest("mirror/app", "1").as_deref(),
        Some(img.digest.as_str())
    );
    mtls.assert_complete("mirror/app", "1");
}

#[test]
fn tls_registry_with_a_test_ca() {
    let ca = support::tls::TestCa::new("image-mirror test registry CA");
    let tls_reg = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        ..Default::default()
    });
    let plain = Registry::start();
    let (t, s) = (tls_reg.host(), plain.host());
    let img = seed_docker_image(&tls_reg, "team/app", "1", &[layer(60, 3000)]);
    let ws = Workspace::new();
    let insecure_plain = format!("--insecure-registry={s}");

    // Without the CA: a clear TLS error, exit 1, and not asked again (a certificate that is
    // not trusted stays untrusted).
    let mapping = ws.write("m0", &format!("{t}/team/app:1 {s}/copy/app:0\n"));
    let out = ws.run(&[&insecure_plain, p(&mapping)], &[("RUST_LOG", "info")]);
    expect_code(&out, 1);
    let stderr = text(&out.stderr);
    // Retries log "…, retry 1 of 4 in 250 ms".
    assert!(!stderr.contains(", retry "), "{stderr}");
    assert!(
        stderr.contains(&format!("connecting to {t}"))
            && stderr.contains("certificate")
            && stderr.contains("certs.d"),
        "{stderr}"
    );

    // With the CA in certs.d/HOST:PORT/ca.crt.
    let dir = ws.path("certs.d").join(&t);
    std::fs::create_dir_all(&dir).expect("certs.d dir");
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).expect("write CA");
    let mapping = ws.write("m1", &format!("{t}/team/app:1 {s}/copy/app:1\n"));
    let out = ws.run(&[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 0);
    assert_eq!(
        plain.manifest_digest("copy/app", "1").as_deref(),
        Some(img.digest.as_str())
    );
    plain.assert_complete("copy/app", "1");
    // ...and writing to it.
    let mapping = ws.write("m1b", &format!("{s}/copy/app:1 {t}/back/app:1\n"));
    let out = ws.run(&[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 0);
    tls_reg.assert_complete("back/app", "1");
    std::fs::remove_file(dir.join("ca.crt")).expect("remove CA");

    // Without the CA but with --insecure-registry for it.
    let mapping = ws.write("m2", &format!("{t}/team/app:1 {s}/copy/app:2\n"));
    let insecure_tls = format!("--insecure-registry={t}");
    let out = ws.run(&[&insecure_plain, &insecure_tls, p(&mapping)], &[]);
    expect_code(&out, 0);
    plain.assert_complete("copy/app", "2");
}

#[test]
fn no_secret_in_any_output_even_at_trace_level() {
    let plain = Registry::start();
    let (reg, issuer) = token_registry();
    issuer.user(
        "secretive",
        "pa55-NEVER-SHOWN-7f3a",
        &[("*", "pull"), ("dst/", "pull,push")],
    );
    issuer.refresh_token("rt-NEVER-SHOWN-91bc", "reader");
    let (s, t) = (plain.host(), reg.host());
    seed_docker_image(&plain, "team/a", "1", &[layer(70, 3000)]);
    seed_docker_image(&reg, "src/a", "1", &[layer(71, 3000)]);
    let ws = Workspace::new();
    let secret_config = basic_config(&ws, &t, "secretive", "pa55-NEVER-SHOWN-7f3a");
    let identity_config = ws.write(
        "identity.json",
        &format!(r#"{{"auths": {{"{t}": {{"identitytoken": "rt-NEVER-SHOWN-91bc"}}}}}}"#),
    );
    let bad_password = basic_config(&ws, &t, "pusher", "WRONG-pass-NEVER-SHOWN");
    let copy = ws.write(
        "copy",
        &format!("{s}/team/a:1 {t}/dst/a:1\n{t}/src/a:1 {t}/dst/a:2 {s}/out/a:2\n"),
    );
    let refused = ws.write("refused", &format!("{s}/team/a:1 {t}/idt-none/a:1\n"));
    let mut outputs = Vec::new();
    for (args, config) in [
        (vec!["--dry-run"], &secret_config),
        (vec![], &secret_config),
        (vec!["--log-format", "json"], &secret_config),
        (vec![], &identity_config),
        (vec![], &bad_password),
    ] {
        for mapping in [&copy, &refused] {
            let mut all: Vec<&str> = vec!["--insecure", "-a", p(config)];
            all.extend(args.iter().copied());
            all.push(p(mapping));
            let out = ws.run(&all, &[("RUST_LOG", "trace")]);
            assert!(
                matches!(out.status.code(), Some(0..=1)),
                "{}",
                all_output(&out)
            );
            outputs.push(all_output(&out));
        }
    }
    let output = outputs.join("\n");
    assert!(output.contains("DEBUG"), "verbose logging is on");
    assert!(
        reg.manifest_digest("dst/a", "1").is_some(),
        "the runs did work"
    );
    let mut secrets = vec![
        "pa55-NEVER-SHOWN-7f3a".to_owned(),
        "rt-NEVER-SHOWN-91bc".to_owned(),
        "WRONG-pass-NEVER-SHOWN".to_owned(),
        b64("secretive:pa55-NEVER-SHOWN-7f3a"),
        b64("pusher:WRONG-pass-NEVER-SHOWN"),
    ];
    let tokens: Vec<String> = issuer
        .grants()
        .into_iter()
        .filter_map(|g| g.token)
        .collect();
    assert!(tokens.len() >= 3, "tokens were issued");
    for token in tokens {
        // The signature part alone is as secret as the whole token.
        secrets.push(token.rsplit('.').next().unwrap_or_default().to_owned());
        secrets.push(token);
    }
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a secret appeared in the output"
        );
    }
}

#[test]
fn an_unusable_ca_file_stops_the_run_before_any_request() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(61, 300)]);
    let ws = Workspace::new();
    let dir = ws.path("certs.d").join(&d);
    std::fs::create_dir_all(&dir).expect("certs.d dir");
    let bad = dir.join("ca.crt");
    // Cut short: the certificate never ends.
    std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nMIIB\n").expect("write");
    let mapping = ws.write("m", &format!("{s}/team/app:1 {d}/app:1\n"));
    let (src_mark, dst_mark) = (src.mark(), dst.mark());
    let out = ws.run(&["--insecure", p(&mapping)], &[]);
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("ca.crt"), "{stderr}");
    assert!(src.tool_requests_since(src_mark).is_empty());
    assert!(dst.tool_requests_since(dst_mark).is_empty());
}
