// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * file.bpf.c: file opens of watched processes (open, openat, openat2,
 * creat, open_by_handle_at).
 *
 * Entry stashes the caller's arguments; exit reports. A successful open is
 * reported with the path of the struct file the kernel opened, so the
 * caller's string (which another thread can rewrite, which can be relative
 * or go through links) is never trusted. A failed open has no file: its
 * path is the caller's string, flagged MS_F_UNRESOLVED.
 */
#include "enforce.bpf.h"

#define MS_O_CREAT_WRONLY_TRUNC 01101 /* what creat() means */

static __always_inline int ms_open_enter(__u32 sys, __u64 path, __u64 flags, __u64 mode)
{
	struct ms_watch *w = ms_watched_current();
	if (!w)
		return 0;
	struct ms_inflight in = {};
	in.kind = MS_EV_OPEN;
	in.syscall = sys;
	in.session = w->session;
	in.arg[0] = path;
	in.arg[1] = flags;
	in.arg[2] = mode;
	ms_stash(&in);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int ms_sys_enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return ms_open_enter(MS_SYS_OPEN, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int ms_sys_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return ms_open_enter(MS_SYS_OPENAT, ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int ms_sys_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};
	bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]);
	return ms_open_enter(MS_SYS_OPENAT2, ctx->args[1], how.flags, how.mode);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int ms_sys_enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	return ms_open_enter(MS_SYS_CREAT, ctx->args[0], MS_O_CREAT_WRONLY_TRUNC, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_open_by_handle_at")
int ms_sys_enter_open_by_handle_at(struct trace_event_raw_sys_enter *ctx)
{
	return ms_open_enter(MS_SYS_OPEN_BY_HANDLE_AT, 0, ctx->args[2], 0);
}

static __always_inline int ms_open_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ms_inflight *in = bpf_map_lookup_elem(&INFLIGHT, &tid);
	if (!in)
		return 0;
	if (in->kind != MS_EV_OPEN)
		goto out;

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *file = ret >= 0 ? ms_fd_file(task, ret) : NULL;
	/* enforcement first: the kill never waits for ring space */
	__u32 flags = file ? ms_enforce_open(file, in->session) : 0;

	struct ms_open *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_OPEN);
		goto out;
	}
	ms_fill_header(&e->h, MS_EV_OPEN, task, in->session);
	e->ret = ret;
	e->flags = in->arg[1];
	e->mode = in->arg[2];
	e->syscall = in->syscall;
	e->dev = 0;
	e->ino = 0;
	e->path_off = 0;
	e->path_len = 0;

	if (file) {
		__u32 off = ms_file_path(e->path, file, &flags);
		e->path_off = off;
		e->path_len = MS_PATH_MAX - off;
		ms_file_id(file, &e->dev, &e->ino);
	} else if (in->arg[0]) {
		long n = bpf_probe_read_user_str(e->path, MS_PATH_MAX, (void *)in->arg[0]);
		e->path_len = n > 0 ? n - 1 : 0;
		flags |= MS_F_UNRESOLVED;
	}
	e->h.flags = flags;
	bpf_ringbuf_submit(e, ms_wakeup());
out:
	bpf_map_delete_elem(&INFLIGHT, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_open")
int ms_sys_exit_open(struct trace_event_raw_sys_exit *ctx) { return ms_open_exit(ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_openat")
int ms_sys_exit_openat(struct trace_event_raw_sys_exit *ctx) { return ms_open_exit(ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_openat2")
int ms_sys_exit_openat2(struct trace_event_raw_sys_exit *ctx) { return ms_open_exit(ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_creat")
int ms_sys_exit_creat(struct trace_event_raw_sys_exit *ctx) { return ms_open_exit(ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_open_by_handle_at")
int ms_sys_exit_open_by_handle_at(struct trace_event_raw_sys_exit *ctx) { return ms_open_exit(ctx->ret); }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
