//! The rationing proxy (`tests/support/rationing.rs`) checked against a real client and by
//! hand: skopeo pulls through the quota while it lasts and then reports Docker Hub's own
//! error; the quota headers are there on HEAD (which costs nothing) and absent when the mode
//! says so; identities share or keep their quotas; the token bucket answers `Retry-After`.
//! These tests hold the stand-in to what the real registries do, so that the tests of
//! image-mirror's rationing (issue 23) test against something faithful.

use crate::support::rationing::*;
use crate::support::*;

const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.oci.image.index.v1+json";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .user_agent(HARNESS_USER_AGENT)
        .build()
        .into()
}

/// What one request to the proxy answered: status, the headers that matter here, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn send(method: &str, url: &str, authorization: Option<&str>) -> Answer {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Accept", ACCEPT);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let request = request.body(()).expect("request");
    let mut response = agent().run(request).expect("request through the proxy");
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = if method == "HEAD" {
        String::new()
    } else {
        response.body_mut().read_to_string().unwrap_or_default()
    };
    Answer {
        status: response.status().as_u16(),
        headers,
        body,
    }
}

/// `N;w=SECONDS` (Docker Hub's `ratelimit-limit` / `ratelimit-remaining`) as (N, SECONDS).
fn quota_field(value: &str) -> Option<(u64, u64)> {
    let (n, w) = value.split_once(";w=")?;
    Some((n.trim().parse().ok()?, w.trim().parse().ok()?))
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!("Basic {}", base64_std(raw.as_bytes()))
}

/// Base64 (standard alphabet, padded) of `bytes`: the harness's credentials and test JWTs.
fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn skopeo_inspect(proxy: &RationProxy, image: &str) -> std::process::Output {
    std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--no-creds",
            "--retry-times",
            "0",
        ])
        .arg(format!("docker://{}/{image}", proxy.host()))
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .output()
        .expect("run skopeo")
}

#[test]
fn skopeo_pulls_while_the_quota_lasts_then_reads_docker_hubs_error() {
    let reg = Registry::start();
    let seeded = seed_docker_image(&reg, "team/app", "1.0", &[layer(1, 3000)]);
    let proxy = RationProxy::docker_hub(&reg.host(), 2);

    for _ in 0..2 {
        let out = skopeo_inspect(&proxy, "team/app:1.0");
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&seeded.digest), "{stdout}");
    }
    assert_eq!(proxy.remaining("127.0.0.1"), 0);
    let out = skopeo_inspect(&proxy, "team/app:1.0");
    assert!(!out.status.success(), "the third pull must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("toomanyrequests") && stderr.contains("pull rate limit"),
        "skopeo's reading of the 429: {stderr}"
    );
    let counts = proxy.counts();
    assert_eq!(counts.manifest_gets_admitted, 2, "{counts:?}");
    // skopeo (containers/image 5.x) tries a 429 again on its own, --retry-times 0 or not:
    // 5 attempts, 2 s apart and doubling, as there is no Retry-After to follow (30 s of
    // this test). Every one of them is refused, and only manifest GETs are.
    assert!(counts.too_many >= 1, "{counts:?}");
    let refused: Vec<Seen> = proxy.seen().into_iter().filter(|s| s.refused).collect();
    assert_eq!(refused.len() as u64, counts.too_many);
    assert!(
        refused
            .iter()
            .all(|s| s.kind == Kind::ManifestGet && s.status == 429),
        "{refused:?}"
    );
    // Blob GETs are not rationed: each inspect that got its manifest read its config.
    assert_eq!(counts.blob_gets, 2, "{counts:?}");

    // A new window: the same pull goes through again.
    proxy.new_window();
    let out = skopeo_inspect(&proxy, "team/app:1.0");
    assert!(
        out.status.success(),
        "after a new window: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.counts().manifest_gets_admitted, 3);
    assert_eq!(proxy.counts().window, 2);
}

#[test]
fn head_is_free_and_carries_the_quota_headers() {
    let reg = Registry::start();
    seed_docker_image(&reg, "team/app", "1.0", &[layer(2, 2000)]);
    let proxy = RationProxy::docker_hub(&reg.host(), 3);
    let url = format!("http://{}/v2/team/app/manifests/1.0", proxy.host());

    for _ in 0..5 {
        let head = send("HEAD", &url, None);
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("ratelimit-limit").and_then(quota_field),
            Some((3, 3600))
        );
        assert_eq!(
            head.header("ratelimit-remaining").and_then(quota_field),
            Some((3, 3600)),
            "a HEAD costs nothing"
        );
        assert_eq!(head.header("docker-ratelimit-source"), Some("127.0.0.1"));
    }
    for left in [2, 1, 0] {
        let get = send("GET", &url, None);
        assert_eq!(get.status, 200);
        assert_eq!(
            get.header("ratelimit-remaining").and_then(quota_field),
            Some((left, 3600))
        );
    }
    let refused = send("GET", &url, None);
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body, DOCKER_HUB_TOO_MANY);
    assert_eq!(refused.header("retry-after"), None, "Docker Hub sends none");
    assert_eq!(
        refused.header("ratelimit-remaining").and_then(quota_field),
        Some((0, 3600))
    );
    // HEADs still work once the quota is spent.
    let head = send("HEAD", &url, None);
    assert_eq!(head.status, 200);
    let counts = proxy.counts();
    assert_eq!(
        (counts.manifest_heads, counts.manifest_gets, counts.too_many),
        (6, 4, 1),
        "{counts:?}"
    );
}

#[test]
fn without_headers_the_quota_shows_only_in_the_429() {
    let reg = Registry::start();
    seed_docker_image(&reg, "team/app", "1.0", &[layer(3, 2000)]);
    let proxy = RationProxy::quota(&reg.host(), 1, QuotaHeaders::None);
    let url = format!("http://{}/v2/team/app/manifests/1.0", proxy.host());
    for method in ["HEAD", "GET"] {
        let answer = send(method, &url, None);
        assert_eq!(answer.status, 200);
        assert!(
            answer
                .headers
                .iter()
                .all(|(k, _)| !k.to_ascii_lowercase().contains("ratelimit")),
            "{method}: {:?}",
            answer.headers
        );
    }
    let refused = send("GET", &url, None);
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body, DOCKER_HUB_TOO_MANY);
    assert!(
        refused
            .headers
            .iter()
            .all(|(k, _)| !k.to_ascii_lowercase().contains("ratelimit")
                && !k.eq_ignore_ascii_case("retry-after")),
        "{:?}",
        refused.headers
    );
}

#[test]
fn ietf_fields_state_the_policy_and_what_is_left() {
    let reg = Registry::start();
    seed_docker_image(&reg, "team/app", "1.0", &[layer(4, 2000)]);
    let proxy = RationProxy::quota(&reg.host(), 5, QuotaHeaders::Ietf);
    let url = format!("http://{}/v2/team/app/manifests/1.0", proxy.host());
    send("GET", &url, None);
    let head = send("HEAD", &url, None);
    assert_eq!(
        head.header("ratelimit-policy"),
        Some("\"default\";q=5;w=3600")
    );
    let ratelimit = head.header("ratelimit").expect("RateLimit field");
    assert!(
        ratelimit.starts_with("\"default\";r=4;t="),
        "RateLimit: {ratelimit}"
    );
}

#[test]
fn one_user_has_one_quota_whatever_the_credential() {
    let reg = Registry::start();
    seed_docker_image(&reg, "team/app", "1.0", &[layer(5, 2000)]);
    let proxy = RationProxy::docker_hub(&reg.host(), 2);
    let url = format!("http://{}/v2/team/app/manifests/1.0", proxy.host());
    // distribution without auth ignores credentials: the proxy alone reads them.
    let jwt = |sub: &str| {
        let claims = base64_std(format!("{{\"iss\":\"test\",\"sub\":\"{sub}\"}}").as_bytes());
        format!("Bearer e30.{}.c2ln", claims.trim_end_matches('='))
    };
    let alice_one = basic("alice", "one");
    let alice_two = basic("alice", "two");
    let alice_token = jwt("alice");
    let bob = basic("bob", "x");

    assert_eq!(send("GET", &url, Some(&alice_one)).status, 200);
    let second = send("GET", &url, Some(&alice_token));
    assert_eq!(second.status, 200);
    assert_eq!(second.header("docker-ratelimit-source"), Some("alice"));
    assert_eq!(
        send("GET", &url, Some(&alice_two)).status,
        429,
        "alice's two passwords and her token share one quota"
    );
    assert_eq!(send("GET", &url, Some(&bob)).status, 200, "bob has his own");
    assert_eq!(
        send("GET", &url, None).status,
        200,
        "anonymous: per address"
    );
    assert_eq!(proxy.remaining("alice"), 0);
    assert_eq!(proxy.remaining("bob"), 1);
    assert_eq!(proxy.remaining("127.0.0.1"), 1);
    assert_eq!(proxy.admitted_by("alice"), 2);
    // No credential is ever echoed: the source names the user only.
    assert!(!second.headers.iter().any(|(_, v)| v.contains("e30.")));
}

#[test]
fn an_unserved_manifest_get_costs_nothing() {
    let reg = Registry::start();
    let proxy = RationProxy::docker_hub(&reg.host(), 1);
    let url = format!("http://{}/v2/team/none/manifests/1.0", proxy.host());
    for _ in 0..3 {
        assert_eq!(send("GET", &url, None).status, 404);
    }
    assert_eq!(proxy.remaining("127.0.0.1"), 1);
    assert_eq!(proxy.counts().manifest_gets_admitted, 0);
}

#[test]
fn the_token_bucket_admits_a_burst_then_answers_retry_after() {
    let reg = Registry::start();
    seed_docker_image(&reg, "team/app", "1.0", &[layer(6, 2000)]);
    // So slow a refill that no token comes back while the test runs.
    let proxy = RationProxy::start(
        &reg.host(),
        Rationing::Rate {
            per_second: 0.001,
            burst: 3,
            retry_after: Some(1),
        },
    );
    let base = format!("http://{}/v2/", proxy.host());
    let manifest = format!("{base}team/app/manifests/1.0");
    assert_eq!(send("GET", &base, None).status, 200);
    assert_eq!(send("HEAD", &manifest, None).status, 200);
    assert_eq!(send("GET", &manifest, None).status, 200);
    for url in [&base, &manifest] {
        let refused = send("GET", url, None);
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert!(refused.body.contains("TOOMANYREQUESTS"), "{}", refused.body);
    }
    let counts = proxy.counts();
    assert_eq!(counts.requests(), 5, "{counts:?}");
    assert_eq!(counts.too_many, 2, "{counts:?}");
}

#[test]
fn control_endpoints_turn_the_window_and_report_the_counts() {
    let reg = Registry::start();
    seed_docker_image(&reg, "team/app", "1.0", &[layer(7, 2000)]);
    let proxy = RationProxy::docker_hub(&reg.host(), 1);
    let url = format!("http://{}/v2/team/app/manifests/1.0", proxy.host());
    assert_eq!(send("GET", &url, None).status, 200);
    assert_eq!(send("GET", &url, None).status, 429);
    let turned = send(
        "POST",
        &format!("http://{}/_ration/new-window", proxy.host()),
        None,
    );
    assert_eq!(turned.status, 200);
    assert!(turned.body.contains("\"window\":2"), "{}", turned.body);
    assert_eq!(send("GET", &url, None).status, 200);
    let counts = send(
        "GET",
        &format!("http://{}/_ration/counts", proxy.host()),
        None,
    );
    assert!(
        counts
            .body
            .contains("\"manifest_gets\":3,\"manifest_heads\":0,\"blob_gets\":0,\"other\":0,\"requests\":3,\"too_many\":1,\"manifest_gets_admitted\":2"),
        "{}",
        counts.body
    );
}
