//! `check --diff BASE PATH…`: what a change to the mapping files does, compared offline by
//! what each tree writes (not by lines), as a reviewer reads it in a presubmit log or a
//! pull-request comment; exit codes as `check`.

use crate::support::cli::*;

/// Base and new trees of mapping files in one workspace: `base/` and `new/`.
fn trees(base: &[(&str, &str)], new: &[(&str, &str)]) -> Workspace {
    let ws = Workspace::new();
    for (dir, files) in [("base", base), ("new", new)] {
        std::fs::create_dir(ws.path(dir)).expect("dir");
        for (name, text) in files {
            ws.write(&format!("{dir}/{name}"), text);
        }
    }
    ws
}

fn diff(ws: &Workspace, extra: &[&str]) -> std::process::Output {
    let mut cmd = ws.command();
    cmd.current_dir(ws.dir())
        .args(["check", "--diff", "base"])
        .args(extra)
        .arg("new");
    cmd.output().expect("run check --diff")
}

const BASE_A: &str = "\
# release mirrors
quay.io/src/app:1 reg.example/mirror/app:1
quay.io/src/app:2 reg.example/mirror/app:2
quay.io/src/app:3 reg.example/mirror/app:3
quay.io/src/ocp:4.1* reg.example/mirror/ocp
";
const NEW_A: &str = "\
# release mirrors, reordered
quay.io/src/app:3 reg.example/mirror/app:3
quay.io/src/app:1 reg.example/mirror/app:1
quay.io/fork/app:2 reg.example/mirror/app:2
quay.io/src/app:4 reg.example/mirror/app:4
quay.io/src/ocp:4* reg.example/mirror/ocp
";

#[test]
fn the_diff_shows_tags_added_removed_repointed_and_patterns_widened_with_both_lines() {
    let ws = trees(
        &[
            ("mapping_a", BASE_A),
            ("mapping_b", "quay.io/src/tools:* reg.example/tools\n"),
        ],
        &[
            ("mapping_a", NEW_A),
            (
                "mapping_c",
                "quay.io/src/tools:* reg.example/tools\nquay.io/src/new:v1 reg.example/new:v1\n",
            ),
        ],
    );
    let out = diff(&ws, &[]);
    expect_code(&out, 0);
    assert_eq!(
        text(&out.stdout),
        "\
reg.example/mirror/app
  ~ 2  <- quay.io/fork/app:2  (new/mapping_a:4)
      was quay.io/src/app:2  (base/mapping_a:3)
  + 4  <- quay.io/src/app:4  (new/mapping_a:5)
reg.example/mirror/ocp
  > 4* (wildcard widened)  <- quay.io/src/ocp:4*  (new/mapping_a:6)
      was quay.io/src/ocp:4.1*  (base/mapping_a:5)
reg.example/new
  + v1  <- quay.io/src/new:v1  (new/mapping_c:2)
2 destination tags added, 1 re-pointed; 1 wildcard pattern widened
",
        "stderr: {}",
        text(&out.stderr)
    );
    // The check's own summary goes to stderr: stdout is the diff alone.
    assert!(
        text(&out.stderr).contains("2 files, 7 mappings, 0 errors"),
        "{}",
        text(&out.stderr)
    );

    let md = diff(&ws, &["--diff-format", "markdown"]);
    expect_code(&md, 0);
    let md = text(&md.stdout);
    assert!(md.starts_with("### Mirror changes\n\n2 destination tags added, 1 re-pointed; 1 wildcard pattern widened\n"), "{md}");
    assert!(md.contains("#### `reg.example/mirror/app`\n\n| change | tag | source | where | before |\n|---|---|---|---|---|\n"), "{md}");
    assert!(
        md.contains("| **re-pointed** | `2` | `quay.io/fork/app:2` | `new/mapping_a:4` | `quay.io/src/app:2` at `base/mapping_a:3` |"),
        "{md}"
    );
    assert!(md.contains("| **wildcard widened** | `4*` |"), "{md}");
}

#[test]
fn removed_tags_and_unchanged_trees() {
    let ws = trees(&[("mapping_a", BASE_A)], &[("mapping_a", NEW_A)]);
    // Base and new swapped: what was added is removed, the widening a narrowing.
    let out = {
        let mut cmd = ws.command();
        cmd.current_dir(ws.dir())
            .args(["check", "--diff", "new", "base"])
            .output()
            .expect("run")
    };
    expect_code(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("  - 4  <- quay.io/src/app:4  (new/mapping_a:5)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  < 4.1* (wildcard narrowed)"), "{stdout}");
    assert!(
        stdout.ends_with("1 destination tag removed, 1 re-pointed; 1 wildcard pattern narrowed\n"),
        "{stdout}"
    );
    // What a prune would make of it, on stderr (stdout is the diff alone).
    assert!(
        text(&out.stderr).contains(
            "note: with --ledger and --prune, image-mirror deletes the destination tags of the 2 removals above"
        ),
        "{}",
        text(&out.stderr)
    );

    let same = {
        let mut cmd = ws.command();
        cmd.current_dir(ws.dir())
            .args(["check", "--diff", "base", "base"])
            .output()
            .expect("run")
    };
    expect_code(&same, 0);
    assert_eq!(text(&same.stdout), "no change to what is mirrored\n");
}

#[test]
fn errors_in_the_new_tree_exit_2_as_check_does() {
    let ws = trees(
        &[("mapping_a", BASE_A)],
        &[("mapping_a", &format!("{NEW_A}quay.io/src/app:5\n"))],
    );
    let out = diff(&ws, &[]);
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains("new/mapping_a:7:1: error:"),
        "{}",
        text(&out.stderr)
    );
    // --diff-format only with --diff; a missing BASE is a usage error.
    let out = ws
        .command()
        .args(["check", "--diff-format", "markdown", "new"])
        .output()
        .expect("run");
    expect_code(&out, 2);
    let out = ws
        .command()
        .current_dir(ws.dir())
        .args(["check", "--diff", "nowhere", "new"])
        .output()
        .expect("run");
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains("nowhere"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_prefix_selects_files_in_both_trees() {
    let ws = trees(
        &[
            ("mapping_a", BASE_A),
            ("other_x", "quay.io/x/y:1 reg.example/x:1\n"),
        ],
        &[
            ("mapping_a", BASE_A),
            ("other_x", "quay.io/x/y:2 reg.example/x:1\n"),
        ],
    );
    let out = diff(&ws, &["--prefix", "mapping_"]);
    expect_code(&out, 0);
    assert_eq!(text(&out.stdout), "no change to what is mirrored\n");
    let out = diff(&ws, &[]);
    assert!(
        text(&out.stdout).contains("~ 1  <- quay.io/x/y:2  (new/other_x:1)"),
        "{}",
        text(&out.stdout)
    );
}
