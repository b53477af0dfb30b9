//! Scenario files: several named `load-test` runs in sequence, compared in one table.
//!
//! Every key of a run (or of `[defaults]`) is a `load-test` flag: `users = 50` is
//! `--users 50`, `threshold = ["p99<50ms"]` repeats `--threshold`, `prefill = true`
//! is `--prefill`; `target` is the target and `name` names the run.
//!
//! ```toml
//! [defaults]
//! duration = "30s"
//! keys = 10000
//!
//! [[run]]
//! name = "baseline without cache"
//! target = "http://127.0.0.1:8000/api/items/{key}"
//! users = 50
//!
//! [[run]]
//! name = "warm cache"
//! target = "http://127.0.0.1:7080/api/items/{key}"
//! users = 50
//! warmup = "10s"
//!
//! [[run]]
//! name = "peak"
//! target = "http://127.0.0.1:7080/api/items/{key}"
//! stages = "30s:50,1m:50,10s:0"
//! threshold = ["p99<50ms", "error_rate<0.1%"]
//! ```

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use strata_bench::report::Report;
use toml::{Table, Value};

use crate::loadtest::{execute, fail, LoadTestArgs, EXIT_REGRESSION, EXIT_THRESHOLD};

/// The runs of a file: (name, argv after `strata load-test`).
pub fn parse(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let doc: Table = toml::from_str(text).map_err(|e| e.to_string())?;
    for k in doc.keys() {
        if k != "defaults" && k != "run" {
            return Err(format!(
                "unknown section `{k}` (expected [defaults] and [[run]])"
            ));
        }
    }
    let defaults = match doc.get("defaults") {
        None => Table::new(),
        Some(Value::Table(t)) => t.clone(),
        Some(_) => return Err("`defaults` must be a table".into()),
    };
    let runs = match doc.get("run") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err("no [[run]] in the scenario".into()),
    };
    let mut out = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let Value::Table(r) = r else {
            return Err(format!("run {}: not a table", i + 1));
        };
        let mut merged = defaults.clone();
        merged.extend(r.clone());
        let name = match merged.remove("name") {
            Some(Value::String(s)) => s,
            None => format!("run {}", i + 1),
            Some(_) => return Err(format!("run {}: `name` must be a string", i + 1)),
        };
        let mut argv = Vec::new();
        match merged.remove("target") {
            Some(Value::String(t)) => argv.push(t),
            _ => return Err(format!("{name}: give a `target` string")),
        }
        for (k, v) in merged {
            let flag = format!("--{}", k.replace('_', "-"));
            let scalar = |v: &Value| -> Result<String, String> {
                match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Integer(n) => Ok(n.to_string()),
                    Value::Float(f) => Ok(f.to_string()),
                    _ => Err(format!("{name}: `{k}` must be a string or a number")),
                }
            };
            match &v {
                Value::Boolean(true) => argv.push(flag),
                Value::Boolean(false) => {}
                Value::Array(items) => {
                    for it in items {
                        argv.push(flag.clone());
                        argv.push(scalar(it)?);
                    }
                }
                other => {
                    argv.push(flag);
                    argv.push(scalar(other)?);
                }
            }
        }
        out.push((name, argv));
    }
    Ok(out)
}

/// Runs a scenario file; flags given on the command line (`--json`, `-q`,
/// `--metrics-listen`) apply to the whole scenario.
pub fn run(file: &Path, cli: LoadTestArgs) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let runs = match parse(&text) {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    // Check every run's flags before starting the first.
    let mut parsed = Vec::new();
    for (name, argv) in runs {
        let mut full = vec!["strata".to_owned(), "load-test".to_owned()];
        full.extend(argv);
        match crate::cli::Cli::try_parse_from(&full) {
            Ok(crate::cli::Cli {
                command: crate::cli::Command::LoadTest(mut a),
            }) => {
                a.quiet |= cli.quiet;
                if cli.metrics_listen.is_some() {
                    a.metrics_listen = cli.metrics_listen;
                    a.metrics_linger = cli.metrics_linger;
                }
                parsed.push((name, *a));
            }
            Ok(_) => return fail(format!("{name}: not a load-test")),
            Err(e) => return fail(format!("{name}: {}", e.to_string().trim())),
        }
    }
    let mut reports: Vec<(String, Report)> = Vec::new();
    let mut worst = 0u8;
    for (name, a) in parsed {
        println!("== {name}");
        let mut out = None;
        let code = execute(a, &name, &mut out);
        let code_num = if code == ExitCode::SUCCESS {
            0
        } else if code == ExitCode::from(EXIT_THRESHOLD) {
            EXIT_THRESHOLD
        } else if code == ExitCode::from(EXIT_REGRESSION) {
            EXIT_REGRESSION
        } else {
            1
        };
        worst = worst.max(code_num);
        match out {
            Some(r) => reports.push((name, r)),
            None => return code,
        }
        println!();
    }
    print_comparison(&reports);
    if let Some(p) = &cli.json {
        let json = serde_json::json!({
            "scenario": file.display().to_string(),
            "runs": reports.iter().map(|(_, r)| r).collect::<Vec<_>>(),
        });
        if let Err(e) = std::fs::write(p, serde_json::to_string_pretty(&json).unwrap_or_default()) {
            eprintln!("error: {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::from(worst)
}

fn print_comparison(reports: &[(String, Report)]) {
    let Some((_, first)) = reports.first() else {
        return;
    };
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>9}",
        "run", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "hit %", "ops/s vs 1", "p99 vs 1"
    );
    for (name, r) in reports {
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                "-".into()
            }
        };
        println!(
            "{:<28} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>7.2}% {:>8} {:>10} {:>9}",
            name.chars().take(28).collect::<String>(),
            r.rps,
            r.latency.p50,
            r.latency.p99,
            r.latency.p999,
            r.error_rate * 100.0,
            r.hit_rate
                .map_or("-".into(), |h| format!("{:.1}", h * 100.0)),
            ratio(r.rps, first.rps),
            ratio(r.latency.p99, first.latency.p99),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_inherit_defaults_and_become_flags() {
        let runs = parse(
            r#"
            [defaults]
            duration = "5s"
            keys = 100
            [[run]]
            name = "a"
            target = "engine"
            users = 3
            threshold = ["p99<1ms", "rps>10"]
            prefill = true
            quiet = false
            [[run]]
            target = "engine"
            keys = 7
            "#,
        )
        .unwrap();
        assert_eq!(runs[0].0, "a");
        let a = runs[0].1.join(" ");
        assert!(a.starts_with("engine "), "{a}");
        for part in [
            "--duration 5s",
            "--keys 100",
            "--users 3",
            "--threshold p99<1ms --threshold rps>10",
            "--prefill",
        ] {
            assert!(a.contains(part), "{part} in {a}");
        }
        assert!(!a.contains("--quiet"));
        assert_eq!(runs[1].0, "run 2");
        assert!(runs[1].1.join(" ").contains("--keys 7"));
    }

    #[test]
    fn bad_files_say_why() {
        assert!(parse("").unwrap_err().contains("no [[run]]"));
        assert!(parse("[[run]]\nusers = 1\n")
            .unwrap_err()
            .contains("target"));
        assert!(parse("[x]\n").unwrap_err().contains("unknown section"));
        assert!(parse("[[run]]\ntarget = \"engine\"\nusers = { a = 1 }\n")
            .unwrap_err()
            .contains("must be a string or a number"));
    }
}
