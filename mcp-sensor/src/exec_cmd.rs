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
//!
//! Two processes (exec_tree.rs): this one, the *front*, stays CMD's parent
//! and exits with its status; a forked *watcher* loads the programs and
//! writes the events, and watches what CMD leaves behind until it is gone.

use crate::cli::{ExecArgs, SensorArgs};
use crate::exec_tree;
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
    use crate::limits;
    let check = |r: Result<u32, String>| r.map_err(|e| anyhow::anyhow!(e));
    let ring_bytes = check(limits::check_ring("--ring-buffer-size", s.ring_buffer_size))?;
    limits::check_queue_bytes("--queue-bytes", s.queue_bytes).map_err(|e| anyhow::anyhow!(e))?;
    if s.queue_size == 0 {
        bail!("--queue-size must be at least 1");
    }
    let tables = crate::loader::Tables {
        watched: check(limits::check_table("--max-watched", s.max_watched))?,
        channels: check(limits::check_table("--max-channels", s.max_channels))?,
    };
    Ok(LoadOptions {
        ring_bytes,
        stdio_cap: s.stdio_cap,
        capture_stdio: !s.no_stdio_capture,
        discover: 0,
        enforce: s.enforce,
        tables,
    })
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

/// Everything the watcher does before CMD runs: loads the programs,
/// watches the held child `pid` (started by the front, pid `front`) and
/// registers the client's stdio as its channel. Returns the loaded sensor,
/// the pipeline and the rule files.
fn prepare(args: &ExecArgs, opts: &LoadOptions, pid: u32, front: u32) -> Result<(Sensor, Pipeline, RuleFiles)> {
    // alerts' ancestry goes through the front, CMD's parent, to the client
    crate::detect::set_exec_front(front);
    let (mut detector, rule_files) = Detector::from_args(&args.rules)?;
    detector.summary = std::io::stderr().is_terminal();
    let out = Output::open(args.events.as_deref())
        .with_context(|| format!("opening the events file {}", args.events.as_deref().unwrap_or(Path::new("-")).display()))?
        .with_host(&crate::identity::Host::read());
    let mut sensor = loader::load(opts)?;
    if opts.enforce {
        // before the child runs: its first open is already protected
        detector.enable_enforcement(&mut sensor)?;
    }
    let mut procs = ProcTable::new();
    procs.seed_from_proc().context("reading /proc to seed the process table")?;
    sensor.watch(pid, 0, pid).context("watching the child")?;
    let mut sessions = Sessions::new(args.sensor.max_message.min(usize::MAX as u64) as usize);
    let name = args.cmd.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
    sessions.register(pid, name);
    if opts.capture_stdio {
        for fd in [0, 1] {
            if let Some((dev, ino)) = channel_id(fd) {
                sensor.add_channel(dev, ino, pid).context("watching the child's stdio")?;
            }
        }
    }
    procs.observe(pid, front, 0, "mcp-sensor");
    let mut pipeline = Pipeline::new(out, procs, sessions, detector);
    pipeline.emit_start(&sensor.plan, "exec");
    Ok((sensor, pipeline, rule_files))
}

/// Runs `exec`; returns the process exit status (in the front: CMD's; in
/// the watcher, which returns here too: its own).
pub fn run(args: ExecArgs) -> Result<i32> {
    crate::service::require_root("exec")?;
    let cmd0 = &args.cmd[0];
    let path = match resolve(cmd0, std::env::var_os("PATH").as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let what = if e == Unrunnable::NotFound { "command not found" } else { "Permission denied" };
            crate::say!("mcp-sensor: {}: {what}", cmd0.to_string_lossy());
            return Ok(e.status());
        }
    };
    let opts = load_options(&args.sensor)?;
    let cpath = CString::new(path.as_os_str().as_bytes()).context("CMD contains a NUL byte")?;
    let argv: Vec<CString> = args
        .cmd
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an argument contains a NUL byte")?;
    let held = fork_held(&cpath, &argv)?;
    let (notes_in, notes_out) = match exec_tree::channel() {
        Ok(p) => p,
        Err(e) => {
            kill_held(&held);
            return Err(e).context("pipe2");
        }
    };
    let front = std::process::id();
    // SAFETY: still single-threaded (no runtime yet): the watcher is a
    // whole copy of this process.
    let watcher = unsafe { libc::fork() };
    if watcher < 0 {
        kill_held(&held);
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if watcher == 0 {
        drop(notes_in);
        // SAFETY: our copy of the release pipe (only the front releases
        // CMD), and a session of our own: the terminal's signals are the
        // client's and CMD's, not the watch's.
        unsafe {
            libc::close(held.release_fd);
            libc::setsid();
        }
        return watch(args, opts, held.pid as u32, front, notes_out);
    }
    drop(notes_out);
    Ok(front_wait(held, watcher, notes_in))
}

/// The front: releases CMD once the watcher watches it, passes signals on,
/// and returns CMD's status once the watcher no longer needs the client's
/// stdio (at once when CMD left processes behind; else after the final
/// lines are written, as the watcher exits).
fn front_wait(held: Held, watcher: libc::pid_t, notes: exec_tree::Listener) -> i32 {
    if notes.recv() != Some(exec_tree::Note::Ready) {
        // the watcher failed and said why on stderr: CMD never runs unwatched
        kill_held(&held);
        return wait_status(watcher);
    }
    forward_signals(held.pid);
    if let Err(e) = release(&held) {
        crate::say!("mcp-sensor: {e}");
        return 1;
    }
    let status = wait_status(held.pid);
    if notes.recv() != Some(exec_tree::Note::Detached) {
        wait_status(watcher);
    }
    status
}

/// The watcher: runs the agent until CMD and everything it left behind
/// exited (or `--watch-after-exit` passed), then writes `watch_end`.
fn watch(args: ExecArgs, opts: LoadOptions, pid: u32, front: u32, mut notes: exec_tree::Notifier) -> Result<i32> {
    let (sensor, pipeline, rule_files) = prepare(&args, &opts, pid, front)?;
    // the channel is registered by identity: holding the client's stdin and
    // stdout would keep the client from seeing the server's end
    exec_tree::let_go_of(&[0, 1]).context("pointing the watcher's stdin and stdout at /dev/null")?;
    let rt = crate::agent::runtime()?;
    let watched = sensor.watched_handle()?;
    notes.send(exec_tree::Note::Ready);
    let limit = std::time::Duration::from_secs(args.watch_after_exit);
    // events on stderr: the watch keeps it, or they would be lost
    let keep_stderr = args.events.is_none();
    let agent_opts = crate::agent::Options {
        queue_size: args.sensor.queue_size,
        queue_bytes: args.sensor.queue_bytes,
        rule_files: Some(rule_files),
        // SIGHUP is the child's: rule files reload when they change
        reload: None,
    };
    rt.block_on(async move {
        let (end_tx, end_rx) = tokio::sync::oneshot::channel();
        let stop = async move {
            let _ = tokio::task::spawn_blocking(move || exec_tree::wait_gone(pid)).await;
            let detach = move || {
                if !keep_stderr {
                    let _ = exec_tree::let_go_of(&[2]);
                }
                notes.send(exec_tree::Note::Detached);
                notes.close();
            };
            let end = exec_tree::outlive(limit, || exec_tree::live_members(&watched, pid), detach).await;
            let _ = end_tx.send(end);
        };
        let mut pipeline = crate::agent::run(sensor, pipeline, agent_opts, stop).await?;
        if let Ok(end) = end_rx.await {
            let ev = exec_tree::end_event(&end, pid, &pipeline.clock);
            pipeline.out.emit(&ev);
            pipeline.out.flush();
        }
        // the drops lines may have been lost with the rest: say it once more
        let lost = pipeline.out.lost + pipeline.out.pending_lines();
        if lost > 0 {
            crate::say!("mcp-sensor: {lost} event lines could not be written (the server ran on, watched)");
        }
        Ok(0)
    })
}

/// The child's pid, for the signal handler.
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    let pid = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    // SIGINT is left alone: from a terminal it already reached the child's
    // process group, and a second copy would be delivered twice
    if pid > 0 && sig != libc::SIGINT {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Passes termination and user signals on to the child, as wrappers like
/// tini do; the front itself stays to report the child's status.
fn forward_signals(pid: libc::pid_t) {
    CHILD.store(pid, std::sync::atomic::Ordering::Relaxed);
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only calls kill;
        // no SA_RESTART, so waitpid returns EINTR and loops.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = pass_on as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
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
