//! `cargo xtask bench`: run the criterion suites, then write one
//! side-by-side report of medians and ours/peer ratios.
//!
//! Conventions the suites in `benches/` follow so the report can pair rows:
//! a criterion group per workload, named `<crate>/<workload>`; inside it one
//! function per implementation, `ours...` for ours (e.g. `ours-recycled`) and
//! the peer's name otherwise (`tokio`, `futures`, `oneshot`, ...). Suites that
//! measure something criterion cannot (tail percentiles, allocation counts,
//! and the two-thread workloads: the `<crate>_interleaved` suites run every
//! design in interleaved rounds, quiet and with one busy thread per core,
//! with CPU time per round trip, see `benches::interleaved`) write Markdown
//! fragments to `target/bench-report.d/`, appended verbatim.

use crate::Args;
use crate::steps::{run_cmd, workspace_root};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

struct Row {
    function: String,
    /// criterion's parameter (`value_str`), e.g. the number of threads; ours
    /// and a peer are only compared at the same parameter.
    param: String,
    median_ns: f64,
}

pub fn run(args: &Args) -> Result<(), String> {
    let root = workspace_root();
    let started = SystemTime::now();
    let fragments = root.join("target/bench-report.d");
    let _ = std::fs::remove_dir_all(&fragments);
    std::fs::create_dir_all(&fragments).map_err(|e| e.to_string())?;

    // `-p multishot` selects every suite of that crate: `multishot`,
    // `multishot_allocs`, `multishot_interleaved`, ... Crate names may have
    // `-` where target names have `_` (`-p exit-left`: `exit_left_udp`), so
    // the two count as the same character.
    let targets = bench_targets(&root.join("benches/Cargo.toml"))?;
    let mut cargo_args = vec!["bench".to_string(), "-p".into(), "benches".into()];
    for p in &args.packages {
        let crate_name = p.replace('-', "_");
        let mine: Vec<&String> = targets
            .iter()
            .filter(|t| {
                let t = t.replace('-', "_");
                t == crate_name || t.starts_with(&format!("{crate_name}_"))
            })
            .collect();
        if mine.is_empty() {
            return Err(format!(
                "no bench target for crate `{p}` in benches/Cargo.toml"
            ));
        }
        for t in mine {
            cargo_args.push("--bench".into());
            cargo_args.push(t.clone());
        }
    }
    let cargo_args: Vec<&str> = cargo_args.iter().map(String::as_str).collect();
    run_cmd("cargo", &cargo_args, &[])?;

    let criterion_dir = root.join("target/criterion");
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    collect(&criterion_dir, started, &mut groups);

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark report\n");
    let _ = writeln!(
        md,
        "One run of `cargo xtask bench`. Medians from criterion; ratio = ours / peer \
         (below 1.00 means ours is faster). For two-thread workloads read the \
         interleaved sections further down (quiet and loaded machine, CPU time per \
         round trip) rather than criterion's one-row-after-another figures.\n"
    );
    let _ = writeln!(
        md,
        "| workload | ours | ours median | peer | peer median | ours/peer |"
    );
    let _ = writeln!(md, "|---|---|---:|---|---:|---:|");
    for (group, rows) in &groups {
        let (ours, peers): (Vec<&Row>, Vec<&Row>) =
            rows.iter().partition(|r| r.function.starts_with("ours"));
        for o in &ours {
            if peers.is_empty() {
                let _ = writeln!(
                    md,
                    "| {group} | {} | {} | - | - | - |",
                    o.function,
                    ns(o.median_ns)
                );
            }
            for p in peers.iter().filter(|p| p.param == o.param) {
                let _ = writeln!(
                    md,
                    "| {group} | {} | {} | {} | {} | {:.2} |",
                    o.function,
                    ns(o.median_ns),
                    p.function,
                    ns(p.median_ns),
                    o.median_ns / p.median_ns
                );
            }
        }
    }
    let mut extra: Vec<_> = std::fs::read_dir(&fragments)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    extra.sort();
    for path in extra {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let _ = writeln!(md, "\n{text}");
        }
    }
    let _ = writeln!(
        md,
        "\nCriterion's HTML report with plots: `{}`",
        criterion_dir.join("report/index.html").display()
    );
    let out = root.join("target/bench-report.md");
    std::fs::write(&out, &md).map_err(|e| e.to_string())?;
    println!("{md}");
    eprintln!("report written to {}", out.display());
    Ok(())
}

fn ns(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.2} ms", v / 1_000_000.0)
    } else if v >= 1_000.0 {
        format!("{:.2} µs", v / 1_000.0)
    } else {
        format!("{v:.1} ns")
    }
}

/// Finds every `<bench>/new/{benchmark,estimates}.json` written since
/// `since` (so stale results of an earlier run never mix in).
fn collect(dir: &Path, since: SystemTime, groups: &mut BTreeMap<String, Vec<Row>>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.filter_map(|e| e.ok()) {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let estimates = path.join("new/estimates.json");
        let meta = path.join("new/benchmark.json");
        let fresh = std::fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .map(|t| t >= since)
            .unwrap_or(false);
        if fresh && let (Some(b), Some(e)) = (read_json(&meta), read_json(&estimates)) {
            let group = b["group_id"].as_str().unwrap_or("?").to_string();
            let param = b["value_str"].as_str().unwrap_or("").to_string();
            let mut function = b["function_id"].as_str().unwrap_or("?").to_string();
            if !param.is_empty() {
                function = format!("{function}/{param}");
            }
            if let Some(median) = e["median"]["point_estimate"].as_f64() {
                groups.entry(group).or_default().push(Row {
                    function,
                    param,
                    median_ns: median,
                });
            }
        }
        collect(&path, since, groups);
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The names of the `[[bench]]` targets declared in the benches manifest.
fn bench_targets(manifest: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    let mut names = Vec::new();
    let mut in_bench = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(rest) = line.strip_prefix("name") {
            let name = rest
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            names.push(name.to_string());
        }
    }
    Ok(names)
}
