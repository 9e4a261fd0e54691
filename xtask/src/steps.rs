//! The verification steps, each a plain function that runs cargo.

use crate::Args;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every step of `verify`, in order. Each is also a subcommand.
pub const STEP_NAMES: &[&str] = &[
    "fmt",
    "clippy",
    "test",
    "doc",
    "loom",
    "miri",
    "deny",
    "bench-smoke",
];

/// The install command printed when Miri is missing and cannot be installed.
pub const MIRI_INSTALL: &str = "rustup component add --toolchain nightly miri rust-src";
/// The install command printed when cargo-deny is missing and cannot be installed.
pub const DENY_INSTALL: &str = "cargo install cargo-deny --locked";

/// How a step ended when it did not fail.
pub enum Done {
    /// Everything the step covers was checked.
    Ran,
    /// Checked, with something the summary must mention.
    RanWithNote(String),
}

type StepResult = Result<Done, String>;

pub fn run(name: &str, args: &Args) -> StepResult {
    match name {
        "fmt" => cargo(&["fmt", "--all", "--check"], &[]),
        "clippy" => cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        "test" => cargo(&["test", "--workspace"], &[]),
        "doc" => cargo(
            &["doc", "--workspace", "--no-deps"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
        "loom" => loom(args),
        "miri" => miri(args),
        "deny" => deny(),
        "bench-smoke" => cargo(&["bench", "-p", "benches", "--", "--test"], &[]),
        _ => Err(format!("no step named `{name}`")),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The product crates: every directory under `crates/` with a manifest.
pub fn product_crates() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(workspace_root().join("crates"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

pub fn check_packages(packages: &[String]) -> Result<(), String> {
    let known = product_crates();
    for p in packages {
        if !known.contains(p) {
            return Err(format!("no crate `{p}`; crates are: {}", known.join(", ")));
        }
    }
    Ok(())
}

fn selected(args: &Args) -> Vec<String> {
    if args.packages.is_empty() {
        product_crates()
    } else {
        args.packages.clone()
    }
}

/// Runs `cargo <args>` in the workspace root with extra environment.
pub fn cargo(args: &[&str], env: &[(&str, &str)]) -> StepResult {
    run_cmd("cargo", args, env).map(|()| Done::Ran)
}

pub fn run_cmd(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let shown = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let env_shown: String = env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
    eprintln!("    $ {env_shown}{shown}");
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(workspace_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{shown}` exited with {s}")),
        Err(e) => Err(format!("could not start `{program}`: {e}")),
    }
}

fn capture(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Loom: every `tests/loom*.rs` of the selected crates, built with
/// `--cfg loom` in `target/loom` so the normal build is not invalidated.
fn loom(args: &Args) -> StepResult {
    let root = workspace_root();
    let preemptions = std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "3".into());
    let mut ran = 0;
    for krate in selected(args) {
        let tests_dir = root.join("crates").join(&krate).join("tests");
        let mut models: Vec<String> = std::fs::read_dir(&tests_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|f| f.starts_with("loom") && f.ends_with(".rs"))
                    .map(|f| f.trim_end_matches(".rs").to_string())
                    .collect()
            })
            .unwrap_or_default();
        models.sort();
        if models.is_empty() {
            eprintln!("    {krate}: no tests/loom*.rs");
            continue;
        }
        let feature = if krate == "sync-core" {
            "loom".to_string()
        } else {
            "sync-core/loom".into()
        };
        let mut cargo_args = vec![
            "test",
            "--release",
            "--target-dir",
            "target/loom",
            "-p",
            &krate,
            "--features",
            &feature,
        ];
        for m in &models {
            cargo_args.push("--test");
            cargo_args.push(m);
        }
        run_cmd(
            "cargo",
            &cargo_args,
            &[
                ("RUSTFLAGS", "--cfg loom"),
                ("LOOM_MAX_PREEMPTIONS", &preemptions),
            ],
        )?;
        ran += 1;
    }
    if ran == 0 {
        return Err("no loom models found in the selected crates".into());
    }
    Ok(Done::Ran)
}

/// Miri: unit and integration tests of the selected crates, twice: the
/// default (stacked borrows) model with strict provenance and several seeds,
/// then the tree-borrows model.
fn miri(args: &Args) -> StepResult {
    ensure_miri()?;
    run_cmd("cargo", &["+nightly", "miri", "setup"], &[])?;
    let seeds = std::env::var("MIRI_SEEDS").unwrap_or_else(|_| "4".into());
    let runs = [
        format!("-Zmiri-strict-provenance -Zmiri-many-seeds=0..{seeds}"),
        "-Zmiri-tree-borrows -Zmiri-strict-provenance -Zmiri-many-seeds=0..2".to_string(),
    ];
    for krate in selected(args) {
        for flags in &runs {
            run_cmd(
                "cargo",
                &[
                    "+nightly",
                    "miri",
                    "test",
                    "--target-dir",
                    "target/miri",
                    "-p",
                    &krate,
                    "--lib",
                    "--tests",
                ],
                &[("MIRIFLAGS", flags)],
            )?;
        }
    }
    Ok(Done::Ran)
}

fn ensure_miri() -> Result<(), String> {
    let installed = capture(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    let has = |c: &str| installed.lines().any(|l| l.starts_with(c));
    if has("miri") && has("rust-src") {
        return Ok(());
    }
    eprintln!("    Miri or rust-src missing on nightly: installing");
    run_cmd(
        "rustup",
        &[
            "component",
            "add",
            "--toolchain",
            "nightly",
            "miri",
            "rust-src",
        ],
        &[],
    )
    .map_err(|e| format!("Miri is not installed ({e}); install it with: {MIRI_INSTALL}"))
}

/// cargo-deny: bans, licenses and sources work offline; advisories need
/// GitHub, so they run only when it is reachable and are otherwise skipped
/// with a note.
fn deny() -> StepResult {
    if capture("cargo", &["deny", "--version"]).is_none() {
        eprintln!("    cargo-deny is not installed: installing ({DENY_INSTALL})");
        run_cmd("cargo", &["install", "cargo-deny", "--locked"], &[])
            .map_err(|e| format!("cargo-deny is missing ({e}); install it with: {DENY_INSTALL}"))?;
    }
    run_cmd(
        "cargo",
        &["deny", "check", "bans", "licenses", "sources"],
        &[],
    )?;
    if github_reachable() {
        run_cmd("cargo", &["deny", "check", "advisories"], &[])?;
        Ok(Done::Ran)
    } else {
        eprintln!(
            "    NOTE: advisories NOT checked: the advisory database needs github.com, \
             which this machine cannot reach. bans, licenses and sources passed."
        );
        Ok(Done::RanWithNote(
            "bans/licenses/sources ok; advisories NOT checked (offline)".into(),
        ))
    }
}

fn github_reachable() -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let Ok(mut addrs) = ("github.com", 443).to_socket_addrs() else {
        return false;
    };
    addrs.any(|a| TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)).is_ok())
}
