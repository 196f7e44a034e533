//! Credentials and registry access against real registries: htpasswd basic auth, token auth
//! with a token issuer run by the test (scoped tokens, mounts, expiry, identity tokens),
//! credential helpers, TLS with a test CA — and no secret in any output: credentials never
//! follow a `Location` to another host, URL queries stay out of errors, library logs stay
//! under their caps at trace level, refused credentials are not retried.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use crate::support::cli::*;
use crate::support::proxy::{Behaviour, Fault, FaultProxy, Paging};
use crate::support::token::TokenIssuer;
use crate::support::*;
use base64::Engine as _;

/// Runs `image-mirror run ARGS` with no ambient credentials (`$DOCKER_CONFIG` an empty
/// directory, not the workspace), certs.d under the workspace (empty unless a test fills it),
/// and `env` on top.
fn run(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = image_mirror(&ws.path("no-docker-config"));
    cmd.env("IMAGE_MIRROR_CERTS_DIRS", ws.path("certs.d"))
        .arg("run")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run image-mirror")
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
        let out = run(&ws, &["--insecure", "-a", p(&config), p(&mapping)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&config), p(&mapping)], &[]);
    expect_code(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("permission to {d}/ns2/app for user robot+a"))
            && stderr.contains(&format!(
                "{d} did not accept these credentials: check the password or token in \
                 auths[\"{d}\"] in {}",
                p(&config)
            )),
        "{stderr}"
    );
    assert!(!all_output(&out).contains("robot-a-pass"));
    assert!(
        reg.tool_requests_since(mark).iter().all(|r| !r.is_write()),
        "nothing may be written with refused credentials"
    );

    // No credentials at all: anonymous, refused, and the message says none were found.
    let out = run(&ws, &["--insecure", p(&mapping)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&reader), p(&from)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&reader), p(&to)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&pusher), p(&to)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&pusher), p(&within)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&pusher), p(&mapping)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&pusher), p(&mapping)], &[]);
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
    let out = run(&ws, &["--insecure", "-a", p(&config), p(&mapping)], &[]);
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
        let out = run(&ws, &["--insecure", "-a", p(&config), p(&mapping)], &env);
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
        let out = run(&ws, &["--insecure", "-a", p(&config), p(&mapping)], &env);
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
        let out = run(&ws, &["--insecure", "-a", p(config), p(&mapping)], &[]);
        expect_code(&out, 2);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains(p(config)),
            "{stderr}"
        );
        assert!(plain.tool_requests_since(mark).is_empty());
    }
    // REGISTRY_AUTH_FILE names a file explicitly too.
    let out = run(
        &ws,
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
    let ca = crate::support::tls::TestCa::new("image-mirror test registry CA");
    let clients = crate::support::tls::TestCa::new("image-mirror test client CA");
    let mtls = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        client_auth: Some(crate::support::ClientAuth {
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
    let out = run(&ws, &[&insecure_plain, "--retries=0", p(&mapping)], &[]);
    expect_code(&out, 1);
    let all = all_output(&out);
    assert!(all.contains("asks for a client certificate"), "{all}");
    assert_eq!(mtls.manifest_digest("mirror/app", "1"), None);

    // A certificate without its key: exit 2, naming both files; nothing contacted.
    let ours = clients.client_cert("image-mirror");
    std::fs::write(dir.join("client.cert"), &ours.cert_pem).expect("write client cert");
    let before = (plain.mark(), mtls.mark());
    let out = run(&ws, &[&insecure_plain, p(&mapping)], &[]);
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
    let out = run(&ws, &[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("client.cert") && stderr.contains("unusable with its key"),
        "{stderr}"
    );

    // The pair: copied, identical digest.
    std::fs::write(dir.join("client.key"), &ours.key_pem).expect("write client key");
    let out = run(&ws, &[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 0);
    assert_eq!(
        mtls.manifest_digest("mirror/app", "1").as_deref(),
        Some(img.digest.as_str())
    );
    mtls.assert_complete("mirror/app", "1");
}

#[test]
fn tls_registry_with_a_test_ca() {
    let ca = crate::support::tls::TestCa::new("image-mirror test registry CA");
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
    let out = run(
        &ws,
        &[&insecure_plain, p(&mapping)],
        &[("RUST_LOG", "info")],
    );
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
    let out = run(&ws, &[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 0);
    assert_eq!(
        plain.manifest_digest("copy/app", "1").as_deref(),
        Some(img.digest.as_str())
    );
    plain.assert_complete("copy/app", "1");
    // ...and writing to it.
    let mapping = ws.write("m1b", &format!("{s}/copy/app:1 {t}/back/app:1\n"));
    let out = run(&ws, &[&insecure_plain, p(&mapping)], &[]);
    expect_code(&out, 0);
    tls_reg.assert_complete("back/app", "1");
    std::fs::remove_file(dir.join("ca.crt")).expect("remove CA");

    // Without the CA but with --insecure-registry for it.
    let mapping = ws.write("m2", &format!("{t}/team/app:1 {s}/copy/app:2\n"));
    let insecure_tls = format!("--insecure-registry={t}");
    let out = run(&ws, &[&insecure_plain, &insecure_tls, p(&mapping)], &[]);
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
            let out = run(&ws, &all, &[("RUST_LOG", "trace")]);
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
    let out = run(&ws, &["--insecure", p(&mapping)], &[]);
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("ca.crt"), "{stderr}");
    assert!(src.tool_requests_since(src_mark).is_empty());
    assert!(dst.tool_requests_since(dst_mark).is_empty());
}

/// A token-auth registry whose issuer knows `pusher` (pull everywhere, push under `dst/`).
fn pusher_token_registry() -> (Registry, Arc<TokenIssuer>) {
    let issuer = TokenIssuer::start();
    issuer.user(
        "pusher",
        "pusher-pass",
        &[("*", "pull"), ("dst/", "pull,push")],
    );
    let reg = Registry::start_with(RegistryConfig {
        token: Some(issuer.clone()),
        ..Default::default()
    });
    (reg, issuer)
}

/// Row 1: `authorize_if_ours`. The registry's upload `Location`s and its tag list's `Link`s
/// name another authority (a CDN or bucket, played by a second proxy in front of the same
/// registry that records the `Authorization` it receives and forwards with a token of its
/// own): the blobs and the second page go there, without the registry token.
#[test]
fn credentials_never_follow_a_location_to_another_host() {
    let plain = Registry::start();
    let (reg, issuer) = pusher_token_registry();
    let elsewhere = FaultProxy::start_with(
        &reg.host(),
        Behaviour {
            sign_with: Some(issuer.clone()),
            paging: Some(Paging::Link(1)),
            ..Default::default()
        },
    );
    let front = FaultProxy::start_with(
        &reg.host(),
        Behaviour {
            send_elsewhere: Some(elsewhere.host()),
            paging: Some(Paging::Link(1)),
            ..Default::default()
        },
    );
    let (s, f) = (plain.host(), front.host());
    let image = seed_docker_image(&plain, "team/app", "1", &[layer(101, 3000)]);
    seed_docker_image(&reg, "src/lib", "a", &[layer(114, 300)]);
    seed_docker_image(&reg, "src/lib", "b", &[layer(115, 300)]);
    let ws = Workspace::new();
    let config = basic_config(&ws, &f, "pusher", "pusher-pass");
    let mapping = ws.write(
        "m",
        &format!("{s}/team/app:1 {f}/dst/app:1\n{f}/src/lib:* {s}/copy/lib\n"),
    );
    let (out, _) = ws.run_report_with_env(&mapping, &["--insecure", "-a", p(&config)], &[]);
    expect_code(&out, 0);
    assert_eq!(
        reg.manifest_digest("dst/app", "1").as_deref(),
        Some(image.digest.as_str())
    );
    reg.assert_complete("dst/app", "1");
    assert_eq!(plain.tags("copy/lib"), ["a", "b"], "both pages were read");
    let there = elsewhere.seen();
    assert_eq!(
        there
            .iter()
            .filter(|r| r.method == "GET" && r.target.contains("/src/lib/tags/list"))
            .count(),
        1,
        "the second page came from the Link's host: {there:#?}"
    );
    assert_eq!(
        there
            .iter()
            .filter(|r| r.method == "PUT" && r.target.contains("/blobs/uploads/"))
            .count(),
        image.blobs.len(),
        "every blob went to the Location's host: {there:#?}"
    );
    assert!(
        front
            .seen()
            .iter()
            .any(|r| r.method == "POST" && r.authorization.is_some()),
        "the registry itself got the token"
    );
    let leaked: Vec<_> = there.iter().filter(|r| r.authorization.is_some()).collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to another host: {leaked:#?}"
    );
}

/// Row 2: an upload `Location`'s query (`_state`, a pre-signed URL's signature) is a
/// credential: an error on that URL names it without its query, in the log, the summary and
/// the report.
#[test]
fn url_queries_stay_out_of_errors_and_reports() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = FaultProxy::start(&dst.host());
    proxy.add("PUT", "/blobs/uploads/", 100, Fault::Drop);
    let (s, d) = (src.host(), proxy.host());
    seed_docker_image(&src, "team/app", "1", &[layer(102, 2000)]);
    let ws = Workspace::new();
    let mapping = ws.write("m", &format!("{s}/team/app:1 {d}/app:1\n"));
    let (out, report) = ws.run_report_with_env(&mapping, &["--insecure", "--retries=0"], &[]);
    expect_code(&out, 1);
    let error = images(&report)[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/blobs/uploads/"),
        "the error names the upload URL: {error}"
    );
    let states: Vec<String> = proxy
        .seen()
        .iter()
        .filter(|r| r.method == "PUT")
        .filter_map(|r| r.target.split_once("_state=").map(|(_, q)| q.to_owned()))
        .collect();
    assert!(!states.is_empty(), "the uploads carried a _state");
    let everything = format!("{}\n{report}", all_output(&out));
    assert!(
        !everything.contains("_state="),
        "an upload URL's query was shown: {everything}"
    );
    for state in states {
        let state = state.split('&').next().unwrap_or_default();
        assert!(!everything.contains(state), "the _state was shown");
    }
}

/// Row 3: tokens are cached per scope: a run of three tags of one repository, with shared
/// layers, copied within one token registry, asks the token service once per scope.
#[test]
fn tokens_are_asked_once_per_scope() {
    let (reg, issuer) = pusher_token_registry();
    for tag in ["1", "2", "3"] {
        seed_docker_image(
            &reg,
            "src/app",
            tag,
            &[layer(103, 2000), layer(104 + tag.len() as u64, 1000)],
        );
    }
    let plain = Registry::start();
    let t = reg.host();
    let ws = Workspace::new();
    let config = basic_config(&ws, &t, "pusher", "pusher-pass");
    let mapping = ws.write(
        "m",
        &format!(
            "{t}/src/app:1 {t}/dst/app:1\n{t}/src/app:2 {t}/dst/app:2\n{t}/src/app:3 {t}/dst/app:3 {}/copy/app:3\n",
            plain.host()
        ),
    );
    let (out, _) = ws.run_report_with_env(&mapping, &["--insecure", "-a", p(&config)], &[]);
    expect_code(&out, 0);
    reg.assert_complete("dst/app", "3");
    let mut per_scope: HashMap<String, usize> = HashMap::new();
    for grant in issuer.grants() {
        assert_eq!(grant.status, 200, "{grant:?}");
        *per_scope.entry(grant.requested.join(" ")).or_default() += 1;
    }
    assert!(
        per_scope.contains_key("repository:dst/app:pull,push"),
        "{per_scope:#?}"
    );
    let again: Vec<_> = per_scope.iter().filter(|(_, n)| **n > 1).collect();
    assert!(again.is_empty(), "scopes asked more than once: {again:#?}");
}

/// Row 6: refused credentials fail at once: one attempt, no request tried again, a handful
/// of 401s at the registry (not one round per retry).
#[test]
fn refused_credentials_are_not_retried() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryConfig {
        htpasswd: vec![("pusher".into(), "right-pass".into())],
        ..Default::default()
    });
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(108, 1000)]);
    let ws = Workspace::new();
    let config = basic_config(&ws, &d, "pusher", "wrong-pass");
    let mapping = ws.write("m", &format!("{s}/team/app:1 {d}/app:1\n"));
    let mark = dst.mark();
    let (out, report) = ws.run_report_with_env(&mapping, &["--insecure", "-a", p(&config)], &[]);
    expect_code(&out, 1);
    let image = &images(&report)[0];
    assert_eq!(image["status"], "failed", "{report:#}");
    assert_eq!(image["attempts"], 1, "{report:#}");
    assert_eq!(total(&report, "retries"), 0, "{report:#}");
    assert_eq!(total(&report, "request_retries"), 0, "{report:#}");
    let refused = dst
        .tool_requests_since(mark)
        .into_iter()
        .filter(|r| r.status == 401)
        .count();
    // `GET /v2/` twice (scheme probe, challenge), then each request asked twice (once more
    // after re-reading the challenge): the tag listing and the destination's HEAD.
    assert!(refused <= 6, "{refused} refused requests");
}

/// Row 9: the caps on library logs (reqwest, hyper, rustls: `SECRET_SAFE_CAPS`). At
/// `RUST_LOG=trace`, with a source that redirects blob downloads to a pre-signed URL and a
/// destination over TLS, no line from those libraries is below its cap, and the URL's
/// signature appears nowhere. Every line is JSON (`--log-format json`).
#[test]
fn library_logs_stay_under_their_caps_at_trace() {
    let src = Registry::start();
    let ca = crate::support::tls::TestCa::new("image-mirror test caps CA");
    let dst = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        ..Default::default()
    });
    let signature = "SIGNATURE-NEVER-SHOWN-5e1d";
    let bucket = FaultProxy::start(&src.host());
    let front = FaultProxy::start_with(
        &src.host(),
        Behaviour {
            redirect_blobs: Some((bucket.host(), signature.to_owned())),
            ..Default::default()
        },
    );
    let image = seed_docker_image(&src, "team/app", "1", &[layer(111, 3000)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:1 {}/app:1\n", front.host(), dst.host()),
    );
    let (out, _) = ws.run_report_with_env(
        &mapping,
        &["--insecure", "--log-format", "json"],
        &[("RUST_LOG", "trace")],
    );
    expect_code(&out, 0);
    dst.assert_complete("app", "1");
    assert_eq!(
        bucket.count("GET", "X-Amz-Signature="),
        image.blobs.len(),
        "every blob came from the pre-signed URL"
    );
    let stderr = text(&out.stderr);
    assert!(
        !all_output(&out).contains(signature),
        "the signature leaked"
    );
    let caps: [(&str, &[&str]); 7] = [
        ("reqwest", &["DEBUG", "TRACE"]),
        ("hyper", &["DEBUG", "TRACE"]),
        ("hyper_util", &["DEBUG", "TRACE"]),
        ("h2", &["DEBUG", "TRACE"]),
        ("rustls", &["DEBUG", "TRACE"]),
        ("tokio_rustls", &["DEBUG", "TRACE"]),
        ("oci_client", &["TRACE"]),
    ];
    let mut ours = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        let target = json["target"].as_str().unwrap_or_default();
        let level = json["level"].as_str().unwrap_or_default();
        if target.starts_with("image_mirror") && level == "DEBUG" {
            ours += 1;
        }
        let crate_name = target.split("::").next().unwrap_or_default();
        for (capped, below) in caps {
            assert!(
                !(crate_name == capped && below.contains(&level)),
                "{capped} logged at {level}: {line}"
            );
        }
    }
    assert!(ours > 0, "trace logging was on: {stderr}");
}

/// "it sends no POST, PUT, PATCH or DELETE to any registry (only an `identitytoken`
/// credential is exchanged for a token by an OAuth2 POST to the token service)": a dry run
/// with an identity token, source and destination in the same token registry.
#[test]
fn a_dry_run_with_an_identity_token_writes_nothing_at_the_source_either() {
    let issuer = TokenIssuer::start();
    issuer.user("pusher", "unused", &[("*", "pull"), ("dst/", "pull,push")]);
    issuer.refresh_token("rt-dry-run-identity", "pusher");
    let reg = Registry::start_with(RegistryConfig {
        token: Some(issuer.clone()),
        ..Default::default()
    });
    let t = reg.host();
    seed_docker_image(&reg, "src/app", "1", &[layer(2600, 500)]);
    seed_docker_image(&reg, "src/app", "2", &[layer(2601, 500)]);
    seed_docker_image(&reg, "dst/app", "2", &[layer(2602, 500)]);
    let ws = Workspace::new();
    let config = ws.write(
        "config.json",
        &format!(r#"{{"auths": {{"{t}": {{"identitytoken": "rt-dry-run-identity"}}}}}}"#),
    );
    let mapping = ws.write(
        "m",
        &format!("{t}/src/app:1 {t}/dst/app:1\n{t}/src/app:2 {t}/dst/app:2\n"),
    );
    let mark = reg.mark();
    let (out, report) = ws.run_report(
        &mapping,
        &[
            "--insecure",
            "--dry-run",
            "-a",
            crate::support::cli::p(&config),
        ],
    );
    expect_code(&out, 0);
    let statuses: Vec<&str> = images(&report)
        .iter()
        .map(|i| i["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["would-copy", "would-overwrite"], "{report:#}");
    assert_eq!(reg.tool_writes_since(mark), []);
    let grants = issuer.grants();
    assert!(!grants.is_empty());
    assert!(
        grants
            .iter()
            .all(|g| g.grant_type == "refresh_token" && g.status == 200),
        "{grants:#?}"
    );
    assert!(
        grants
            .iter()
            .any(|g| g.requested.iter().any(|s| s.starts_with("repository:src/"))),
        "the source was read with the identity token: {grants:#?}"
    );
}
