//! The kernel matrix's test list, tests/vm/suite.txt: which e2e test runs on
//! which boot of each kernel (with BPF LSM, without, or both). The file's
//! header says why a test runs on one boot or both.
//!
//! The list is checked against the e2e binary's own `--list` before any VM
//! boots: a `kernel_` test missing from the file, or a name in the file that
//! is no test, is an error, so the matrix cannot quietly run less than the
//! tests it names.

use anyhow::{bail, Result};

/// The boots of a kernel a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boots {
    Both,
    LsmOn,
    LsmOff,
}

impl Boots {
    fn includes(self, bpf: bool) -> bool {
        match self {
            Boots::Both => true,
            Boots::LsmOn => bpf,
            Boots::LsmOff => !bpf,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The test's full name, as `--list` prints it (`module::name`).
    pub test: String,
    pub boots: Boots,
}

/// Parses suite.txt: `TEST LSM` per line, `#` comments and blank lines
/// skipped. Errors name the line (1-based) and what was expected.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = || format!("tests/vm/suite.txt line {}", i + 1);
        let [test, lsm] = words[..] else {
            bail!("{}: expected `TEST LSM` (two words), found {line:?}", at());
        };
        let boots = match lsm {
            "both" => Boots::Both,
            "on" => Boots::LsmOn,
            "off" => Boots::LsmOff,
            _ => bail!("{}: LSM is `both`, `on` or `off`, not {lsm:?}", at()),
        };
        if out.iter().any(|e| e.test == test) {
            bail!("{}: {test} is listed twice", at());
        }
        out.push(Entry { test: test.to_string(), boots });
    }
    Ok(out)
}

/// The test names of a libtest `--list` output (`NAME: test` lines).
pub fn listed(list_output: &str) -> Vec<String> {
    list_output.lines().filter_map(|l| l.strip_suffix(": test")).map(str::to_string).collect()
}

/// Every test named `kernel_` in `tests` (the e2e binary's `--list`) is in
/// `entries`, and every entry is one of `tests`.
pub fn check(entries: &[Entry], tests: &[String]) -> Result<()> {
    let kernel = |t: &String| t.rsplit("::").next().is_some_and(|n| n.starts_with("kernel_"));
    let missing: Vec<&str> = tests.iter().filter(|t| kernel(t) && !entries.iter().any(|e| &e.test == *t)).map(String::as_str).collect();
    if !missing.is_empty() {
        bail!("tests/vm/suite.txt does not list these kernel_ tests (add each with `both`, `on` or `off`): {}", missing.join(", "));
    }
    let unknown: Vec<&str> = entries.iter().filter(|e| !tests.contains(&e.test)).map(|e| e.test.as_str()).collect();
    if !unknown.is_empty() {
        bail!("tests/vm/suite.txt names tests the e2e binary does not have (renamed or removed?): {}", unknown.join(", "));
    }
    Ok(())
}

/// The tests one boot runs (`bpf`: booted with BPF LSM), in file order.
pub fn for_boot(entries: &[Entry], bpf: bool) -> Vec<String> {
    entries.iter().filter(|e| e.boots.includes(bpf)).map(|e| e.test.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# header\n\na::kernel_x   both\nb::kernel_y on\nc::kernel_z\toff\n";

    #[test]
    fn each_boot_gets_its_tests_and_both() {
        let e = parse(FILE).unwrap();
        assert_eq!(for_boot(&e, true), ["a::kernel_x", "b::kernel_y"]);
        assert_eq!(for_boot(&e, false), ["a::kernel_x", "c::kernel_z"]);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = parse("a both\nb sometimes\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("sometimes"), "{err}");
        let err = parse("a\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("two words"), "{err}");
        let err = parse("a on\na off\n").unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn an_unlisted_kernel_test_and_an_unknown_name_are_errors() {
        let e = parse(FILE).unwrap();
        let list = "a::kernel_x: test\nb::kernel_y: test\nc::kernel_z: test\nd::other: test\n\n4 tests, 0 benchmarks\n";
        let tests = listed(list);
        assert_eq!(tests.len(), 4);
        check(&e, &tests).unwrap();
        let more: Vec<String> = tests.iter().cloned().chain(["e::kernel_new".to_string()]).collect();
        let err = check(&e, &more).unwrap_err().to_string();
        assert!(err.contains("e::kernel_new"), "{err}");
        let fewer: Vec<String> = tests.iter().filter(|t| *t != "c::kernel_z").cloned().collect();
        let err = check(&e, &fewer).unwrap_err().to_string();
        assert!(err.contains("c::kernel_z") && err.contains("does not have"), "{err}");
    }
}
