//! Big blobs fetched as parallel byte ranges (`--range-threshold`, `--range-chunk-size`,
//! `--ranges-per-blob`) from a real `docker-registry` (distribution serves `Range` on blob
//! GETs), through the fault proxy, which records every request's `Range`: the blob arrives
//! byte-identical at a registry and in an `oci:` directory, a chunk cut midway is asked
//! again alone from its byte reached, a source that ignores `Range` is read as one stream
//! (and not asked for ranges again), and no more ranges of a blob are in flight than asked
//! nor, for all big blobs together, than the registry's limit. Around them: time limits on
//! idleness, not length (a slow range, an unanswered upload), the progress a big blob shows
//! (a log line, a terminal bar) and the bytes a dry run would send. Small sizes (1 MiB
//! chunks, a 3 MiB layer) keep the tests fast.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crate::support::cli::*;
use crate::support::delay::DelayProxy;
use crate::support::proxy::{ACCESS_KEY, Behaviour, Fault, FaultProxy, SIGNATURE};
use crate::support::*;

const MIB: usize = 1024 * 1024;

/// 1 MiB ranges (three at once, as the tests pass) for every blob of 1 MiB or more; one blob transfer at a
/// time per registry, so the ranges in flight are one blob's.
const RANGED: &[&str] = &[
    "--insecure",
    "--max-retry-wait=1",
    "--read-timeout=5",
    "--max-per-registry=1",
    "--range-threshold=1MiB",
    "--range-chunk-size=1MiB",
];

/// The ranges of a blob of `size` bytes in 1 MiB chunks, as `Range` headers.
fn chunks(size: usize) -> Vec<Option<String>> {
    (0..size.div_ceil(MIB))
        .map(|i| {
            let end = ((i + 1) * MIB).min(size) - 1;
            Some(format!("bytes={}-{end}", i * MIB))
        })
        .collect()
}

/// The sha256 digest of `data`, hex alone (as the proxy's targets are matched).
fn hex_digest(data: &[u8]) -> String {
    sha256_digest(data).trim_start_matches("sha256:").to_owned()
}

/// A source with `team/app:1`: a small layer and one of `size` bytes (not a whole number of
/// chunks). Returns the registry, the image and the big layer's digest (hex).
fn source(size: usize) -> (Registry, Seeded, String) {
    let src = Registry::start();
    let image = seed_docker_image(&src, "team/app", "1", &[layer(1, 2000), layer(2, size)]);
    (src, image, hex_digest(&layer(2, size)))
}

/// A source with `team/app:1`: a small layer, then `one` and `two`. Returns the registry and
/// the image.
fn source_of_two(one: &[u8], two: &[u8]) -> (Registry, Seeded) {
    let src = Registry::start();
    let layers = [layer(1, 2000), one.to_vec(), two.to_vec()];
    let image = seed_docker_image(&src, "team/app", "1", &layers);
    (src, image)
}

/// [`RANGED`], then `args`.
fn ranged<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [RANGED, args].concat()
}

/// [`RANGED`] without its `option` (given again in `args`), then `args`.
fn ranged_but<'a>(option: &str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = RANGED
        .iter()
        .copied()
        .filter(|a| !a.starts_with(option))
        .collect();
    all.extend(args);
    all
}

/// Writes the mapping of `FROM/team/app:1` to `TO/app:1` in `ws`; returns its path.
fn write_mapping(ws: &Workspace, from: &str, to: &str) -> PathBuf {
    ws.write("mapping", &format!("{from}/team/app:1 {to}/app:1\n"))
}

/// Runs the mirror of `FROM/team/app:1` into `dst` with `args` and asserts that it succeeded
/// and that `dst` holds `image` whole.
#[track_caller]
fn mirror(
    ws: &Workspace,
    from: &str,
    dst: &Registry,
    image: &Seeded,
    args: &[&str],
) -> (Output, serde_json::Value) {
    let mapping = write_mapping(ws, from, &dst.host());
    let (out, report) = ws.run_report(&mapping, args);
    expect_code(&out, 0);
    assert_mirrored(dst, image);
    (out, report)
}

/// Most tests' setting: [`source`] with a big layer of `size` bytes behind a fault proxy, an
/// empty destination and a workspace (fields in the order they are dropped).
struct Setting {
    ws: Workspace,
    dst: Registry,
    proxy: FaultProxy,
    /// The big layer's digest (hex).
    big: String,
    image: Seeded,
    _src: Registry,
}

impl Setting {
    fn new(size: usize) -> Setting {
        let (src, image, big) = source(size);
        let proxy = FaultProxy::start(&src.host());
        Setting {
            ws: Workspace::new(),
            dst: Registry::start(),
            proxy,
            big,
            image,
            _src: src,
        }
    }

    /// [`mirror`] through the proxy into the destination, with `args`.
    #[track_caller]
    fn mirror(&self, args: &[&str]) -> (Output, serde_json::Value) {
        mirror(&self.ws, &self.proxy.host(), &self.dst, &self.image, args)
    }
}

/// `dst` holds `app:1` as the source's image, every blob there.
fn assert_mirrored(dst: &Registry, image: &Seeded) {
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(image.digest.as_str())
    );
    dst.assert_complete("app", "1");
}

/// `ranges` sorted (the window's ranges may arrive in any order).
fn sorted(mut ranges: Vec<Option<String>>) -> Vec<Option<String>> {
    ranges.sort();
    ranges
}

/// [`chunks`] of a blob of `size` bytes, and its first chunk asked again from byte `from`.
fn chunks_and_first_again(size: usize, from: usize) -> Vec<Option<String>> {
    let mut all = chunks(size);
    all.push(Some(format!("bytes={from}-{}", MIB - 1)));
    all
}

/// A source that keeps its blobs elsewhere: `front`, before it, redirects every blob GET to
/// `cdn`, a proxy before a storage registry that holds the same image.
struct Elsewhere {
    image: Seeded,
    /// The big layer's digest (`sha256:` and hex).
    big: String,
    front: FaultProxy,
    cdn: FaultProxy,
    _storage: Registry,
}

/// `src` and a storage registry seeded with `team/app:1`, a small layer and one of `size`
/// bytes, with the proxies of [`Elsewhere`] before them.
fn stored_elsewhere(src: &Registry, size: usize) -> Elsewhere {
    let storage = Registry::start();
    let layers = [layer(1, 2000), layer(2, size)];
    let image = seed_docker_image(src, "team/app", "1", &layers);
    seed_docker_image(&storage, "team/app", "1", &layers);
    let cdn = FaultProxy::start(&storage.host());
    let front = FaultProxy::start(&src.host());
    front.add("GET", "/blobs/sha256:", 1000, Fault::Redirect(cdn.host()));
    Elsewhere {
        image,
        big: sha256_digest(&layers[1]),
        front,
        cdn,
        _storage: storage,
    }
}

/// A blob above the threshold is fetched as its 1 MiB ranges, each once, and arrives
/// byte-identical; a blob below it comes as one stream without `Range`.
#[test]
fn a_big_blob_fetched_in_ranges_arrives_identical() {
    let size = 3 * MIB + 123;
    let t = Setting::new(size);
    let (_, report) = t.mirror(&ranged(&["--ranges-per-blob=3"]));
    assert_eq!(
        t.dst.blob("app", &format!("sha256:{}", t.big)),
        Some(layer(2, size))
    );
    assert_eq!(sorted(t.proxy.ranges("GET", &t.big)), sorted(chunks(size)));
    let small = sha256_digest(&layer(1, 2000));
    assert_eq!(t.proxy.ranges("GET", &small), vec![None]);
    assert_eq!(report["totals"]["request_retries"], 0, "{report:#}");
}

/// A range cut midway is asked again alone, from the byte reached; the other ranges are
/// asked once each.
#[test]
fn a_range_cut_midway_is_asked_again_alone() {
    let size = 3 * MIB + 123;
    let t = Setting::new(size);
    // The first request for the big blob is its first range.
    t.proxy.add("GET", &t.big, 1, Fault::CutAfter(100 * 1024));
    let mapping = write_mapping(&t.ws, &t.proxy.host(), &t.dst.host());
    let (out, report) = t.ws.run_report_with_env(
        &mapping,
        &ranged(&["--ranges-per-blob=3"]),
        &[("RUST_LOG", "info")],
    );
    expect_code(&out, 0);
    assert_mirrored(&t.dst, &t.image);
    // Said as a person writes it, as a whole blob's resume is.
    let all = all_output(&out);
    assert!(
        all.contains("a range of the blob broke off: ")
            && all.contains("asking it again (retry 1 of"),
        "{all}"
    );
    let ranges = t.proxy.ranges("GET", &t.big);
    assert_eq!(ranges[0], Some(format!("bytes=0-{}", MIB - 1)));
    assert_eq!(
        sorted(ranges),
        sorted(chunks_and_first_again(size, 100 * 1024))
    );
    assert_eq!(report["totals"]["request_retries"], 1, "{report:#}");
    assert_eq!(report["images"][0]["attempts"], 1, "{report:#}");
}

/// A source that ignores `Range` answers the first range with the whole blob: that answer
/// is read as one stream, and the registry's next big blob is asked without `Range`.
#[test]
fn a_source_ignoring_range_is_read_as_one_stream() {
    let (one, two) = (layer(2, 3 * MIB + 123), layer(3, 2 * MIB + 7));
    let (src, image) = source_of_two(&one, &two);
    let proxy = FaultProxy::start_with(
        &src.host(),
        Behaviour {
            ignore_range: true,
            ..Behaviour::default()
        },
    );
    let dst = Registry::start();
    let ws = Workspace::new();
    let (_, report) = mirror(
        &ws,
        &proxy.host(),
        &dst,
        &image,
        &ranged(&["--ranges-per-blob=3"]),
    );
    // Blobs go one at a time (--max-per-registry=1): the first big one asked learns it.
    let asked: Vec<Option<String>> = [hex_digest(&one), hex_digest(&two)]
        .iter()
        .flat_map(|d| proxy.ranges("GET", d))
        .collect();
    assert_eq!(
        sorted(asked),
        sorted(vec![None, Some(format!("bytes=0-{}", MIB - 1))])
    );
    assert_eq!(report["totals"]["request_retries"], 0, "{report:#}");
}

/// An `oci:` directory receives a ranged blob intact.
#[test]
fn an_oci_directory_receives_a_ranged_blob_intact() {
    let size = 3 * MIB + 123;
    let (src, _image, big) = source(size);
    let proxy = FaultProxy::start(&src.host());
    let ws = Workspace::new();
    let layout = ws.path("layout");
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 oci:{}:1\n", proxy.host(), p(&layout)),
    );
    let (out, _) = ws.run_report(&mapping, &ranged(&["--ranges-per-blob=3"]));
    expect_code(&out, 0);
    let written = std::fs::read(layout.join("blobs/sha256").join(&big)).expect("the blob");
    assert!(written == layer(2, size), "the blob differs");
    assert_eq!(sorted(proxy.ranges("GET", &big)), sorted(chunks(size)));
}

/// No more ranges of a blob are in flight than `--ranges-per-blob`, and that many are (each
/// range held at the proxy for a while, so they overlap). The registry's limit allows four
/// transfers (each range in flight takes one of them): the image is the big layer and its
/// config alone, so what the proxy serves at once is that blob's ranges.
#[test]
fn no_more_ranges_are_in_flight_than_asked() {
    let size = 6 * MIB + 5;
    let src = Registry::start();
    let image = seed_docker_image(&src, "team/app", "1", &[layer(2, size)]);
    let big = hex_digest(&layer(2, size));
    let proxy = FaultProxy::start(&src.host());
    proxy.add("GET", &big, 100, Fault::Stall(Duration::from_millis(200)));
    let dst = Registry::start();
    let ws = Workspace::new();
    mirror(
        &ws,
        &proxy.host(),
        &dst,
        &image,
        &ranged_but(
            "--max-per-registry",
            &["--max-per-registry=4", "--ranges-per-blob=2"],
        ),
    );
    assert_eq!(proxy.ranges("GET", &big).len(), 7);
    assert_eq!(proxy.max_in_flight(), 2);
}

/// Each range is redirected to the CDN on its own and carries its `Range` there, never the
/// registry's credentials; a signed URL the CDN refuses is asked afresh from the registry
/// for that range alone.
#[test]
fn ranges_follow_redirects_to_a_cdn_without_credentials() {
    // The source wants basic auth; its blobs are "stored" on an anonymous registry holding
    // the same content, behind the proxy that plays the CDN.
    let src = Registry::start_with(RegistryConfig {
        htpasswd: vec![("robot".into(), "robot-pass".into())],
        ..Default::default()
    });
    let size = 3 * MIB + 123;
    let stored = stored_elsewhere(&src, size);
    let (front, cdn, big) = (&stored.front, &stored.cdn, &stored.big);
    // The first range's signed URL is refused once (expired).
    cdn.add("GET", big, 1, Fault::RefuseSigned(403));
    let dst = Registry::start();
    let ws = Workspace::new();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:robot-pass");
    ws.write(
        "config.json",
        &format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            front.host()
        ),
    );
    mirror(
        &ws,
        &front.host(),
        &dst,
        &stored.image,
        &ranged(&["--ranges-per-blob=3"]),
    );
    let expected = chunks_and_first_again(size, 0);
    assert_eq!(sorted(cdn.ranges("GET", big)), sorted(expected.clone()));
    assert_eq!(sorted(front.ranges("GET", big)), sorted(expected));
    let leaked: Vec<_> = cdn
        .seen()
        .into_iter()
        .filter(|s| s.authorization.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "Authorization sent to the CDN: {leaked:?}"
    );
    assert!(front.seen().iter().any(|s| s.authorization.is_some()));
}

/// A range whose answer stalls longer than `--read-timeout` (an idle limit, not one on the
/// blob's length) fails alone and is asked again; the others are asked once each.
#[test]
fn a_stalled_range_is_asked_again_alone() {
    let size = 3 * MIB + 123;
    let t = Setting::new(size);
    // The first request for the big blob is its first range; RANGED waits 5 s at most.
    t.proxy
        .add("GET", &t.big, 1, Fault::Stall(Duration::from_secs(7)));
    let (_, report) = t.mirror(&ranged(&["--ranges-per-blob=3"]));
    assert_eq!(
        sorted(t.proxy.ranges("GET", &t.big)),
        sorted(chunks_and_first_again(size, 0))
    );
    assert_eq!(report["totals"]["request_retries"], 1, "{report:#}");
}

/// A range answered with the whole blob after the first was served (a redirect host that
/// ignores `Range`): the registry is taken as one that ignores `Range`, and the blob copy's
/// next try reads it as one stream.
#[test]
fn a_later_range_answered_whole_falls_back_to_one_stream() {
    let t = Setting::new(3 * MIB + 123);
    // The first range is served as asked; the next one to come is answered whole.
    t.proxy.add("GET", &t.big, 1, Fault::Stall(Duration::ZERO));
    t.proxy.add("GET", &t.big, 1, Fault::IgnoreRange);
    let (_, report) = t.mirror(&ranged(&["--ranges-per-blob=3"]));
    let ranges = t.proxy.ranges("GET", &t.big);
    assert_eq!(ranges[0], Some(format!("bytes=0-{}", MIB - 1)));
    assert_eq!(ranges.last(), Some(&None), "{ranges:?}");
    assert_eq!(
        ranges.iter().filter(|r| r.is_none()).count(),
        1,
        "{ranges:?}"
    );
    assert_eq!(report["images"][0]["attempts"], 1, "{report:#}");
}

/// Every range in flight counts against the registry's limit on transfers: two big blobs
/// copied at once under `--max-per-registry=2`, three ranges each asked for, and the source
/// (each request held 200 ms, so that they overlap) never serves more than two blob `GET`s
/// at once, yet two.
#[test]
fn ranges_of_big_blobs_share_the_registrys_limit() {
    let (one, two) = (layer(2, 3 * MIB + 123), layer(3, 3 * MIB + 7));
    let (src, image) = source_of_two(&one, &two);
    let far = DelayProxy::start(&src.host(), Duration::from_millis(200));
    let dst = Registry::start();
    let ws = Workspace::new();
    let (_, report) = mirror(
        &ws,
        &far.host(),
        &dst,
        &image,
        &[
            "--insecure",
            "--max-per-registry=2",
            "--range-threshold=1MiB",
            "--range-chunk-size=1MiB",
            "--ranges-per-blob=3",
        ],
    );
    assert_eq!(dst.blob("app", &sha256_digest(&one)), Some(one));
    assert_eq!(dst.blob("app", &sha256_digest(&two)), Some(two));
    let counts = far.counts();
    assert_eq!(counts.max, 2, "{counts:?}");
    assert_eq!(report["totals"]["request_retries"], 0, "{report:#}");
}

/// Each range of the big blob answered slowly: its 1 MiB in 8 pieces 400 ms apart, 2.8 s in
/// all, never silent for more than 0.4 s.
fn trickle() -> Fault {
    Fault::Trickle {
        pieces: 8,
        pause: Duration::from_millis(400),
    }
}

/// `--read-timeout` is an idle limit, not one on a range's length: ranges that take longer
/// than it in all, their bytes never stopping for as long, are read once each and none is
/// asked again.
#[test]
fn a_slow_range_that_never_stalls_is_not_cut() {
    let size = 3 * MIB + 123;
    let t = Setting::new(size);
    t.proxy.add("GET", &t.big, 100, trickle());
    let (_, report) = t.mirror(&ranged_but(
        "--read-timeout",
        &["--read-timeout=2", "--ranges-per-blob=3"],
    ));
    assert_eq!(sorted(t.proxy.ranges("GET", &t.big)), sorted(chunks(size)));
    assert_eq!(report["totals"]["request_retries"], 0, "{report:#}");
}

/// In a log (not a terminal), a big blob still moving gets a line with each progress line:
/// where it comes from, its short digest, bytes done of its size and the rate, in a
/// person's units; never the signed URL its bytes come from (the registry redirects every
/// range to a CDN that answers slowly).
#[test]
fn a_big_blob_moving_is_logged_in_a_persons_words_without_its_url() {
    let src = Registry::start();
    let stored = stored_elsewhere(&src, 3 * MIB + 123);
    let (front, big) = (&stored.front, &stored.big);
    stored.cdn.add("GET", big, 100, trickle());
    let dst = Registry::start();
    let ws = Workspace::new();
    let mapping = write_mapping(&ws, &front.host(), &dst.host());
    let out = image_mirror(ws.dir())
        .env("RUST_LOG", "info")
        .args(["run", "--progress-interval=1", "--ranges-per-blob=3"])
        .args(RANGED)
        .arg(&mapping)
        .output()
        .expect("run");
    expect_code(&out, 0);
    assert_mirrored(&dst, &stored.image);
    let stderr = text(&out.stderr);
    let named = format!("big blob {} of {}/team/app: ", &big[..19], front.host());
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(&named)).collect();
    assert!(!lines.is_empty(), "no line for the big blob:\n{stderr}");
    for line in &lines {
        assert!(line.contains(" of 3.0 MiB, "), "{line}");
        assert!(line.contains("B/s"), "{line}");
    }
    let all = all_output(&out);
    assert!(
        !all.contains(SIGNATURE) && !all.contains(ACCESS_KEY),
        "a signed URL in the output:\n{all}"
    );
}

/// An upload streams on a connection without the HTTP client's read timeout (which would
/// cap its length), but a registry that takes the whole body and then gives no answer for
/// `--read-timeout` still fails that upload, which the blob copy then tries again.
#[test]
fn an_upload_left_unanswered_fails_after_the_read_timeout() {
    let (src, image, _) = source(3 * MIB + 123);
    let dst = Registry::start();
    let slow = FaultProxy::start(&dst.host());
    slow.add(
        "PUT",
        "/blobs/uploads/",
        1,
        Fault::Stall(Duration::from_secs(8)),
    );
    let ws = Workspace::new();
    let mapping = write_mapping(&ws, &src.host(), &slow.host());
    let (out, report) = ws.run_report_with_env(
        &mapping,
        &ranged(&["--ranges-per-blob=3"]),
        &[("RUST_LOG", "info")],
    );
    expect_code(&out, 0);
    assert_mirrored(&dst, &image);
    let all = all_output(&out);
    assert!(
        all.contains("took no byte and gave no answer for 5 s (--read-timeout)"),
        "{all}"
    );
    assert_eq!(report["images"][0]["attempts"], 1, "{report:#}");
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), a big blob gets a bar of
/// its own while it moves, named by its short digest and where it comes from, with its
/// bytes, rate and time left.
#[test]
fn a_big_blob_moving_gets_a_bar_on_a_terminal() {
    let size = 3 * MIB + 123;
    let (src, image, big) = source(size);
    let proxy = FaultProxy::start(&src.host());
    proxy.add("GET", &big, 100, trickle());
    let dst = Registry::start();
    let ws = Workspace::new();
    let mapping = write_mapping(&ws, &proxy.host(), &dst.host());
    let binary = assert_cmd::cargo::cargo_bin("image-mirror");
    let command = format!(
        "{} run {} --ranges-per-blob=3 {}",
        p(&binary),
        RANGED.join(" "),
        p(&mapping)
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DOCKER_CONFIG", ws.dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "{}", all_output(&out));
    assert_mirrored(&dst, &image);
    let screen = text(&out.stdout);
    let bar = format!("sha256:{} {}/team/app", &big[..12], proxy.host());
    assert!(screen.contains(&bar), "no bar for the big blob:\n{screen}");
    assert!(screen.contains("MiB/3.00 MiB"), "{screen}");
    assert!(screen.contains(" left"), "{screen}");
}

/// A dry run says how many bytes the copy would send (the blobs the destination lacks, from
/// the source's manifest), in its summary and its JSON report, without reading a blob.
#[test]
fn a_dry_run_says_how_many_bytes_it_would_send() {
    let (src, _image, _) = source(3 * MIB + 123);
    let (_, body) = src.manifest("team/app", "1").expect("the manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let expected: u64 = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().expect("layers"))
        .map(|d| d["size"].as_u64().expect("a size"))
        .sum();
    let proxy = FaultProxy::start(&src.host());
    let dst = Registry::start();
    let ws = Workspace::new();
    let mapping = write_mapping(&ws, &proxy.host(), &dst.host());
    let (out, report) = ws.run_report(&mapping, &ranged(&["--dry-run"]));
    expect_code(&out, 0);
    let summary = text(&out.stdout);
    assert!(
        summary.contains("3.0 MiB of blobs would be sent; nothing was written"),
        "{summary}"
    );
    assert_eq!(report["totals"]["would_move_bytes"], expected, "{report:#}");
    assert_eq!(
        report["images"][0]["would_move_bytes"], expected,
        "{report:#}"
    );
    assert_eq!(proxy.count("GET", "/blobs/"), 0, "{:#?}", proxy.seen());
    assert_eq!(dst.manifest_digest("app", "1"), None);
}
