//! `mcp-sensor exec -- CMD`: runs one command (an MCP server) under watch.
//!
//! Owns the child's start: CMD is resolved like a shell would (127 when
//! not found, 126 when not executable), forked, and held on a pipe until
//! its pid is in the kernel's watched set and its stdio channel is
//! registered; only then does it exec, so CMD's own exec is the first thing
//! traced. stdin, stdout and stderr are inherited untouched; nothing is
//! ever written to stdout. The exit status is CMD's (128+signal if killed),
//! also when the events output fails or is closed: lost lines are counted
//! (output.rs) and watching goes on.

use crate::cli::{ExecArgs, SensorArgs};
use crate::correlate::Sessions;
use crate::detect::Detector;
use crate::rulefiles::RuleFiles;
use std::io::IsTerminal;
use crate::loader::{self, LoadOptions, Sensor};
use crate::output::Output;
use crate::pipeline::Pipeline;
use crate::procs::ProcTable;
use anyhow::{bail, Context, Result};
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why CMD cannot run, with the status a shell would exit with.
#[derive(Debug, PartialEq, Eq)]
pub enum Unrunnable {
    NotFound,
    NotExecutable,
}

impl Unrunnable {
    pub fn status(&self) -> i32 {
        match self {
            Unrunnable::NotFound => 127,
            Unrunnable::NotExecutable => 126,
        }
    }
}

fn is_executable_file(p: &Path) -> Option<bool> {
    let md = std::fs::metadata(p).ok()?;
    Some(md.is_file() && md.permissions().mode() & 0o111 != 0)
}

/// Resolves CMD the way execvp does: a name with a slash is a path, any
/// other is looked up in PATH.
pub fn resolve(cmd: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, Unrunnable> {
    if cmd.as_bytes().contains(&b'/') {
        return match is_executable_file(Path::new(cmd)) {
            Some(true) => Ok(PathBuf::from(cmd)),
            Some(false) => Err(Unrunnable::NotExecutable),
            None => Err(Unrunnable::NotFound),
        };
    }
    let default = OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut saw_non_exec = false;
    for dir in std::env::split_paths(path_var.unwrap_or(&default)) {
        let cand = dir.join(cmd);
        match is_executable_file(&cand) {
            Some(true) => return Ok(cand),
            Some(false) => saw_non_exec = true,
            None => {}
        }
    }
    Err(if saw_non_exec { Unrunnable::NotExecutable } else { Unrunnable::NotFound })
}

/// Kernel (dev, inode) of fd when it is a pipe or socket: a possible
/// JSON-RPC channel.
fn channel_id(fd: i32) -> Option<(u32, u64)> {
    // SAFETY: fstat writes into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    let fmt = st.st_mode & libc::S_IFMT;
    (fmt == libc::S_IFIFO || fmt == libc::S_IFSOCK).then(|| (crate::abi::user_to_kdev(st.st_dev), st.st_ino))
}

pub fn load_options(s: &SensorArgs) -> Result<LoadOptions> {
    let ring_bytes = u32::try_from(s.ring_buffer_size)
        .ok()
        .filter(|n| n.is_power_of_two() && *n >= 4096)
        .with_context(|| format!("--ring-buffer-size {} must be a power of two between 4KiB and 2GiB", s.ring_buffer_size))?;
    if s.queue_size == 0 {
        bail!("--queue-size must be at least 1");
    }
    Ok(LoadOptions { ring_bytes, stdio_cap: s.stdio_cap, capture_stdio: !s.no_stdio_capture, discover: 0, enforce: s.enforce })
}

/// A child forked and held before exec.
struct Held {
    pid: libc::pid_t,
    release_fd: i32,
}

/// Forks a child that waits on a pipe, then execs `path` with `argv`. Must
/// run before any other thread exists (no runtime yet): between fork and
/// exec the child only calls async-signal-safe functions.
fn fork_held(path: &CString, argv: &[CString]) -> Result<Held> {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: single-threaded here (see above); the child calls only
    // close, read, signal, execv, write and _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        unsafe {
            libc::close(wr);
            let mut b = 0u8;
            // EOF without a byte: the sensor failed to watch us; never run unwatched
            if libc::read(rd, &mut b as *mut u8 as *mut libc::c_void, 1) != 1 {
                libc::_exit(1);
            }
            // Rust ignores SIGPIPE, and an ignored signal stays ignored
            // across exec: give CMD the default a shell would
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::execv(path.as_ptr(), argv_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            let msg: &[u8] = if errno == libc::ENOENT { b"mcp-sensor: exec failed: No such file or directory\n" } else { b"mcp-sensor: exec failed: Permission denied or bad executable\n" };
            libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
            libc::_exit(if errno == libc::ENOENT { 127 } else { 126 });
        }
    }
    // SAFETY: closing our copy of the read end.
    unsafe { libc::close(rd) };
    Ok(Held { pid, release_fd: wr })
}

fn release(h: &Held) -> Result<()> {
    let b = 1u8;
    // SAFETY: writing one byte from a local to our pipe end, then closing it.
    let n = unsafe { libc::write(h.release_fd, &b as *const u8 as *const libc::c_void, 1) };
    unsafe { libc::close(h.release_fd) };
    if n != 1 {
        bail!("releasing the child: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn kill_held(h: &Held) {
    // SAFETY: closing the release pipe makes the child _exit(1); reap it.
    unsafe {
        libc::close(h.release_fd);
        let mut st = 0;
        libc::waitpid(h.pid, &mut st, 0);
    }
}

/// Blocks until the child exits; returns the status a shell would report.
fn wait_status(pid: libc::pid_t) -> i32 {
    loop {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            if libc::WIFEXITED(st) {
                return libc::WEXITSTATUS(st);
            }
            if libc::WIFSIGNALED(st) {
                return 128 + libc::WTERMSIG(st);
            }
        } else if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 1;
        }
    }
}

/// Everything `exec` does before the child runs: returns the loaded sensor
/// and the held child, or the exit status when CMD cannot run.
fn prepare(args: &ExecArgs) -> Result<std::result::Result<(Sensor, Held, Pipeline, RuleFiles), i32>> {
    crate::service::require_root("exec")?;
    let cmd0 = &args.cmd[0];
    let path = match resolve(cmd0, std::env::var_os("PATH").as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let what = if e == Unrunnable::NotFound { "command not found" } else { "Permission denied" };
            crate::say!("mcp-sensor: {}: {what}", cmd0.to_string_lossy());
            return Ok(Err(e.status()));
        }
    };
    let opts = load_options(&args.sensor)?;
    let (mut detector, rule_files) = Detector::from_args(&args.rules)?;
    detector.summary = std::io::stderr().is_terminal();
    let out = Output::open(args.events.as_deref())
        .with_context(|| format!("opening the events file {}", args.events.as_deref().unwrap_or(Path::new("-")).display()))?;
    let mut sensor = loader::load(&opts)?;
    if opts.enforce {
        // before the child runs: its first open is already protected
        detector.enable_enforcement(&mut sensor)?;
    }
    let mut procs = ProcTable::new();
    procs.seed_from_proc().context("reading /proc to seed the process table")?;

    let cpath = CString::new(path.as_os_str().as_bytes()).context("CMD contains a NUL byte")?;
    let argv: Vec<CString> = args
        .cmd
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an argument contains a NUL byte")?;
    let held = fork_held(&cpath, &argv)?;
    let pid = held.pid as u32;
    let mut setup = || -> Result<Sessions> {
        sensor.watch(pid, 0, pid)?;
        let mut sessions = Sessions::new(args.sensor.max_message.min(usize::MAX as u64) as usize);
        let name = args.cmd.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        sessions.register(pid, name);
        if !opts.capture_stdio {
            return Ok(sessions);
        }
        for fd in [0, 1] {
            if let Some((dev, ino)) = channel_id(fd) {
                sensor.add_channel(dev, ino, pid)?;
            }
        }
        Ok(sessions)
    };
    match setup() {
        Ok(sessions) => {
            procs.observe(pid, std::process::id(), 0, "mcp-sensor");
            let mut pipeline = Pipeline::new(out, procs, sessions, detector);
            pipeline.emit_start(&sensor.plan, "exec");
            Ok(Ok((sensor, held, pipeline, rule_files)))
        }
        Err(e) => {
            kill_held(&held);
            Err(e.context("watching the child"))
        }
    }
}

/// Runs `exec`; returns the process exit status.
pub fn run(args: ExecArgs) -> Result<i32> {
    let (sensor, held, pipeline, rule_files) = match prepare(&args)? {
        Ok(x) => x,
        Err(status) => return Ok(status),
    };
    // the child is forked already: it keeps normal scheduling
    let rt = crate::agent::runtime()?;
    release(&held)?;
    let pid = held.pid;
    let opts = crate::agent::Options {
        queue_size: args.sensor.queue_size,
        queue_bytes: args.sensor.queue_bytes,
        rule_files: Some(rule_files),
        // SIGHUP is the child's (passed on): rule files reload when they change
        reload: None,
    };
    rt.block_on(async move {
        let child = tokio::task::spawn_blocking(move || wait_status(pid));
        let forward = tokio::spawn(forward_signals(pid));
        let (status_tx, status_rx) = tokio::sync::oneshot::channel();
        let stop = async move {
            let status = child.await.unwrap_or(1);
            let _ = status_tx.send(status);
        };
        let result = crate::agent::run(sensor, pipeline, opts, stop).await;
        forward.abort();
        let pipeline = result?;
        // the drops lines may have been lost with the rest: say it once more
        let lost = pipeline.out.lost + pipeline.out.pending_lines();
        if lost > 0 {
            crate::say!("mcp-sensor: {lost} event lines could not be written (the server ran on, watched)");
        }
        Ok(status_rx.await.unwrap_or(1))
    })
}

/// Passes termination and user signals on to the child, as wrappers like
/// tini do. SIGINT is left alone: from a terminal it already reached the
/// child's process group, and a second copy would be delivered twice.
async fn forward_signals(pid: libc::pid_t) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
        SignalKind::interrupt(),
    ];
    let mut streams = Vec::new();
    for k in kinds {
        if let Ok(s) = signal(k) {
            streams.push((k, s));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SignalKind>(16);
    for (k, mut s) in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                let _ = tx.send(k).await;
            }
        });
    }
    while let Some(k) = rx.recv().await {
        if k != SignalKind::interrupt() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, k.as_raw_value()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_shell() {
        assert_eq!(resolve(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin"))), Ok(PathBuf::from("/bin/sh")));
        assert_eq!(resolve(OsStr::new("no-such-cmd-xyz"), None), Err(Unrunnable::NotFound));
        assert_eq!(resolve(OsStr::new("/no/such/file"), None), Err(Unrunnable::NotFound));
        // a file that exists but is not executable
        let dir = std::env::temp_dir().join(format!("ms-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("plain");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(resolve(f.as_os_str(), None).map_err(|e| e.status()), Err(126));
        assert_eq!(resolve(OsStr::new("plain"), Some(dir.as_os_str())), Err(Unrunnable::NotExecutable));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
