/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * abi.h: the one kernel/user ABI of mcp-sensor.
 *
 * Every record the kernel puts in the ring buffer, every map key and value
 * the agent reads or writes, is declared here and nowhere else. The Rust
 * side (mcp-sensor/src/abi.rs) mirrors these structs; a test checks the
 * mirror against the BTF of the compiled object, so a change here that is
 * not made there fails the build's tests.
 *
 * Rules for this file: fixed-width fields only, explicit _pad, no bool,
 * long or enum; event kinds have stable numbers in bands and are never
 * renumbered (add new ones, retire old ones).
 */
#ifndef MCP_SENSOR_ABI_H
#define MCP_SENSOR_ABI_H

#define MS_ABI_VERSION 1

#define MS_COMM_LEN 16
/* Longest path reported. Longer paths keep their last MS_PATH_MAX bytes
 * and set MS_F_PATH_TRUNC. */
#define MS_PATH_MAX 4096
/* A path is built backwards from the end of its buffer; the slack lets the
 * verifier prove a component (<= 255 bytes + '/') always fits. The slack,
 * buf[MS_PATH_MAX ..], is then a struct ms_path_cut: whether this path (of
 * the record's several) lost its leading components (MS_F_PATH_TRUNC is
 * per record), and what of them the walk learned. */
#define MS_PATH_BUF (MS_PATH_MAX + 256)
/* Bytes of each leading component a cut path keeps, NUL included. */
#define MS_PATH_HEAD 124
#define MS_ARGV_MAX 4096
#define MS_SOCKADDR_MAX 112
/* Size classes of stdio chunks: a syscall's bytes are split into records
 * of the smallest class that holds them, so a 200-byte message does not
 * take 16 KiB of ring. */
#define MS_CHUNK_SMALL 1024
#define MS_CHUNK_LARGE 16384

/* Event kinds. Bands: 1-15 process lifecycle, 16-31 files, 32-47 network,
 * 48-63 stdio capture. MS_EV_KIND_MAX sizes the drop counters. */
#define MS_EV_FORK 1
#define MS_EV_EXEC 2
#define MS_EV_EXIT 3
#define MS_EV_IO_URING 4
#define MS_EV_PTRACE 5   /* ptrace attach, process_vm_readv/writev (ptrace.bpf.c) */
#define MS_EV_OPEN 16
#define MS_EV_FCHANGE 17
#define MS_EV_CONNECT 32
#define MS_EV_STDIO 48
#define MS_EV_KIND_MAX 64

/* Flags shared by events (ms_header.flags). */
#define MS_F_PATH_TRUNC (1u << 0)   /* a path was longer than MS_PATH_MAX */
#define MS_F_ARGV_TRUNC (1u << 1)   /* argv was longer than MS_ARGV_MAX */
#define MS_F_SCRIPT (1u << 2)       /* exec ran an interpreter for a script */
#define MS_F_UNRESOLVED (1u << 3)   /* path is the caller's string (the open failed) */
#define MS_F_PSEUDO (1u << 4)       /* file has no path in a mount (memfd, pipe, anon) */
#define MS_F_DELETED (1u << 5)      /* file was unlinked when seen */
#define MS_F_DATA_TRUNC (1u << 6)   /* stdio: bytes past the per-syscall cap were not captured */

/* Stdio chunk directions, as seen from the watched server. */
#define MS_DIR_IN 0  /* server read it: client -> server */
#define MS_DIR_OUT 1 /* server wrote it: server -> client */

/* Common head of every ring-buffer record. */
struct ms_header {
	__u32 kind;
	__u32 flags;
	__u64 ts_ns;     /* bpf_ktime_get_boot_ns() */
	__u32 pid;       /* tgid */
	__u32 tid;
	__u32 ppid;      /* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 session;   /* tgid of the root of the watched tree */
	__u64 start_ns;  /* process start, boot-time ns: (pid, start_ns) is the lineage key */
	char comm[MS_COMM_LEN];
	__u64 cgroup_id; /* the task's cgroup v2 id (its cgroupfs directory's inode); 1: the root */
	__u32 ns_pid;    /* tgid as seen in the task's own PID namespace (== pid at level 0) */
	__u32 ns_level;  /* depth of that namespace: 0 is the initial one */
};

struct ms_fork {
	struct ms_header h; /* the parent */
	__u32 child_pid;
	__u32 _pad;
	__u64 child_start_ns;
};

/* The slack of a path buffer (MS_PATH_BUF), after the path. When `cut`
 * is 0 the rest is not written. When the walk reached the root past a
 * full buffer, `total` is the whole path's length and `head` its topmost
 * components (`skipped` of them were not copied); `total` 0: the path was
 * deeper than the walk goes (MS_PATH_DEPTH components), nothing more is
 * known. */
struct ms_path_cut {
	__u8 cut;       /* 1: this path lost its leading components */
	__u8 skipped;   /* components not copied (255: 255 or more) */
	__u8 head_cut;  /* bit n: head[n] is cut (its name is longer) */
	__u8 gap;       /* 1: head is the top of the path (the mount point of the
			 * file's mount, `skipped` components of it), the
			 * components between it and the copied tail are
			 * unknown, and so is `total` (compat walk, path.bpf.h) */
	__u32 total;    /* bytes of the whole path, "/name" per component */
	char head[2][MS_PATH_HEAD]; /* top first, NUL-terminated */
};

struct ms_exec {
	struct ms_header h;
	__u32 old_tid;      /* the thread that called execve (before de_thread) */
	__u32 dev;          /* identity of the executed file */
	__u64 ino;
	__u16 exe_off;      /* exe path is exe[exe_off .. MS_PATH_MAX) (built backwards) */
	__u16 cwd_off;      /* likewise in cwd */
	__u16 filename_len; /* the path the caller passed, as given */
	__u16 argv_len;     /* bytes of NUL-separated argv in argv */
	__u64 size;         /* the executed file's size at exec, bytes (i_size) */
	__u64 parent_start_ns; /* the real parent's start, boot-time ns (with h.ppid, its lineage key) */
	char exe[MS_PATH_BUF];
	char cwd[MS_PATH_BUF];
	char filename[256];
	char argv[MS_ARGV_MAX];
};

struct ms_exit {
	struct ms_header h;
	__u32 exit_code;    /* wait status as the kernel keeps it: code << 8 | signal */
	__u32 _pad;
};

/* io_uring_setup succeeded: the process can now do file and network I/O
 * that the syscall hooks above never see. */
struct ms_io_uring {
	struct ms_header h;
	__s32 fd;           /* the ring's fd */
	__u32 sq_entries;
	__u32 cq_entries;
	__u32 flags;        /* IORING_SETUP_* */
};

/* Another process's memory reached: ptrace(PTRACE_ATTACH | PTRACE_SEIZE)
 * or process_vm_readv/writev, reported at the syscall's exit. */
struct ms_ptrace {
	struct ms_header h;
	__s32 ret;          /* 0 (bytes for process_vm_*), or -errno */
	__u32 target;       /* the pid (thread id) the caller named */
	__u32 syscall;      /* MS_SYS_PTRACE, MS_SYS_PROCESS_VM_READV, _WRITEV */
	__u32 request;      /* ptrace's request (PTRACE_ATTACH 16, PTRACE_SEIZE 0x4206); 0 otherwise */
};

#define MS_SYS_PTRACE 16
#define MS_SYS_PROCESS_VM_READV 17
#define MS_SYS_PROCESS_VM_WRITEV 18

struct ms_open {
	struct ms_header h;
	__s32 ret;          /* fd, or -errno */
	__u32 flags;        /* open flags (from the file when it opened) */
	__u32 mode;
	__u32 dev;
	__u64 ino;
	__u32 syscall;      /* MS_SYS_* */
	__u16 path_off;     /* path is path[path_off .. path_off + path_len) */
	__u16 path_len;
	char path[MS_PATH_BUF];
};

#define MS_SYS_OPEN 1
#define MS_SYS_OPENAT 2
#define MS_SYS_OPENAT2 3
#define MS_SYS_CREAT 4
#define MS_SYS_OPEN_BY_HANDLE_AT 5

/* The other ways a file changes (fchange.bpf.c): the name a rename, link
 * or symlink creates or replaces, the file a truncate shortens. The paths
 * are the caller's strings (read at the syscall's exit), made absolute by
 * the agent with `dir`, the base the kernel resolved (the directory fd's
 * path, or the caller's cwd) for a relative destination, or a relative
 * source with the destination's base. ftruncate has no string: `dir` is then the
 * file's own path and (dev, ino) its identity. */
struct ms_fchange {
	struct ms_header h;
	__s32 ret;          /* 0, or -errno */
	__u32 syscall;      /* MS_SYS_RENAME .. MS_SYS_FTRUNCATE */
	__u32 rflags;       /* renameat2: RENAME_*; linkat: AT_* */
	__s32 dirfd;        /* base of path: a directory fd, or AT_FDCWD (-100) */
	__s32 src_dirfd;    /* base of source, likewise */
	__u32 dev;          /* ftruncate: the file's identity; else 0 */
	__u64 ino;
	__u64 length;       /* truncate, ftruncate: the new size in bytes */
	__u16 dir_off;      /* the base is dir[dir_off .. MS_PATH_MAX); MS_PATH_MAX: none */
	__u16 path_len;     /* bytes of path: the destination, or the file truncated */
	__u16 source_len;   /* bytes of source: the old name, or a symlink's target text */
	__u16 _pad;
	char dir[MS_PATH_BUF];
	char path[MS_PATH_MAX];
	char source[MS_PATH_MAX];
};

#define MS_SYS_RENAME 6
#define MS_SYS_RENAMEAT 7
#define MS_SYS_RENAMEAT2 8
#define MS_SYS_LINK 9
#define MS_SYS_LINKAT 10
#define MS_SYS_SYMLINK 11
#define MS_SYS_SYMLINKAT 12
#define MS_SYS_TRUNCATE 13
#define MS_SYS_FTRUNCATE 14

/* A connection or a datagram's destination. From connect(2)'s tracepoints
 * (hook MS_HOOK_SYS_CONNECT) the address is the caller's sockaddr as it
 * was at syscall entry, with the syscall's result. From the cgroup
 * programs (sockaddr.bpf.c: TCP Fast Open's sendto, io_uring's connect,
 * the first UDP send per socket and destination) it is the kernel's copy,
 * rebuilt as a sockaddr_in/_in6, and `ret` is the hook's own verdict (0
 * passed on, -EPERM refused): the operation's result is not seen there.
 * The agent decodes it (family, address, port, unix path). */
struct ms_connect {
	struct ms_header h;
	__s32 ret;          /* 0, or -errno (-EINPROGRESS for non-blocking) */
	__u32 fd;           /* connect(2)'s fd; MS_FD_NONE from the cgroup programs */
	__u32 addrlen;      /* as passed by the caller */
	__u8 op;            /* MS_OP_*: the caller's operation */
	__u8 hook;          /* MS_HOOK_*: the program that saw it */
	__u8 transport;     /* MS_TR_*; 0: not known (unix, or no cgroup program) */
	__u8 _pad;
	__u8 sockaddr[MS_SOCKADDR_MAX];
};

#define MS_FD_NONE 0xffffffffu

/* ms_connect.op, from the syscall the caller is in (its saved orig_ax;
 * MS_OP_IO_URING also for io_uring's worker threads). */
#define MS_OP_CONNECT 1
#define MS_OP_SENDTO 2
#define MS_OP_SENDMSG 3
#define MS_OP_SENDMMSG 4
#define MS_OP_IO_URING 5  /* io_uring_enter, or an io_uring worker */
#define MS_OP_OTHER 6     /* any other caller */

/* ms_connect.hook */
#define MS_HOOK_SYS_CONNECT 1 /* tracepoints syscalls/sys_{enter,exit}_connect */
#define MS_HOOK_CONNECT4 2    /* cgroup/connect4 */
#define MS_HOOK_CONNECT6 3    /* cgroup/connect6 */
#define MS_HOOK_SENDMSG4 4    /* cgroup/sendmsg4: UDP send with an address */
#define MS_HOOK_SENDMSG6 5    /* cgroup/sendmsg6 */

/* ms_connect.transport */
#define MS_TR_TCP 1
#define MS_TR_UDP 2
#define MS_TR_OTHER 3

struct ms_stdio {
	struct ms_header h;
	__u64 chan_ino;     /* the channel: identity of the pipe or socket */
	__u32 chan_dev;
	__u8 dir;           /* MS_DIR_* */
	__u8 _pad0;
	__u16 len;          /* bytes of data in this record */
	__u64 offset;       /* byte offset of data[0] in this channel direction */
	__u32 fd;
	__u32 _pad1;
	char data[];        /* MS_CHUNK_SMALL or MS_CHUNK_LARGE bytes reserved */
};

/* Map values. */

/* watched: tgid -> this. start_ns 0 means "claim on first sight": the agent
 * inserts a child it has just forked and is holding before exec, and the
 * kernel fills in the start time the first time it sees the process. */
struct ms_watch {
	__u64 start_ns;
	__u32 session;
	__u32 flags;
};

struct ms_chan_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

struct ms_chan {
	__u32 session;
	__u32 flags;
	__u64 off[2];       /* bytes seen so far, per MS_DIR_* */
};

/* Counters (the `counters` per-CPU array), besides per-kind ring drops. */
#define MS_CNT_INFLIGHT_FULL 0  /* syscall stash map full: an event was not traced */
#define MS_CNT_WATCH_FULL 1     /* watched map full: a child could not be watched */
#define MS_CNT_STDIO_CAP 2      /* stdio bytes beyond the per-syscall capture cap */
#define MS_CNT_STDIO_FAULT 3    /* stdio bytes whose user buffer could not be read */
#define MS_CNT_REGS 4           /* compat object: saved registers not found; an open or a
                                 * channel transfer was not traced */
#define MS_CNT_SENT_FULL 5      /* UDP first-send map (SENT) refused an entry: the send was
                                 * reported, later ones to it may be reported again */
#define MS_CNT_CHAN_FULL 6      /* CHANNELS refused a candidate's stdio pipe (table full) */
#define MS_CNT_CAND_LOST 7      /* candidates not tracked at exec: no channel slot left
                                 * (the process runs unwatched; raise --max-channels) */
#define MS_CNT_FIRST_REQ_FULL 8 /* FIRST_REQ refused a session's first-request stamp */
#define MS_CNT_DENIED_FULL 9    /* DENIED refused a thread's refusal verdict */
#define MS_CNT_CLIENTS_FULL 10  /* CLIENTS refused a running client (table full): servers it
                                 * starts are found by their stdio pipes alone */
#define MS_CNT_MAX 16

/* ==== discovery (mcp-sensor run) =========================================
 * Everything host-wide discovery adds to the ABI is in this block. The
 * daemon finds MCP servers nobody wrapped: at exec, a child of a known
 * client (CLIENT_COMMS / CLIENTS) or a process whose stdin and stdout are
 * both pipes or sockets becomes a *candidate*: watched as its own session,
 * its stdio pipes registered as channels flagged MS_CH_CANDIDATE. The
 * kernel rejects a candidate whose first channel byte cannot start JSON-RPC
 * (MS_EV_CHAN_REJECT); the agent decides the rest (mcp-sensor/src/discover/). */

/* ms_discover_flags (set by the loader; 0 in `exec`: no discovery at all). */
#define MS_DISC_CLIENTS (1u << 0) /* children of processes in CLIENTS */
#define MS_DISC_PIPES (1u << 1)   /* any exec with stdin and stdout pipes/sockets */

/* Why a process is a candidate: in ms_watch.flags of the candidate's tree,
 * and in the header flags of the candidate root's exec record. */
#define MS_F_CAND_CLIENT (1u << 12) /* its parent is a known MCP client */
#define MS_F_CAND_PIPES (1u << 13)  /* its stdin and stdout are pipes or sockets */
/* It was exec'd inside another undecided candidate with stdio of its own
 * (not that candidate's channel): if its own channel turns out not to be
 * MCP, it folds back into that candidate instead of being unwatched (the
 * kernel removes only its channel; the agent reparents it). */
#define MS_F_CAND_NESTED (1u << 14)
/* Watch entries only: the candidate's channel has carried a JSON-RPC
 * first byte written by the candidate's tree (set on its root's entry,
 * and copied at fork). Kernel enforcement applies from then on, before
 * the agent's confirmation arrives (enforce.bpf.h, ms_enf_applies). */
#define MS_F_CAND_SPOKE (1u << 15)

/* ms_chan.flags */
#define MS_CH_CANDIDATE (1u << 0)   /* first byte of each direction is checked */

/* A candidate's channel carried a first byte no JSON-RPC framing starts
 * with: the kernel removed the channel and (unless the candidate is
 * MS_F_CAND_NESTED) the process's watch entry; the agent drops the
 * candidate and unwatches the rest of its tree, or folds a nested one back
 * into the candidate or server it was exec'd in. In the stdio band. */
#define MS_EV_CHAN_REJECT 56

struct ms_chan_reject {
	struct ms_header h;  /* h.session: the rejected candidate */
	__u64 chan_ino;
	__u32 chan_dev;
	__u8 dir;            /* MS_DIR_* of the offending transfer */
	__u8 byte;           /* the first non-blank byte seen */
	__u16 _pad;
};

/* CLIENT_COMMS key: a client's comm, NUL-padded as bpf_get_current_comm
 * writes it. */
struct ms_comm_key {
	char comm[MS_COMM_LEN];
};
/* ==== end of discovery =================================================== */

/* ==== enforcement (--enforce, rules with `action: kill`) ================
 * Everything enforcement adds to the ABI is in this block. The agent fills
 * the deny maps from the kill rules the kernel can decide (see
 * mcp-sensor/src/enforce/); the kernel consults them for watched processes
 * only, and only while ENF_CFG says enforcement is on. */

/* Header flags of a record the kernel enforced on. Bits 16-31 of the
 * header's flags carry 1 + the index of the deciding rule (0: none). */
#define MS_F_KILLED (1u << 7)    /* SIGKILL sent to this process, in this syscall */
#define MS_F_DENIED (1u << 8)    /* refused in the kernel (EPERM): a connect or UDP send by
                                  * a cgroup program, an open, exec, rename, link, symlink or
                                  * truncate by BPF LSM */
#define MS_F_KILL_TREE (1u << 9) /* the verdict's kill scope is tree: the agent kills the rest of the tree */
#define MS_F_RULE_SHIFT 16

/* ENF_CFG[0]: enforcement switch; anything but 1 means off. `uring`:
 * 1 + the index of the rule a watched server's io_uring_setup is killed
 * under (uring.bpf.c); 0: io_uring is allowed. */
struct ms_enf_cfg {
	__u32 on;
	__u32 uring;
};

/* What a deny map entry decides. */
#define MS_VF_KILL (1u << 0) /* kill the process (connect: besides refusing) */
#define MS_VF_TREE (1u << 1) /* kill scope tree: also the server root */
#define MS_VF_WRITE (1u << 2)     /* opens only: only an open that can modify the file
                                   * (O_WRONLY, O_RDWR, O_CREAT or O_TRUNC) */
#define MS_VF_EXEMPT (1u << 3)    /* the rule excepts some processes: see EXEMPT */
#define MS_VF_AFTER_REQ (1u << 4) /* only once the session has read its first request
                                   * (FIRST_REQ) */
#define MS_VF_SHELL_CMD (1u << 5) /* execs only: a shell asked to run a command string,
                                   * its stdin or an interactive session, by its argv;
                                   * script runs are the agent's (shell_run.rs) */
#define MS_VF_EXEMPT_PARENT (1u << 6) /* with MS_VF_EXEMPT: some exemptions are by the
                                       * parent's executable (MS_EXEMPT_PARENT) */
/* argv bytes the kernel reads to tell a shell's script run (MS_VF_SHELL_CMD) */
#define MS_SHELL_ARGV 128
struct ms_verdict {
	__u32 rule;  /* index of the rule in the agent's rule set */
	__u32 flags; /* MS_VF_* */
};

/* DENY_FILES key: a protected file's identity (opened or executed). */
struct ms_file_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

/* DENY_DIRS: files that may not exist yet. A file opened directly in
 * directory (dev, ino) whose name matches slot 0, 1, ... (up to the first
 * missing slot) is protected: prefix, suffix, and exact = name is the
 * prefix alone. The prefix is left-aligned in its field, the suffix
 * right-aligned (its last byte is suffix[MS_NAME_PART - 1]); unused bytes
 * are zero. */
#define MS_DIR_SLOTS 16
#define MS_NAME_PART 32
struct ms_dir_key {
	__u64 ino;
	__u32 dev;
	__u32 slot;
};

/* allow: a name this slot matches is not protected by rule v.rule (that
 * rule's later slots are skipped: an exception such as `*.pub`); slots are
 * tried in order and the first protecting match decides. */
struct ms_dir_rule {
	struct ms_verdict v;
	__u8 prefix_len;
	__u8 suffix_len;
	__u8 exact;
	__u8 allow;
	__u8 _pad[4];
	char prefix[MS_NAME_PART];
	char suffix[MS_NAME_PART];
};

/* Files by the shape of their path, wherever they are (`**` `/.ssh/` `*`: any
 * directory named .ssh, under any home, in /etc/passwd or not).
 * SHAPE_DIRS: a directory's name and its parent's name (`up`, all zero:
 * any parent), zero-padded -> a pseudo identity: its name patterns are
 * DENY_DIRS slots with dev MS_SHAPE_DEV and ino `id`. SHAPE_NAMES: a file
 * name protected in every directory (`**` `/.netrc`) -> ms_verdict. Names
 * longer than MS_NAME_PART bytes have no shape. */
#define MS_SHAPE_DEV 0xffffffffu
struct ms_shape_key {
	char dir[MS_NAME_PART];
	char up[MS_NAME_PART];
};

struct ms_shape_dir {
	__u64 id;
};

struct ms_name_key {
	char name[MS_NAME_PART];
};

/* EXEMPT: processes a rule (MS_VF_EXEMPT) does not apply to: by the
 * identity of their executable (comm all zero), by comm (ino and dev
 * zero, comm NUL-padded as bpf_get_current_comm writes it), or by the
 * identity of their parent's executable (rule | MS_EXEMPT_PARENT, comm
 * all zero: direnv's evaluation shell, rules `parent_exe`). */
#define MS_EXEMPT_PARENT (1u << 31)
struct ms_exempt_key {
	__u64 ino;
	__u32 dev;
	__u32 rule;
	char comm[MS_COMM_LEN];
};

/* FIRST_REQ: session -> boot-time ns of the first transfer its server read
 * from its channel (the client's first message, `initialize` in MCP). The
 * kernel's "after the first request" (MS_VF_AFTER_REQ). */

/* DENY_NETS: an LPM trie over IPv6 addresses, IPv4 as ::ffff:a.b.c.d
 * (prefix 96 + n). The longest matching prefix's value lists every port
 * range of every rule whose network contains that prefix (the agent merges
 * them), so one lookup decides. */
#define MS_NET_PORTS 8
struct ms_net_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct ms_port_rule {
	__u16 lo;
	__u16 hi;
	struct ms_verdict v;
};

struct ms_net_deny {
	__u32 n;
	__u32 _pad;
	struct ms_port_rule r[MS_NET_PORTS];
};

/* ENF_STATS, per-CPU: what the kernel enforced, counted before any ring
 * work, so a lost record still leaves its kill counted. */
#define MS_ENF_KILL_OPEN 0
#define MS_ENF_KILL_EXEC 1
#define MS_ENF_KILL_CONNECT 2
#define MS_ENF_DENY_CONNECT 3
#define MS_ENF_KILL_ROOT 4      /* server roots killed for scope tree */
#define MS_ENF_DENY_OPEN 5      /* opens refused by BPF LSM (file_open) */
#define MS_ENF_DENY_EXEC 6      /* execs refused by BPF LSM (bprm_check_security) */
#define MS_ENF_KILL_URING 7     /* io_uring_setup answered with SIGKILL */
#define MS_ENF_DENY_CHANGE 8    /* renames, links, symlinks onto protected names and
                                 * truncates of protected files refused by BPF LSM */
#define MS_ENF_KILL_CHANGE 9    /* those whose rule also kills */
#define MS_ENF_DENY_SEND 10     /* UDP sends refused by cgroup/sendmsg4|6 */
#define MS_ENF_MAX 16
/* ==== end of enforcement ================================================ */

#endif /* MCP_SENSOR_ABI_H */
