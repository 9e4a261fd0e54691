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
    "msrv",
    "loom",
    "miri",
    "deny",
    "bench-smoke",
];

/// The install command printed when Miri is missing and cannot be installed.
pub const MIRI_INSTALL: &str = "rustup component add --toolchain nightly miri rust-src";
/// The minimum supported Rust version of every product crate: the
/// `rust-version` each `crates/*/Cargo.toml` must resolve to (it inherits the
/// workspace's `[workspace.package] rust-version`).
pub const MSRV: &str = "1.85";
/// The toolchain the `msrv` step builds the product crates with.
pub const MSRV_TOOLCHAIN: &str = "1.85.0";
/// The install command printed when the MSRV toolchain is missing and cannot be installed.
pub const MSRV_INSTALL: &str = "rustup toolchain install 1.85.0 --profile minimal";
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
        "msrv" => msrv(args),
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

/// MSRV: every selected product crate's library, checked with the
/// `MSRV_TOOLCHAIN` in `target/msrv` (so the pinned toolchain's build is not
/// invalidated), one crate at a time so that each is built with only the
/// features its own users get. `--locked` keeps the shared `Cargo.lock` as it
/// is: a dependency the older cargo cannot resolve fails the step instead of
/// being silently re-resolved. Before building, every crate under `crates/`
/// must declare `rust-version = MSRV` (a crate that forgot to inherit it, or
/// raised it, fails here rather than after release).
fn msrv(args: &Args) -> StepResult {
    let names = product_package_names()?;
    let installed = ensure_msrv_toolchain()?;
    let toolchain = format!("+{MSRV_TOOLCHAIN}");
    // sync-core first: every other crate builds it, so its errors are
    // reported under its own name.
    let mut crates = selected(args);
    crates.sort_by_key(|c| c != "sync-core");
    let mut checked = Vec::new();
    let mut failed = Vec::new();
    for krate in crates {
        let Some(name) = names.iter().find(|(dir, _)| *dir == krate).map(|(_, n)| n) else {
            return Err(format!(
                "crates/{krate} is not a workspace member: add it to [workspace] members"
            ));
        };
        let built = run_cmd(
            "cargo",
            &[
                &toolchain,
                "check",
                "--locked",
                "--target-dir",
                "target/msrv",
                "-p",
                name,
                "--lib",
            ],
            &[],
        );
        match built {
            Ok(()) => checked.push(name.clone()),
            Err(_) => failed.push(name.clone()),
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "does not build with Rust {MSRV_TOOLCHAIN}, the declared MSRV: {} \
             (a std API or language feature newer than {MSRV}? see the errors above)",
            failed.join(", ")
        ));
    }
    let mut note = format!("{} on {MSRV_TOOLCHAIN}", checked.join(", "));
    if installed {
        note.push_str(&format!(
            " (toolchain installed by this run: {MSRV_INSTALL})"
        ));
    }
    Ok(Done::RanWithNote(note))
}

/// `(directory under crates/, package name)` for every workspace member under
/// `crates/`, after checking that each declares `rust-version = MSRV`.
fn product_package_names() -> Result<Vec<(String, String)>, String> {
    let out = capture(
        "cargo",
        &[
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ],
    )
    .ok_or("`cargo metadata --no-deps` failed")?;
    let meta: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("cargo metadata: bad JSON: {e}"))?;
    let crates_dir = workspace_root().join("crates");
    let mut names = Vec::new();
    let mut wrong = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let manifest = Path::new(pkg["manifest_path"].as_str().unwrap_or(""));
        let Some(dir) = manifest.parent() else {
            continue;
        };
        if dir.parent() != Some(crates_dir.as_path()) {
            continue;
        }
        let name = pkg["name"].as_str().unwrap_or("").to_string();
        let declared = pkg["rust_version"].as_str();
        if declared != Some(MSRV) && declared != Some(MSRV_TOOLCHAIN) {
            wrong.push(format!(
                "{name} declares rust-version {}",
                declared.map_or("(none)".into(), |v| format!("\"{v}\""))
            ));
        }
        let dir_name = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        names.push((dir_name, name));
    }
    if !wrong.is_empty() {
        return Err(format!(
            "every product crate must have MSRV {MSRV} (`rust-version.workspace = true` in its \
             [package]): {}",
            wrong.join("; ")
        ));
    }
    Ok(names)
}

/// Makes sure the MSRV toolchain exists, installing it when it does not.
/// Returns whether it had to be installed.
fn ensure_msrv_toolchain() -> Result<bool, String> {
    let list = capture("rustup", &["toolchain", "list"]).unwrap_or_default();
    let present = list.lines().any(|l| {
        let name = l.split_whitespace().next().unwrap_or("");
        name == MSRV_TOOLCHAIN
            || name
                .strip_prefix(MSRV_TOOLCHAIN)
                .is_some_and(|rest| rest.starts_with('-'))
    });
    if present {
        return Ok(false);
    }
    eprintln!("    toolchain {MSRV_TOOLCHAIN} missing: installing");
    run_cmd(
        "rustup",
        &[
            "toolchain",
            "install",
            MSRV_TOOLCHAIN,
            "--profile",
            "minimal",
        ],
        &[],
    )
    .map_err(|e| {
        format!(
            "the MSRV toolchain {MSRV_TOOLCHAIN} is not installed ({e}); \
             install it with: {MSRV_INSTALL}"
        )
    })?;
    Ok(true)
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
