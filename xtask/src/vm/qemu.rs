//! One VM: virtiofsd sharing the host's root read-only, qemu under TCG
//! booting the kernel with the initramfs, the serial console copied to the
//! log file (each line prefixed with the host's seconds since qemu started)
//! and read for the init's VMTEST-* markers, and a deadline after which qemu
//! is killed.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const QEMU: &str = "qemu-system-x86_64";
/// The C virtiofsd of Debian 12's qemu-system-common; Debian 13 packages the
/// Rust one (`virtiofsd`) instead.
const VIRTIOFSD_C: &str = "/usr/lib/qemu/virtiofsd";
const VIRTIOFSD_RUST: &str = "/usr/libexec/virtiofsd";
/// The virtiofs tag init.sh mounts.
const TAG: &str = "hostroot";

pub struct Spec<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    pub append: String,
    pub memory_mib: u32,
    pub smp: u32,
    pub timeout: Duration,
    pub log: &'a Path,
    /// Private directory for the socket and the read-only view of `/`.
    pub rundir: &'a Path,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// The command's exit status (VMTEST-EXIT), if it ran to the end.
    pub exit: Option<i32>,
    /// Why there is no exit status, or why setup failed.
    pub problem: Option<String>,
    /// Host time from qemu's start to the init's first line.
    pub init_at: Option<Duration>,
    /// Host time from qemu's start to the command's start (boot + setup).
    pub run_at: Option<Duration>,
    /// Host time from qemu's start to its end.
    pub total: Duration,
    /// The command's output (console lines between RUN and EXIT).
    pub output: Vec<String>,
}

enum Line {
    Text(String),
    Eof,
}

pub fn run(spec: &Spec) -> Result<Outcome> {
    let mut fsd = Virtiofsd::start(spec.rundir)?;
    let mem = format!("{}M", spec.memory_mib);
    let mut qemu = Command::new(QEMU);
    qemu.args(["-accel", "tcg", "-cpu", "max", "-machine", "pc"])
        .args(["-m", &mem, "-smp", &spec.smp.to_string()])
        // vhost-user needs guest memory the daemon can map
        .args(["-object", &format!("memory-backend-memfd,id=mem,size={mem},share=on")])
        .args(["-numa", "node,memdev=mem"])
        .args(["-chardev", &format!("socket,id=vfs,path={}", fsd.socket.display())])
        .args(["-device", &format!("vhost-user-fs-pci,chardev=vfs,tag={TAG}")])
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(spec.vmlinuz)
        .arg("-initrd")
        .arg(spec.initramfs)
        .args(["-append", &spec.append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut log = File::create(spec.log).with_context(|| format!("creating {}", spec.log.display()))?;
    writeln!(log, "# {qemu:?}")?;
    let start = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64 (install qemu-system-x86)")?;

    let (tx, rx) = mpsc::channel();
    for r in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let s = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                if tx.send(Line::Text(s)).is_err() {
                    return;
                }
                buf.clear();
            }
            let _ = tx.send(Line::Eof);
        });
    }
    drop(tx);

    let deadline = start + spec.timeout;
    let mut out = Outcome::default();
    let mut running = false;
    let mut eofs = 0;
    let mut last = String::new();
    while eofs < 2 {
        let now = Instant::now();
        // after the exit marker only the power-off remains
        let until = if out.exit.is_some() { deadline.min(now + Duration::from_secs(30)) } else { deadline };
        let line = match rx.recv_timeout(until.saturating_duration_since(now)) {
            Ok(Line::Text(s)) => s,
            Ok(Line::Eof) => {
                eofs += 1;
                continue;
            }
            Err(_) => {
                if out.exit.is_none() {
                    out.problem = Some(format!("timed out after {} s (qemu killed)", spec.timeout.as_secs()));
                }
                let _ = child.kill();
                break;
            }
        };
        let t = start.elapsed();
        // host seconds since qemu started: boot and command phases at a glance
        writeln!(log, "{:8.3} {line}", t.as_secs_f64())?;
        if line.contains("VMTEST-INIT ") && out.init_at.is_none() {
            out.init_at = Some(t);
        } else if line.contains("VMTEST-RUN ") && out.run_at.is_none() {
            out.run_at = Some(t);
            running = true;
        } else if let Some(i) = line.find("VMTEST-SETUP-FAILED ") {
            out.problem = Some(format!("VM setup failed: {}", &line[i + 20..]));
        } else if line.contains("VMTEST-DONE ") {
            running = false;
        } else if let Some(i) = line.find("VMTEST-EXIT ") {
            running = false;
            out.exit = line[i + 12..].trim().parse().ok();
        } else if running {
            out.output.push(line.clone());
        }
        if !line.trim().is_empty() {
            last = line;
        }
    }
    let status = child.wait()?;
    out.total = start.elapsed();
    fsd.stop();
    if out.exit.is_none() && out.problem.is_none() {
        out.problem = Some(format!("qemu ended ({status}) without an exit marker; last console line: {last}"));
    }
    log.flush()?;
    Ok(out)
}

/// The C virtiofsd of qemu 7.2 has no read-only option, so virtiofsd is started in
/// a mount namespace of its own where its shared directory is a recursive
/// bind of `/` made read-only with mount_setattr(AT_RECURSIVE): writes from
/// the guest fail with EROFS on the host side, whatever the guest mounts.
struct Virtiofsd {
    child: Option<Child>,
    socket: PathBuf,
}

impl Virtiofsd {
    fn start(rundir: &Path) -> Result<Virtiofsd> {
        let root = rundir.join("root");
        let socket = rundir.join("vfs.sock");
        fs::create_dir_all(&root)?;
        let _ = fs::remove_file(&socket);
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let (slash, target) = (c(Path::new("/")), c(&root));
        let errlog = File::create(rundir.join("virtiofsd.log"))?;
        // cache=always: nothing on the host changes while the VM runs, and
        // revalidating every lookup costs seconds per exec under TCG
        let mut cmd;
        if Path::new(VIRTIOFSD_C).exists() {
            cmd = Command::new(VIRTIOFSD_C);
            cmd.arg(format!("--socket-path={}", socket.display()))
                .args(["-o", &format!("source={}", root.display())])
                .args(["-o", "cache=always", "-o", "log_level=warn"]);
        } else {
            // not exercised on our (Debian 12) machines
            cmd = Command::new(VIRTIOFSD_RUST);
            cmd.arg(format!("--socket-path={}", socket.display()))
                .arg(format!("--shared-dir={}", root.display()))
                .args(["--cache=always", "--log-level=warn"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(errlog.try_clone()?)
            .stderr(errlog);
        // SAFETY: only async-signal-safe syscalls on memory prepared before fork.
        unsafe {
            cmd.pre_exec(move || {
                let err = || Err(std::io::Error::last_os_error());
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return err();
                }
                let none = std::ptr::null();
                if libc::mount(none, slash.as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                    return err();
                }
                if libc::mount(slash.as_ptr(), target.as_ptr(), none, libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
                    return err();
                }
                // struct mount_attr { attr_set, attr_clr, propagation, userns_fd }
                let attr: [u64; 4] = [1 /* MOUNT_ATTR_RDONLY */, 0, 0, 0];
                const AT_RECURSIVE: libc::c_long = 0x8000;
                let r = libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD as libc::c_long,
                    target.as_ptr(),
                    AT_RECURSIVE,
                    attr.as_ptr(),
                    std::mem::size_of_val(&attr),
                );
                if r != 0 {
                    return err();
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?} (run scripts/install-deps.sh)"))?;
        let mut fsd = Virtiofsd { child: Some(child), socket };
        let t = Instant::now();
        while !fsd.socket.exists() {
            if let Some(st) = fsd.child.as_mut().unwrap().try_wait()? {
                let log = fs::read_to_string(rundir.join("virtiofsd.log")).unwrap_or_default();
                bail!("virtiofsd exited ({st}) before listening: {}", log.trim());
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("virtiofsd did not create {} in 10 s", fsd.socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(fsd)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // it exits by itself when qemu disconnects; give it a moment
            for _ in 0..50 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        self.stop();
    }
}
