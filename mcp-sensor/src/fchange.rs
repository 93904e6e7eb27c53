//! File changes without an open for writing: rename, link, symlink and
//! truncate (fchange.bpf.c). Owns reading their record (the caller's
//! strings made absolute with the base directory the kernel resolved) and
//! the event they become: kind `rename`, `link`, `symlink` or `truncate`,
//! with `op` the syscall (docs/events.md).

use crate::abi;
use crate::decode::{self, Header};
use crate::event::{Body, Change};

/// A decoded change record.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    pub h: Header,
    pub ret: i32,
    /// `abi::SYS_RENAME` .. `abi::SYS_FTRUNCATE`.
    pub syscall: u32,
    /// The name replaced or created, or the file truncated; absolute when
    /// the kernel resolved its base.
    pub path: String,
    /// rename, link: the old name; symlink: the target as written.
    pub source: Option<String>,
    pub rflags: u32,
    pub length: u64,
    pub dev: u32,
    pub ino: u64,
    /// A name's bytes were not UTF-8 (shown with U+FFFD).
    pub invalid_utf8: bool,
}

/// `base` joined with the relative `rel`; `.` components and empty ones
/// are dropped (`..` is kept: the sensor does not guess through links).
fn join(base: &str, rel: &str) -> String {
    let mut out = base.trim_end_matches('/').to_string();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn bytes(buf: &[u8], len: u16) -> String {
    String::from_utf8_lossy(&buf[..(len as usize).min(buf.len())]).into_owned()
}

pub fn decode(r: &abi::ms_fchange, h: Header) -> ChangeRecord {
    let dir = ((r.dir_off as usize) < abi::PATH_MAX).then(|| decode::kernel_path(&r.dir, r.dir_off, abi::PATH_MAX));
    let not_utf8 = |b: &[u8], len: u16| std::str::from_utf8(&b[..(len as usize).min(b.len())]).is_err();
    let invalid_utf8 = dir.as_ref().is_some_and(|d| d.invalid_utf8) || not_utf8(&r.path, r.path_len) || not_utf8(&r.source, r.source_len);
    let base = dir.map(|d| d.path);
    let given = bytes(&r.path, r.path_len);
    let rel = |s: String, same_base: bool| match &base {
        Some(b) if same_base && !s.starts_with('/') => join(b, &s),
        _ => s,
    };
    let path = if r.syscall == abi::SYS_FTRUNCATE { base.clone().unwrap_or_default() } else { rel(given, true) };
    let source = match r.syscall {
        abi::SYS_TRUNCATE | abi::SYS_FTRUNCATE => None,
        // a symlink's target is text, relative to the link's directory
        abi::SYS_SYMLINK | abi::SYS_SYMLINKAT => Some(bytes(&r.source, r.source_len)),
        _ => Some(rel(bytes(&r.source, r.source_len), r.src_dirfd == r.dirfd)),
    };
    ChangeRecord {
        h,
        ret: r.ret,
        syscall: r.syscall,
        path,
        source,
        rflags: r.rflags,
        length: r.length,
        dev: r.dev,
        ino: r.ino,
        invalid_utf8,
    }
}

fn op_name(sys: u32) -> &'static str {
    match sys {
        abi::SYS_RENAME => "rename",
        abi::SYS_RENAMEAT => "renameat",
        abi::SYS_RENAMEAT2 => "renameat2",
        abi::SYS_LINK => "link",
        abi::SYS_LINKAT => "linkat",
        abi::SYS_SYMLINK => "symlink",
        abi::SYS_SYMLINKAT => "symlinkat",
        abi::SYS_TRUNCATE => "truncate",
        abi::SYS_FTRUNCATE => "ftruncate",
        _ => "unknown",
    }
}

/// renameat2's RENAME_* and linkat's AT_* flags, symbolic.
fn op_flags(sys: u32, f: u32) -> Vec<&'static str> {
    let names: &[(u32, &str)] = match sys {
        abi::SYS_RENAMEAT2 => &[(1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT")],
        abi::SYS_LINKAT => &[(0x400, "AT_SYMLINK_FOLLOW"), (0x1000, "AT_EMPTY_PATH")],
        _ => &[],
    };
    names.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect()
}

/// The event a change record becomes.
pub fn body(c: ChangeRecord) -> Body {
    let truncate = matches!(c.syscall, abi::SYS_TRUNCATE | abi::SYS_FTRUNCATE);
    let ch = Change {
        op: op_name(c.syscall),
        resolved: c.syscall == abi::SYS_FTRUNCATE && c.ino != 0,
        path: c.path,
        source: c.source,
        ret: c.ret,
        error: decode::ret_error(c.ret),
        flags: op_flags(c.syscall, c.rflags),
        length: truncate.then_some(c.length),
        dev: if c.ino != 0 { abi::kdev_to_user(c.dev) as u32 } else { 0 },
        ino: c.ino,
        file_flags: decode::file_flags(c.h.flags, c.invalid_utf8),
    };
    match c.syscall {
        abi::SYS_LINK | abi::SYS_LINKAT => Body::Link(ch),
        abi::SYS_SYMLINK | abi::SYS_SYMLINKAT => Body::Symlink(ch),
        _ if truncate => Body::Truncate(ch),
        _ => Body::Rename(ch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sys: u32, dir: Option<&str>, path: &str, source: &str, dirfd: i32, src_dirfd: i32) -> abi::ms_fchange {
        // SAFETY: the abi mirrors are POD; all-zero is a valid value.
        let mut r: abi::ms_fchange = unsafe { std::mem::zeroed() };
        r.syscall = sys;
        r.dirfd = dirfd;
        r.src_dirfd = src_dirfd;
        r.dir_off = abi::PATH_MAX as u16;
        if let Some(d) = dir {
            let off = abi::PATH_MAX - d.len();
            r.dir[off..abi::PATH_MAX].copy_from_slice(d.as_bytes());
            r.dir_off = off as u16;
        }
        r.path[..path.len()].copy_from_slice(path.as_bytes());
        r.path_len = path.len() as u16;
        r.source[..source.len()].copy_from_slice(source.as_bytes());
        r.source_len = source.len() as u16;
        r
    }

    fn header() -> Header {
        Header { kind: abi::EV_FCHANGE, flags: 0, ts_ns: 0, pid: 1, tid: 1, ppid: 0, uid: 0, gid: 0, session: 1, start_ns: 0, comm: "node".into(), cgroup_id: 0, ns_pid: 1, ns_level: 0 }
    }

    #[test]
    fn relative_names_are_joined_with_the_resolved_base() {
        let r = rec(abi::SYS_RENAME, Some("/home/u/proj"), "./CLAUDE.md", "CLAUDE.md.1f2e.tmp", -100, -100);
        let c = decode(&r, header());
        assert_eq!(c.path, "/home/u/proj/CLAUDE.md");
        assert_eq!(c.source.as_deref(), Some("/home/u/proj/CLAUDE.md.1f2e.tmp"));
        // the source's base is another directory fd: left as given
        let r = rec(abi::SYS_RENAMEAT, Some("/home/u"), "x", "y", 5, 6);
        assert_eq!(decode(&r, header()).source.as_deref(), Some("y"));
        // absolute, and no base
        let r = rec(abi::SYS_LINK, None, "/home/u/.bashrc", "/tmp/k", -100, -100);
        let c = decode(&r, header());
        assert_eq!((c.path.as_str(), c.source.as_deref()), ("/home/u/.bashrc", Some("/tmp/k")));
    }

    #[test]
    fn symlink_targets_stay_text_and_truncates_have_no_source() {
        let r = rec(abi::SYS_SYMLINK, Some("/w"), "AGENTS.md", "../evil", -100, -100);
        let c = decode(&r, header());
        assert_eq!((c.path.as_str(), c.source.as_deref()), ("/w/AGENTS.md", Some("../evil")));
        assert!(matches!(body(c), Body::Symlink(ch) if ch.op == "symlink"));
        let r = rec(abi::SYS_FTRUNCATE, Some("/w/.bashrc"), "", "", -100, -100);
        let mut c = decode(&r, header());
        assert_eq!((c.path.as_str(), c.source.as_deref()), ("/w/.bashrc", None));
        c.ino = 7;
        let Body::Truncate(ch) = body(c) else { panic!() };
        assert!(ch.resolved && ch.op == "ftruncate" && ch.length == Some(0));
    }

    #[test]
    fn renameat2_flags_are_named() {
        let mut r = rec(abi::SYS_RENAMEAT2, None, "/a", "/b", -100, -100);
        r.rflags = 3;
        let Body::Rename(ch) = body(decode(&r, header())) else { panic!() };
        assert_eq!(ch.flags, ["RENAME_NOREPLACE", "RENAME_EXCHANGE"]);
    }
}
