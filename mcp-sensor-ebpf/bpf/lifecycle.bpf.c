// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lifecycle.bpf.c: fork, exec and exit of watched processes.
 *
 * Owns the watched set: a child is added at fork, before it runs its first
 * instruction, so setsid, double forks and re-parenting never lose it; it is
 * removed when its whole thread group has exited. Entries carry the start
 * time, so a recycled pid never inherits a watch (see ms_watched()).
 */
#include "enforce.bpf.h"
#include "discover.bpf.h"

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ms_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid;
	__u32 ctgid = child->tgid;

	if (ptgid == ctgid)
		return 0; /* a new thread: covered by its tgid's entry */
	struct ms_watch *w = ms_watched(parent, ptgid);
	if (!w)
		return 0;

	struct ms_watch cw = {
		.start_ns = child->start_boottime,
		.session = w->session,
		.flags = w->flags,
	};
	if (bpf_map_update_elem(&WATCHED, &ctgid, &cw, BPF_ANY))
		ms_count(MS_CNT_WATCH_FULL, 1);

	struct ms_fork *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_FORK);
		return 0;
	}
	ms_fill_header(&e->h, MS_EV_FORK, parent, w->session);
	e->child_pid = ctgid;
	e->_pad = 0;
	e->child_start_ns = cw.start_ns;
	bpf_ringbuf_submit(e, ms_wakeup());
	return 0;
}

/*
 * The exec record of p running bprm. The file the new image runs from is
 * bprm->file: for a script, the interpreter binfmt_script put there, not
 * the path the caller passed. argv is read from the new image's memory,
 * so only once it is installed (`argv`: at sched_process_exec, not at
 * the LSM check, where the old image is still current).
 */
static __always_inline void ms_emit_exec(struct task_struct *p, struct linux_binprm *bprm,
					 struct ms_watch *w, __u32 flags, pid_t old_pid, int argv)
{
	struct file *file = BPF_CORE_READ(bprm, file);
	struct ms_exec *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_EXEC);
		return;
	}
	ms_fill_header(&e->h, MS_EV_EXEC, p, w->session);
	e->old_tid = old_pid;
	ms_file_id(file, &e->dev, &e->ino);
	e->size = BPF_CORE_READ(file, f_inode, i_size);
	e->parent_start_ns = ms_task_start_ns(BPF_CORE_READ(p, real_parent));
	e->exe_off = ms_file_path(e->exe, file, &flags);
	e->cwd_off = ms_path_build(e->cwd, BPF_CORE_READ(p, fs, pwd.dentry),
				   BPF_CORE_READ(p, fs, pwd.mnt), &flags);

	/* bprm->interp differs from bprm->filename once a binfmt handler
	 * (#! or binfmt_misc) has redirected the exec to an interpreter. */
	const char *filename = BPF_CORE_READ(bprm, filename);
	if (BPF_CORE_READ(bprm, interp) != filename)
		flags |= MS_F_SCRIPT;
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	e->filename_len = n > 0 ? n - 1 : 0;

	__u64 len = 0;
	if (argv) {
		struct mm_struct *mm = BPF_CORE_READ(p, mm);
		__u64 start = BPF_CORE_READ(mm, arg_start);
		len = BPF_CORE_READ(mm, arg_end) - start;
		if (len > MS_ARGV_MAX) {
			len = MS_ARGV_MAX;
			flags |= MS_F_ARGV_TRUNC;
		}
		if (bpf_probe_read_user(e->argv, len, (void *)start))
			len = 0;
	}
	e->argv_len = len;
	/* a candidate's root says why it is one (MS_F_CAND_*) */
	if (w->session == BPF_CORE_READ(p, tgid))
		flags |= w->flags & (MS_F_CAND_CLIENT | MS_F_CAND_PIPES | MS_F_CAND_NESTED);
	e->h.flags = flags;
	bpf_ringbuf_submit(e, ms_wakeup());
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ms_sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct ms_watch *w = ms_watched(p, p->tgid);
	if (ms_may_discover(w, p->tgid)) {
		struct ms_watch *c = ms_discover_exec(p, w);
		if (c)
			w = c;
	}
	if (!w)
		return 0;
	/* enforcement first: the kill never waits for ring space */
	__u32 flags = ms_enforce_exec(p, bprm->file, w);
	ms_emit_exec(p, bprm, w, flags, old_pid, 1);
	return 0;
}

/*
 * BPF LSM (where the kernel has it active, and under --enforce): a watched
 * server's exec of a forbidden file is refused before the new program
 * runs. Called once per binfmt attempt, so a script's interpreter is
 * checked too. The record is written here (no argv: the new image is not
 * installed); execve fails with EPERM, and a kill rule also kills.
 */
SEC("lsm/bprm_check_security")
int BPF_PROG(ms_lsm_bprm_check_security, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	struct task_struct *p = (struct task_struct *)bpf_get_current_task();
	struct ms_watch *w = ms_watched(p, bpf_get_current_pid_tgid() >> 32);
	struct ms_verdict v;
	if (!ms_enf_applies(w) || !ms_exec_verdict(bprm->file, w->session, &v))
		return 0;
	/* a shell's argv decides (MS_VF_SHELL_CMD): at sched_process_exec */
	if (v.flags & MS_VF_SHELL_CMD)
		return 0;
	__u32 flags = ms_lsm_deny(&v, w->session, MS_ENF_DENY_EXEC, MS_ENF_KILL_EXEC);
	ms_emit_exec(p, bprm, w, flags, 0, 0);
	return -MS_EPERM;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ms_sched_process_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	struct ms_watch *w = ms_watched(p, tgid);
	if (!w) {
		/* a client (never watched itself) leaves CLIENTS with its last
		 * thread: the table holds live clients only. Every exit on the
		 * host comes here: a lockless lookup first, the delete (which
		 * takes the bucket's lock) only for a client */
		if (ms_discover_flags && bpf_map_lookup_elem(&CLIENTS, &tgid) &&
		    BPF_CORE_READ(p, signal, live.counter) == 0)
			bpf_map_delete_elem(&CLIENTS, &tgid);
		return 0;
	}
	/* Only the last thread of the group ends the process. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;

	__u32 session = w->session;
	bpf_map_delete_elem(&WATCHED, &tgid);
	/* FIRST_REQ[session] stays: members that outlive the root (a detached
	 * continuation) are still after the first request; a new session of
	 * this pid resets it where it starts (discover.bpf.h, loader watch) */

	struct ms_exit *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_EXIT);
		return 0;
	}
	ms_fill_header(&e->h, MS_EV_EXIT, p, session);
	e->exit_code = p->exit_code;
	e->_pad = 0;
	bpf_ringbuf_submit(e, ms_wakeup());
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
