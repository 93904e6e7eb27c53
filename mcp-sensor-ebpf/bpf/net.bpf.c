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

/*
 * Per-thread stash between connect's entry and exit, for watched processes
 * only: the exit program's one lookup is in this map. (Opens and channel
 * reads/writes need no stash: their exit programs read the arguments from
 * the saved registers.)
 */
struct ms_inflight {
	__u32 session;
	__u32 fd;
	__u64 addrlen;    /* as the caller passed it */
	__u8 sockaddr[MS_SOCKADDR_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct ms_inflight);
} INFLIGHT SEC(".maps");

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
	e->_pad = 0;
	__builtin_memcpy(e->sockaddr, in->sockaddr, sizeof(e->sockaddr));
	bpf_ringbuf_submit(e, ms_wakeup());
out:
	bpf_map_delete_elem(&INFLIGHT, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
