// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * net.bpf.c: connect(2) of watched processes, IPv4, IPv6 and unix.
 *
 * The sockaddr is copied at entry (the kernel copies it right after, so a
 * racing rewrite is a narrow window; enforcement uses cgroup connect
 * programs, which see the kernel's own copy) and reported at exit with the
 * result. These programs own plain connect(2): the cgroup connect program
 * (sockaddr.bpf.c) sees the same connect, finds this stash and writes no
 * record of its own. It reports the connects that are not connect(2)
 * (TCP Fast Open, io_uring) and UDP sends with an address.
 */
#include "net.bpf.h"

/* Stash for the current thread; counts a full map as a loss. */
static __always_inline void ms_stash(struct ms_inflight *in)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&INFLIGHT, &tid, in, BPF_ANY))
		ms_count(MS_CNT_INFLIGHT_FULL, 1);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int ms_sys_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct ms_watch *w = ms_watched_current();
	if (!w)
		return 0;
	struct ms_inflight in = {};
	in.session = w->session;
	in.fd = ctx->args[0];
	__u64 len = ctx->args[2];
	in.addrlen = len;
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
	e->addrlen = in->addrlen;
	e->op = MS_OP_CONNECT;
	e->hook = MS_HOOK_SYS_CONNECT;
	e->transport = in->transport;
	e->_pad = 0;
	__builtin_memcpy(e->sockaddr, in->sockaddr, sizeof(e->sockaddr));
	bpf_ringbuf_submit(e, ms_wakeup());
out:
	bpf_map_delete_elem(&INFLIGHT, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
