//! End-to-end tests of `image-mirror check`: the binary as a job runs it, on files in temporary
//! directories. Diagnostics go to stderr as `FILE:LINE:COLUMN: error|warning: message`, the
//! summary line to stdout; exit 0 without errors, 2 otherwise.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// `image-mirror` with a clean environment: no inherited prefix or log settings.
fn image_mirror() -> Command {
    let mut cmd = Command::cargo_bin("image-mirror").expect("binary image-mirror is built");
    cmd.env_remove("MAPPING_FILE_PREFIX")
        .env_remove("RUST_LOG")
        .env_remove("dry_run")
        .env_remove("DRY_RUN");
    cmd
}

/// `image-mirror check` run from `dir`, so diagnostics name files relative to it.
fn check_in(dir: &Path) -> Command {
    let mut cmd = image_mirror();
    cmd.current_dir(dir).arg("check");
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directory");
    }
    fs::write(&path, text).expect("write mapping file");
    path
}

/// What one run printed and returned.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(": error: "))
            .collect()
    }
    fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(": warning: "))
            .collect()
    }
    /// The numbers of the summary line: files, mappings, errors, warnings.
    fn summary(&self) -> [usize; 4] {
        let line = self.stdout.trim_end();
        let numbers: Vec<usize> = line
            .split(", ")
            .zip(["files", "mappings", "errors", "warnings"])
            .map(|(part, word)| {
                let (n, w) = part
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("summary {line:?}"));
                let plural = n != "1";
                let expected = if plural {
                    word
                } else {
                    &word[..word.len() - 1]
                };
                assert_eq!(w, expected, "summary {line:?}");
                n.parse().unwrap_or_else(|_| panic!("summary {line:?}"))
            })
            .collect();
        numbers
            .try_into()
            .unwrap_or_else(|_| panic!("summary {line:?} does not have four counts"))
    }
}

fn run(cmd: &mut Command) -> Outcome {
    let output = cmd.output().expect("run image-mirror");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Checks the single file `m` holding `text` and expects exit 2 with exactly `expected` as the
/// error lines (in order), no warnings.
fn expect_errors(text: &str, expected: &[&str]) {
    let tmp = TempDir::new().expect("temp dir");
    write(tmp.path(), "m", text);
    let out = run(check_in(tmp.path()).arg("m"));
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    assert_eq!(out.errors(), expected, "stderr: {}", out.stderr);
    assert!(out.warnings().is_empty(), "stderr: {}", out.stderr);
    assert_eq!(out.summary()[2], expected.len(), "stdout: {}", out.stdout);
}

// ---------------------------------------------------------------------------------------------
// Valid input

#[test]
fn valid_files_exit_0_with_the_summary_line() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "mapping_a",
        "# CI images\n\
         quay.io/a/one:v1 reg.io/x/one reg.io/y/one:v1-copy\n\
         \n\
         quay.io/a/two:v2=reg.io/x/two:v2 quay.io/a/three:v3=reg.io/x/three:v3\n",
    );
    write(
        tmp.path(),
        "mapping_b",
        "quay.io/a/four:v4.* reg.io/x/four   # wildcard\n\
         nginx:1.27 reg.io/x/nginx:1.27\n",
    );
    check_in(tmp.path())
        .args(["mapping_a", "mapping_b"])
        .assert()
        .code(0)
        .stdout("2 files, 5 mappings, 0 errors, 0 warnings\n")
        .stderr("");
}

#[test]
fn directory_files_are_all_read() {
    let tmp = TempDir::new().expect("temp dir");
    write(tmp.path(), "d/mapping_a", "quay.io/a/one:v1 reg.io/x/one\n");
    write(tmp.path(), "d/mapping_b", "quay.io/a/two:v1 reg.io/x/two\n");
    write(tmp.path(), "d/other", "quay.io/a/three:v1 reg.io/x/three\n");
    check_in(tmp.path())
        .arg("d")
        .assert()
        .code(0)
        .stdout("3 files, 3 mappings, 0 errors, 0 warnings\n");
}

// ---------------------------------------------------------------------------------------------
// One test per error kind, each with its exact `file:line:column:` position

#[test]
fn syntax_errors_in_references_point_at_the_bad_character() {
    expect_errors(
        "# header\n\
         quay.io/a/B:v1 reg.io/x/b\n\
         quay.io/a/b:v1 reg.io/x/b:.bad\n\
         quay.io/a/b:v1   reg.io/x/b:v1 reg.io/y$/b\n",
        &[
            "m:2:11: error: \"quay.io/a/B:v1\": repository name \"B\" must be lowercase",
            "m:3:27: error: \"reg.io/x/b:.bad\": invalid character '.' in tag \".bad\"",
            "m:4:40: error: \"reg.io/y$/b\": invalid character '$' in repository name \"y$\"",
        ],
    );
}

#[test]
fn a_line_without_destination_is_an_error() {
    expect_errors(
        "quay.io/ok/img:v1 reg.io/x/img\n  quay.io/a/lone:v1   # destination forgotten\n",
        &[
            "m:2:3: error: \"quay.io/a/lone:v1\" has no destination: write SRC DST [DST ...] or SRC=DST",
        ],
    );
    expect_errors(
        "quay.io/a/b:v1=\n",
        &["m:1:1: error: \"quay.io/a/b:v1=\" is not a SRC=DST pair"],
    );
}

#[test]
fn a_digest_in_a_destination_is_an_error() {
    let text =
        format!("quay.io/a/c:v1 reg.io/x/c@{DIGEST_A}\nquay.io/a/d:v1=reg.io/x/d@{DIGEST_A}\n");
    let first = format!(
        "m:1:26: error: \"reg.io/x/c@{DIGEST_A}\": a destination cannot have a digest; name a tag (the digest is preserved)"
    );
    let second = format!(
        "m:2:26: error: \"reg.io/x/d@{DIGEST_A}\": a destination cannot have a digest; name a tag (the digest is preserved)"
    );
    expect_errors(&text, &[&first, &second]);
}

#[test]
fn a_glob_in_a_destination_tag_is_an_error() {
    expect_errors(
        "quay.io/a/c:v1 reg.io/x/c:v1.*\nquay.io/a/c:* reg.io/x/c:v1*\n",
        &[
            "m:1:27: error: \"reg.io/x/c:v1.*\": a destination tag cannot be a pattern (only `*`, meaning \"the source's tags\")",
            "m:2:26: error: \"reg.io/x/c:v1*\": a destination tag cannot be a pattern (only `*`, meaning \"the source's tags\")",
        ],
    );
}

#[test]
fn a_source_equal_to_its_destination_is_an_error() {
    expect_errors(
        "nginx:1 docker.io/library/nginx:1\n\
         quay.io/a/b:v1 quay.io/a/b\n\
         quay.io/a/w:* quay.io/a/w\n\
         quay.io/a/b:v1 quay.io/a/b:v2\n",
        &[
            "m:1:9: error: \"docker.io/library/nginx:1\": the destination is the source itself",
            "m:2:16: error: \"quay.io/a/b\": the destination is the source itself",
            "m:3:15: error: \"quay.io/a/w\": the destination is the source itself",
        ],
    );
}

#[test]
fn a_star_destination_for_a_literal_source_is_an_error() {
    expect_errors(
        "quay.io/a/g:v1 reg.io/x/g reg.io/y/g:*\n",
        &[
            "m:1:27: error: \"reg.io/y/g:*\": a `*` destination needs a wildcard source, and quay.io/a/g:v1 names one image",
        ],
    );
}

#[test]
fn a_conflict_across_two_files_names_both_places() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "mapping_a",
        "quay.io/x/one:v1 reg.io/t/app:v1\n",
    );
    write(
        tmp.path(),
        "mapping_b",
        "# another team\nquay.io/x/two:v1 reg.io/t/app\n",
    );
    let out = run(check_in(tmp.path()).args(["mapping_a", "mapping_b"]));
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    assert_eq!(
        out.errors(),
        [
            "mapping_b:2:18: error: reg.io/t/app:v1 is written by two different sources: \
          quay.io/x/two:v1 here and quay.io/x/one:v1 at mapping_a:1:18"
        ]
    );
    // Both mappings parsed; only their combination is wrong.
    assert_eq!(out.summary(), [2, 2, 1, 0]);
}

#[test]
fn mixing_pairs_and_bare_tokens_on_a_line_is_an_error() {
    let message = "mixes a bare reference with SRC=DST pairs on one line (oc would silently drop it): put it on its own line";
    let first = format!("m:1:30: error: \"quay.io/a/i:v1\" {message}");
    let second = format!("m:1:45: error: \"reg.io/x/i:v1\" {message}");
    expect_errors(
        "quay.io/a/h:v1=reg.io/x/h:v1 quay.io/a/i:v1 reg.io/x/i:v1\n",
        &[&first, &second],
    );
}

#[test]
fn every_error_in_every_file_is_reported_in_one_run() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "maps/mapping_1",
        "quay.io/a/B:v1 reg.io/x/b\n\
         quay.io/a/ok1:v1 reg.io/x/ok1\n\
         quay.io/a/lone:v1\n",
    );
    write(
        tmp.path(),
        "maps/mapping_2",
        &format!(
            "quay.io/a/c:v1 reg.io/x/c@{DIGEST_A}\n\
             quay.io/a/ok2:v1 reg.io/x/ok2\n\
             quay.io/a/e:v1 reg.io/x/e:v*\n\
             quay.io/a/f:v1 quay.io/a/f:v1\n\
             quay.io/other/ok1:v1 reg.io/x/ok1:v1\n"
        ),
    );
    write(
        tmp.path(),
        "maps/mapping_3",
        "quay.io/a/g:v1 reg.io/x/g:*\n\
         quay.io/a/h:v1=reg.io/x/h:v1 quay.io/a/i:v1\n",
    );
    write(
        tmp.path(),
        "maps/mapping_4",
        "quay.io/a/ok4:v1 reg.io/x/ok4\n",
    );
    let out = run(check_in(tmp.path()).arg("maps"));
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    let positions: Vec<&str> = out
        .errors()
        .iter()
        .map(|l| l.split(": error: ").next().unwrap_or_default())
        .collect();
    // Sorted by file, then line (the cross-file conflict in mapping_2 included): the syntax,
    // shape and conflict errors of all three files.
    assert_eq!(
        positions,
        [
            "maps/mapping_1:1:11",
            "maps/mapping_1:3:1",
            "maps/mapping_2:1:26",
            "maps/mapping_2:3:27",
            "maps/mapping_2:4:16",
            "maps/mapping_2:5:22",
            "maps/mapping_3:1:16",
            "maps/mapping_3:2:30",
        ],
        "stderr: {}",
        out.stderr
    );
    assert!(
        out.errors()[5].ends_with("quay.io/a/ok1:v1 at maps/mapping_1:2:18"),
        "{}",
        out.errors()[5]
    );
    // 4 files; mappings: ok1, ok2, other/ok1 (its conflict is cross-file), ok4.
    assert_eq!(out.summary(), [4, 4, 8, 0], "stdout: {}", out.stdout);
    assert_eq!(out.stdout, "4 files, 4 mappings, 8 errors, 0 warnings\n");
}

// ---------------------------------------------------------------------------------------------
// Warnings

#[test]
fn a_duplicate_is_a_warning_and_exits_0() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "mapping_a",
        "quay.io/x/one:v1 reg.io/t/app:v1\n",
    );
    write(
        tmp.path(),
        "mapping_b",
        "\n\nquay.io/x/one:v1=reg.io/t/app:v1\n",
    );
    check_in(tmp.path())
        .args(["mapping_a", "mapping_b"])
        .assert()
        .code(0)
        .stdout("2 files, 2 mappings, 0 errors, 1 warning\n")
        .stderr(
            "mapping_b:3:18: warning: duplicate mapping to reg.io/t/app:v1 (also at mapping_a:1:18)\n",
        );
}

#[test]
fn a_source_without_tag_warns_naming_its_line() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "m",
        "quay.io/a/tagged:v1 reg.io/x/tagged\n\
         # every tag of quay.io/a/b\n\
         \tquay.io/a/b reg.io/x/b\n",
    );
    let out = run(check_in(tmp.path()).arg("m"));
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.warnings().len(), 1, "stderr: {}", out.stderr);
    let warning = out.warnings()[0];
    assert!(
        warning.starts_with("m:3:2: warning: \"quay.io/a/b\" has no tag"),
        "{warning}"
    );
    assert!(warning.contains("every tag of quay.io/a/b"), "{warning}");
    assert!(warning.contains("quay.io/a/b:latest"), "{warning}");
    assert_eq!(out.summary(), [1, 2, 0, 1]);
}

// ---------------------------------------------------------------------------------------------
// Line ends

#[test]
fn crlf_files_parse_and_report_columns_without_the_carriage_return() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "crlf",
        "# written on Windows\r\n\
         quay.io/a/b:v1 reg.io/x/b\r\n\
         \r\n\
         quay.io/a/c:v1 reg.io/x/c reg.io/y/c\r\n\
         quay.io/a/d:v1=reg.io/x/d:v1\r\n",
    );
    check_in(tmp.path())
        .arg("crlf")
        .assert()
        .code(0)
        .stdout("1 file, 3 mappings, 0 errors, 0 warnings\n")
        .stderr("");

    write(
        tmp.path(),
        "crlf_bad",
        "quay.io/a/b:v1 reg.io/x/b\r\nquay.io/a/lone:v1\r\n",
    );
    let out = run(check_in(tmp.path()).arg("crlf_bad"));
    assert_eq!(out.code, Some(2));
    assert_eq!(
        out.errors(),
        [
            "crlf_bad:2:1: error: \"quay.io/a/lone:v1\" has no destination: write SRC DST [DST ...] or SRC=DST"
        ]
    );
    assert!(!out.stderr.contains('\r'), "{:?}", out.stderr);
}

#[test]
fn a_file_without_final_newline_keeps_its_last_line() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "nofinal",
        "quay.io/a/b:v1 reg.io/x/b\nquay.io/a/c:v1 reg.io/x/c",
    );
    write(
        tmp.path(),
        "nofinal_crlf",
        "quay.io/a/d:v1 reg.io/x/d\r\nquay.io/a/e:v1 reg.io/x/e\r",
    );
    check_in(tmp.path())
        .args(["nofinal", "nofinal_crlf"])
        .assert()
        .code(0)
        .stdout("2 files, 4 mappings, 0 errors, 0 warnings\n");

    write(
        tmp.path(),
        "nofinal_bad",
        "quay.io/a/b:v1 reg.io/x/b\nquay.io/a/c:v1 reg.io/x/c:*",
    );
    check_in(tmp.path())
        .arg("nofinal_bad")
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "nofinal_bad:2:16: error: \"reg.io/x/c:*\"",
        ))
        .stdout("1 file, 1 mapping, 1 error, 0 warnings\n");
}

// ---------------------------------------------------------------------------------------------
// Directories: ConfigMap mounts, prefixes, hidden files

/// A directory laid out the way the kubelet mounts a ConfigMap:
/// `DIR/mapping_x -> ..data/mapping_x`, `DIR/..data -> ..2026_11_23_05_00_00.123/`.
#[cfg(unix)]
fn configmap_mount(root: &Path, files: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::symlink;
    let dir = root.join("imagemirror");
    let timestamped = dir.join("..2026_11_23_05_00_00.123");
    fs::create_dir_all(&timestamped).expect("create timestamped dir");
    for (name, text) in files {
        fs::write(timestamped.join(name), text).expect("write ConfigMap key");
    }
    symlink("..2026_11_23_05_00_00.123/", dir.join("..data")).expect("..data symlink");
    for (name, _) in files {
        symlink(format!("..data/{name}"), dir.join(name)).expect("key symlink");
    }
    dir
}

#[cfg(unix)]
#[test]
fn a_configmap_mount_counts_each_mapping_once() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = configmap_mount(
        tmp.path(),
        &[
            (
                "mapping_ci",
                "quay.io/a/one:v1 reg.io/x/one\nquay.io/a/two:v1 reg.io/x/two\n",
            ),
            ("mapping_origin", "quay.io/a/three:v1 reg.io/x/three\n"),
            ("other_team", "quay.io/a/four:v1 reg.io/x/four\n"),
        ],
    );
    assert!(
        fs::symlink_metadata(dir.join("..data"))
            .expect("..data")
            .file_type()
            .is_symlink()
    );
    // Any mapping read twice (through `..data` or the timestamped directory) would also show
    // up as duplicate warnings.
    check_in(tmp.path())
        .arg("imagemirror")
        .assert()
        .code(0)
        .stdout("3 files, 4 mappings, 0 errors, 0 warnings\n")
        .stderr("");
    // The directory and one of its files named again: still each file once.
    check_in(tmp.path())
        .args(["imagemirror", "imagemirror/mapping_ci"])
        .assert()
        .code(0)
        .stdout("3 files, 4 mappings, 0 errors, 0 warnings\n");
    // Diagnostics name the visible path, not the kubelet's timestamped one.
    fs::write(
        dir.join("..2026_11_23_05_00_00.123/other_team"),
        "quay.io/a/four:v1\n",
    )
    .expect("rewrite key");
    check_in(tmp.path())
        .arg("imagemirror")
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "imagemirror/other_team:1:1: error:",
        ))
        .stdout("3 files, 3 mappings, 1 error, 0 warnings\n");
}

#[cfg(unix)]
#[test]
fn the_prefix_flag_filters_a_configmap_mount() {
    let tmp = TempDir::new().expect("temp dir");
    configmap_mount(
        tmp.path(),
        &[
            ("mapping_ci", "quay.io/a/one:v1 reg.io/x/one\n"),
            ("mapping_origin", "quay.io/a/two:v1 reg.io/x/two\n"),
            ("other_team", "quay.io/a/lone:v1\n"),
        ],
    );
    check_in(tmp.path())
        .args(["--prefix", "mapping_", "imagemirror"])
        .assert()
        .code(0)
        .stdout("2 files, 2 mappings, 0 errors, 0 warnings\n")
        .stderr("");
    check_in(tmp.path())
        .args(["imagemirror", "--prefix=mapping_ci"])
        .assert()
        .code(0)
        .stdout("1 file, 1 mapping, 0 errors, 0 warnings\n");
    check_in(tmp.path())
        .args(["--prefix", "other", "imagemirror"])
        .assert()
        .code(2)
        .stdout("1 file, 0 mappings, 1 error, 0 warnings\n");
}

#[test]
fn the_prefix_comes_from_mapping_file_prefix_too() {
    let tmp = TempDir::new().expect("temp dir");
    write(
        tmp.path(),
        "d/mapping_ci",
        "quay.io/a/one:v1 reg.io/x/one\n",
    );
    write(
        tmp.path(),
        "d/mapping_origin",
        "quay.io/a/two:v1 reg.io/x/two\n",
    );
    write(tmp.path(), "d/README", "Mapping files for the CI images\n");
    check_in(tmp.path())
        .env("MAPPING_FILE_PREFIX", "mapping_")
        .arg("d")
        .assert()
        .code(0)
        .stdout("2 files, 2 mappings, 0 errors, 0 warnings\n");
    check_in(tmp.path())
        .env("MAPPING_FILE_PREFIX", "mapping_o")
        .arg("d")
        .assert()
        .code(0)
        .stdout("1 file, 1 mapping, 0 errors, 0 warnings\n");
    // The flag wins over the environment.
    check_in(tmp.path())
        .env("MAPPING_FILE_PREFIX", "mapping_o")
        .args(["--prefix", "mapping_c", "d"])
        .assert()
        .code(0)
        .stdout("1 file, 1 mapping, 0 errors, 0 warnings\n");
    // Without any prefix README is read, and it is not a mapping file.
    check_in(tmp.path())
        .arg("d")
        .assert()
        .code(2)
        .stdout("3 files, 2 mappings, 2 errors, 0 warnings\n");
    // An empty prefix is no prefix.
    check_in(tmp.path())
        .env("MAPPING_FILE_PREFIX", "")
        .arg("d")
        .assert()
        .code(2)
        .stdout(predicate::str::starts_with("3 files,"));
}

#[test]
fn the_prefix_does_not_filter_files_named_explicitly() {
    let tmp = TempDir::new().expect("temp dir");
    write(tmp.path(), "custom.txt", "quay.io/a/one:v1 reg.io/x/one\n");
    check_in(tmp.path())
        .args(["--prefix", "mapping_", "custom.txt"])
        .assert()
        .code(0)
        .stdout("1 file, 1 mapping, 0 errors, 0 warnings\n");
}

#[test]
fn hidden_files_and_subdirectories_are_skipped() {
    let tmp = TempDir::new().expect("temp dir");
    write(tmp.path(), "d/mapping_a", "quay.io/a/one:v1 reg.io/x/one\n");
    // Each of these would be an error if it were read.
    write(tmp.path(), "d/.mapping_hidden", "quay.io/a/lone:v1\n");
    write(tmp.path(), "d/.mapping_a.swp", "Bad Bad Bad\n");
    write(tmp.path(), "d/.git/mapping_config", "quay.io/a/lone:v1\n");
    write(
        tmp.path(),
        "d/mapping_nested/mapping_x",
        "quay.io/a/lone:v1\n",
    );
    check_in(tmp.path())
        .arg("d")
        .assert()
        .code(0)
        .stdout("1 file, 1 mapping, 0 errors, 0 warnings\n")
        .stderr("");
    check_in(tmp.path())
        .args(["--prefix", ".mapping", "d"])
        .assert()
        .code(0)
        .stdout("0 files, 0 mappings, 0 errors, 0 warnings\n");
    // Named explicitly, a hidden file is read.
    check_in(tmp.path())
        .arg("d/.mapping_hidden")
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("d/.mapping_hidden:1:1: error:"));
}

// ---------------------------------------------------------------------------------------------
// Naming files

#[test]
fn filename_flags_repeat_in_every_spelling() {
    let tmp = TempDir::new().expect("temp dir");
    write(tmp.path(), "a", "quay.io/a/one:v1 reg.io/x/one\n");
    write(tmp.path(), "b", "quay.io/a/two:v1 reg.io/x/two\n");
    write(tmp.path(), "c", "quay.io/a/three:v1 reg.io/x/three\n");
    write(tmp.path(), "d", "quay.io/a/lone:v1\n");
    check_in(tmp.path())
        .args(["-f", "a", "-f=b", "--filename", "c"])
        .assert()
        .code(0)
        .stdout("3 files, 3 mappings, 0 errors, 0 warnings\n");
    check_in(tmp.path())
        .args(["-f=a", "-f=b"])
        .assert()
        .code(0)
        .stdout("2 files, 2 mappings, 0 errors, 0 warnings\n");
    // `-f=d` really reads `d` (not a file called `=d`): its error is reported under that name.
    check_in(tmp.path())
        .args(["-f", "a", "-f=d", "--filename=c"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("d:1:1: error:"))
        .stdout("3 files, 2 mappings, 1 error, 0 warnings\n");
    // Positional paths and -f combine.
    check_in(tmp.path())
        .args(["a", "-f", "b"])
        .assert()
        .code(0)
        .stdout("2 files, 2 mappings, 0 errors, 0 warnings\n");
    // A file named twice is read once.
    check_in(tmp.path())
        .args(["a", "-f", "a", "-f=./a"])
        .assert()
        .code(0)
        .stdout("1 file, 1 mapping, 0 errors, 0 warnings\n");
}

#[test]
fn a_missing_path_exits_2_and_names_it() {
    let tmp = TempDir::new().expect("temp dir");
    write(tmp.path(), "a", "quay.io/a/one:v1 reg.io/x/one\n");
    check_in(tmp.path())
        .args(["a", "does-not-exist"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does-not-exist"))
        .stdout("");
    check_in(tmp.path())
        .args(["-f", "missing/mapping_x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing/mapping_x"));
}

#[cfg(unix)]
#[test]
fn a_dangling_symlink_in_a_directory_exits_2_and_names_it() {
    let tmp = TempDir::new().expect("temp dir");
    write(tmp.path(), "d/mapping_a", "quay.io/a/one:v1 reg.io/x/one\n");
    std::os::unix::fs::symlink("..data/mapping_gone", tmp.path().join("d/mapping_gone"))
        .expect("symlink");
    check_in(tmp.path())
        .arg("d")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("d/mapping_gone"));
}

#[test]
fn a_file_that_is_not_utf8_exits_2_and_names_it() {
    let tmp = TempDir::new().expect("temp dir");
    fs::write(
        tmp.path().join("latin1"),
        b"quay.io/a/b:v1 reg.io/x/b # caf\xe9\n",
    )
    .expect("write");
    check_in(tmp.path())
        .arg("latin1")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("latin1").and(predicate::str::contains("UTF-8")));
}

/// Without a path, `check` reads `/etc/imagemirror`: where it is missing, exit 2 naming it;
/// where it exists, exactly what `check /etc/imagemirror` says.
#[test]
fn without_paths_it_reads_etc_imagemirror() {
    let tmp = TempDir::new().expect("temp dir");
    let implicit = run(&mut check_in(tmp.path()));
    if !Path::new("/etc/imagemirror").exists() {
        assert_eq!(implicit.code, Some(2), "{}", implicit.stderr);
        assert!(
            implicit.stderr.contains("/etc/imagemirror"),
            "{}",
            implicit.stderr
        );
        return;
    }
    let explicit = run(check_in(tmp.path()).arg("/etc/imagemirror"));
    assert_eq!(implicit.code, explicit.code);
    assert_eq!(implicit.stdout, explicit.stdout);
    assert_eq!(implicit.stderr, explicit.stderr);
}

// ---------------------------------------------------------------------------------------------
// Help

#[test]
fn top_level_help_lists_the_commands() {
    image_mirror().arg("--help").assert().code(0).stdout(
        predicate::str::contains("check")
            .and(predicate::str::contains("run"))
            .and(predicate::str::contains("--log-format"))
            .and(predicate::str::contains("--version"))
            .and(predicate::str::contains("SRC=DST")),
    );
}

#[test]
fn check_help_mentions_its_flags() {
    image_mirror()
        .args(["check", "--help"])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("-f, --filename <FILE>")
                .and(predicate::str::contains("--prefix <PREFIX>"))
                .and(predicate::str::contains("MAPPING_FILE_PREFIX"))
                .and(predicate::str::contains("/etc/imagemirror"))
                .and(predicate::str::contains("[PATH]...")),
        );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    image_mirror()
        .args(["check", "--no-such-flag"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-such-flag"));
}

// ---------------------------------------------------------------------------------------------
// The repository's own example mappings

#[test]
fn the_example_mappings_directory_checks_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let out = run(image_mirror().arg("check").arg(&dir));
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.errors().is_empty(), "stderr: {}", out.stderr);
    let [files, mappings, errors, _warnings] = out.summary();
    assert!(files >= 3, "stdout: {}", out.stdout);
    assert!(mappings >= 10 * files / 2, "stdout: {}", out.stdout);
    assert_eq!(errors, 0);
    // Every file follows the mapping_<team>_<purpose> naming, as the jobs' prefix filter needs.
    let filtered = run(image_mirror()
        .arg("check")
        .arg("--prefix=mapping_")
        .arg(&dir));
    assert_eq!(filtered.stdout, out.stdout);
}
