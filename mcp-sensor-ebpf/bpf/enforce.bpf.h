/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * enforce.bpf.h: kill decisions taken in the kernel, at the syscall, for
 * watched processes: opening a protected file (by identity, or by parent
 * directory + name for files that did not exist when the rules were
 * compiled), executing a forbidden file (by identity), and the kill that
 * follows a refused connect (the refusal itself is sockaddr.bpf.c's).
 *
 * Each check returns the header flags to put on the event's record. The
 * signal is sent before the caller reserves ring space: a full ring loses
 * the record's details (counted as a drop), never the kill, and ENF_STATS
 * counts every kill first.
 *
 * bpf_send_signal() signals the current process; it is delivered when the
 * syscall returns, so the process never runs another user instruction
 * with the file descriptor or the new program.
 */
#ifndef MCP_SENSOR_ENFORCE_BPF_H
#define MCP_SENSOR_ENFORCE_BPF_H

#include "path.bpf.h"

#define MS_SIGKILL 9
#define MS_EPERM 1

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_enf_cfg);
} ENF_CFG SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ms_file_key);
	__type(value, struct ms_verdict);
} DENY_FILES SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ms_dir_key);
	__type(value, struct ms_dir_rule);
} DENY_DIRS SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ms_file_key);
	__type(value, struct ms_verdict);
} DENY_EXEC SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct ms_net_key);
	__type(value, struct ms_net_deny);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} DENY_NETS SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ms_shape_key);
	__type(value, struct ms_shape_dir);
} SHAPE_DIRS SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ms_name_key);
	__type(value, struct ms_verdict);
} SHAPE_NAMES SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ms_exempt_key);
	__type(value, __u32);
} EXEMPT SEC(".maps") MS_WEAK;

/* Refusals, per thread, until the syscall returns: connects refused by
 * the cgroup program (the exit kills if the rule says so), opens refused
 * by BPF LSM (the LSM hook reported them; the exit stays quiet). LRU: an
 * entry whose syscall exit never came cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tid */
	__type(value, struct ms_verdict);
} DENIED SEC(".maps") MS_WEAK;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MS_ENF_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ENF_STATS SEC(".maps") MS_WEAK;

static __always_inline int ms_enf_switch(void)
{
	__u32 zero = 0;
	struct ms_enf_cfg *c = bpf_map_lookup_elem(&ENF_CFG, &zero);
	return c && c->on == 1;
}

/* Enforcement is on and watch entry `w` is a server's: a confirmed one, or
 * a discovery candidate whose tree has already written JSON-RPC on its
 * channel (the agent's confirmation may still be on its way: a server's
 * first tool call can come milliseconds after the handshake). A candidate
 * that has said nothing yet is spared: a pipeline's `ssh` with pipe stdio
 * is a candidate until its first bytes say no. */
static __always_inline int ms_enf_applies(const struct ms_watch *w)
{
	if (!w || !ms_enf_switch())
		return 0;
	return !(w->flags & (MS_F_CAND_CLIENT | MS_F_CAND_PIPES)) || ms_cand_spoke(w);
}

/* ms_enf_applies() for the current process, for callers without its entry. */
static __always_inline int ms_enf_on(void)
{
	return ms_enf_applies(ms_watched_current());
}

static __always_inline void ms_enf_count(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&ENF_STATS, &what);
	if (n)
		*n += 1;
}

/* Kills the current process (and, for scope tree, the server root), and
 * returns the record flags saying so. */
static __always_inline __u32 ms_enf_kill(const struct ms_verdict *v, __u32 session, __u32 stat)
{
	__u32 flags = MS_F_KILLED | ((v->rule + 1) << MS_F_RULE_SHIFT);

	bpf_send_signal(MS_SIGKILL);
	ms_enf_count(stat);
	if (v->flags & MS_VF_TREE) {
		/* The rest of the tree is the agent's (pidfds, from the
		 * watched set): the record carries the flag it acts on. */
		flags |= MS_F_KILL_TREE;
	}
	return flags;
}

/* One name tested against one slot of a protected directory's patterns.
 * Names are compared 8 bytes at a time under masks: a byte-by-byte
 * compare needed ~500 bytes of stack. The name's bytes are in a per-CPU
 * scratch entry, not on the stack: the frames of a call chain (bpf_loop
 * callbacks and global functions included) count together against the
 * 512-byte limit, and 5.10 refused the open program with them on the
 * stack ("combined stack size of 4 calls is 704"). The entry is filled
 * and compared within one call of ms_dir_slot_verdict(), which nothing
 * else uses; a BPF program is not preempted on the kernels' default
 * preemption models (none, voluntary), so no other use interleaves. */
#define MS_NAME_WORDS (MS_NAME_PART / 8)
struct ms_name {
	__u32 len;                     /* the name's length */
	__u32 tl;                      /* min(len, MS_NAME_PART) */
	__u64 head[MS_NAME_WORDS];     /* the first tl bytes, zero-padded */
	__u64 tail[2 * MS_NAME_WORDS]; /* the last tl bytes end at byte MS_NAME_PART */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_name);
} SLOT_NAME SEC(".maps") MS_WEAK;

/* The bytes of 8-byte word k below byte `hi` of the name, as a mask (BPF
 * is little-endian on x86_64: byte j of a word is bits 8j..8j+7).
 * Branch-free, so the verifier walks one path per slot, not one per
 * clamp: with branches, the slot search was most of the open program's
 * verification (compat object: ~10,000 instructions per slot). */
static __always_inline __u64 ms_bytes_below(__u32 k, __u32 hi)
{
	__s64 n = (__s64)hi - 8 * (__s64)k; /* bytes of word k below hi, unclamped */
	n &= ~(n >> 63);                    /* below 0: 0 */
	__s64 over = n - 8;
	n -= over & ~(over >> 63);          /* above 8: 8 */
	__u64 half = 4 * (__u64)n;          /* two shifts: 8 bytes shift by 64, to 0 */
	return ((1ULL << half) << half) - 1;
}

/* The bytes [lo, hi) that fall in word k, as a mask. */
static __always_inline __u64 ms_byte_mask(__u32 k, __u32 lo, __u32 hi)
{
	return ms_bytes_below(k, hi) & ~ms_bytes_below(k, lo);
}

/* Whether name n matches slot rule r. */
static __always_inline int ms_slot_matches(const struct ms_dir_rule *r, const struct ms_name *n)
{
	__u32 p = r->prefix_len, s = r->suffix_len, len = n->len, tl = n->tl;
	if (p > MS_NAME_PART || s > MS_NAME_PART || len < p + s || s > tl)
		return 0;
	if (r->exact && len != p)
		return 0;
	/* the rule's suffix is right-aligned in its field (abi.h), as the
	 * name's tail is in n->tail */
	const __u64 *pre = (const __u64 *)r->prefix, *suf = (const __u64 *)r->suffix;
	__u64 diff = 0;
	/* not unrolled: unrolled, the masks' registers spilled to 208 bytes
	 * of stack, and 5.10 counts every frame of the call chain */
#pragma clang loop unroll(disable)
	for (__u32 k = 0; k < MS_NAME_WORDS; k++) {
		diff |= (n->head[k] ^ pre[k]) & ms_byte_mask(k, 0, p);
		diff |= (n->tail[k] ^ suf[k]) & ms_byte_mask(k, MS_NAME_PART - s, MS_NAME_PART);
	}
	return diff == 0;
}

/* A verdict as one int, for global functions (scalars in and out):
 * (1 + rule) << 8 | flags, 0 for none. MS_VF_* stay below MS_SLOT_ALLOW. */
#define MS_SLOT_ALLOW 0x80
static __always_inline int ms_verdict_pack(const struct ms_verdict *v)
{
	return (int)(((v->rule + 1) << 8) | (v->flags & 0x7f));
}

static __always_inline int ms_verdict_unpack(int r, struct ms_verdict *v)
{
	if (r <= 0)
		return 0;
	v->rule = ((__u32)r >> 8) - 1;
	v->flags = (__u32)r & 0x7f;
	return 1;
}

/* Slot `slot` of directory (dev, ino) tried on the name of `dentry`: -1
 * when there is no such slot (slots are dense: the search ends), 0 when
 * the name does not match, else the packed verdict, with MS_SLOT_ALLOW
 * for an allow slot. Global (file.bpf.c): the verifier
 * checks one slot once per program. Inlined, each unrolled slot of the
 * compat object (no bpf_loop) cost ~12,000 verified instructions, and
 * 5.10 under qemu did not finish loading in the test's time. */
int ms_dir_slot_verdict(__u64 dentry, __u64 ino, __u32 dev, __u32 slot);

static __always_inline int ms_dir_slot_verdict_body(struct dentry *d, __u64 ino, __u32 dev, __u32 slot)
{
	struct ms_dir_key dk = { .ino = ino, .dev = dev, .slot = slot };
	struct ms_dir_rule *r = bpf_map_lookup_elem(&DENY_DIRS, &dk);
	if (!r)
		return -1;
	__u32 zero = 0;
	struct ms_name *n = bpf_map_lookup_elem(&SLOT_NAME, &zero);
	if (!n)
		return 0;
	__u32 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	__u32 tl = len < MS_NAME_PART ? len : MS_NAME_PART;
	__builtin_memset(n, 0, sizeof(*n));
	n->len = len;
	n->tl = tl;
	bpf_probe_read_kernel(n->head, tl, name);
	/* an offset, not a pointer subtraction: the verifier refuses those */
	__u32 at = MS_NAME_PART - tl;
	barrier_var(at);
	at &= 2 * MS_NAME_PART - 1;
	bpf_probe_read_kernel((char *)n->tail + at, tl, name + len - tl);
	if (!ms_slot_matches(r, n))
		return 0;
	return ms_verdict_pack(&r->v) | (r->allow ? MS_SLOT_ALLOW : 0);
}

/* What a verdict is asked for: an open that only reads (MS_WR_READ), one
 * that can modify the file (MS_WR_OPEN), or a change of the name without
 * an open (MS_WR_CHANGE: a rename, link or symlink onto it, a truncate),
 * which only the rules about writes (MS_VF_WRITE) decide. */
#define MS_WR_READ 0
#define MS_WR_OPEN 1
#define MS_WR_CHANGE 2

/* Whether a verdict with flags vflags (MS_VF_*) applies to what `wr` asks. */
static __always_inline int ms_wr_applies(__u32 vflags, __u32 wr)
{
	if (wr == MS_WR_CHANGE)
		return (vflags & MS_VF_WRITE) != 0;
	return wr || !(vflags & MS_VF_WRITE);
}

/* A directory's slots, one per loop step: the first protecting slot
 * decides; an allow slot lets its rule's later slots pass (an exception
 * such as `*.pub`). */
struct ms_slot_search {
	__u64 dentry;
	__u64 ino;
	__u32 dev;
	__u32 wr;      /* MS_WR_* */
	__u64 allowed; /* bit rule % 64: an allow slot of that rule matched */
	int found;     /* packed verdict */
};

MS_LOOP_CB ms_dir_slot(__u64 slot, struct ms_slot_search *c)
{
	int r = ms_dir_slot_verdict(c->dentry, c->ino, c->dev, (__u32)slot);
	if (r < 0)
		return 1;
	if (r == 0)
		return 0;
	__u64 bit = 1ULL << ((((__u32)r >> 8) - 1) & 63);
	if (r & MS_SLOT_ALLOW) {
		c->allowed |= bit;
		return 0;
	}
	if ((c->allowed & bit) || !ms_wr_applies((__u32)r, c->wr))
		return 0;
	c->found = r;
	return 1;
}

/* The process is one rule v excepts (EXEMPT): by its executable's
 * identity, by its parent's executable's identity, or by its comm. */
static __always_inline int ms_exempt(const struct ms_verdict *v)
{
	struct ms_exempt_key k = {};
	k.rule = v->rule;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct file *exe = BPF_CORE_READ(t, mm, exe_file);
	if (exe) {
		ms_file_id(exe, &k.dev, &k.ino);
		if (bpf_map_lookup_elem(&EXEMPT, &k))
			return 1;
	}
	/* the parent that started it (real_parent: not a tracer), looked up
	 * only for rules with such exemptions */
	exe = (v->flags & MS_VF_EXEMPT_PARENT) ? BPF_CORE_READ(t, real_parent, mm, exe_file) : NULL;
	if (exe) {
		ms_file_id(exe, &k.dev, &k.ino);
		k.rule = v->rule | MS_EXEMPT_PARENT;
		if (bpf_map_lookup_elem(&EXEMPT, &k))
			return 1;
		k.rule = v->rule;
	}
	k.ino = 0;
	k.dev = 0;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	return bpf_map_lookup_elem(&EXEMPT, &k) != NULL;
}

/* Verdict v applies to a process of `session`: the conditions the deny
 * maps cannot key on (the write test is made where the verdict is found). */
static __always_inline int ms_verdict_applies(const struct ms_verdict *v, __u32 session)
{
	if ((v->flags & MS_VF_AFTER_REQ) && !bpf_map_lookup_elem(&FIRST_REQ, &session))
		return 0;
	if ((v->flags & MS_VF_EXEMPT) && ms_exempt(v))
		return 0;
	return 1;
}

/* Open flags that can modify the file (what the rules' `write` means). */
static __always_inline __u32 ms_open_writes(__u64 flags)
{
	return (flags & 3) != 0 || (flags & (0100 /* O_CREAT */ | 01000 /* O_TRUNC */)) != 0;
}

/* The DENY_DIRS slots of (dev, ino) tried on `dentry`'s name: the packed
 * verdict of the first protecting slot, or 0. Slot 0 absent, the common
 * case, costs one lookup. Global (file.bpf.c): verified once per program,
 * not at each of ms_file_verdict()'s three directory keys. */
int ms_dir_verdict(__u64 dentry, __u64 ino, __u32 dev, __u32 wr);

static __always_inline int ms_dir_verdict_body(__u64 dentry, __u64 ino, __u32 dev, __u32 wr)
{
	struct ms_dir_key dk = { .ino = ino, .dev = dev };
	if (!bpf_map_lookup_elem(&DENY_DIRS, &dk))
		return 0;
	struct ms_slot_search c = { .dentry = dentry, .ino = ino, .dev = dev, .wr = wr };
	c.allowed = ms_opaque_zero; /* compat.bpf.h: pre-6.7 callback checks */
	c.found = ms_opaque_zero;
	ms_loop(MS_DIR_SLOTS, ms_dir_slot, &c);
	return c.found;
}

/* A dentry's name into a zero-padded MS_NAME_PART field; 0 when longer. */
static __always_inline int ms_dname(struct dentry *d, char *out)
{
	__u32 len = BPF_CORE_READ(d, d_name.len);
	if (len == 0 || len > MS_NAME_PART)
		return 0;
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	barrier_var(len);
	len &= 2 * MS_NAME_PART - 1;
	if (len > MS_NAME_PART)
		return 0;
	bpf_probe_read_kernel(out, len, name);
	return 1;
}

/* Whether BPF LSM programs decide opens and execs (set by the loader
 * when BPF LSM is active): the syscall-exit kills then stand down. */
const volatile __u32 ms_lsm_enforce MS_WEAK = 0;

/* The verdict on the file named by dentry `d`, whose identity is (dev,
 * ino) (0: it does not exist yet), for what `wr` asks (MS_WR_*; session:
 * the caller's): by identity; for a file that did not exist when the
 * rules were compiled, by directory + name; then by the shape of its path
 * (its name anywhere, its directory's and grandparent's names). The first
 * verdict found decides: when its rule excepts this process, the open or
 * change is allowed. */
static __always_inline int ms_name_verdict(struct dentry *d, __u32 dev, __u64 ino, __u32 wr, __u32 session,
					   struct ms_verdict *out)
{
	struct ms_verdict v = {};
	struct ms_file_key k = { .ino = ino, .dev = dev };
	struct ms_verdict *hit = ino ? bpf_map_lookup_elem(&DENY_FILES, &k) : NULL;
	if (hit && ms_wr_applies(hit->flags, wr)) {
		v = *hit;
		goto found;
	}
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	struct inode *dir = BPF_CORE_READ(parent, d_inode);
	if (ms_verdict_unpack(ms_dir_verdict((__u64)d, BPF_CORE_READ(dir, i_ino), BPF_CORE_READ(dir, i_sb, s_dev), wr), &v))
		goto found;

	struct ms_shape_key sk = {};
	if (ms_dname(d, sk.dir)) {
		hit = bpf_map_lookup_elem(&SHAPE_NAMES, sk.dir);
		if (hit && ms_wr_applies(hit->flags, wr)) {
			v = *hit;
			goto found;
		}
	}
	__builtin_memset(&sk, 0, sizeof(sk));
	if (!ms_dname(parent, sk.dir))
		return 0;
	ms_dname(BPF_CORE_READ(parent, d_parent), sk.up);
	/* the directory's and its parent's names, then its name alone */
	struct ms_shape_dir *sd = bpf_map_lookup_elem(&SHAPE_DIRS, &sk);
	if (sd && ms_verdict_unpack(ms_dir_verdict((__u64)d, sd->id, MS_SHAPE_DEV, wr), &v))
		goto found;
	__builtin_memset(sk.up, 0, sizeof(sk.up));
	sd = bpf_map_lookup_elem(&SHAPE_DIRS, &sk);
	if (sd && ms_verdict_unpack(ms_dir_verdict((__u64)d, sd->id, MS_SHAPE_DEV, wr), &v))
		goto found;
	return 0;
found:
	if (!ms_verdict_applies(&v, session))
		return 0;
	*out = v;
	return 1;
}

/* The verdict on opening `file` (wr: MS_WR_READ or MS_WR_OPEN): its
 * identity is the opened inode's. */
static __always_inline int ms_file_verdict(struct file *file, __u32 wr, __u32 session, struct ms_verdict *out)
{
	__u32 dev;
	__u64 ino;
	ms_file_id(file, &dev, &ino);
	return ms_name_verdict(BPF_CORE_READ(file, f_path.dentry), dev, ino, wr, session, out);
}

/* The verdict on executing `file` (a symlink resolves to it, a hard link
 * is the same inode). */
static __always_inline int ms_exec_verdict(struct file *file, __u32 session, struct ms_verdict *out)
{
	struct ms_file_key k = {};
	ms_file_id(file, &k.dev, &k.ino);
	struct ms_verdict *v = bpf_map_lookup_elem(&DENY_EXEC, &k);
	if (!v || !ms_verdict_applies(v, session))
		return 0;
	*out = *v;
	return 1;
}

/* ms_file_verdict() as a global function (file.bpf.c): the verifier checks
 * it once per program, on its own, instead of inlined at each caller with
 * the caller's states. Its arguments are scalars (5.10 passes nothing else
 * to global functions): returns 0 or the packed verdict. */
int ms_open_verdict(__u64 file, __u32 wr, __u32 session);

static __always_inline int ms_open_verdict_of(__u64 file, __u32 wr, __u32 session, struct ms_verdict *v)
{
	return ms_verdict_unpack(ms_open_verdict(file, wr, session), v);
}

/* Syscall exit of an open: the struct file the kernel opened is protected
 * (where BPF LSM is not deciding). */
static __always_inline __u32 ms_enforce_open(struct file *file, __u64 oflags, __u32 session)
{
	struct ms_verdict v;
	if (ms_lsm_enforce || !ms_enf_on() || !ms_open_verdict_of((__u64)file, ms_open_writes(oflags), session, &v))
		return 0;
	return ms_enf_kill(&v, session, MS_ENF_KILL_OPEN);
}

/*
 * A shell's argv (MS_VF_SHELL_CMD), byte by byte: whether it names a
 * script to run. The options grammar is shell_run.rs's, cut down: short
 * option clusters after `-`/`+` (`c`, `s`: not a script run; `o`,
 * `O`: the next argument is an option name), `-`/`--` end the options,
 * other long options are flags; the first other argument is the script.
 * Undecided within MS_SHELL_ARGV bytes: not a script run (killed; the
 * agent has the whole argv). busybox called by its own name and
 * `--rcfile FILE` read as a script run leave the kill to the agent.
 */
struct ms_shell_parse {
	char buf[MS_SHELL_ARGV];
	__u32 len;     /* bytes in buf */
	__u32 arg;     /* index of the argument at i */
	__u32 at;      /* bytes into it */
	__u32 opt;     /* 1: short options, 2: long option, 3: an option's argument */
	__u32 skip;    /* the next argument is an option's argument */
	__u32 operand; /* the next argument is the script (after `-`/`--`) */
	__u32 script;  /* 1: a script run, 2: not one */
};

MS_LOOP_CB ms_shell_step(__u64 i, struct ms_shell_parse *c)
{
	if (i >= c->len)
		return 1;
	char ch = c->buf[i & (MS_SHELL_ARGV - 1)];
	if (ch == 0) {
		/* `-` or `--` alone: the script follows */
		if (c->arg && ((c->opt == 1 && c->at == 1) || (c->opt == 2 && c->at == 2)))
			c->operand = 1;
		c->arg++;
		c->at = 0;
		c->opt = 0;
		return 0;
	}
	if (c->arg == 0)
		return 0; /* argv[0] */
	__u32 at = c->at++;
	if (at == 0) {
		if (c->skip) {
			c->skip = 0;
			c->opt = 3;
			return 0;
		}
		if (c->operand || (ch != '-' && ch != '+')) {
			c->script = 1;
			return 1;
		}
		c->opt = 1;
		return 0;
	}
	if (c->opt != 1)
		return 0;
	if (at == 1 && ch == '-') {
		c->opt = 2;
		return 0;
	}
	if (ch == 'c' || ch == 's') {
		c->script = 2;
		return 1;
	}
	if (ch == 'o' || ch == 'O')
		c->skip = 1;
	return 0;
}

#if MS_COMPAT
/*
 * The compat object's cut-down twin of the parse above. 5.10's verifier
 * walked the byte loop's state machine and gave up ("BPF program is too
 * large", 1M instructions, even at 32 bytes), so here each argument is
 * read as a string on its own (argv[0] only for its length) and judged
 * alone, for the first MS_SHELL_ARGS_COMPAT arguments after argv[0]:
 * a first argument that is not an option is the script; `-`/`--` make the
 * next one the script; `c` or `s` in an option cluster is no script run;
 * other options (`-e`, `--norc`, `--rcfile`) go on to the next argument.
 * `-o`/`-O NAME`, a cluster longer than an argument buffer, or running
 * out of arguments: undecided, not a script run (killed; the agent has
 * the whole argv).
 */
#define MS_SHELL_ARGS_COMPAT 3
#define MS_SHELL_ARG_BYTES 32
#define MS_SHELL_ARGV0_BYTES 256

enum { MS_ARG_SCRIPT = 1, MS_ARG_NOT_SCRIPT, MS_ARG_OPERAND_NEXT, MS_ARG_OPTIONS };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[MS_SHELL_ARGV0_BYTES]);
} SHELL_ARGV0 SEC(".maps") MS_WEAK;

/* One argument (n: bytes read, NUL included) after argv[0]. */
static __always_inline int ms_shell_arg_kind(const char *b, long n, int operand)
{
	if (operand || (b[0] != '-' && b[0] != '+'))
		return MS_ARG_SCRIPT;
	if (n == 2 || (n == 3 && b[1] == '-'))
		return MS_ARG_OPERAND_NEXT; /* `-` or `--` */
	if (b[1] == '-')
		return MS_ARG_OPTIONS; /* a long option: a flag */
	if (n >= MS_SHELL_ARG_BYTES)
		return MS_ARG_NOT_SCRIPT; /* a cluster longer than the buffer */
	int kind = MS_ARG_OPTIONS;
#pragma unroll
	for (int i = 1; i < MS_SHELL_ARG_BYTES - 1; i++) {
		if (i >= n - 1)
			break;
		char ch = b[i];
		if (ch == 'c' || ch == 's')
			return MS_ARG_NOT_SCRIPT;
		if (ch == 'o' || ch == 'O')
			kind = MS_ARG_NOT_SCRIPT; /* its name follows: undecided */
	}
	return kind;
}

static __always_inline int ms_shell_script_run_compat(struct mm_struct *mm)
{
	__u32 zero = 0;
	char *argv0 = bpf_map_lookup_elem(&SHELL_ARGV0, &zero);
	if (!argv0)
		return 0;
	__u64 at = BPF_CORE_READ(mm, arg_start);
	__u64 end = BPF_CORE_READ(mm, arg_end);
	long n = bpf_probe_read_user_str(argv0, MS_SHELL_ARGV0_BYTES, (void *)at);
	if (n <= 0 || n >= MS_SHELL_ARGV0_BYTES)
		return 0;
	at += n;
	char b[MS_SHELL_ARG_BYTES];
	int operand = 0;
	/* a bounded loop (5.3+): the verifier walks its 3 steps */
	for (int k = 0; k < MS_SHELL_ARGS_COMPAT; k++) {
		if (at >= end)
			return 0; /* no script named: stdin or interactive */
		n = bpf_probe_read_user_str(b, sizeof(b), (void *)at);
		if (n <= 0)
			return 0;
		int kind = ms_shell_arg_kind(b, n, operand);
		if (kind == MS_ARG_SCRIPT)
			return 1;
		if (kind == MS_ARG_NOT_SCRIPT || n >= MS_SHELL_ARG_BYTES)
			return 0; /* decided, or the next argument's start is unknown */
		operand = kind == MS_ARG_OPERAND_NEXT;
		at += n;
	}
	return 0;
}
#endif

/* Whether the current task (after its exec: its argv is the new image's)
 * is a shell asked to run a script. */
static __always_inline int ms_shell_script_run(struct task_struct *p)
{
#if MS_COMPAT
	return ms_shell_script_run_compat(BPF_CORE_READ(p, mm));
#else
	struct ms_shell_parse c = {};
	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	__u64 start = BPF_CORE_READ(mm, arg_start);
	__u64 len = BPF_CORE_READ(mm, arg_end) - start;
	__u32 n = len > MS_SHELL_ARGV ? MS_SHELL_ARGV : (__u32)len;
	barrier_var(n);
	n &= 2 * MS_SHELL_ARGV - 1;
	if (n > MS_SHELL_ARGV)
		return 0;
	if (bpf_probe_read_user(c.buf, n, (void *)start))
		return 0;
	c.len = n;
	/* compat.bpf.h, ms_opaque_zero: the parse's state, unknown to
	 * pre-6.7 verifiers, so no branch of the step is dead code */
	c.arg = c.at = c.opt = c.skip = c.operand = c.script = ms_opaque_zero;
	ms_loop(MS_SHELL_ARGV, ms_shell_step, &c);
	return c.script == 1;
#endif
}

/* sched_process_exec: the new image's file is forbidden (where BPF LSM is
 * not deciding; a shell rule, MS_VF_SHELL_CMD, is decided here either
 * way: the LSM check comes before the new argv is readable). */
static __always_inline __u32 ms_enforce_exec(struct task_struct *p, struct file *file, const struct ms_watch *w)
{
	struct ms_verdict v;
	if (!ms_enf_applies(w) || !ms_exec_verdict(file, w->session, &v))
		return 0;
	if (ms_lsm_enforce && !(v.flags & MS_VF_SHELL_CMD))
		return 0;
	if ((v.flags & MS_VF_SHELL_CMD) && ms_shell_script_run(p))
		return 0;
	return ms_enf_kill(&v, w->session, MS_ENF_KILL_EXEC);
}

/* A BPF LSM hook refuses (the caller returns -EPERM): counted under
 * `deny`, killed too (counted under `kill`) when the rule says so;
 * returns the record flags. */
static __always_inline __u32 ms_lsm_deny(const struct ms_verdict *v, __u32 session, __u32 deny, __u32 kill)
{
	ms_enf_count(deny);
	__u32 flags = MS_F_DENIED | ((v->rule + 1) << MS_F_RULE_SHIFT);
	if (v->flags & MS_VF_KILL)
		flags |= ms_enf_kill(v, session, kill);
	return flags;
}

/* Connect exit: the cgroup program refused this thread's connect; kill if
 * the rule says so. Called for every connect exit (the refusal may have
 * come without a stash, e.g. when the stash map was full). */
static __always_inline __u32 ms_enforce_connect_exit(__u32 session)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ms_verdict *v = bpf_map_lookup_elem(&DENIED, &tid);
	if (!v)
		return 0;
	struct ms_verdict copy = *v;
	bpf_map_delete_elem(&DENIED, &tid);
	__u32 flags = MS_F_DENIED | ((copy.rule + 1) << MS_F_RULE_SHIFT);
	if (copy.flags & MS_VF_KILL)
		flags |= ms_enf_kill(&copy, session, MS_ENF_KILL_CONNECT);
	return flags;
}

#endif /* MCP_SENSOR_ENFORCE_BPF_H */
