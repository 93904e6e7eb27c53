//! Rule files: which user files are active, loading them over the embedded
//! defaults, and noticing when they change so a running sensor can reload.
//!
//! A path may be a file or a directory (its `*.yaml`/`*.yml`, sorted by
//! name, like Falco's `rules.d`). Files load in the order given, after the
//! embedded default pack, so later files override earlier ones. With no
//! paths, `/etc/mcp-sensor/rules.d` is used when it exists.

use crate::rules::{self, RuleError, RuleSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Used when no rule paths are given, if it exists.
pub const DEFAULT_RULES_DIR: &str = "/etc/mcp-sensor/rules.d";

/// Why a rules load failed; the message says what to fix.
#[derive(Debug)]
pub enum LoadFailure {
    Read { path: PathBuf, err: std::io::Error },
    Invalid(Vec<RuleError>),
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadFailure::Read { path, err } => write!(f, "{}: {err}", path.display()),
            LoadFailure::Invalid(errs) => {
                for (i, e) in errs.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadFailure {}

/// The user's rule paths and what they looked like when last loaded.
#[derive(Debug, Clone)]
pub struct RuleFiles {
    paths: Vec<PathBuf>,
    /// (file, modification time, length) of each file last loaded, plus
    /// each directory's listing, so added and removed files count.
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
}

impl RuleFiles {
    /// `paths` as given on the command line; empty means the default
    /// directory when it exists.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let paths = if paths.is_empty() && Path::new(DEFAULT_RULES_DIR).is_dir() {
            vec![PathBuf::from(DEFAULT_RULES_DIR)]
        } else {
            paths
        };
        RuleFiles { paths, stamp: Vec::new() }
    }

    /// The files to load, in order.
    pub fn files(&self) -> Result<Vec<PathBuf>, LoadFailure> {
        let mut out = Vec::new();
        for p in &self.paths {
            let read_err = |err| LoadFailure::Read { path: p.clone(), err };
            if p.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(read_err)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| matches!(f.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
                    .collect();
                entries.sort();
                out.extend(entries);
            } else {
                std::fs::metadata(p).map_err(read_err)?;
                out.push(p.clone());
            }
        }
        Ok(out)
    }

    /// Loads the defaults plus every file; on success remembers what was
    /// loaded for [`Self::changed`].
    pub fn load(&mut self) -> Result<RuleSet, LoadFailure> {
        let files = self.files()?;
        let mut texts = Vec::with_capacity(files.len());
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|err| LoadFailure::Read { path: f.clone(), err })?;
            texts.push((f.display().to_string(), text));
        }
        let set = rules::load(&texts).map_err(LoadFailure::Invalid)?;
        self.stamp = self.current_stamp();
        Ok(set)
    }

    /// Whether any file was added, removed or modified since the last
    /// [`Self::load`] (successful or not: a failed load is not retried
    /// until the files change again).
    pub fn changed(&mut self) -> bool {
        let now = self.current_stamp();
        if now == self.stamp {
            return false;
        }
        self.stamp = now;
        true
    }

    fn current_stamp(&self) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
        let files = self.files().unwrap_or_default();
        let mut stamp: Vec<_> = files
            .into_iter()
            .map(|f| {
                let m = std::fs::metadata(&f).ok();
                let mtime = m.as_ref().and_then(|m| m.modified().ok());
                (f, mtime, m.map_or(u64::MAX, |m| m.len()))
            })
            .collect();
        // a path that cannot be read at all also counts as a state
        stamp.extend(self.paths.iter().filter(|p| !p.exists()).map(|p| (p.clone(), None, u64::MAX)));
        stamp
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        crate::test_dir(&format!("rulefiles-{name}"))
    }

    #[test]
    fn a_directory_loads_its_yaml_files_in_name_order() {
        let d = dir("order");
        std::fs::write(d.join("20-enable.yaml"), "- rule: unexpected-shell\n  enabled: true\n").unwrap();
        std::fs::write(d.join("10-disable.yaml"), "- disable: [unexpected-shell]\n").unwrap();
        std::fs::write(d.join("notes.txt"), "not rules").unwrap();
        let rf = RuleFiles::new(vec![d.clone()]);
        let files = rf.files().unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["10-disable.yaml", "20-enable.yaml"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn errors_name_the_file_line_and_column_and_a_fix_reloads() {
        let d = dir("reload");
        let f = d.join("mine.yaml");
        std::fs::write(&f, "- disable: [unexpected-shell]\n").unwrap();
        let mut rf = RuleFiles::new(vec![f.clone()]);
        let set = rf.load().unwrap();
        assert!(!set.rule("unexpected-shell").unwrap().enabled);
        assert!(!rf.changed());

        std::fs::write(&f, "- rule: broken\n  sevrity: high\n").unwrap();
        assert!(rf.changed());
        let err = rf.load().err().expect("load fails").to_string();
        assert!(err.contains(&format!("{}:2:3: unknown field `sevrity`", f.display())), "{err}");
        assert!(!rf.changed(), "a failed load is not retried until the file changes");

        std::fs::write(&f, "- disable: [ssh-key-read]\n").unwrap();
        assert!(rf.changed());
        assert!(!rf.load().unwrap().rule("ssh-key-read").unwrap().enabled);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let mut rf = RuleFiles::new(vec![PathBuf::from("/nonexistent/rules.yaml")]);
        let err = rf.load().err().expect("load fails").to_string();
        assert!(err.contains("/nonexistent/rules.yaml") && err.contains("No such file"), "{err}");
    }
}
