//! Test suites and the one combined line at the end of `cargo xtask test`:
//! each suite (unit, e2e, and later the VM kernel matrix) is a name with
//! passed and failed counts; the last line printed is
//! `tests: N passed, M failed`, the line CI reads.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// One suite's outcome, as the combined summary adds it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    pub name: String,
    pub passed: u64,
    pub failed: u64,
}

impl Suite {
    pub fn new(name: &str, passed: u64, failed: u64) -> Suite {
        Suite { name: name.to_string(), passed, failed }
    }
}

/// The counts of a cargo test `test result:` line (one per test binary):
/// `test result: FAILED. 10 passed; 2 failed; 0 ignored; ...`.
pub fn parse_cargo_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    // `... 10 passed`: the last two words of a `;`-separated part
    let count = |what: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            let mut words = part.split_whitespace().rev();
            if words.next()? != what {
                return None;
            }
            words.next()?.parse().ok()
        })
    };
    Some((count("passed")?, count("failed")?))
}

/// Runs `cargo ARGS` as suite `name`, passing its output through, and adds
/// up its `test result:` lines. A run that fails with no failing test
/// counted (a build error, a crashed test binary) counts as one failure.
pub fn cargo_suite(name: &str, args: &[&str]) -> Result<Suite> {
    cargo_suite_env(name, args, &[])
}

/// [`cargo_suite`] with variables set for cargo and the tests it runs.
pub fn cargo_suite_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Suite> {
    let mut child = Command::new(crate::cargo_bin())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(crate::root())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let (mut passed, mut failed) = (0, 0);
    let mut line = Vec::new();
    let stdout = std::io::stdout();
    while out.read_until(b'\n', &mut line).context("reading cargo's output")? > 0 {
        stdout.lock().write_all(&line)?;
        if let Some((p, f)) = parse_cargo_result(&String::from_utf8_lossy(&line)) {
            passed += p;
            failed += f;
        }
        line.clear();
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() && failed == 0 {
        eprintln!("xtask: {name}: `cargo {}` failed ({status}) with no failing test counted: one failure", args.join(" "));
        failed = 1;
    }
    Ok(Suite { name: name.to_string(), passed, failed })
}

/// The closing line: every suite's counts added up.
pub fn summary_line(suites: &[Suite]) -> String {
    let passed: u64 = suites.iter().map(|s| s.passed).sum();
    let failed: u64 = suites.iter().map(|s| s.failed).sum();
    format!("tests: {passed} passed, {failed} failed")
}

/// Prints each suite's counts (in a form CI does not take for the total),
/// then the combined line last; an error when anything failed.
pub fn report(suites: &[Suite]) -> Result<()> {
    let each: Vec<String> = suites.iter().map(|s| format!("{} {} passed {} failed", s.name, s.passed, s.failed)).collect();
    println!("\nby suite: {}", each.join("; "));
    println!("{}", summary_line(suites));
    let failed: Vec<&str> = suites.iter().filter(|s| s.failed > 0).map(|s| s.name.as_str()).collect();
    if !failed.is_empty() {
        anyhow::bail!("failures in: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_result_lines_are_counted() {
        let ok = "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.52s";
        assert_eq!(parse_cargo_result(ok), Some((12, 0)));
        let bad = "test result: FAILED. 10 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 9.1s\n";
        assert_eq!(parse_cargo_result(bad), Some((10, 2)));
        assert_eq!(parse_cargo_result("test foo ... ok"), None);
        assert_eq!(parse_cargo_result("running 3 tests"), None);
    }

    #[test]
    fn the_summary_adds_every_suite() {
        let suites = [Suite::new("unit", 800, 0), Suite::new("e2e", 36, 1), Suite::new("vmtest", 12, 2)];
        assert_eq!(summary_line(&suites), "tests: 848 passed, 3 failed");
        assert!(report(&suites).is_err());
        assert!(report(&suites[..1]).is_ok());
    }
}
