// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * file.bpf.c: file opens of watched processes (open, openat, openat2,
 * creat, open_by_handle_at).
 *
 * One exit program, ms_open_exits, attached to each open syscall, reports
 * the open, with the arguments read from the saved registers. A successful
 * open is reported with the path of the struct file the kernel opened, so
 * the caller's string (which another thread can rewrite, which can be
 * relative or go through links) is never trusted. A failed open has no
 * file: its path is the caller's string, flagged MS_F_UNRESOLVED.
 */
#include "enforce.bpf.h"

#define MS_O_CREAT_WRONLY_TRUNC 01101 /* what creat() means */

/*
 * Exit only, no entry program (as stdio.bpf.c, for the same reason: a
 * syscall tracepoint program costs ~130 ns per invocation even when it
 * returns at once, and every open on the host paid it twice). The caller's
 * arguments are still in its saved user registers at exit (x86_64: di, si,
 * dx, r10; a syscall rewrites only ax); ms_open_exits reads them in
 * each syscall's order.
 */
struct ms_open_args {
	__u64 path;  /* user pointer, 0: none */
	__u64 flags;
	__u64 mode;
	__u32 sys;   /* MS_SYS_* */
};

/* The arguments of open syscall nr from its saved registers; 0 when nr
 * is not an open. The switch only assigns (see ms_open_exits). */
static __always_inline int ms_open_args_of(int nr, struct pt_regs *regs, struct ms_open_args *a)
{
	switch (nr) {
	case 2: /* open(path, flags, mode) */
		a->sys = MS_SYS_OPEN;
		a->path = BPF_CORE_READ(regs, di);
		a->flags = BPF_CORE_READ(regs, si);
		a->mode = BPF_CORE_READ(regs, dx);
		break;
	case 257: /* openat(dirfd, path, flags, mode) */
		a->sys = MS_SYS_OPENAT;
		a->path = BPF_CORE_READ(regs, si);
		a->flags = BPF_CORE_READ(regs, dx);
		a->mode = BPF_CORE_READ(regs, r10);
		break;
	case 437: { /* openat2(dirfd, path, how, size) */
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)BPF_CORE_READ(regs, dx));
		a->sys = MS_SYS_OPENAT2;
		a->path = BPF_CORE_READ(regs, si);
		a->flags = how.flags;
		a->mode = how.mode;
		break;
	}
	case 85: /* creat(path, mode) */
		a->sys = MS_SYS_CREAT;
		a->path = BPF_CORE_READ(regs, di);
		a->flags = MS_O_CREAT_WRONLY_TRUNC;
		a->mode = BPF_CORE_READ(regs, si);
		break;
	case 304: /* open_by_handle_at(mountfd, handle, flags): no path */
		a->sys = MS_SYS_OPEN_BY_HANDLE_AT;
		a->flags = BPF_CORE_READ(regs, dx);
		break;
	default:
		return 0;
	}
	return 1;
}

/* See enforce.bpf.h: verified once per program. */
__noinline int ms_open_verdict(__u64 file, __u32 wr, __u32 session)
{
	struct ms_verdict v;
	if (!ms_file_verdict((struct file *)file, wr, session, &v))
		return 0;
	return ms_verdict_pack(&v);
}

/* See enforce.bpf.h. */
__noinline int ms_dir_verdict(__u64 dentry, __u64 ino, __u32 dev, __u32 wr)
{
	return ms_dir_verdict_body(dentry, ino, dev, wr);
}

/* See enforce.bpf.h. */
__noinline int ms_dir_slot_verdict(__u64 dentry, __u64 ino, __u32 dev, __u32 slot)
{
	return ms_dir_slot_verdict_body((struct dentry *)dentry, ino, dev, slot);
}

/* The open record: the opened file's path and identity when there is a
 * file, else the caller's string (MS_F_UNRESOLVED). */
static __always_inline void ms_emit_open(struct file *file, const struct ms_open_args *a, long ret,
					 __u32 flags, __u32 session)
{
	struct ms_open *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_OPEN);
		return;
	}
	ms_fill_header(&e->h, MS_EV_OPEN, (struct task_struct *)bpf_get_current_task(), session);
	e->ret = ret;
	e->flags = a->flags;
	e->mode = a->mode;
	e->syscall = a->sys;
	e->dev = 0;
	e->ino = 0;
	e->path_off = 0;
	e->path_len = 0;

	if (file) {
		__u32 off = ms_file_path(e->path, file, &flags);
		e->path_off = off;
		e->path_len = MS_PATH_MAX - off;
		ms_file_id(file, &e->dev, &e->ino);
	} else if (a->path) {
		long n = bpf_probe_read_user_str(e->path, MS_PATH_MAX, (void *)a->path);
		e->path_len = n > 0 ? n - 1 : 0;
		flags |= MS_F_UNRESOLVED;
		/* the buffer filled: cut unless the string ended exactly there */
		__u8 more = 0;
		if (n == MS_PATH_MAX &&
		    !bpf_probe_read_user(&more, 1, (void *)(a->path + MS_PATH_MAX - 1)) && more)
			flags |= MS_F_PATH_TRUNC;
	}
	e->h.flags = flags;
	bpf_ringbuf_submit(e, ms_wakeup());
}

/*
 * One program for the five open syscalls, attached to each one's exit
 * tracepoint by the loader (loader.rs, MULTI_ATTACH), so the verifier
 * checks the path walk once instead of five times (~0.25 s each, most of
 * the sensor's start-up). The syscall is told by the record's id (x86_64
 * numbers, as the register layout), in one switch that only assigns: the
 * verifier then sees the five paths rejoin with equivalent states before
 * the walk, and a second branch on the syscall would keep them apart.
 */
SEC("tracepoint/syscalls/sys_exit_openat")
int ms_open_exits(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	struct ms_watch *w = ms_watched_current();
	if (!w)
		return 0;
	__u32 session = w->session;
	struct pt_regs *regs = ms_user_regs();
	int nr = ms_exit_nr(ctx);
	if (!ms_regs_ok(regs, nr))
		return 0;
	struct ms_open_args a = {};
	if (!ms_open_args_of(nr, regs, &a))
		return 0;
	if (ret == -MS_EPERM && ms_lsm_enforce) {
		/* refused by ms_lsm_file_open, which reported it */
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		if (bpf_map_lookup_elem(&DENIED, &tid)) {
			bpf_map_delete_elem(&DENIED, &tid);
			return 0;
		}
	}

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *file = ret >= 0 ? ms_fd_file(task, ret) : NULL;
	/* enforcement first: the kill never waits for ring space */
	__u32 flags = file ? ms_enforce_open(file, a.flags, session) : 0;
	ms_emit_open(file, &a, ret, flags, session);
	return 0;
}

/*
 * BPF LSM (where the kernel has it active, and under --enforce): a watched
 * server's open of a protected file is refused before the file is opened,
 * whichever way the open came (any open syscall, io_uring's openat, exec's
 * open of its binary). The record is written here, with the path and
 * identity of the file that was refused; the syscall then fails with
 * EPERM, and a kill rule also kills.
 */
SEC("lsm/file_open")
int BPF_PROG(ms_lsm_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	struct ms_watch *w = ms_watched_current();
	if (!ms_enf_applies(w))
		return 0;
	__u32 session = w->session;
	/* the caller's flags when an open syscall is under way (as the exit
	 * program reports them), else the file's (io_uring, exec's open) */
	struct ms_open_args a = {};
	struct pt_regs *regs = ms_user_regs();
	if (!ms_open_args_of((int)BPF_CORE_READ(regs, orig_ax), regs, &a))
		a.flags = BPF_CORE_READ(file, f_flags);
	/* the file as a scalar: 5.10 passes nothing else to a global
	 * function ("R1 is not a scalar"), and a BTF pointer stays one */
	__u64 fv = 0;
	bpf_probe_read_kernel(&fv, sizeof(fv), &ctx[0]);
	struct ms_verdict v;
	if (!ms_open_verdict_of(fv, ms_open_writes(a.flags), session, &v))
		return 0;
	__u32 flags = ms_lsm_deny(&v, session, MS_ENF_DENY_OPEN, MS_ENF_KILL_OPEN);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&DENIED, &tid, &v, BPF_ANY))
		ms_count(MS_CNT_DENIED_FULL, 1);
	ms_emit_open(file, &a, -MS_EPERM, flags, session);
	return -MS_EPERM;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
