//! What an exec'd file is, whatever it is called: a shell (or another
//! program the rules name in `exe_is:`) recognised by identity, by content
//! or, for busybox and toybox, by the applet it was asked to be. Owns the
//! known files, the content cache and the Exec event's `exe_is` field.
//!
//! - **identity**: the (dev, ino) of each named program found at start in
//!   `/etc/shells`, `$PATH` and the usual bin directories (symlinks
//!   resolved), so a hard link under another name is known.
//! - **content**: a copy has its own inode. Its SHA-256 is compared with
//!   the known files' (hashed once, when first needed), read only when its
//!   size equals a known file's size, and cached per (dev, ino, size,
//!   mtime) in a bounded cache ([`CACHE_MAX`], evictions counted). The file
//!   read is `/proc/<pid>/exe` (a memfd or a deleted file has no other
//!   name), or the exec'd path when the process is already gone or the exec
//!   was refused; a memfd whose shell is already gone, from the fd its
//!   parent (or the process itself) still holds. On an overlayfs whose stat(2) shows the real layer's
//!   (dev, ino) rather than the overlay inode's the kernel saw, the
//!   overlay's device and the path stand in for the identity check.
//! - **applet**: a busybox or toybox binary (known either way) is what its
//!   argv\[0]'s basename says (`argv[1]` for `busybox sh`).
//!
//! A recompiled or patched shell has other bytes and another size: this
//! does not recognise it (rules/README.md, "What `exe_is` does not see").

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Multicall binaries: one file, many programs, chosen by argv\[0].
pub const MULTICALL: &[&str] = &["busybox", "toybox"];
/// Cached content verdicts at most; the oldest-inserted is not tracked, an
/// arbitrary entry makes room (evictions are counted).
pub const CACHE_MAX: usize = 4096;
/// Directories searched for executables besides `$PATH`.
const BIN_DIRS: &[&str] = &["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"];

/// The Exec event's `exe_is` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExeIs {
    /// The program it is: `bash`, `dash`, or a multicall binary's applet (`sh`).
    pub name: String,
    /// `identity` (the known file or a hard link of it), `content` (a copy:
    /// same bytes) or `applet` (a multicall binary, by argv\[0]).
    pub by: &'static str,
    /// `busybox` or `toybox` when `by` is `applet`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multicall: Option<&'static str>,
}

/// One known program's file.
#[derive(Debug)]
struct Known {
    name: String,
    path: PathBuf,
    size: u64,
    hash: OnceLock<Option<[u8; 32]>>,
}

impl Known {
    fn hash(&self) -> Option<[u8; 32]> {
        *self.hash.get_or_init(|| std::fs::File::open(&self.path).ok().and_then(|f| sha256(f, self.size)))
    }
}

/// What the agent found at start, and the content cache.
#[derive(Debug, Default)]
pub struct Classifier {
    /// Names asked for (the rule set's `exe_is:` values), for rebuilds.
    names: Vec<String>,
    /// (st_dev as stat(2) encodes it, ino) -> index in `known`.
    by_id: HashMap<(u64, u64), usize>,
    known: Vec<Known>,
    /// (dev, ino, size, mtime ns) of a candidate -> index in `known`, or
    /// `None`: same size, other bytes.
    cache: HashMap<(u64, u64, u64, i64), Option<usize>>,
    pub evictions: u64,
    /// Files read for their content (cache misses).
    pub hashed: u64,
}

/// What the pipeline knows of one exec.
pub struct ExecFacts<'a> {
    pub pid: u32,
    /// Its parent: a memfd's other holder, usually (`fd_holding`).
    pub ppid: u32,
    /// The executed file's path as the kernel resolved it.
    pub exe: &'a str,
    /// The event's identity: dev in stat(2)'s encoding, as events carry it.
    pub dev: u64,
    pub ino: u64,
    /// The file's size as the kernel saw it at exec (`None`: not known):
    /// a size no known program has settles it without opening the file.
    pub size: Option<u64>,
    pub argv: &'a [String],
    /// A memfd or a deleted file: only `/proc/<pid>/exe` reaches it.
    pub fileless: bool,
    /// The kernel refused the exec (BPF LSM): `/proc/<pid>/exe` is still
    /// the old image, the path is what was refused.
    pub refused: bool,
}

fn sha256(mut f: impl Read, size: u64) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    (total == size).then(|| h.finalize().into())
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Where a program named `name` may be: `/etc/shells` entries with that
/// basename, then `name` in the bin directories and `$PATH`.
fn candidates(name: &str, shells: &[String], path_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = shells.iter().filter(|s| basename(s) == name).map(PathBuf::from).collect();
    out.extend(path_dirs.iter().map(|d| d.join(name)));
    out
}

/// [`BIN_DIRS`] and the absolute directories of `$PATH`, sorted, once each.
pub(crate) fn path_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = BIN_DIRS.iter().map(PathBuf::from).collect();
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p).filter(|d| d.is_absolute()));
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

impl Classifier {
    /// Finds the files of `names` (plus the multicall binaries) on this
    /// system: `/etc/shells`, the bin directories and `$PATH`.
    pub fn new(names: &[String]) -> Classifier {
        let shells: Vec<String> = std::fs::read_to_string("/etc/shells")
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('/'))
            .map(str::to_owned)
            .collect();
        let dirs = path_dirs();
        Classifier::from_files(names, |name| candidates(name, &shells, &dirs))
    }

    /// [`Classifier::new`] with the places to look given (tests).
    pub fn from_files(names: &[String], mut places: impl FnMut(&str) -> Vec<PathBuf>) -> Classifier {
        let mut c = Classifier { names: names.to_vec(), ..Default::default() };
        let all = names.iter().map(String::as_str).chain(MULTICALL.iter().copied());
        for name in all {
            for p in places(name) {
                let Ok(real) = std::fs::canonicalize(&p) else { continue };
                let Ok(m) = std::fs::metadata(&real) else { continue };
                if !m.is_file() || c.by_id.contains_key(&(m.dev(), m.ino())) {
                    continue;
                }
                // /bin/sh -> dash is `dash` when dash is asked for too
                let real_name = real.file_name().and_then(|n| n.to_str()).unwrap_or(name);
                let asked = |n: &str| names.iter().any(|x| x == n) || MULTICALL.contains(&n);
                let name = if asked(real_name) { real_name } else { name };
                c.by_id.insert((m.dev(), m.ino()), c.known.len());
                c.known.push(Known { name: name.to_owned(), path: real, size: m.len(), hash: OnceLock::new() });
            }
        }
        c
    }

    /// The names this was built for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The known files: (name, path).
    pub fn known(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.known.iter().map(|k| (k.name.as_str(), k.path.as_path()))
    }

    /// What the exec'd file is, if it is one of the known programs.
    pub fn classify(&mut self, x: &ExecFacts<'_>) -> Option<ExeIs> {
        let (i, by) = match self.by_id.get(&(x.dev, x.ino)) {
            Some(&i) => (i, "identity"),
            None => (self.by_content(x)?, "content"),
        };
        let name = self.known[i].name.as_str();
        let Some(&multi) = MULTICALL.iter().find(|m| **m == name) else {
            return Some(ExeIs { name: name.to_owned(), by, multicall: None });
        };
        Some(ExeIs { name: applet(x.argv)?, by: "applet", multicall: Some(multi) })
    }

    fn by_content(&mut self, x: &ExecFacts<'_>) -> Option<usize> {
        if x.size.is_some_and(|s| !self.known.iter().any(|k| k.size == s)) {
            return None;
        }
        let proc_exe = format!("/proc/{}/exe", x.pid);
        // only the exec'd file itself: by the time the agent reads it the
        // process may have exec'd again (`env` -> `bash`), and
        // /proc/<pid>/exe is then the next program
        let open = |p: &str, mounts: &str| {
            let f = std::fs::File::open(p).ok()?;
            let m = f.metadata().ok()?;
            let same = (m.dev() == x.dev && m.ino() == x.ino)
                || (overlay_dev(&f, mounts) == Some(x.dev) && (p == x.exe || readlink(p).as_deref() == Some(x.exe)));
            same.then_some((f, m))
        };
        let proc_mounts = format!("/proc/{}/mountinfo", x.pid);
        let own_mounts = "/proc/self/mountinfo";
        let (f, m) = if x.refused {
            open(x.exe, own_mounts)
        } else if x.fileless {
            // a short-lived memfd shell may be gone: the memfd is then
            // still open in whoever made it, most often the parent
            open(&proc_exe, &proc_mounts).or_else(|| {
                let held = fd_holding(x.ppid, x.dev, x.ino).or_else(|| fd_holding(x.pid, x.dev, x.ino))?;
                let f = std::fs::File::open(held).ok()?;
                let m = f.metadata().ok()?;
                Some((f, m))
            })
        } else {
            open(&proc_exe, &proc_mounts).or_else(|| open(x.exe, own_mounts))
        }?;
        let size = m.len();
        if !self.known.iter().any(|k| k.size == size) {
            return None;
        }
        let key = (m.dev(), m.ino(), size, m.mtime() * 1_000_000_000 + m.mtime_nsec());
        if let Some(&v) = self.cache.get(&key) {
            return v;
        }
        self.hashed += 1;
        let hash = sha256(f, size);
        let found = hash.and_then(|h| self.known.iter().position(|k| k.size == size && k.hash() == Some(h)));
        if self.cache.len() >= CACHE_MAX {
            if let Some(k) = self.cache.keys().next().copied() {
                self.cache.remove(&k);
                self.evictions += 1;
            }
        }
        self.cache.insert(key, found);
        found
    }
}

/// The `/proc/<pid>/fd/N` of process `pid` that is the file (dev, ino),
/// found by stat(2) (which never blocks, unlike an open of a FIFO); `None`
/// when it holds no such file or is gone.
fn fd_holding(pid: u32, dev: u64, ino: u64) -> Option<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten().map(|e| e.path()).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.dev() == dev && m.ino() == ino)
    })
}

fn readlink(p: &str) -> Option<String> {
    std::fs::read_link(p).ok()?.into_os_string().into_string().ok()
}

/// The device (stat(2) encoding) of the overlayfs mount `f` is on, as the
/// kernel's inode carries it; `None` when `f` is on no overlay.
/// `mountinfo` is the mount table of the namespace `f` was opened in.
///
/// overlayfs whose layers are on different filesystems and without
/// `xino` (Debian's 5.10 default) reports the real file's dev and ino to
/// stat(2), while the kernel's exec record carries the overlay inode's:
/// the (dev, ino) check cannot match there, so the caller checks the
/// overlay's own device and the path instead (fs/overlayfs/inode.c,
/// `ovl_getattr`; STATX_MNT_ID is Linux 5.8).
fn overlay_dev(f: &std::fs::File, mountinfo: &str) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: statx writes at most size_of::<statx>() bytes into `sx`, and
    // the empty path with AT_EMPTY_PATH names the open fd itself
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statx(f.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_MNT_ID, &mut sx) };
    if r != 0 || sx.stx_mask & libc::STATX_MNT_ID == 0 {
        return None;
    }
    let text = std::fs::read_to_string(mountinfo).ok()?;
    overlay_dev_in(&text, sx.stx_mnt_id)
}

/// The `maj:min` of mount `mnt_id` in a mountinfo text when its type is
/// overlay (proc(5): `id parent maj:min root point options... - type ...`).
fn overlay_dev_in(mountinfo: &str, mnt_id: u64) -> Option<u64> {
    mountinfo.lines().find_map(|l| {
        let mut f = l.split(' ');
        (f.next()?.parse::<u64>().ok()? == mnt_id).then_some(())?;
        let majmin = f.nth(1)?;
        let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
        (fstype == "overlay").then_some(())?;
        let (maj, min) = majmin.split_once(':')?;
        Some(libc::makedev(maj.parse().ok()?, min.parse().ok()?))
    })
}

/// The applet a multicall binary runs: argv\[0]'s basename (a login
/// shell's leading `-` dropped), or argv\[1] when argv\[0] names the
/// multicall binary itself (`busybox sh -c ...`).
fn applet(argv: &[String]) -> Option<String> {
    let first = basename(argv.first()?).trim_start_matches('-');
    let name = if MULTICALL.contains(&first) { basename(argv.get(1)?) } else { first };
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        crate::test_dir(&format!("exe-is-{tag}"))
    }

    fn facts<'a>(exe: &'a str, m: &std::fs::Metadata, argv: &'a [String]) -> ExecFacts<'a> {
        // a pid that is not running: the path is read
        ExecFacts { pid: u32::MAX, ppid: u32::MAX, exe, dev: m.dev(), ino: m.ino(), size: None, argv, fileless: false, refused: false }
    }

    /// A memfd shell that is already gone: its content is read from the
    /// fd its parent (here, this test) still holds.
    #[test]
    fn a_gone_memfd_exec_is_read_from_its_parents_fd() {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        let d = tmpdir("memfd");
        let bash = d.join("bash");
        std::fs::write(&bash, b"#!fake bash for a memfd, sized\n").unwrap();
        let mut c = Classifier::from_files(&argv(&["bash"]), |n| vec![d.join(n)]);
        // SAFETY: memfd_create returns a new fd this File then owns
        let fd = unsafe { libc::memfd_create(c"x".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        let mut mem = unsafe { std::fs::File::from_raw_fd(fd) };
        mem.write_all(&std::fs::read(&bash).unwrap()).unwrap();
        let m = mem.metadata().unwrap();
        let a = argv(&["x", "-c", "true"]);
        let mut x = ExecFacts { pid: u32::MAX, ppid: std::process::id(), exe: "/memfd:x", dev: m.dev(), ino: m.ino(), size: None, argv: &a, fileless: true, refused: false };
        assert_eq!(c.classify(&x), Some(ExeIs { name: "bash".into(), by: "content", multicall: None }));
        // the control: no process holds it, nothing to read
        x.ppid = u32::MAX;
        let mut fresh = Classifier::from_files(&argv(&["bash"]), |n| vec![d.join(n)]);
        assert_eq!(fresh.classify(&x), None);
    }

    #[test]
    fn overlay_mounts_are_found_by_id_and_type() {
        let mi = "26 1 0:21 / / ro,relatime shared:1 - virtiofs hostroot rw\n\
                  31 26 0:31 / /root rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b\n";
        assert_eq!(overlay_dev_in(mi, 31), Some(libc::makedev(0, 31)));
        assert_eq!(overlay_dev_in(mi, 26), None, "a mount of another type");
        assert_eq!(overlay_dev_in(mi, 7), None, "no such mount");
        assert_eq!(overlay_dev_in("garbage\n31 x\n", 31), None);
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identity_content_and_applet() {
        let d = tmpdir("kinds");
        let bash = d.join("bash");
        std::fs::write(&bash, b"#!fake bash, long enough to be a size\n").unwrap();
        let busybox = d.join("busybox");
        std::fs::write(&busybox, b"fake busybox").unwrap();
        let link = d.join("hard");
        std::fs::hard_link(&bash, &link).unwrap();
        let copy = d.join("x");
        std::fs::copy(&bash, &copy).unwrap();
        let other = d.join("y"); // same size, other bytes
        std::fs::write(&other, b"#!fake zzzz, long enough to be a size\n").unwrap();
        let bb_copy = d.join("cache-thing");
        std::fs::copy(&busybox, &bb_copy).unwrap();
        let names = argv(&["bash", "sh"]);
        let mut c = Classifier::from_files(&names, |n| vec![d.join(n)]);
        assert_eq!(c.known().count(), 2, "bash and busybox found, sh is not there");

        let md = |p: &Path| std::fs::metadata(p).unwrap();
        let a = argv(&["x", "-c", "true"]);
        let got = |c: &mut Classifier, p: &Path, a: &[String]| c.classify(&facts(p.to_str().unwrap(), &md(p), a));
        assert_eq!(got(&mut c, &link, &a), Some(ExeIs { name: "bash".into(), by: "identity", multicall: None }));
        assert_eq!(got(&mut c, &copy, &a), Some(ExeIs { name: "bash".into(), by: "content", multicall: None }));
        assert_eq!(got(&mut c, &other, &a), None, "same size, other bytes");
        assert_eq!(c.hashed, 2);
        assert_eq!(got(&mut c, &copy, &a), Some(ExeIs { name: "bash".into(), by: "content", multicall: None }));
        assert_eq!(c.hashed, 2, "the second look is cached");
        // the kernel's size at exec decides first: a size no known program
        // has is settled without the file (the copy's content is bash's)
        let sized = |size| ExecFacts { size: Some(size), ..facts(copy.to_str().unwrap(), &md(&copy), &a) };
        assert_eq!(c.classify(&sized(md(&copy).len())).map(|x| x.by), Some("content"));
        assert_eq!(c.classify(&sized(md(&copy).len() + 1)), None);

        let sh = argv(&["-sh"]);
        let want = Some(ExeIs { name: "sh".into(), by: "applet", multicall: Some("busybox") });
        assert_eq!(got(&mut c, &bb_copy, &sh), want, "a renamed copy run as sh");
        assert_eq!(got(&mut c, &busybox, &argv(&["/tmp/busybox", "sh", "-c", "id"])), want);
        assert_eq!(got(&mut c, &busybox, &argv(&["busybox"])), None, "no applet named");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_later_image_of_the_pid_is_not_this_exec() {
        // `env bash`: the agent sees env's exec after the pid became bash
        let d = tmpdir("later");
        let env = d.join("env");
        std::fs::write(&env, b"not a shell").unwrap();
        let mut c = Classifier::from_files(&argv(&["sleep"]), |_| vec![PathBuf::from("/bin/sleep")]);
        assert_eq!(c.known().count(), 1, "/bin/sleep is there");
        let mut child = std::process::Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let m = std::fs::metadata(&env).unwrap();
        let a = argv(&["env", "sleep", "30"]);
        let x = ExecFacts { pid: child.id(), ppid: std::process::id(), exe: env.to_str().unwrap(), dev: m.dev(), ino: m.ino(), size: None, argv: &a, fileless: false, refused: false };
        let got = c.classify(&x);
        // positive control: the same pid, asked about the file it does run, is sleep
        let s = std::fs::metadata("/proc/self/exe").map(|_| std::fs::metadata(format!("/proc/{}/exe", child.id())).unwrap()).unwrap();
        let b = argv(&["sleep", "30"]);
        let y = ExecFacts { pid: child.id(), ppid: std::process::id(), exe: "/bin/sleep", dev: s.dev(), ino: s.ino(), size: None, argv: &b, fileless: false, refused: false };
        let control = c.classify(&y);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(got, None, "env's exec is not sleep because its pid runs sleep now");
        assert!(matches!(control, Some(ExeIs { ref name, .. }) if name == "sleep"), "{control:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn cache_is_bounded_and_counts_evictions() {
        let d = tmpdir("cache");
        let bash = d.join("bash");
        std::fs::write(&bash, b"12345678").unwrap();
        let mut c = Classifier::from_files(&argv(&["bash"]), |n| vec![d.join(n)]);
        for i in 0..CACHE_MAX {
            c.cache.insert((0, i as u64, 8, 0), None);
        }
        let p = d.join("y");
        std::fs::write(&p, b"abcdefgh").unwrap();
        let a = argv(&["y"]);
        assert_eq!(c.classify(&facts(p.to_str().unwrap(), &std::fs::metadata(&p).unwrap(), &a)), None);
        assert_eq!(c.cache.len(), CACHE_MAX);
        assert_eq!(c.evictions, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn applet_names() {
        assert_eq!(applet(&argv(&["/usr/bin/sh"])).as_deref(), Some("sh"));
        assert_eq!(applet(&argv(&["busybox", "ash"])).as_deref(), Some("ash"));
        assert_eq!(applet(&argv(&["toybox"])), None);
        assert_eq!(applet(&[]), None);
    }
}
