/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * enforce.bpf.h: kill decisions taken in the kernel, at the syscall, for
 * watched processes: opening a protected file (by identity, or by parent
 * directory + name for files that did not exist when the rules were
 * compiled), executing a forbidden file (by identity), and the kill that
 * follows a refused connect (the refusal itself is enforce.bpf.c's).
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

/* One name tested against a protected directory's patterns, one slot per
 * loop step (with bpf_loop the verifier checks a step once). Names are
 * compared 8 bytes at a time under masks: a byte-by-byte compare needed
 * ~500 bytes of stack, and a bpf_loop callback's stack counts with its
 * caller's against the 512-byte limit (6.1 and 6.12 refused the open
 * program: "combined stack size of 2 calls is 736"). */
#define MS_NAME_WORDS (MS_NAME_PART / 8)
struct ms_name_ctx {
	struct ms_dir_key dk;
	__u32 len;   /* the name's length */
	__u32 tl;    /* min(len, MS_NAME_PART) */
	__u64 head[MS_NAME_WORDS];     /* the first tl bytes, zero-padded */
	__u64 tail[2 * MS_NAME_WORDS]; /* the last tl bytes end at byte MS_NAME_PART */
	struct ms_verdict v;
	__u32 found;
};

/* The bytes [lo, hi) that fall in 8-byte word k, as a mask (BPF is
 * little-endian on x86_64: byte j of a word is bits 8j..8j+7). */
static __always_inline __u64 ms_byte_mask(__u32 k, __u32 lo, __u32 hi)
{
	__u32 a = lo > 8 * k ? lo - 8 * k : 0;
	__u32 b = hi > 8 * k ? hi - 8 * k : 0;
	if (b > 8)
		b = 8;
	if (a >= b)
		return 0;
	__u64 upto = b == 8 ? ~0ULL : (1ULL << (b * 8)) - 1;
	__u64 below = a == 0 ? 0 : (1ULL << (a * 8)) - 1;
	return upto & ~below;
}

MS_LOOP_CB ms_dir_slot(__u64 slot, struct ms_name_ctx *c)
{
	c->dk.slot = slot;
	struct ms_dir_rule *r = bpf_map_lookup_elem(&DENY_DIRS, &c->dk);
	if (!r)
		return 1; /* slots are dense: no more */
	__u32 p = r->prefix_len, s = r->suffix_len, len = c->len, tl = c->tl;
	if (p > MS_NAME_PART || s > MS_NAME_PART || len < p + s || s > tl)
		return 0;
	if (r->exact && len != p)
		return 0;
	/* the rule's suffix is right-aligned in its field (abi.h), as the
	 * name's tail is in c->tail */
	const __u64 *pre = (const __u64 *)r->prefix, *suf = (const __u64 *)r->suffix;
	__u64 diff = 0;
#pragma unroll
	for (__u32 k = 0; k < MS_NAME_WORDS; k++) {
		diff |= (c->head[k] ^ pre[k]) & ms_byte_mask(k, 0, p);
		diff |= (c->tail[k] ^ suf[k]) & ms_byte_mask(k, MS_NAME_PART - s, MS_NAME_PART);
	}
	if (diff)
		return 0;
	c->v = r->v;
	c->found = 1;
	return 1;
}

/* Whether BPF LSM programs decide opens and execs (set by the loader
 * when BPF LSM is active): the syscall-exit kills then stand down. */
const volatile __u32 ms_lsm_enforce MS_WEAK = 0;

/* The verdict on opening `file`, by identity or, for a file that did not
 * exist when the rules were compiled, by directory + name. */
static __always_inline int ms_file_verdict(struct file *file, struct ms_verdict *out)
{
	struct ms_file_key k = {};
	ms_file_id(file, &k.dev, &k.ino);
	struct ms_verdict *v = bpf_map_lookup_elem(&DENY_FILES, &k);
	if (v) {
		*out = *v;
		return 1;
	}
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct inode *dir = BPF_CORE_READ(d, d_parent, d_inode);
	struct ms_dir_key dk = {};
	dk.dev = BPF_CORE_READ(dir, i_sb, s_dev);
	dk.ino = BPF_CORE_READ(dir, i_ino);
	if (!bpf_map_lookup_elem(&DENY_DIRS, &dk))
		return 0; /* slot 0 absent: the common case, one lookup */

	struct ms_name_ctx c = { .dk = dk };
	__u32 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	__u32 tl = len < MS_NAME_PART ? len : MS_NAME_PART;
	c.len = len;
	c.tl = tl;
	bpf_probe_read_kernel(c.head, tl, name);
	/* an offset, not a pointer subtraction: the verifier refuses those */
	__u32 at = MS_NAME_PART - tl;
	barrier_var(at);
	at &= 2 * MS_NAME_PART - 1;
	bpf_probe_read_kernel((char *)c.tail + at, tl, name + len - tl);
	ms_loop(MS_DIR_SLOTS, ms_dir_slot, &c);
	if (!c.found)
		return 0;
	*out = c.v;
	return 1;
}

/* The verdict on executing `file` (a symlink resolves to it, a hard link
 * is the same inode). */
static __always_inline int ms_exec_verdict(struct file *file, struct ms_verdict *out)
{
	struct ms_file_key k = {};
	ms_file_id(file, &k.dev, &k.ino);
	struct ms_verdict *v = bpf_map_lookup_elem(&DENY_EXEC, &k);
	if (!v)
		return 0;
	*out = *v;
	return 1;
}

/* Syscall exit of an open: the struct file the kernel opened is protected
 * (where BPF LSM is not deciding). */
static __always_inline __u32 ms_enforce_open(struct file *file, __u32 session)
{
	struct ms_verdict v;
	if (ms_lsm_enforce || !ms_enf_on() || !ms_file_verdict(file, &v))
		return 0;
	return ms_enf_kill(&v, session, MS_ENF_KILL_OPEN);
}

/* sched_process_exec: the new image's file is forbidden (where BPF LSM is
 * not deciding). */
static __always_inline __u32 ms_enforce_exec(struct file *file, const struct ms_watch *w)
{
	struct ms_verdict v;
	if (ms_lsm_enforce || !ms_enf_applies(w) || !ms_exec_verdict(file, &v))
		return 0;
	return ms_enf_kill(&v, w->session, MS_ENF_KILL_EXEC);
}

/* A BPF LSM hook refuses (the caller returns -EPERM): counted, killed too
 * when the rule says so; returns the record flags. */
static __always_inline __u32 ms_lsm_deny(const struct ms_verdict *v, __u32 session, __u32 stat)
{
	ms_enf_count(stat);
	__u32 flags = MS_F_DENIED | ((v->rule + 1) << MS_F_RULE_SHIFT);
	if (v->flags & MS_VF_KILL)
		flags |= ms_enf_kill(v, session, stat == MS_ENF_DENY_OPEN ? MS_ENF_KILL_OPEN : MS_ENF_KILL_EXEC);
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
