/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * discover.bpf.h: finding MCP servers nobody wrapped (`mcp-sensor run`).
 *
 * Two decisions, both on paths that are rare or already paid for:
 * - at exec (lifecycle.bpf.c), for a process nobody watches: is it a known
 *   client (its comm is in CLIENT_COMMS: remember it in CLIENTS), and is it
 *   a candidate server (its parent is a client, or its stdin and stdout are
 *   both pipes or sockets)? A candidate is watched as its own session and
 *   its stdio pipes become channels flagged MS_CH_CANDIDATE;
 * - at the first transfer of each direction of a candidate channel
 *   (stdio.bpf.c): a first non-blank byte that no JSON-RPC framing starts
 *   with ('{', '[', or 'C' of Content-Length) unwatches the process at
 *   once and tells the agent (MS_EV_CHAN_REJECT), so a shell pipeline that
 *   happens to have pipes on both ends costs one peek, not a capture.
 * The read/write programs of unwatched processes do no more work than
 * before: discovery adds nothing to them.
 *
 * The channel, not the process, says which tree is the server: a launcher
 * (npx, uvx, `sh -c`, a wrapper script) passes the pipes down, and the
 * process that finally reads and writes them is a member of the
 * launcher's candidate, captured under its session. A member exec'd with
 * stdio of its own (a tool's `sh -c` with fresh pipes, or a server an
 * agent-like candidate starts) becomes a nested candidate (MS_F_CAND_NESTED):
 * decided on its own channel, and folded back into the enclosing tree by
 * the agent when that channel is not MCP.
 */
#ifndef MCP_SENSOR_DISCOVER_BPF_H
#define MCP_SENSOR_DISCOVER_BPF_H

#include "path.bpf.h"

/* MS_DISC_* (set by the loader); 0 disables discovery entirely. */
const volatile __u32 ms_discover_flags MS_WEAK = 0;

/* comm of a known MCP client -> unused. Filled by the agent from config. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct ms_comm_key);
	__type(value, __u32);
} CLIENT_COMMS SEC(".maps") MS_WEAK;

/* tgid of a running client -> its start time (0: claim on first sight, for
 * clients the agent found in /proc). An entry goes when its client's last
 * thread exits (lifecycle.bpf.c); the start time keeps a recycled pid from
 * being taken for a client meanwhile. A plain hash, not an LRU: when full,
 * a new client is refused and counted (MS_CNT_CLIENTS_FULL), where an LRU
 * would have silently evicted a live client's entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u64);
} CLIENTS SEC(".maps") MS_WEAK;

/* tgid -> its start time: new candidates the tables had no room for at
 * exec (MS_CNT_CAND_LOST, MS_CNT_WATCH_FULL), marked for the agent, which
 * takes the marks and adopts them from /proc once room frees
 * (discover/late.rs). Written only when a table is full. LRU: past 4,096
 * marks the oldest go, still counted in the counters. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} UNTRACKED SEC(".maps") MS_WEAK;

#define MS_S_IFMT 00170000
#define MS_S_IFSOCK 0140000
#define MS_S_IFIFO 0010000

/* A pipe or a socket: what a stdio JSON-RPC channel runs over. */
static __always_inline int ms_is_stream(struct file *f)
{
	if (!f)
		return 0;
	__u32 fmt = BPF_CORE_READ(f, f_inode, i_mode) & MS_S_IFMT;
	return fmt == MS_S_IFIFO || fmt == MS_S_IFSOCK;
}

/* Returns 0 when f is a channel now (registered here or before), -1 when
 * the table had no room (counted). */
static __always_inline int ms_add_candidate_channel(struct file *f, __u32 session)
{
	struct ms_chan_key key = {};
	ms_file_id(f, &key.dev, &key.ino);
	struct ms_chan c = { .session = session, .flags = MS_CH_CANDIDATE };
	if (!bpf_map_update_elem(&CHANNELS, &key, &c, BPF_NOEXIST))
		return 0;
	struct ms_chan *old = bpf_map_lookup_elem(&CHANNELS, &key);
	if (!old) {
		ms_count(MS_CNT_CHAN_FULL, 1);
		return -1;
	}
	/* a channel already registered (a wrapped server's, a live
	 * candidate's) keeps its owner. A candidate's whose session is no
	 * longer watched as its own (rejected, ended, folded: the agent sweeps
	 * those once a second, loader/discovery.rs) is taken over, so a
	 * launcher rejected for its first line cannot leave its pipes unseen
	 * for the server it starts next on them. */
	__u32 was = old->session;
	if ((old->flags & MS_CH_CANDIDATE) && was != session) {
		struct ms_watch *ow = bpf_map_lookup_elem(&WATCHED, &was);
		if (!ow || ow->session != was)
			bpf_map_update_elem(&CHANNELS, &key, &c, BPF_EXIST);
	}
	return 0;
}

/* Removes the channels f0 and f1 if session registered them (the half of
 * a candidate that did fit). */
static __always_inline void ms_del_channels_of(struct file *f0, struct file *f1, __u32 session)
{
	struct file *fs[2] = { f0, f1 };
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (!fs[i])
			continue;
		struct ms_chan_key key = {};
		ms_file_id(fs[i], &key.dev, &key.ino);
		struct ms_chan *c = bpf_map_lookup_elem(&CHANNELS, &key);
		if (c && c->session == session && (c->flags & MS_CH_CANDIDATE) && c->off[0] == 0 && c->off[1] == 0)
			bpf_map_delete_elem(&CHANNELS, &key);
	}
}

#define MS_F_CAND_MASK (MS_F_CAND_CLIENT | MS_F_CAND_PIPES)

/*
 * Whether an exec may make a new candidate: the process is not watched,
 * or it is a member (not the root) of a candidate still undecided. The
 * second case is a server started inside a tree that is itself only a
 * candidate (an agent started with pipes that runs servers): it may become
 * a nested candidate (ms_discover_exec). Once the agent confirms a
 * candidate it clears the candidate flags of its tree, so a real server's
 * children stay its own.
 */
static __always_inline int ms_may_discover(struct ms_watch *w, __u32 tgid)
{
	return !w || ((w->flags & MS_F_CAND_MASK) && w->session != tgid);
}

/* `f` is a channel of candidate `session` (its launcher passed it down). */
static __always_inline int ms_is_channel_of(struct file *f, __u32 session)
{
	if (!f)
		return 0;
	struct ms_chan_key key = {};
	ms_file_id(f, &key.dev, &key.ino);
	struct ms_chan *c = bpf_map_lookup_elem(&CHANNELS, &key);
	return c && c->session == session;
}

/*
 * Called at exec when ms_may_discover(). Returns the process's new watch
 * entry when it became a candidate, else NULL. `in`: its entry as a member
 * of another candidate (NULL when unwatched). A member whose stdin or
 * stdout is that candidate's channel stays a member (a launcher's child
 * running the server on the pipes it was given); one with stdio of its
 * own leaves the tree as a nested candidate, enforced as its parent tree
 * is (MS_F_CAND_SPOKE set when the parent is a confirmed server's or a
 * candidate's that spoke).
 */
static __always_inline struct ms_watch *ms_discover_exec(struct task_struct *p, struct ms_watch *in)
{
	int split = in != NULL;
	__u32 mode = ms_discover_flags;
	if (!mode)
		return NULL;
	__u32 tgid = p->tgid;
	__u64 start = ms_task_start_ns(p);

	struct ms_comm_key ck = {};
	bpf_get_current_comm(ck.comm, sizeof(ck.comm));
	if (bpf_map_lookup_elem(&CLIENT_COMMS, &ck) && bpf_map_update_elem(&CLIENTS, &tgid, &start, BPF_ANY))
		ms_count(MS_CNT_CLIENTS_FULL, 1);

	__u32 reason = 0;
	if (mode & MS_DISC_CLIENTS) {
		struct task_struct *parent = BPF_CORE_READ(p, real_parent);
		__u32 ptgid = BPF_CORE_READ(parent, tgid);
		__u64 *cs = bpf_map_lookup_elem(&CLIENTS, &ptgid);
		if (cs) {
			__u64 pstart = ms_task_start_ns(parent);
			if (*cs == 0)
				*cs = pstart;
			if (*cs == pstart)
				reason = MS_F_CAND_CLIENT;
		}
	}
	struct file *f0 = ms_fd_file(p, 0);
	struct file *f1 = ms_fd_file(p, 1);
	int s0 = ms_is_stream(f0), s1 = ms_is_stream(f1);
	if (!reason && (mode & MS_DISC_PIPES) && s0 && s1)
		reason = MS_F_CAND_PIPES;
	/* no pipe on stdin or stdout: not a stdio server, whoever its parent */
	if (!reason || !(s0 || s1))
		return NULL;
	if (in && (ms_is_channel_of(f0, in->session) || ms_is_channel_of(f1, in->session)))
		return NULL;

	struct ms_watch w = { .start_ns = start, .session = tgid, .flags = reason };
	/* enforced as its parent tree is: a confirmed server's (no candidate
	 * flags left: the agent's confirmation clears MS_F_CAND_SPOKE too) or
	 * a candidate's that spoke. Testing only MS_F_CAND_SPOKE let a
	 * confirmed server's first `sh -c cat key` read the key before the
	 * agent folded the shell back into the tree (1 run in ~20). */
	if (in)
		w.flags |= MS_F_CAND_NESTED |
			   (!(in->flags & MS_F_CAND_MASK) || ms_cand_spoke(in) ? MS_F_CAND_SPOKE : 0);
	/* the member entry as it was, to restore if the split cannot be made */
	struct ms_watch prev = {};
	if (in)
		prev = *in;
	if (bpf_map_update_elem(&WATCHED, &tgid, &w, split ? BPF_EXIST : BPF_NOEXIST)) {
		ms_count(MS_CNT_WATCH_FULL, 1);
		if (!split)
			bpf_map_update_elem(&UNTRACKED, &tgid, &start, BPF_ANY);
		return NULL;
	}
	/* a new session: a first-request stamp left by an earlier session of
	 * this pid is not its own; a nested one inherits its tree's, so its
	 * `sh -c` is a shell after the first request as the server's is */
	__u64 *fr = in ? bpf_map_lookup_elem(&FIRST_REQ, &in->session) : NULL;
	if (fr) {
		__u64 t = *fr;
		if (bpf_map_update_elem(&FIRST_REQ, &tgid, &t, BPF_ANY))
			ms_count(MS_CNT_FIRST_REQ_FULL, 1);
	} else {
		bpf_map_delete_elem(&FIRST_REQ, &tgid);
	}
	int lost = 0;
	if (s0 && ms_add_candidate_channel(f0, tgid))
		lost = 1;
	if (s1 && f1 != f0 && ms_add_candidate_channel(f1, tgid))
		lost = 1;
	if (lost) {
		/* a candidate without its channel could never be decided: it is
		 * not tracked (counted; the agent's drops line names the setting
		 * to raise). A new candidate is unwatched again; a member that
		 * tried to split off stays in the tree it came from. */
		ms_count(MS_CNT_CAND_LOST, 1);
		if (split) {
			bpf_map_update_elem(&WATCHED, &tgid, &prev, BPF_EXIST);
		} else {
			bpf_map_delete_elem(&WATCHED, &tgid);
			bpf_map_update_elem(&UNTRACKED, &tgid, &start, BPF_ANY);
		}
		ms_del_channels_of(f0, f1, tgid);
		return NULL;
	}
	return bpf_map_lookup_elem(&WATCHED, &tgid);
}

#define MS_PEEK 8

/*
 * First transfer of a direction on a candidate channel: may it be
 * JSON-RPC? Returns 0 to reject, with the first non-blank byte in *byte.
 * All blanks (or an unreadable buffer) is not a reason to reject.
 */
static __always_inline int ms_may_be_jsonrpc(__u64 ptr, __u64 len, __u8 *byte)
{
	__u8 b[MS_PEEK] = {};
	__u32 n = len > MS_PEEK ? MS_PEEK : (__u32)len;
	if (n == 0 || bpf_probe_read_user(b, n, (void *)ptr))
		return 1;
	/* unused bytes of b stay 0, which is not blank: the scan stops there */
	int ok = 1, seen = 0;
#pragma unroll
	for (int i = 0; i < MS_PEEK; i++) {
		__u8 c = b[i];
		int blank = c == ' ' || c == '\t' || c == '\r' || c == '\n';
		if (!seen && !blank && i < n) {
			seen = 1;
			*byte = c;
			ok = c == '{' || c == '[' || c == 'C' || c == 'c';
		}
		if (c == 0)
			seen = 1;
	}
	return ok;
}

/* Removes the channel, unwatches the current process (a nested candidate
 * stays watched: the agent folds it into its parent tree), and tells the
 * agent. */
static __always_inline void ms_reject_candidate(struct ms_chan_key *key, __u32 session, __u8 dir, __u8 byte)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_map_delete_elem(&CHANNELS, key);
	/* and its other stdio channel, unused so far (its stdin, when the
	 * banner went to stdout): a nested candidate stays watched, and a
	 * child it starts on those pipes (a wrapper's server) would otherwise
	 * stay its member on a channel of a session already judged, never a
	 * candidate of its own (ms_discover_exec) */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	ms_del_channels_of(ms_fd_file(task, 0), ms_fd_file(task, 1), session);
	struct ms_watch *w = bpf_map_lookup_elem(&WATCHED, &tgid);
	if (w && !(w->flags & MS_F_CAND_NESTED))
		bpf_map_delete_elem(&WATCHED, &tgid);
	struct ms_chan_reject *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_CHAN_REJECT);
		return;
	}
	ms_fill_header(&e->h, MS_EV_CHAN_REJECT, (struct task_struct *)bpf_get_current_task(), session);
	e->chan_ino = key->ino;
	e->chan_dev = key->dev;
	e->dir = dir;
	e->byte = byte;
	e->_pad = 0;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

/* The candidate's tree wrote a JSON-RPC first byte on its channel. */
static __always_inline void ms_mark_spoke(__u32 session)
{
	struct ms_watch *r = bpf_map_lookup_elem(&WATCHED, &session);
	if (r && !(r->flags & MS_F_CAND_SPOKE))
		r->flags |= MS_F_CAND_SPOKE;
}

#endif /* MCP_SENSOR_DISCOVER_BPF_H */
