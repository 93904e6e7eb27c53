//! What a shell is asked to run, read from its argv: a command string
//! (`-c`), its standard input (`-s`, or no operand), an interactive
//! session (`-i`), or a script file. Owns the Exec event's `shell_mode`,
//! the `script` of a shell's script run (resolved: made absolute against
//! the cwd, symlinks followed) and `script_writable_by` (who can modify
//! that script: its owner and mode, and its directory's).
//!
//! A `#!/usr/bin/env bash` file exec'd directly reaches the kernel as two
//! execs: `env` (the `#!` interpreter), then `bash /path/file args`; the
//! second is a script run of `/path/file`. Options may precede the script
//! (`bash -e x.sh`, `bash -o pipefail x.sh`, `bash --norc x.sh`);
//! everything after the script is the script's own arguments, `-c`
//! included (`bash shim -c 'print(1)'` runs `shim`).
//!
//! The option grammar is the one bash, dash, zsh, ksh and busybox ash share
//! (POSIX `sh`): short options in clusters after `-` or `+`, `o`/`O` taking
//! the next argument as an option name, `--` or `-` ending the options;
//! bash's long options, of which `--rcfile` and `--init-file` take an
//! argument. The kernel makes the same decision on the first bytes of
//! argv (abi.h, `MS_VF_SHELL_CMD`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Shell names whose execs get a `shell_mode` (the default pack's
/// `shell_binaries`; a shell known by `exe_is` under one of these names
/// counts too).
pub const SHELLS: &[&str] = &[
    "sh", "bash", "rbash", "dash", "zsh", "ksh", "ksh93", "mksh", "oksh", "pdksh", "ash", "fish", "csh", "tcsh", "yash",
    "nu",
];

/// `shell_mode` values, in the order rules' enum masks use.
pub const SHELL_MODES: &[&str] = &["command", "stdin", "interactive", "script"];
/// `script_writable_by` values: `root` (the file and its directory are
/// root's and writable by no group or other user: package-managed),
/// `user` (some non-root user or group can modify it), `anyone` (the file
/// or its directory is world-writable, /tmp among them).
pub const WRITABLE_BY: &[&str] = &["root", "user", "anyone"];

/// What one shell exec is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellArgs {
    /// One of [`SHELL_MODES`].
    pub mode: &'static str,
    /// The script operand as given (mode `script` only).
    pub script: Option<String>,
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Whether an exec of `exe` (known as `exe_is`, when it is) is a shell.
pub fn is_shell(exe: &str, exe_is: Option<&str>) -> bool {
    SHELLS.contains(&basename(exe)) || exe_is.is_some_and(|n| SHELLS.contains(&n))
}

/// The mode of a shell started with `argv` (argv\[0] included; for
/// busybox or toybox called by their own name, argv\[1] is the applet).
pub fn parse(argv: &[String]) -> ShellArgs {
    let mut i = 1;
    if argv.first().is_some_and(|a| crate::exe_is::MULTICALL.contains(&basename(a))) {
        i = 2;
    }
    let (mut command, mut stdin, mut interactive) = (false, false, false);
    let mut operand = None;
    while let Some(a) = argv.get(i) {
        i += 1;
        if a == "--" || a == "-" {
            operand = argv.get(i);
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            if long == "rcfile" || long == "init-file" {
                i += 1;
            }
            continue;
        }
        if a.len() > 1 && (a.starts_with('-') || a.starts_with('+')) {
            for ch in a[1..].chars() {
                match ch {
                    'c' => command = true,
                    's' => stdin = true,
                    'i' => interactive = true,
                    'o' | 'O' => i += 1,
                    _ => {}
                }
            }
            continue;
        }
        operand = Some(a);
        break;
    }
    let mode = match (command, stdin, operand) {
        (true, _, _) => "command",
        (_, true, _) => "stdin",
        (_, _, Some(_)) => "script",
        _ if interactive => "interactive",
        _ => "stdin",
    };
    ShellArgs { mode, script: (mode == "script").then(|| operand.cloned()).flatten() }
}

/// `script` made absolute against `cwd` (a leading `./` dropped), then
/// with symlinks resolved where the file can still be found (else as
/// joined: the process may have removed it).
pub fn resolve(script: &str, cwd: &str) -> String {
    let joined = if script.starts_with('/') {
        script.to_string()
    } else {
        format!("{}/{}", cwd.trim_end_matches('/'), script.trim_start_matches("./"))
    };
    std::fs::canonicalize(&joined).map_or(joined, |p| p.display().to_string())
}

/// Who can modify the file at `path` (one of [`WRITABLE_BY`]); `None`
/// when it cannot be found.
pub fn writable_by(path: &str) -> Option<&'static str> {
    let f = std::fs::metadata(path).ok()?;
    let dir = Path::new(path).parent().map(PathBuf::from).and_then(|d| std::fs::metadata(d).ok())?;
    let (fm, dm) = (f.mode(), dir.mode());
    Some(if fm & 0o002 != 0 || dm & 0o002 != 0 {
        "anyone"
    } else if f.uid() == 0 && dir.uid() == 0 && fm & 0o020 == 0 && dm & 0o020 == 0 {
        "root"
    } else {
        "user"
    })
}

/// An exec's `script`, `shell_mode` and `script_writable_by`: `exe` and
/// its `exe_is` name, `argv`, `cwd`, and `shebang`: the path the caller
/// exec'd when the kernel ran it through a `#!` interpreter. `fs`: look
/// the script up on disk (resolve symlinks, who can modify it).
pub fn exec_facts(
    exe: &str,
    exe_is: Option<&str>,
    argv: &[String],
    cwd: &str,
    shebang: Option<&str>,
    fs: bool,
) -> (Option<String>, Option<&'static str>, Option<&'static str>) {
    let shell = is_shell(exe, exe_is).then(|| parse(argv));
    let mode = shell.as_ref().map(|s| s.mode);
    let given = shebang.map(str::to_owned).or_else(|| shell.and_then(|s| s.script));
    let Some(given) = given else { return (None, mode, None) };
    if !fs {
        let joined = if given.starts_with('/') { given } else { format!("{}/{}", cwd.trim_end_matches('/'), given.trim_start_matches("./")) };
        return (Some(joined), mode, None);
    }
    let script = resolve(&given, cwd);
    let w = writable_by(&script);
    (Some(script), mode, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(argv: &[&str]) -> (&'static str, Option<String>) {
        let v: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let r = parse(&v);
        (r.mode, r.script)
    }

    #[test]
    fn command_strings_stdin_and_interactive_shells() {
        assert_eq!(p(&["sh", "-c", "id"]), ("command", None));
        assert_eq!(p(&["bash", "-ec", "id"]), ("command", None));
        assert_eq!(p(&["bash", "-x", "-c", "id"]), ("command", None));
        assert_eq!(p(&["bash", "--norc", "--noprofile", "-c", "id"]), ("command", None));
        assert_eq!(p(&["bash", "-o", "pipefail", "-c", "id"]), ("command", None));
        assert_eq!(p(&["bash"]), ("stdin", None));
        assert_eq!(p(&["bash", "-s", "x.sh"]), ("stdin", None), "-s: the operands are positional parameters");
        assert_eq!(p(&["bash", "-i"]), ("interactive", None));
        assert_eq!(p(&["bash", "--rcfile", "x.sh"]), ("stdin", None), "--rcfile takes an argument");
        assert_eq!(p(&["busybox", "sh", "-c", "id"]), ("command", None));
        assert_eq!(p(&["busybox", "sh", "x.sh"]), ("script", Some("x.sh".into())));
    }

    #[test]
    fn script_runs_with_options_before_and_arguments_after() {
        assert_eq!(p(&["bash", "/home/u/.pyenv/libexec/pyenv", "exec", "python3"]), ("script", Some("/home/u/.pyenv/libexec/pyenv".into())));
        assert_eq!(p(&["bash", "-e", "x.sh"]), ("script", Some("x.sh".into())));
        assert_eq!(p(&["bash", "-o", "pipefail", "x.sh"]), ("script", Some("x.sh".into())));
        assert_eq!(p(&["bash", "+x", "--", "-weird.sh"]), ("script", Some("-weird.sh".into())));
        // the shim's own -c is the script's argument, not bash's
        assert_eq!(p(&["bash", "/r/.pyenv/shims/python3", "-c", "print(1)"]), ("script", Some("/r/.pyenv/shims/python3".into())));
    }

    #[test]
    fn scripts_resolve_against_the_cwd_and_through_symlinks() {
        let d = crate::test_dir("shell-run");
        std::fs::create_dir_all(d.join("libexec")).unwrap();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::write(d.join("libexec/pyenv"), "#!/usr/bin/env bash\n").unwrap();
        std::os::unix::fs::symlink("../libexec/pyenv", d.join("bin/pyenv")).unwrap();
        let real = std::fs::canonicalize(d.join("libexec/pyenv")).unwrap().display().to_string();
        assert_eq!(resolve("bin/pyenv", &d.display().to_string()), real);
        assert_eq!(resolve("./bin/pyenv", &format!("{}/", d.display())), real);
        assert_eq!(resolve("/nonexistent/x.sh", "/"), "/nonexistent/x.sh");
        assert_eq!(resolve("x.sh", "/nonexistent/"), "/nonexistent/x.sh");
    }

    #[test]
    fn who_can_modify_a_script() {
        assert_eq!(writable_by("/nonexistent/x.sh"), None);
        let d = crate::test_dir("shell-run-w");
        let f = d.join("x.sh");
        std::fs::write(&f, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let owner_is_root = std::fs::metadata(&f).unwrap().uid() == 0 && std::fs::metadata(&d).unwrap().uid() == 0;
        assert_eq!(writable_by(f.to_str().unwrap()), Some(if owner_is_root { "root" } else { "user" }));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert_eq!(writable_by(f.to_str().unwrap()), Some("user"), "group-writable");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(writable_by(f.to_str().unwrap()), Some("anyone"), "a world-writable directory");
    }
}
