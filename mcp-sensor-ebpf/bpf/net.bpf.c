// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * net.bpf.c: connect() of watched processes, IPv4, IPv6 and unix.
 *
 * The sockaddr is copied at entry (the kernel copies it right after, so a
 * racing rewrite is a narrow window; enforcement uses cgroup connect
 * programs, which see the kernel's own copy) and reported at exit with the
 * result.
 */
#include "enforce.bpf.h"

SEC("tracepoint/syscalls/sys_enter_connect")
int ms_sys_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct ms_watch *w = ms_watched_current();
	if (!w)
		return 0;
	struct ms_inflight in = {};
	in.kind = MS_EV_CONNECT;
	in.session = w->session;
	in.fd = ctx->args[0];
	__u64 len = ctx->args[2];
	in.arg[1] = len;
	if (len > MS_SOCKADDR_MAX)
		len = MS_SOCKADDR_MAX;
	bpf_probe_read_user(in.sockaddr, len, (void *)ctx->args[1]);
	ms_stash(&in);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int ms_sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ms_inflight *in = bpf_map_lookup_elem(&INFLIGHT, &tid);
	/* enforcement first: a refused connect's kill never waits for a stash
	 * or for ring space */
	__u32 flags = ms_enforce_connect_exit(in ? in->session : 0);
	if (!in)
		return 0;
	if (in->kind != MS_EV_CONNECT)
		goto out;

	struct ms_connect *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_CONNECT);
		goto out;
	}
	ms_fill_header(&e->h, MS_EV_CONNECT, (struct task_struct *)bpf_get_current_task(),
		       in->session);
	e->h.flags = flags;
	e->ret = ctx->ret;
	e->fd = in->fd;
	e->addrlen = in->arg[1];
	e->_pad = 0;
	__builtin_memcpy(e->sockaddr, in->sockaddr, sizeof(e->sockaddr));
	bpf_ringbuf_submit(e, ms_wakeup());
out:
	bpf_map_delete_elem(&INFLIGHT, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
