//! Decode: ring-buffer record bytes to typed [`Record`]s.
//!
//! Owns the byte-level reading of the kernel's records (abi.h) and their
//! rendering into readable values (open flags, errno names, socket
//! addresses). Records are only 8-byte aligned in the ring: every struct is
//! read with `read_unaligned` after a length check, never by reference.

use crate::abi::{self, ms_header};
use bytes::Bytes;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The common head of every record, with `comm` made a string.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub kind: u32,
    pub flags: u32,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub session: u32,
    pub start_ns: u64,
    pub comm: String,
    /// The task's cgroup v2 id (identity.rs turns it into a container).
    pub cgroup_id: u64,
    /// Its process's pid in its own PID namespace, at `ns_level` (0: the
    /// initial namespace, where `ns_pid == pid`).
    pub ns_pid: u32,
    pub ns_level: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Fork { h: Header, child_pid: u32, child_start_ns: u64 },
    Exec(Box<Exec>),
    Exit { h: Header, status: u32 },
    IoUring { h: Header, fd: i32, sq_entries: u32, cq_entries: u32, flags: u32 },
    /// ptrace attach/seize, process_vm_readv/writev (`syscall`: abi SYS_*).
    Ptrace { h: Header, ret: i32, target: u32, syscall: u32, request: u32 },
    Open(Box<Open>),
    /// A rename, link, symlink or truncate (fchange.rs).
    Change(Box<crate::fchange::ChangeRecord>),
    Connect { h: Header, ret: i32, fd: u32, addr: SockAddr, via: NetVia },
    Stdio(Stdio),
    /// Discovery: the kernel rejected a candidate server (see abi.h).
    ChanReject { h: Header, chan: abi::ms_chan_key, dir: u8, byte: u8 },
}

impl Record {
    pub fn header(&self) -> &Header {
        match self {
            Record::Fork { h, .. }
            | Record::Exit { h, .. }
            | Record::IoUring { h, .. }
            | Record::Ptrace { h, .. }
            | Record::Connect { h, .. }
            | Record::ChanReject { h, .. } => h,
            Record::Exec(e) => &e.h,
            Record::Open(o) => &o.h,
            Record::Change(c) => &c.h,
            Record::Stdio(s) => &s.h,
        }
    }
}

/// How a connect record was seen (abi.h `MS_OP_*`, `MS_HOOK_*`, `MS_TR_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetVia {
    pub op: u8,
    pub hook: u8,
    pub transport: u8,
}

impl NetVia {
    /// The caller's operation: `connect`, `sendto`, `sendmsg`, `sendmmsg`,
    /// `io_uring`, or `other`.
    pub fn op_name(&self) -> &'static str {
        match self.op {
            abi::OP_CONNECT => "connect",
            abi::OP_SENDTO => "sendto",
            abi::OP_SENDMSG => "sendmsg",
            abi::OP_SENDMMSG => "sendmmsg",
            abi::OP_IO_URING => "io_uring",
            _ => "other",
        }
    }

    /// The program that saw it: `sys_connect` (connect(2)'s tracepoints)
    /// or `cgroup_connect4|6`, `cgroup_sendmsg4|6`.
    pub fn hook_name(&self) -> &'static str {
        match self.hook {
            abi::HOOK_SYS_CONNECT => "sys_connect",
            abi::HOOK_CONNECT4 => "cgroup_connect4",
            abi::HOOK_CONNECT6 => "cgroup_connect6",
            abi::HOOK_SENDMSG4 => "cgroup_sendmsg4",
            abi::HOOK_SENDMSG6 => "cgroup_sendmsg6",
            _ => "unknown",
        }
    }

    /// `tcp`, `udp`, `other`; `None` when no cgroup program saw the
    /// socket (unix sockets, or no cgroup v2).
    pub fn transport_name(&self) -> Option<&'static str> {
        match self.transport {
            abi::TR_TCP => Some("tcp"),
            abi::TR_UDP => Some("udp"),
            abi::TR_OTHER => Some("other"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    pub h: Header,
    pub exe: String,
    /// `exe` lost bytes: its whole length (kernel_path).
    pub exe_length: Option<u32>,
    /// exe, cwd, filename or argv had bytes that are not UTF-8.
    pub invalid_utf8: bool,
    pub cwd: String,
    pub filename: String,
    pub argv: Vec<String>,
    pub dev: u32,
    pub ino: u64,
    /// The executed file's size at exec, bytes.
    pub size: u64,
    /// The real parent's start, boot-time ns (the parent is `h.ppid`).
    pub parent_start_ns: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub h: Header,
    pub path: String,
    /// `path` lost bytes: its whole length (kernel_path).
    pub path_length: Option<u32>,
    /// The path's bytes were not UTF-8.
    pub invalid_utf8: bool,
    pub ret: i32,
    pub flags: u32,
    pub mode: u32,
    pub dev: u32,
    pub ino: u64,
    pub syscall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stdio {
    pub h: Header,
    pub chan: abi::ms_chan_key,
    pub dir: u8,
    pub offset: u64,
    pub fd: u32,
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    Inet { addr: Ipv4Addr, port: u16 },
    Inet6 { addr: Ipv6Addr, port: u16 },
    /// Path; abstract names are rendered with a leading `@`.
    Unix { path: String },
    /// Unnamed unix socket, or an address too short to read.
    Other { family: u16 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {kind} layout ({need} bytes)")]
    Short { kind: &'static str, len: usize, need: usize },
    #[error("record kind {0} is not known to this agent (ABI mismatch?)")]
    UnknownKind(u32),
}

fn read<T: Copy>(buf: &[u8], kind: &'static str) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if buf.len() < need {
        return Err(DecodeError::Short { kind, len: buf.len(), need });
    }
    // SAFETY: length checked above; T is a repr(C) POD mirror of abi.h, every
    // bit pattern is valid, and read_unaligned has no alignment demand.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) })
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// What stands for the components of a cut path that are not known:
/// `…/dddd/dddd/payload` when the walk did not reach the root (the path
/// never looks absolute, nor matches a rule's prefix it may not have),
/// `/tmp/x/…/dddd/payload` when it did (the leading components kept), and
/// after a kept component whose name was cut. The record's
/// `path_truncated` flag says so too.
pub const TRUNCATED_PREFIX: &str = "…";

/// A path the kernel built backwards into a path buffer, as a string.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelPath {
    pub path: String,
    /// When the path lost bytes: its whole length in bytes, if the walk
    /// reached the root (abi.h `struct ms_path_cut`).
    pub length: Option<u32>,
    /// Its bytes were not valid UTF-8 (shown with U+FFFD).
    pub invalid_utf8: bool,
}

/// `buf[off..end]` with the offset clamped into the buffer; when the
/// kernel marked it cut (the slack after `end` = MS_PATH_MAX is a
/// `struct ms_path_cut`), the leading components it learned, then
/// [`TRUNCATED_PREFIX`] for those it did not.
pub(crate) fn kernel_path(buf: &[u8], off: u16, end: usize) -> KernelPath {
    let off = (off as usize).min(end);
    let tail = String::from_utf8_lossy(&buf[off..end]);
    let mut invalid_utf8 = matches!(tail, std::borrow::Cow::Owned(_));
    let cut = (end == abi::PATH_MAX && buf.len() >= abi::PATH_BUF).then(|| read::<abi::ms_path_cut>(&buf[end..], "path cut").ok()).flatten();
    let Some(c) = cut.filter(|c| c.cut == 1) else {
        return KernelPath { path: tail.into_owned(), length: None, invalid_utf8 };
    };
    let gap = c.gap == 1;
    if !gap && (c.total == 0 || c.skipped == 0) {
        return KernelPath { path: format!("{TRUNCATED_PREFIX}{tail}"), length: None, invalid_utf8 };
    }
    let mut path = String::new();
    for (i, head) in c.head.iter().enumerate().take(c.skipped.min(2) as usize) {
        let end = head.iter().position(|&b| b == 0).unwrap_or(head.len());
        let name = String::from_utf8_lossy(&head[..end]);
        invalid_utf8 |= matches!(name, std::borrow::Cow::Owned(_));
        path.push('/');
        path.push_str(&name);
        if c.head_cut & (1 << i) != 0 {
            path.push_str(TRUNCATED_PREFIX);
        }
    }
    // a gap: the top is the mount point's path, what lies between unknown
    if c.skipped > 2 || gap {
        path.push('/');
        path.push_str(TRUNCATED_PREFIX);
    }
    path.push_str(&tail);
    KernelPath { path, length: (!gap).then_some(c.total), invalid_utf8 }
}

/// The bytes as UTF-8 (invalid sequences as U+FFFD), and whether any was.
fn lossy(b: &[u8]) -> (String, bool) {
    let s = String::from_utf8_lossy(b);
    let bad = matches!(s, std::borrow::Cow::Owned(_));
    (s.into_owned(), bad)
}

fn header(h: &ms_header) -> Header {
    Header {
        kind: h.kind,
        flags: h.flags,
        ts_ns: h.ts_ns,
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        session: h.session,
        start_ns: h.start_ns,
        comm: cstr(&h.comm),
        cgroup_id: h.cgroup_id,
        ns_pid: h.ns_pid,
        ns_level: h.ns_level,
    }
}

/// Decodes one ring-buffer record. `raw` is the record copied out of the
/// ring (stdio data is sliced from it without another copy).
pub fn decode(raw: &Bytes) -> Result<Record, DecodeError> {
    let buf = &raw[..];
    let h: ms_header = read(buf, "header")?;
    let hd = header(&h);
    Ok(match h.kind {
        abi::EV_FORK => {
            let f: abi::ms_fork = read(buf, "fork")?;
            Record::Fork { h: hd, child_pid: f.child_pid, child_start_ns: f.child_start_ns }
        }
        abi::EV_EXEC => {
            let e: abi::ms_exec = read(buf, "exec")?;
            let argv_len = (e.argv_len as usize).min(abi::ARGV_MAX);
            let mut invalid_utf8 = false;
            let mut argv: Vec<String> = e.argv[..argv_len]
                .split(|&b| b == 0)
                .map(|a| {
                    let (s, bad) = lossy(a);
                    invalid_utf8 |= bad;
                    s
                })
                .collect();
            // argv is NUL-terminated: drop the empty piece after the last NUL
            if argv.last().is_some_and(|a| a.is_empty()) {
                argv.pop();
            }
            let fname_len = (e.filename_len as usize).min(e.filename.len());
            let exe = kernel_path(&e.exe, e.exe_off, abi::PATH_MAX);
            let cwd = kernel_path(&e.cwd, e.cwd_off, abi::PATH_MAX);
            let (filename, bad) = lossy(&e.filename[..fname_len]);
            Record::Exec(Box::new(Exec {
                exe: exe.path,
                exe_length: exe.length,
                invalid_utf8: invalid_utf8 || bad || exe.invalid_utf8 || cwd.invalid_utf8,
                cwd: cwd.path,
                filename,
                argv,
                dev: e.dev,
                ino: e.ino,
                size: e.size,
                parent_start_ns: e.parent_start_ns,
                h: hd,
            }))
        }
        abi::EV_EXIT => {
            let e: abi::ms_exit = read(buf, "exit")?;
            Record::Exit { h: hd, status: e.exit_code }
        }
        abi::EV_IO_URING => {
            let u: abi::ms_io_uring = read(buf, "io_uring")?;
            Record::IoUring { h: hd, fd: u.fd, sq_entries: u.sq_entries, cq_entries: u.cq_entries, flags: u.flags }
        }
        abi::EV_PTRACE => {
            let p: abi::ms_ptrace = read(buf, "ptrace")?;
            Record::Ptrace { h: hd, ret: p.ret, target: p.target, syscall: p.syscall, request: p.request }
        }
        abi::EV_OPEN => {
            let o: abi::ms_open = read(buf, "open")?;
            let off = (o.path_off as usize).min(abi::PATH_BUF);
            let end = (off + o.path_len as usize).min(abi::PATH_BUF);
            let resolved = hd.flags & abi::F_UNRESOLVED == 0;
            // resolved: built backwards to MS_PATH_MAX, its cut marked
            // there; else the caller's string, cut at its end
            let path = if resolved && end == abi::PATH_MAX {
                kernel_path(&o.path, off as u16, end)
            } else {
                let (path, invalid_utf8) = lossy(&o.path[off..end]);
                KernelPath { path, length: None, invalid_utf8 }
            };
            Record::Open(Box::new(Open {
                path: path.path,
                path_length: path.length,
                invalid_utf8: path.invalid_utf8,
                ret: o.ret,
                flags: o.flags,
                mode: o.mode,
                dev: o.dev,
                ino: o.ino,
                syscall: o.syscall,
                h: hd,
            }))
        }
        abi::EV_FCHANGE => {
            let c: abi::ms_fchange = read(buf, "fchange")?;
            Record::Change(Box::new(crate::fchange::decode(&c, hd)))
        }
        abi::EV_CONNECT => {
            let c: abi::ms_connect = read(buf, "connect")?;
            let len = (c.addrlen as usize).min(abi::SOCKADDR_MAX);
            let via = NetVia { op: c.op, hook: c.hook, transport: c.transport };
            Record::Connect { h: hd, ret: c.ret, fd: c.fd, addr: sockaddr(&c.sockaddr[..len]), via }
        }
        abi::EV_STDIO => {
            let s: abi::ms_stdio = read(buf, "stdio")?;
            let start = std::mem::size_of::<abi::ms_stdio>();
            let need = start + s.len as usize;
            if raw.len() < need {
                return Err(DecodeError::Short { kind: "stdio", len: raw.len(), need });
            }
            Record::Stdio(Stdio {
                chan: abi::ms_chan_key { ino: s.chan_ino, dev: s.chan_dev, _pad: 0 },
                dir: s.dir,
                offset: s.offset,
                fd: s.fd,
                data: raw.slice(start..need),
                h: hd,
            })
        }
        abi::EV_CHAN_REJECT => {
            let r: abi::ms_chan_reject = read(buf, "chan_reject")?;
            let chan = abi::ms_chan_key { ino: r.chan_ino, dev: r.chan_dev, _pad: 0 };
            Record::ChanReject { h: hd, chan, dir: r.dir, byte: r.byte }
        }
        k => return Err(DecodeError::UnknownKind(k)),
    })
}

/// Decodes a sockaddr as the caller passed it (host-endian family, network
/// order port).
pub fn sockaddr(b: &[u8]) -> SockAddr {
    if b.len() < 2 {
        return SockAddr::Other { family: 0 };
    }
    let family = u16::from_ne_bytes([b[0], b[1]]);
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match family as i32 {
        libc::AF_INET if b.len() >= 8 => SockAddr::Inet {
            addr: Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            port: port(b),
        },
        libc::AF_INET6 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            SockAddr::Inet6 { addr: Ipv6Addr::from(a), port: port(b) }
        }
        libc::AF_UNIX if b.len() > 2 => {
            let p = &b[2..];
            if p[0] == 0 {
                let end = p.len();
                SockAddr::Unix { path: format!("@{}", String::from_utf8_lossy(&p[1..end]).trim_end_matches('\0')) }
            } else {
                SockAddr::Unix { path: cstr(p) }
            }
        }
        _ => SockAddr::Other { family },
    }
}

/// open(2) flags in symbolic form, access mode first.
pub fn open_flags(flags: u32) -> Vec<&'static str> {
    let mut out = vec![match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }];
    // __O_TMPFILE includes O_DIRECTORY, __O_SYNC includes O_DSYNC: test
    // the composite flags first and strip their bits.
    let mut rest = flags & !0o3;
    for (bit, name) in [(0o20200000, "O_TMPFILE"), (0o4010000, "O_SYNC")] {
        if rest & bit == bit {
            out.push(name);
            rest &= !bit;
        }
    }
    for (bit, name) in [
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o20000, "O_ASYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
    ] {
        if rest & bit != 0 {
            out.push(name);
        }
    }
    out
}

/// io_uring_setup(2) flags in symbolic form (linux/io_uring.h).
pub fn uring_flags(flags: u32) -> Vec<&'static str> {
    const NAMES: [&str; 17] = [
        "IORING_SETUP_IOPOLL", "IORING_SETUP_SQPOLL", "IORING_SETUP_SQ_AFF", "IORING_SETUP_CQSIZE",
        "IORING_SETUP_CLAMP", "IORING_SETUP_ATTACH_WQ", "IORING_SETUP_R_DISABLED", "IORING_SETUP_SUBMIT_ALL",
        "IORING_SETUP_COOP_TASKRUN", "IORING_SETUP_TASKRUN_FLAG", "IORING_SETUP_SQE128", "IORING_SETUP_CQE32",
        "IORING_SETUP_SINGLE_ISSUER", "IORING_SETUP_DEFER_TASKRUN", "IORING_SETUP_NO_MMAP",
        "IORING_SETUP_REGISTERED_FD_ONLY", "IORING_SETUP_NO_SQARRAY",
    ];
    (0..32).filter(|b| flags & (1 << b) != 0).map(|b| NAMES.get(b).copied().unwrap_or("IORING_SETUP_UNKNOWN")).collect()
}

/// Does an open with these flags intend to modify the file?
pub fn open_writes(flags: u32) -> bool {
    flags & 0o3 != 0 || flags & (0o100 | 0o1000) != 0
}

/// Name of a (positive) errno value, e.g. `ENOENT`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EISCONN => "EISCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ESTALE => "ESTALE",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}

/// Renders a kernel-style return value: `None` for success, the errno name
/// for `-errno`.
pub fn ret_error(ret: i32) -> Option<String> {
    (ret < 0).then(|| errno_name(-ret))
}

/// Splits a wait status as the kernel keeps it (exit_code) into
/// (exit code, signal).
pub fn wait_status(status: u32) -> (Option<i32>, Option<i32>) {
    let sig = (status & 0x7f) as i32;
    if sig == 0 {
        (Some(((status >> 8) & 0xff) as i32), None)
    } else {
        (None, Some(sig))
    }
}

/// Names for the MS_F_* bits that matter to a reader of an event, and
/// `invalid_utf8` when a path or argument was not UTF-8.
pub fn file_flags(flags: u32, invalid_utf8: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (bit, name) in [
        (abi::F_PATH_TRUNC, "path_truncated"),
        (abi::F_PSEUDO, "pseudo"),
        (abi::F_DELETED, "deleted"),
    ] {
        if flags & bit != 0 {
            out.push(name);
        }
    }
    if invalid_utf8 {
        out.push("invalid_utf8");
    }
    out
}

pub fn syscall_name(sys: u32) -> &'static str {
    match sys {
        abi::SYS_OPEN => "open",
        abi::SYS_OPENAT => "openat",
        abi::SYS_OPENAT2 => "openat2",
        abi::SYS_CREAT => "creat",
        abi::SYS_OPEN_BY_HANDLE_AT => "open_by_handle_at",
        abi::SYS_PTRACE => "ptrace",
        abi::SYS_PROCESS_VM_READV => "process_vm_readv",
        abi::SYS_PROCESS_VM_WRITEV => "process_vm_writev",
        _ => "unknown",
    }
}

/// The ptrace requests ptrace.bpf.c reports (linux/ptrace.h); `None` for
/// process_vm_* (request 0).
pub fn ptrace_request(req: u32) -> Option<&'static str> {
    match req {
        0 => None,
        16 => Some("PTRACE_ATTACH"),
        0x4206 => Some("PTRACE_SEIZE"),
        _ => Some("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    fn zeroed<T>() -> T {
        // SAFETY: the abi mirrors are POD; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    }

    fn as_bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a POD value.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }

    fn hdr(kind: u32) -> ms_header {
        let mut h: ms_header = zeroed();
        h.kind = kind;
        h.pid = 42;
        h.ppid = 1;
        h.comm[..3].copy_from_slice(b"cat");
        h
    }

    #[test]
    fn a_path_that_lost_its_leading_components_never_looks_absolute() {
        let mut e: abi::ms_exec = zeroed();
        e.h = hdr(abi::EV_EXEC);
        e.h.flags = abi::F_PATH_TRUNC;
        let exe = b"/dddd/dddd/payload";
        let off = abi::PATH_MAX - exe.len();
        e.exe[off..abi::PATH_MAX].copy_from_slice(exe);
        e.exe_off = off as u16;
        e.exe[abi::PATH_MAX] = 1; // the kernel's per-path mark (abi.h MS_PATH_BUF)
        e.cwd[abi::PATH_MAX - 1] = b'/';
        e.cwd_off = (abi::PATH_MAX - 1) as u16;
        let Record::Exec(x) = decode(&Bytes::from(as_bytes(&e))).unwrap() else { panic!("not exec") };
        assert_eq!(x.exe, "…/dddd/dddd/payload", "the kept part keeps the basename and says it was cut");
        assert_eq!(x.exe_length, None, "the walk did not reach the root: no length");
        assert_eq!(x.cwd, "/", "the other path of the record was not cut");
    }

    /// A struct ms_path_cut in the slack after a path of `tail`.
    fn cut_path(tail: &[u8], skipped: u8, total: u32, heads: &[&[u8]], head_cut: u8) -> Vec<u8> {
        let mut buf = vec![0u8; abi::PATH_BUF];
        buf[abi::PATH_MAX - tail.len()..abi::PATH_MAX].copy_from_slice(tail);
        let mut c: abi::ms_path_cut = zeroed();
        c.cut = 1;
        c.skipped = skipped;
        c.total = total;
        c.head_cut = head_cut;
        for (i, h) in heads.iter().enumerate() {
            c.head[i][..h.len()].copy_from_slice(h);
        }
        buf[abi::PATH_MAX..].copy_from_slice(&as_bytes(&c));
        buf
    }

    #[test]
    fn a_cut_path_keeps_the_leading_components_the_walk_learned_and_its_length() {
        let tail = b"/dddd/payload";
        let off = (abi::PATH_MAX - tail.len()) as u16;
        let p = |skipped, heads: &[&[u8]], head_cut| kernel_path(&cut_path(tail, skipped, 5123, heads, head_cut), off, abi::PATH_MAX);
        let k = p(255, &[b"tmp", b"t-1"], 0);
        assert_eq!((k.path.as_str(), k.length), ("/tmp/t-1/…/dddd/payload", Some(5123)));
        // one or two components above the copy: the path is whole
        assert_eq!(p(1, &[b"tmp"], 0).path, "/tmp/dddd/payload");
        assert_eq!(p(2, &[b"tmp", b"t-1"], 0).path, "/tmp/t-1/dddd/payload");
        // a component's name longer than the head keeps: marked
        assert_eq!(p(3, &[b"tmp", b"long"], 2).path, "/tmp/long…/…/dddd/payload");
        // not cut: the slack is not read
        let mut whole = cut_path(tail, 0, 0, &[], 0);
        whole[abi::PATH_MAX] = 0;
        assert_eq!(kernel_path(&whole, off, abi::PATH_MAX), KernelPath { path: "/dddd/payload".into(), length: None, invalid_utf8: false });
    }

    #[test]
    fn a_compat_cut_with_a_gap_keeps_its_mount_point_and_has_no_length() {
        let tail = b"/dddd/payload";
        let off = (abi::PATH_MAX - tail.len()) as u16;
        let gap = |skipped, heads: &[&[u8]]| {
            let mut buf = cut_path(tail, skipped, 0, heads, 0);
            buf[abi::PATH_MAX + std::mem::offset_of!(abi::ms_path_cut, gap)] = 1;
            kernel_path(&buf, off, abi::PATH_MAX)
        };
        let k = gap(1, &[b"tmp"]);
        assert_eq!((k.path.as_str(), k.length), ("/tmp/…/dddd/payload", None));
        assert_eq!(gap(2, &[b"dev", b"shm"]).path, "/dev/shm/…/dddd/payload");
        assert_eq!(gap(4, &[b"run", b"user"]).path, "/run/user/…/dddd/payload");
        // on the root's own mount: only that it is absolute
        assert_eq!(gap(0, &[]).path, "/…/dddd/payload");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_flagged() {
        let tail = b"/tmp/\xff\xfe";
        let mut buf = cut_path(tail, 0, 0, &[], 0);
        buf[abi::PATH_MAX] = 0;
        let k = kernel_path(&buf, (abi::PATH_MAX - tail.len()) as u16, abi::PATH_MAX);
        assert!(k.invalid_utf8 && k.path.starts_with("/tmp/\u{fffd}"), "{k:?}");
        let mut e: abi::ms_exec = zeroed();
        e.h = hdr(abi::EV_EXEC);
        e.exe[abi::PATH_MAX - 4..abi::PATH_MAX].copy_from_slice(b"/cat");
        e.exe_off = (abi::PATH_MAX - 4) as u16;
        e.cwd_off = (abi::PATH_MAX - 1) as u16;
        e.cwd[abi::PATH_MAX - 1] = b'/';
        let Record::Exec(x) = decode(&Bytes::from(as_bytes(&e))).unwrap() else { panic!() };
        assert!(!x.invalid_utf8, "the control");
        e.argv[..4].copy_from_slice(b"c\xffa\0");
        e.argv_len = 4;
        let Record::Exec(x) = decode(&Bytes::from(as_bytes(&e))).unwrap() else { panic!() };
        assert!(x.invalid_utf8, "argv");
        assert_eq!(file_flags(0, x.invalid_utf8), ["invalid_utf8"]);
    }

    #[test]
    fn exec_record_reads_backwards_paths_and_argv() {
        let mut e: abi::ms_exec = zeroed();
        e.h = hdr(abi::EV_EXEC);
        let exe = b"/usr/bin/cat";
        let off = abi::PATH_MAX - exe.len();
        e.exe[off..abi::PATH_MAX].copy_from_slice(exe);
        e.exe_off = off as u16;
        e.cwd[abi::PATH_MAX - 1] = b'/';
        e.cwd_off = (abi::PATH_MAX - 1) as u16;
        e.filename[..3].copy_from_slice(b"cat");
        e.filename_len = 3;
        let argv = b"cat\0/etc/hosts\0";
        e.argv[..argv.len()].copy_from_slice(argv);
        e.argv_len = argv.len() as u16;
        let rec = decode(&Bytes::from(as_bytes(&e))).unwrap();
        let Record::Exec(x) = rec else { panic!("not exec: {rec:?}") };
        assert_eq!(x.exe, "/usr/bin/cat");
        assert_eq!(x.cwd, "/");
        assert_eq!(x.filename, "cat");
        assert_eq!(x.argv, vec!["cat", "/etc/hosts"]);
        assert_eq!(x.h.comm, "cat");
    }

    #[test]
    fn connect_record_from_a_cgroup_program_names_its_path() {
        let mut c: abi::ms_connect = zeroed();
        c.h = hdr(abi::EV_CONNECT);
        c.fd = abi::FD_NONE;
        c.ret = -libc::EPERM;
        c.op = abi::OP_SENDTO;
        c.hook = abi::HOOK_SENDMSG4;
        c.transport = abi::TR_UDP;
        // sockaddr_in as sockaddr.bpf.c rebuilds it: family, port (network order), address
        let sa = [&(libc::AF_INET as u16).to_ne_bytes()[..], &80u16.to_be_bytes(), &[169, 254, 169, 254]].concat();
        c.sockaddr[..sa.len()].copy_from_slice(&sa);
        c.addrlen = 16;
        let rec = decode(&Bytes::from(as_bytes(&c))).unwrap();
        let Record::Connect { addr, via, ret, .. } = rec else { panic!("not connect: {rec:?}") };
        assert_eq!(addr, SockAddr::Inet { addr: Ipv4Addr::new(169, 254, 169, 254), port: 80 });
        assert_eq!((ret, via.op_name(), via.hook_name(), via.transport_name()), (-libc::EPERM, "sendto", "cgroup_sendmsg4", Some("udp")));
        let plain = NetVia { op: abi::OP_CONNECT, hook: abi::HOOK_SYS_CONNECT, transport: 0 };
        assert_eq!((plain.op_name(), plain.hook_name(), plain.transport_name()), ("connect", "sys_connect", None));
    }

    #[test]
    fn hostile_offsets_are_clamped_not_panicking() {
        let mut o: abi::ms_open = zeroed();
        o.h = hdr(abi::EV_OPEN);
        o.path_off = u16::MAX;
        o.path_len = u16::MAX;
        let Record::Open(x) = decode(&Bytes::from(as_bytes(&o))).unwrap() else { panic!() };
        assert_eq!(x.path, "");
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let h = as_bytes(&hdr(abi::EV_OPEN));
        assert!(matches!(decode(&Bytes::from(h)), Err(DecodeError::Short { kind: "open", .. })));
        assert!(matches!(decode(&Bytes::from(vec![1u8; 10])), Err(DecodeError::Short { .. })));
        let h = as_bytes(&hdr(999));
        assert_eq!(decode(&Bytes::from(h)), Err(DecodeError::UnknownKind(999)));
    }

    #[test]
    fn stdio_data_is_sliced_by_len() {
        let mut s: abi::ms_stdio = zeroed();
        s.h = hdr(abi::EV_STDIO);
        s.len = 5;
        s.offset = 100;
        let mut raw = as_bytes(&s);
        raw.extend_from_slice(b"hello, and then garbage past len");
        let Record::Stdio(x) = decode(&Bytes::from(raw)).unwrap() else { panic!() };
        assert_eq!(&x.data[..], b"hello");
        assert_eq!(x.offset, 100);
        s.len = 500; // claims more than the record holds
        assert!(decode(&Bytes::from(as_bytes(&s))).is_err());
    }

    #[test]
    fn sockaddrs() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(sockaddr(&v4), SockAddr::Inet { addr: Ipv4Addr::LOCALHOST, port: 8080 });

        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(sockaddr(&v6), SockAddr::Inet6 { addr: Ipv6Addr::LOCALHOST, port: 443 });

        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        un.extend_from_slice(b"/run/x.sock\0\0\0");
        assert_eq!(sockaddr(&un), SockAddr::Unix { path: "/run/x.sock".into() });
        let mut abs = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        abs.extend_from_slice(b"\0hidden");
        assert_eq!(sockaddr(&abs), SockAddr::Unix { path: "@hidden".into() });
        assert_eq!(sockaddr(&[1]), SockAddr::Other { family: 0 });
    }

    #[test]
    fn flags_and_statuses() {
        assert_eq!(open_flags(0), vec!["O_RDONLY"]);
        assert_eq!(
            open_flags((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u32),
            vec!["O_WRONLY", "O_CREAT", "O_TRUNC", "O_CLOEXEC"]
        );
        assert_eq!(open_flags(libc::O_TMPFILE as u32 | 2), vec!["O_RDWR", "O_TMPFILE"]);
        assert!(open_writes(libc::O_RDWR as u32));
        assert!(!open_writes(libc::O_CLOEXEC as u32));
        assert_eq!(wait_status(3 << 8), (Some(3), None));
        assert_eq!(wait_status(9), (None, Some(9)));
        assert_eq!(errno_name(libc::ENOENT), "ENOENT");
        assert_eq!(ret_error(-libc::EINPROGRESS).as_deref(), Some("EINPROGRESS"));
        assert_eq!(ret_error(3), None);
    }
}
