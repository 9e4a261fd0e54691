//! `cargo xtask`: the workspace's tooling, as plain Rust.
//!
//! ```text
//! cargo xtask verify [--skip STEP]...   every check CI runs, in order, with a summary
//! cargo xtask fmt | clippy | test | doc
//! cargo xtask msrv  [-p CRATE]...       product crates' libraries with Rust 1.85.0 (target/msrv)
//! cargo xtask loom  [-p CRATE]...       loom models (--cfg loom, target/loom)
//! cargo xtask miri  [-p CRATE]...       Miri over the Miri-eligible tests (target/miri)
//! cargo xtask deny                      cargo-deny: bans, licenses, sources (+ advisories when online)
//! cargo xtask bench-smoke               every bench once, as a test
//! cargo xtask bench [-p CRATE]          criterion suites + target/bench-report.md
//! ```

mod bench_report;
mod steps;

use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What the command line asked for.
pub struct Args {
    /// `-p` filters (crate names); empty means every crate.
    pub packages: Vec<String>,
    /// `--skip` step names.
    pub skip: Vec<String>,
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(cmd) = argv.next() else {
        eprintln!("{}", USAGE);
        return ExitCode::from(2);
    };
    let mut args = Args {
        packages: Vec::new(),
        skip: Vec::new(),
    };
    while let Some(a) = argv.next() {
        match a.as_str() {
            "-p" | "--package" => match argv.next() {
                Some(p) => args.packages.push(p),
                None => return usage_error("-p needs a crate name"),
            },
            "--skip" => match argv.next() {
                Some(s) if steps::STEP_NAMES.contains(&s.as_str()) => args.skip.push(s),
                Some(s) => {
                    return usage_error(&format!(
                        "unknown step `{s}` for --skip; steps are: {}",
                        steps::STEP_NAMES.join(", ")
                    ));
                }
                None => return usage_error("--skip needs a step name"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unexpected argument `{other}`")),
        }
    }
    if let Err(e) = steps::check_packages(&args.packages) {
        return usage_error(&e);
    }

    let names: Vec<&str> = match cmd.as_str() {
        "verify" => steps::STEP_NAMES.to_vec(),
        c if steps::STEP_NAMES.contains(&c) => vec![c],
        "bench" => {
            return match bench_report::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xtask bench: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => return usage_error(&format!("unknown command `{other}`")),
    };
    run_steps(&names, &args)
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("xtask: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

enum Outcome {
    Passed(String),
    Failed(String),
    Skipped(String),
}

fn run_steps(names: &[&str], args: &Args) -> ExitCode {
    let total = names.len();
    let started = Instant::now();
    let mut results: Vec<(&str, Outcome, Duration)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if args.skip.iter().any(|s| s == name) {
            eprintln!(
                "\n!!!!!!!! [{}/{total}] SKIPPING `{name}` because --skip {name} was given: \
                 this run does NOT check it !!!!!!!!",
                i + 1
            );
            results.push((name, Outcome::Skipped("--skip".into()), Duration::ZERO));
            continue;
        }
        eprintln!(
            "\n==> [{}/{total}] {name} ({} elapsed)",
            i + 1,
            fmt_dur(started.elapsed())
        );
        let t = Instant::now();
        let outcome = match steps::run(name, args) {
            Ok(steps::Done::Ran) => Outcome::Passed(String::new()),
            Ok(steps::Done::RanWithNote(note)) => Outcome::Passed(note),
            Err(e) => Outcome::Failed(e),
        };
        let took = t.elapsed();
        match &outcome {
            Outcome::Passed(note) => eprintln!("<== {name}: ok in {} {note}", fmt_dur(took)),
            Outcome::Failed(e) => eprintln!("<== {name}: FAILED in {}: {e}", fmt_dur(took)),
            Outcome::Skipped(why) => eprintln!("<== {name}: skipped: {why}"),
        }
        results.push((name, outcome, took));
    }

    let mut failed = 0;
    eprintln!("\n| step        | result  | time     | note");
    eprintln!("|-------------|---------|----------|-----");
    for (name, outcome, took) in &results {
        let (word, note) = match outcome {
            Outcome::Passed(note) => ("ok", note.clone()),
            Outcome::Failed(e) => {
                failed += 1;
                ("FAILED", e.clone())
            }
            Outcome::Skipped(why) => ("SKIPPED", why.clone()),
        };
        eprintln!("| {name:<11} | {word:<7} | {:>8} | {note}", fmt_dur(*took));
    }
    eprintln!("total: {}", fmt_dur(started.elapsed()));
    if failed > 0 {
        eprintln!("xtask: {failed} step(s) failed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

const USAGE: &str = "\
usage: cargo xtask <command> [-p CRATE]... [--skip STEP]...

commands:
  verify       fmt, clippy, test, doc, msrv, loom, miri, deny, bench-smoke; summary table
  fmt          cargo fmt --all --check
  clippy       cargo clippy --workspace --all-targets -- -D warnings
  test         cargo test --workspace
  doc          cargo doc --workspace --no-deps, warnings denied
  msrv         every product crate's library (or -p CRATE) checked with Rust 1.85.0,
               the MSRV, in target/msrv; installs that toolchain if it is missing
  loom         loom models of every crate (or -p CRATE), --cfg loom, target/loom
  miri         Miri over every crate's Miri-eligible tests (or -p CRATE), target/miri
  deny         cargo-deny: bans, licenses, sources (advisories only when online)
  bench-smoke  every benchmark run once as a test
  bench        the criterion suites (-p CRATE picks one crate's suite) and
               target/bench-report.md: medians and ours/peer ratios";
