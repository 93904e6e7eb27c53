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

/* Connects refused by the cgroup program, per thread, until the connect
 * returns (LRU: an entry whose syscall exit never came cannot fill it). */
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

/* Enforcement is on and watch entry `w` is a server's: not a discovery
 * candidate the agent has yet to confirm as MCP (a pipeline's `ssh` with
 * pipe stdio is a candidate until its first bytes say no). */
static __always_inline int ms_enf_applies(const struct ms_watch *w)
{
	return w && !(w->flags & (MS_F_CAND_CLIENT | MS_F_CAND_PIPES)) && ms_enf_switch();
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
 * bpf_loop step (the verifier checks a step once). */
struct ms_name_ctx {
	struct ms_dir_key dk;
	__u32 len;         /* the name's length */
	__u32 tl;          /* bytes in head and tail: min(len, MS_NAME_PART) */
	char head[MS_NAME_PART];
	char tail[MS_NAME_PART]; /* the last tl bytes of the name */
	struct ms_verdict v;
	__u32 found;
};

/* All-ones when i < n (both <= MS_NAME_PART), else 0; BPF has no setcc,
 * and a branch per byte would multiply the verifier's states. */
#define MS_LT_MASK(i, n) ((__u32)((__s32)((__u32)(i) - (n)) >> 31))

static __attribute__((unused)) long ms_dir_slot(__u64 slot, struct ms_name_ctx *c)
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
	__u32 diff = 0;
#pragma unroll
	for (__u32 i = 0; i < MS_NAME_PART; i++) {
		diff |= MS_LT_MASK(i, p) & (__u8)(c->head[i] ^ r->prefix[i]);
		diff |= MS_LT_MASK(i, s) & (__u8)(c->tail[(tl - s + i) & (MS_NAME_PART - 1)] ^ r->suffix[i]);
	}
	if (diff)
		return 0;
	c->v = r->v;
	c->found = 1;
	return 1;
}

/* Open: the struct file the kernel opened is protected. */
static __always_inline __u32 ms_enforce_open(struct file *file, __u32 session)
{
	if (!ms_enf_on())
		return 0;
	struct ms_file_key k = {};
	ms_file_id(file, &k.dev, &k.ino);
	struct ms_verdict *v = bpf_map_lookup_elem(&DENY_FILES, &k);
	if (v)
		return ms_enf_kill(v, session, MS_ENF_KILL_OPEN);

	/* Not known by identity: maybe a new file in a protected directory. */
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
	bpf_probe_read_kernel(c.tail, tl, name + len - tl);
	bpf_loop(MS_DIR_SLOTS, ms_dir_slot, &c, 0);
	if (c.found)
		return ms_enf_kill(&c.v, session, MS_ENF_KILL_OPEN);
	return 0;
}

/* Exec: the file the new image runs from is forbidden (a symlink resolves
 * to it, a hard link is the same inode). */
static __always_inline __u32 ms_enforce_exec(struct file *file, const struct ms_watch *w)
{
	if (!ms_enf_applies(w))
		return 0;
	__u32 session = w->session;
	struct ms_file_key k = {};
	ms_file_id(file, &k.dev, &k.ino);
	struct ms_verdict *v = bpf_map_lookup_elem(&DENY_EXEC, &k);
	if (!v)
		return 0;
	return ms_enf_kill(v, session, MS_ENF_KILL_EXEC);
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
