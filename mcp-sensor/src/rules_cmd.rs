//! `mcp-sensor rules check|list`: rule files validated and shown the way
//! the sensor would load them (embedded defaults first, then the paths).

use crate::cli::RulesCommand;
use crate::rulefiles::RuleFiles;
use crate::rules::RuleSet;

/// Runs the subcommand; returns the exit status (1: invalid rules).
pub fn run(cmd: RulesCommand) -> i32 {
    match cmd {
        RulesCommand::Check { paths } => match load(paths) {
            Some((set, files)) => {
                let (all, on) = (set.rules().count(), set.rules().filter(|r| r.enabled).count());
                println!("ok: {all} rules ({on} enabled) from the embedded defaults{}", files_note(&files));
                0
            }
            None => 1,
        },
        RulesCommand::List { paths, json } => match load(paths) {
            Some((set, _)) => {
                list(&set, json);
                0
            }
            None => 1,
        },
    }
}

fn load(paths: Vec<std::path::PathBuf>) -> Option<(RuleSet, Vec<std::path::PathBuf>)> {
    let mut rf = RuleFiles::new(paths);
    let files = rf.files().unwrap_or_default();
    match rf.load() {
        Ok(set) => Some((set, files)),
        Err(e) => {
            eprintln!("{e}");
            eprintln!("mcp-sensor: rules are invalid (see rules/README.md for the format)");
            None
        }
    }
}

fn files_note(files: &[std::path::PathBuf]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!(" and {}", names.join(", "))
}

fn list(set: &RuleSet, json: bool) {
    // the kernel `--enforce` will run on is not known here: conditions shown
    let profile = crate::enforce::profile(set, None);
    if !json {
        println!("{:<28} {:<8} {:<12} {:<4} {:<16} UNDER --enforce", "RULE", "SEVERITY", "ACTION", "ON", "KINDS");
    }
    for r in set.rules() {
        if json {
            println!("{}", serde_json::to_string(r).expect("rules serialize"));
            continue;
        }
        let kinds: Vec<&str> = r.kinds.iter().map(|k| k.name()).collect();
        let action = match (r.action, r.kill_scope) {
            (crate::rules::Action::Alert, _) => "alert".to_string(),
            (crate::rules::Action::Deny, _) => "deny".to_string(),
            (crate::rules::Action::Kill, scope) => format!("kill/{}", serde_json::to_value(scope).unwrap().as_str().unwrap_or("?")),
        };
        // who stops it under --enforce, and what only applies on some kernels
        let by = profile.iter().find(|p| p.rule == r.id).map_or(String::new(), |p| match (p.action, r.action) {
            ("kill", crate::rules::Action::Alert) => format!("kill, {} (where BPF LSM is not active)", p.decided_by),
            _ => p.decided_by.to_string(),
        });
        println!(
            "{:<28} {:<8} {:<12} {:<4} {:<16} {}",
            r.id,
            r.severity.name(),
            action,
            if r.enabled { "on" } else { "off" },
            kinds.join(","),
            by
        );
    }
    if !json {
        println!(
            "\nUNDER --enforce: who stops a violation: kernel (at the syscall, never late), kernel+agent (part can be late), agent (late); see rules/README.md, Enforcement"
        );
    }
}
