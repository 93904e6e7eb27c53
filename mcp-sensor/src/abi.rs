//! Rust mirror of `mcp-sensor-ebpf/bpf/abi.h`, the kernel/user ABI.
//!
//! Owns nothing but layouts and constants. The test at the bottom checks
//! every struct here against the BTF of the compiled object, so the two
//! cannot drift apart silently.

#![allow(non_camel_case_types)]

pub const COMM_LEN: usize = 16;
pub const PATH_MAX: usize = 4096;
pub const PATH_BUF: usize = PATH_MAX + 256;
/// Bytes of each leading component a cut path keeps (NUL included).
pub const PATH_HEAD: usize = 124;
pub const ARGV_MAX: usize = 4096;
pub const SOCKADDR_MAX: usize = 112;
pub const CHUNK_SMALL: usize = 1024;
pub const CHUNK_LARGE: usize = 16384;

pub const EV_FORK: u32 = 1;
pub const EV_EXEC: u32 = 2;
pub const EV_EXIT: u32 = 3;
pub const EV_IO_URING: u32 = 4;
pub const EV_PTRACE: u32 = 5;
pub const EV_OPEN: u32 = 16;
pub const EV_FCHANGE: u32 = 17;
pub const EV_CONNECT: u32 = 32;
pub const EV_STDIO: u32 = 48;
pub const EV_KIND_MAX: u32 = 64;

pub const F_PATH_TRUNC: u32 = 1 << 0;
pub const F_ARGV_TRUNC: u32 = 1 << 1;
pub const F_SCRIPT: u32 = 1 << 2;
pub const F_UNRESOLVED: u32 = 1 << 3;
pub const F_PSEUDO: u32 = 1 << 4;
pub const F_DELETED: u32 = 1 << 5;

pub const DIR_IN: u8 = 0;
pub const DIR_OUT: u8 = 1;

pub const SYS_OPEN: u32 = 1;
pub const SYS_OPENAT: u32 = 2;
pub const SYS_OPENAT2: u32 = 3;
pub const SYS_CREAT: u32 = 4;
pub const SYS_OPEN_BY_HANDLE_AT: u32 = 5;
pub const SYS_RENAME: u32 = 6;
pub const SYS_RENAMEAT: u32 = 7;
pub const SYS_RENAMEAT2: u32 = 8;
pub const SYS_LINK: u32 = 9;
pub const SYS_LINKAT: u32 = 10;
pub const SYS_SYMLINK: u32 = 11;
pub const SYS_SYMLINKAT: u32 = 12;
pub const SYS_TRUNCATE: u32 = 13;
pub const SYS_FTRUNCATE: u32 = 14;
pub const SYS_PTRACE: u32 = 16;
pub const SYS_PROCESS_VM_READV: u32 = 17;
pub const SYS_PROCESS_VM_WRITEV: u32 = 18;

pub const CNT_INFLIGHT_FULL: u32 = 0;
pub const CNT_WATCH_FULL: u32 = 1;
pub const CNT_STDIO_CAP: u32 = 2;
pub const CNT_STDIO_FAULT: u32 = 3;
pub const CNT_REGS: u32 = 4;
pub const CNT_SENT_FULL: u32 = 5;
/// CHANNELS refused a candidate's stdio pipe (the table was full).
pub const CNT_CHAN_FULL: u32 = 6;
/// Candidates not tracked at exec for want of a channel slot.
pub const CNT_CAND_LOST: u32 = 7;
/// FIRST_REQ refused a session's first-request stamp.
pub const CNT_FIRST_REQ_FULL: u32 = 8;
/// DENIED refused a thread's refusal verdict.
pub const CNT_DENIED_FULL: u32 = 9;
pub const CNT_CLIENTS_FULL: u32 = 10;
pub const CNT_MAX: u32 = 16;

pub const FD_NONE: u32 = 0xffff_ffff;
pub const OP_CONNECT: u8 = 1;
pub const OP_SENDTO: u8 = 2;
pub const OP_SENDMSG: u8 = 3;
pub const OP_SENDMMSG: u8 = 4;
pub const OP_IO_URING: u8 = 5;
pub const OP_OTHER: u8 = 6;
pub const HOOK_SYS_CONNECT: u8 = 1;
pub const HOOK_CONNECT4: u8 = 2;
pub const HOOK_CONNECT6: u8 = 3;
pub const HOOK_SENDMSG4: u8 = 4;
pub const HOOK_SENDMSG6: u8 = 5;
pub const TR_TCP: u8 = 1;
pub const TR_UDP: u8 = 2;
pub const TR_OTHER: u8 = 3;

/// Kernel-internal dev_t (`MAJOR << 20 | MINOR`, what BPF reads from
/// `i_sb->s_dev`) to the encoding stat(2) returns in `st_dev`.
pub fn kdev_to_user(k: u32) -> u64 {
    libc::makedev(k >> 20, k & 0xfffff)
}

/// The inverse of [`kdev_to_user`], for keys the agent puts in maps.
pub fn user_to_kdev(d: u64) -> u32 {
    (libc::major(d) << 20) | libc::minor(d)
}

/// Name of an event kind for output and drop reports.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        EV_FORK => "fork",
        EV_EXEC => "exec",
        EV_EXIT => "exit",
        EV_IO_URING => "io_uring_setup",
        EV_PTRACE => "ptrace",
        EV_OPEN => "open",
        EV_FCHANGE => "fchange",
        EV_CONNECT => "connect",
        EV_STDIO => "stdio",
        EV_CHAN_REJECT => "chan_reject",
        _ => "unknown",
    }
}

/// Name of a MS_CNT_* counter.
pub fn counter_name(c: u32) -> Option<&'static str> {
    Some(match c {
        CNT_INFLIGHT_FULL => "syscall_stash_full",
        CNT_WATCH_FULL => "watch_map_full",
        CNT_STDIO_CAP => "stdio_bytes_over_cap",
        CNT_STDIO_FAULT => "stdio_bytes_unreadable",
        CNT_REGS => "saved_registers_not_found",
        CNT_SENT_FULL => "sent_map_refused",
        CNT_CHAN_FULL => "channel_map_full",
        CNT_CAND_LOST => "candidates_untracked",
        CNT_FIRST_REQ_FULL => "first_request_map_full",
        CNT_DENIED_FULL => "denied_map_full",
        CNT_CLIENTS_FULL => "clients_map_full",
        _ => return None,
    })
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ms_header {
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
    pub comm: [u8; COMM_LEN],
    pub cgroup_id: u64,
    pub ns_pid: u32,
    pub ns_level: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_fork {
    pub h: ms_header,
    pub child_pid: u32,
    pub _pad: u32,
    pub child_start_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_exec {
    pub h: ms_header,
    pub old_tid: u32,
    pub dev: u32,
    pub ino: u64,
    pub exe_off: u16,
    pub cwd_off: u16,
    pub filename_len: u16,
    pub argv_len: u16,
    pub size: u64,
    pub parent_start_ns: u64,
    pub exe: [u8; PATH_BUF],
    pub cwd: [u8; PATH_BUF],
    pub filename: [u8; 256],
    pub argv: [u8; ARGV_MAX],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_exit {
    pub h: ms_header,
    pub exit_code: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_io_uring {
    pub h: ms_header,
    pub fd: i32,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_ptrace {
    pub h: ms_header,
    pub ret: i32,
    pub target: u32,
    pub syscall: u32,
    pub request: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_open {
    pub h: ms_header,
    pub ret: i32,
    pub flags: u32,
    pub mode: u32,
    pub dev: u32,
    pub ino: u64,
    pub syscall: u32,
    pub path_off: u16,
    pub path_len: u16,
    pub path: [u8; PATH_BUF],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_fchange {
    pub h: ms_header,
    pub ret: i32,
    pub syscall: u32,
    pub rflags: u32,
    pub dirfd: i32,
    pub src_dirfd: i32,
    pub dev: u32,
    pub ino: u64,
    pub length: u64,
    pub dir_off: u16,
    pub path_len: u16,
    pub source_len: u16,
    pub _pad: u16,
    pub dir: [u8; PATH_BUF],
    pub path: [u8; PATH_MAX],
    pub source: [u8; PATH_MAX],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_connect {
    pub h: ms_header,
    pub ret: i32,
    pub fd: u32,
    pub addrlen: u32,
    pub op: u8,
    pub hook: u8,
    pub transport: u8,
    pub _pad: u8,
    pub sockaddr: [u8; SOCKADDR_MAX],
}

/// Head of a stdio record; `len` bytes of data follow it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_stdio {
    pub h: ms_header,
    pub chan_ino: u64,
    pub chan_dev: u32,
    pub dir: u8,
    pub _pad0: u8,
    pub len: u16,
    pub offset: u64,
    pub fd: u32,
    pub _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ms_watch {
    pub start_ns: u64,
    pub session: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ms_chan_key {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ms_chan {
    pub session: u32,
    pub flags: u32,
    pub off: [u64; 2],
}

// SAFETY: plain-old-data, every bit pattern valid; aya copies them to maps.
unsafe impl aya::Pod for ms_watch {}
unsafe impl aya::Pod for ms_chan_key {}
unsafe impl aya::Pod for ms_chan {}

// ==== discovery (mcp-sensor run): the block of the same name in abi.h ====
pub const DISC_CLIENTS: u32 = 1 << 0;
pub const DISC_PIPES: u32 = 1 << 1;
pub const F_CAND_CLIENT: u32 = 1 << 12;
pub const F_CAND_PIPES: u32 = 1 << 13;
pub const F_CAND_NESTED: u32 = 1 << 14;
pub const F_CAND_SPOKE: u32 = 1 << 15;
pub const CH_CANDIDATE: u32 = 1 << 0;
pub const EV_CHAN_REJECT: u32 = 56;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ms_chan_reject {
    pub h: ms_header,
    pub chan_ino: u64,
    pub chan_dev: u32,
    pub dir: u8,
    pub byte: u8,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ms_comm_key {
    pub comm: [u8; COMM_LEN],
}

impl ms_comm_key {
    /// The key of a comm as the kernel stores it: at most 15 bytes, NUL-padded.
    pub fn new(comm: &str) -> Self {
        let mut k = ms_comm_key { comm: [0; COMM_LEN] };
        let b = comm.as_bytes();
        let n = b.len().min(COMM_LEN - 1);
        k.comm[..n].copy_from_slice(&b[..n]);
        k
    }
}

// SAFETY: plain-old-data, as above.
unsafe impl aya::Pod for ms_comm_key {}
// ==== end of discovery ====

// ==== enforcement (abi.h's enforcement block) ==============================

pub const F_KILLED: u32 = 1 << 7;
pub const F_DENIED: u32 = 1 << 8;
pub const F_KILL_TREE: u32 = 1 << 9;
pub const F_RULE_SHIFT: u32 = 16;

pub const VF_KILL: u32 = 1 << 0;
pub const VF_TREE: u32 = 1 << 1;
pub const VF_WRITE: u32 = 1 << 2;
pub const VF_EXEMPT: u32 = 1 << 3;
pub const VF_AFTER_REQ: u32 = 1 << 4;
pub const VF_SHELL_CMD: u32 = 1 << 5;
/// With [`VF_EXEMPT`]: some of the rule's exemptions are by the parent's
/// executable, so the kernel looks the parent up (abi.h `MS_VF_EXEMPT_PARENT`).
pub const VF_EXEMPT_PARENT: u32 = 1 << 6;
/// EXEMPT keys: the rule field's top bit marks an exemption by the
/// parent's executable (abi.h `MS_EXEMPT_PARENT`).
pub const EXEMPT_PARENT: u32 = 1 << 31;
pub const DIR_SLOTS: u32 = 16;
pub const SHAPE_DEV: u32 = 0xffff_ffff;
pub const NAME_PART: usize = 32;
pub const NET_PORTS: u32 = 8;

pub const ENF_KILL_OPEN: u32 = 0;
pub const ENF_KILL_EXEC: u32 = 1;
pub const ENF_KILL_CONNECT: u32 = 2;
pub const ENF_DENY_CONNECT: u32 = 3;
pub const ENF_KILL_ROOT: u32 = 4;
pub const ENF_DENY_OPEN: u32 = 5;
pub const ENF_DENY_EXEC: u32 = 6;
pub const ENF_KILL_URING: u32 = 7;
pub const ENF_DENY_CHANGE: u32 = 8;
pub const ENF_KILL_CHANGE: u32 = 9;
pub const ENF_DENY_SEND: u32 = 10;
pub const ENF_MAX: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ms_enf_cfg {
    pub on: u32,
    /// 1 + index of the rule io_uring_setup is killed under; 0: allowed.
    pub uring: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ms_verdict {
    pub rule: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ms_file_key {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ms_dir_key {
    pub ino: u64,
    pub dev: u32,
    pub slot: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ms_dir_rule {
    pub v: ms_verdict,
    pub prefix_len: u8,
    pub suffix_len: u8,
    pub exact: u8,
    pub allow: u8,
    pub _pad: [u8; 4],
    pub prefix: [u8; NAME_PART],
    pub suffix: [u8; NAME_PART],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ms_shape_key {
    pub dir: [u8; NAME_PART],
    pub up: [u8; NAME_PART],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ms_shape_dir {
    pub id: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ms_name_key {
    pub name: [u8; NAME_PART],
}

/// The slack of a path buffer, after the path (abi.h: what a cut path's
/// walk learned of what it could not copy).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ms_path_cut {
    pub cut: u8,
    pub skipped: u8,
    pub head_cut: u8,
    pub gap: u8,
    pub total: u32,
    pub head: [[u8; PATH_HEAD]; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ms_exempt_key {
    pub ino: u64,
    pub dev: u32,
    pub rule: u32,
    pub comm: [u8; COMM_LEN],
}

/// The LPM trie's address part (aya's `lpm_trie::Key` adds the prefix length).
pub type ms_net_addr = [u8; 16];

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ms_port_rule {
    pub lo: u16,
    pub hi: u16,
    pub v: ms_verdict,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ms_net_deny {
    pub n: u32,
    pub _pad: u32,
    pub r: [ms_port_rule; NET_PORTS as usize],
}

// SAFETY: plain-old-data, every bit pattern valid.
unsafe impl aya::Pod for ms_enf_cfg {}
unsafe impl aya::Pod for ms_verdict {}
unsafe impl aya::Pod for ms_file_key {}
unsafe impl aya::Pod for ms_dir_key {}
unsafe impl aya::Pod for ms_dir_rule {}
unsafe impl aya::Pod for ms_net_deny {}
unsafe impl aya::Pod for ms_shape_key {}
unsafe impl aya::Pod for ms_shape_dir {}
unsafe impl aya::Pod for ms_name_key {}
unsafe impl aya::Pod for ms_exempt_key {}

// ==== end of enforcement ===================================================

#[cfg(test)]
mod tests {
    //! The ABI check: every mirrored struct's size and field offsets must
    //! equal what clang laid out in the object (its BTF, via bpftool).
    use super::*;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    /// name -> (size, member -> byte offset), from `bpftool btf dump format raw`.
    fn btf_structs() -> HashMap<String, (usize, HashMap<String, usize>)> {
        let dir = std::env::temp_dir().join(format!("ms-abi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let obj = dir.join("obj.o");
        std::fs::write(&obj, mcp_sensor_ebpf::object()).unwrap();
        let out = std::process::Command::new("bpftool")
            .args(["btf", "dump", "file"])
            .arg(&obj)
            .args(["format", "raw"])
            .output()
            .expect("bpftool is needed for the ABI check: apt-get install -y bpftool");
        assert!(out.status.success(), "bpftool failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut all = HashMap::new();
        let mut cur: Option<(String, usize, HashMap<String, usize>)> = None;
        for line in text.lines() {
            if line.starts_with('[') {
                if let Some((n, s, m)) = cur.take() {
                    all.insert(n, (s, m));
                }
                // [12] STRUCT 'ms_header' size=64 vlen=11
                let mut parts = line.split_whitespace();
                let (_, kind, name) = (parts.next(), parts.next(), parts.next());
                if kind == Some("STRUCT") {
                    let name = name.unwrap().trim_matches('\'').to_string();
                    let size = parts
                        .find_map(|p| p.strip_prefix("size="))
                        .unwrap()
                        .parse()
                        .unwrap();
                    cur = Some((name, size, HashMap::new()));
                }
            } else if let Some((_, _, members)) = cur.as_mut() {
                // 'kind' type_id=2 bits_offset=0
                let line = line.trim();
                let name = line.split('\'').nth(1).unwrap_or("").to_string();
                let bits: usize = line
                    .split_whitespace()
                    .find_map(|p| p.strip_prefix("bits_offset="))
                    .unwrap()
                    .parse()
                    .unwrap();
                members.insert(name, bits / 8);
            }
        }
        if let Some((n, s, m)) = cur.take() {
            all.insert(n, (s, m));
        }
        all
    }

    macro_rules! check {
        ($btf:expr, $ty:ident { $($field:ident),* $(,)? }) => {{
            let (size, members) = $btf
                .get(stringify!($ty))
                .unwrap_or_else(|| panic!("{} not in the object's BTF", stringify!($ty)));
            assert_eq!(*size, size_of::<$ty>(), "size of {}", stringify!($ty));
            $(
                assert_eq!(
                    members.get(stringify!($field)).copied(),
                    Some(offset_of!($ty, $field)),
                    "offset of {}.{}", stringify!($ty), stringify!($field)
                );
            )*
            // a member at offset == size is a flexible array (ms_stdio.data):
            // the mirror reads it as the bytes after the struct
            let fixed = members.values().filter(|&&off| off < *size).count();
            assert_eq!(fixed, [$(stringify!($field)),*].len(),
                "{} has fields the mirror lacks: {:?}", stringify!($ty), members.keys());
        }};
    }

    #[test]
    fn rust_mirror_matches_object_btf() {
        let btf = btf_structs();
        check!(btf, ms_header { kind, flags, ts_ns, pid, tid, ppid, uid, gid, session, start_ns, comm, cgroup_id, ns_pid, ns_level });
        check!(btf, ms_fork { h, child_pid, _pad, child_start_ns });
        check!(btf, ms_exec { h, old_tid, dev, ino, exe_off, cwd_off, filename_len, argv_len, size, parent_start_ns, exe, cwd, filename, argv });
        check!(btf, ms_exit { h, exit_code, _pad });
        check!(btf, ms_io_uring { h, fd, sq_entries, cq_entries, flags });
        check!(btf, ms_ptrace { h, ret, target, syscall, request });
        check!(btf, ms_open { h, ret, flags, mode, dev, ino, syscall, path_off, path_len, path });
        check!(btf, ms_connect { h, ret, fd, addrlen, op, hook, transport, _pad, sockaddr });
        check!(btf, ms_fchange {
            h, ret, syscall, rflags, dirfd, src_dirfd, dev, ino, length, dir_off, path_len, source_len, _pad, dir, path,
            source
        });
        check!(btf, ms_stdio { h, chan_ino, chan_dev, dir, _pad0, len, offset, fd, _pad1 });
        check!(btf, ms_watch { start_ns, session, flags });
        check!(btf, ms_chan_key { ino, dev, _pad });
        check!(btf, ms_chan { session, flags, off });
        // enforcement
        check!(btf, ms_enf_cfg { on, uring });
        check!(btf, ms_verdict { rule, flags });
        check!(btf, ms_file_key { ino, dev, _pad });
        check!(btf, ms_dir_key { ino, dev, slot });
        check!(btf, ms_dir_rule { v, prefix_len, suffix_len, exact, allow, _pad, prefix, suffix });
        check!(btf, ms_shape_key { dir, up });
        check!(btf, ms_shape_dir { id });
        check!(btf, ms_name_key { name });
        check!(btf, ms_exempt_key { ino, dev, rule, comm });
        check!(btf, ms_path_cut { cut, skipped, head_cut, gap, total, head });
        assert_eq!(size_of::<ms_path_cut>(), PATH_BUF - PATH_MAX, "a path buffer's slack is its ms_path_cut");
        check!(btf, ms_port_rule { lo, hi, v });
        check!(btf, ms_net_deny { n, _pad, r });
        check!(btf, ms_chan_reject { h, chan_ino, chan_dev, dir, byte, _pad });
        check!(btf, ms_comm_key { comm });
    }

    #[test]
    fn dev_encodings_round_trip() {
        for (maj, min) in [(0u32, 5u32), (8, 1), (259, 3), (0, 0x12345)] {
            let user = libc::makedev(maj, min);
            let k = user_to_kdev(user);
            assert_eq!(k, (maj << 20) | min);
            assert_eq!(kdev_to_user(k), user);
        }
    }

    #[test]
    fn constants_match_header() {
        let h = std::fs::read_to_string(mcp_sensor_ebpf::ABI_HEADER).unwrap();
        let define = |name: &str| -> String {
            h.lines()
                .find_map(|l| {
                    let rest = l.strip_prefix("#define ")?.trim_start().strip_prefix(name)?;
                    let value = rest.split("/*").next().unwrap();
                    (rest.starts_with(' ') || rest.starts_with('\t'))
                        .then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
                })
                .unwrap_or_else(|| panic!("{name} not defined in abi.h"))
        };
        for (name, v) in [
            ("MS_EV_FORK", EV_FORK), ("MS_EV_EXEC", EV_EXEC), ("MS_EV_EXIT", EV_EXIT), ("MS_EV_IO_URING", EV_IO_URING),
            ("MS_EV_OPEN", EV_OPEN), ("MS_EV_CONNECT", EV_CONNECT), ("MS_EV_STDIO", EV_STDIO),
            ("MS_EV_KIND_MAX", EV_KIND_MAX), ("MS_CHUNK_SMALL", CHUNK_SMALL as u32),
            ("MS_CHUNK_LARGE", CHUNK_LARGE as u32), ("MS_PATH_MAX", PATH_MAX as u32), ("MS_PATH_HEAD", PATH_HEAD as u32),
            ("MS_CNT_MAX", CNT_MAX as u32), ("MS_CNT_STDIO_FAULT", CNT_STDIO_FAULT),
            ("MS_CNT_REGS", CNT_REGS), ("MS_CNT_SENT_FULL", CNT_SENT_FULL),
            ("MS_CNT_CHAN_FULL", CNT_CHAN_FULL), ("MS_CNT_CAND_LOST", CNT_CAND_LOST),
            ("MS_CNT_FIRST_REQ_FULL", CNT_FIRST_REQ_FULL), ("MS_CNT_DENIED_FULL", CNT_DENIED_FULL),
            ("MS_CNT_CLIENTS_FULL", CNT_CLIENTS_FULL),
            ("MS_OP_CONNECT", OP_CONNECT as u32), ("MS_OP_SENDTO", OP_SENDTO as u32),
            ("MS_OP_SENDMSG", OP_SENDMSG as u32), ("MS_OP_SENDMMSG", OP_SENDMMSG as u32),
            ("MS_OP_IO_URING", OP_IO_URING as u32), ("MS_OP_OTHER", OP_OTHER as u32),
            ("MS_HOOK_SYS_CONNECT", HOOK_SYS_CONNECT as u32), ("MS_HOOK_CONNECT4", HOOK_CONNECT4 as u32),
            ("MS_HOOK_CONNECT6", HOOK_CONNECT6 as u32), ("MS_HOOK_SENDMSG4", HOOK_SENDMSG4 as u32),
            ("MS_HOOK_SENDMSG6", HOOK_SENDMSG6 as u32),
            ("MS_TR_TCP", TR_TCP as u32), ("MS_TR_UDP", TR_UDP as u32), ("MS_TR_OTHER", TR_OTHER as u32),
            ("MS_SYS_OPEN_BY_HANDLE_AT", SYS_OPEN_BY_HANDLE_AT),
            ("MS_F_RULE_SHIFT", F_RULE_SHIFT), ("MS_DIR_SLOTS", DIR_SLOTS),
            ("MS_NAME_PART", NAME_PART as u32), ("MS_NET_PORTS", NET_PORTS),
            ("MS_ENF_KILL_OPEN", ENF_KILL_OPEN), ("MS_ENF_KILL_EXEC", ENF_KILL_EXEC),
            ("MS_ENF_KILL_CONNECT", ENF_KILL_CONNECT), ("MS_ENF_DENY_CONNECT", ENF_DENY_CONNECT),
            ("MS_ENF_KILL_ROOT", ENF_KILL_ROOT), ("MS_ENF_MAX", ENF_MAX),
            ("MS_ENF_DENY_OPEN", ENF_DENY_OPEN), ("MS_ENF_DENY_EXEC", ENF_DENY_EXEC),
            ("MS_ENF_KILL_URING", ENF_KILL_URING), ("MS_ENF_DENY_SEND", ENF_DENY_SEND),
            ("MS_ENF_DENY_CHANGE", ENF_DENY_CHANGE), ("MS_ENF_KILL_CHANGE", ENF_KILL_CHANGE),
            ("MS_EV_FCHANGE", EV_FCHANGE), ("MS_SYS_RENAME", SYS_RENAME), ("MS_SYS_RENAMEAT", SYS_RENAMEAT),
            ("MS_SYS_RENAMEAT2", SYS_RENAMEAT2), ("MS_SYS_LINK", SYS_LINK), ("MS_SYS_LINKAT", SYS_LINKAT),
            ("MS_SYS_SYMLINK", SYS_SYMLINK), ("MS_SYS_SYMLINKAT", SYS_SYMLINKAT),
            ("MS_SYS_TRUNCATE", SYS_TRUNCATE), ("MS_SYS_FTRUNCATE", SYS_FTRUNCATE),
            ("MS_EV_CHAN_REJECT", EV_CHAN_REJECT),
        ] {
            assert_eq!(define(name), v.to_string(), "{name}");
        }
        assert_eq!(define("MS_SHAPE_DEV"), format!("{SHAPE_DEV:#x}u"), "MS_SHAPE_DEV");
        assert_eq!(define("MS_FD_NONE"), format!("{FD_NONE:#x}u"), "MS_FD_NONE");
        for (name, bit) in [
            ("MS_F_PATH_TRUNC", F_PATH_TRUNC), ("MS_F_ARGV_TRUNC", F_ARGV_TRUNC),
            ("MS_F_SCRIPT", F_SCRIPT), ("MS_F_UNRESOLVED", F_UNRESOLVED),
            ("MS_F_PSEUDO", F_PSEUDO), ("MS_F_DELETED", F_DELETED),
            ("MS_F_KILLED", F_KILLED), ("MS_F_DENIED", F_DENIED), ("MS_F_KILL_TREE", F_KILL_TREE),
            ("MS_VF_KILL", VF_KILL), ("MS_VF_TREE", VF_TREE), ("MS_VF_WRITE", VF_WRITE),
            ("MS_VF_EXEMPT", VF_EXEMPT), ("MS_VF_AFTER_REQ", VF_AFTER_REQ), ("MS_VF_SHELL_CMD", VF_SHELL_CMD),
            ("MS_VF_EXEMPT_PARENT", VF_EXEMPT_PARENT), ("MS_EXEMPT_PARENT", EXEMPT_PARENT),
            ("MS_F_CAND_CLIENT", F_CAND_CLIENT), ("MS_F_CAND_PIPES", F_CAND_PIPES),
            ("MS_F_CAND_NESTED", F_CAND_NESTED), ("MS_F_CAND_SPOKE", F_CAND_SPOKE),
            ("MS_DISC_CLIENTS", DISC_CLIENTS), ("MS_DISC_PIPES", DISC_PIPES),
            ("MS_CH_CANDIDATE", CH_CANDIDATE),
        ] {
            let d = define(name);
            let shift: u32 = d.trim_start_matches("(1u<<").trim_end_matches(')').trim().parse()
                .unwrap_or_else(|_| panic!("{name}: {d}"));
            assert_eq!(1 << shift, bit, "{name}");
        }
    }
}
