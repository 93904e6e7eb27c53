// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockaddr.bpf.c: every connect and every addressed UDP send of a watched
 * process, seen where the kernel takes the destination, and refused there
 * under --enforce.
 *
 * cgroup/connect4|6 run from the protocol's pre_connect, which connect(2),
 * TCP Fast Open (sendto/sendmsg with MSG_FASTOPEN) and io_uring's
 * IORING_OP_CONNECT all go through; cgroup/sendmsg4|6 run for a UDP send
 * that carries an address (sendto, sendmsg, sendmmsg, io_uring's send on
 * an unconnected socket), before the route lookup. All four see the
 * kernel's own copy of the address (no user-memory race). They are
 * attached at the cgroup v2 root in every mode (loader.rs), and return at
 * once for a process that is not watched.
 *
 * Records: plain connect(2) is net.bpf.c's (its stash is found here, and
 * this program only leaves the transport in it), so a connect is reported
 * once. Every other connect gets its record here. A UDP send is reported
 * the first time per (socket, destination address, port): SENT remembers
 * the ones reported (LRU: an evicted destination is reported again, never
 * lost); the other connects likewise, once per socket and destination.
 * A refused send or connect always gets a record naming its
 * destination; ENF_STATS counts the refusal before the ring is touched,
 * so a lost record (counted as a connect drop) leaves its refusal counted.
 *
 * Enforcement: for a destination and port in DENY_NETS the program
 * returns 0, and the caller gets EPERM with nothing sent. Only connect(2)
 * can be killed in the kernel (at its exit, ms_enforce_connect_exit, where
 * bpf_send_signal is allowed: not here); a kill rule on anything else is
 * refused here and the process killed by the agent from the record.
 */
#include "net.bpf.h"
#include <bpf/bpf_endian.h>

#define MS_ALLOW 1
#define MS_REFUSE 0

#define MS_AF_INET 2
#define MS_AF_INET6 10

/* x86_64 syscall numbers of the callers named in ms_connect.op */
#define MS_NR_CONNECT 42
#define MS_NR_SENDTO 44
#define MS_NR_SENDMSG 46
#define MS_NR_SENDMMSG 307
#define MS_NR_IO_URING_ENTER 426
#define MS_PF_IO_WORKER 0x10 /* include/linux/sched.h, 5.12+ */

/* SENT: the destinations already reported, per socket (UDP sends, and
 * the connects of these hooks: io_uring's connect passes the hook again
 * when it retries after EINPROGRESS). Kernel-only. */
struct ms_sent_key {
	__u64 cookie;   /* bpf_get_socket_cookie: the socket */
	__u8 addr[16];  /* as in ms_net_key */
	__u16 port;     /* host order */
	__u16 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ms_sent_key);
	__type(value, __u8);
} SENT SEC(".maps");

/* What one hook invocation saw. */
struct ms_dest {
	struct ms_net_key k; /* the address, IPv4 as ::ffff:a.b.c.d */
	__u16 port;          /* host order */
	__u8 hook;           /* MS_HOOK_* */
	__u8 transport;      /* MS_TR_* */
	__u32 family;        /* MS_AF_* of the socket */
};

/* The caller's operation, from the syscall number saved on its stack
 * (the stack-top guess of compat.bpf.h: bpf_task_pt_regs is not offered
 * to cgroup programs; a wrong guess reads as MS_OP_OTHER). */
static __always_inline __u8 ms_sock_op(struct task_struct *t)
{
	if (BPF_CORE_READ(t, flags) & MS_PF_IO_WORKER)
		return MS_OP_IO_URING;
	switch ((int)BPF_CORE_READ(ms_stack_regs(t), orig_ax)) {
	case MS_NR_CONNECT:
		return MS_OP_CONNECT;
	case MS_NR_SENDTO:
		return MS_OP_SENDTO;
	case MS_NR_SENDMSG:
		return MS_OP_SENDMSG;
	case MS_NR_SENDMMSG:
		return MS_OP_SENDMMSG;
	case MS_NR_IO_URING_ENTER:
		return MS_OP_IO_URING;
	}
	return MS_OP_OTHER;
}

static __always_inline __u8 ms_transport(__u32 protocol)
{
	if (protocol == IPPROTO_TCP)
		return MS_TR_TCP;
	if (protocol == IPPROTO_UDP)
		return MS_TR_UDP;
	return MS_TR_OTHER;
}

/* The verdict of DENY_NETS on the destination, for watch entry w. */
static __always_inline int ms_net_verdict(const struct ms_watch *w, struct ms_dest *d, struct ms_verdict *out)
{
	if (!ms_enf_applies(w))
		return 0;
	struct ms_net_deny *n = bpf_map_lookup_elem(&DENY_NETS, &d->k);
	if (!n)
		return 0;
	for (__u32 i = 0; i < MS_NET_PORTS; i++) {
		if (i >= n->n)
			break;
		struct ms_port_rule *r = &n->r[i];
		if (d->port < r->lo || d->port > r->hi)
			continue;
		*out = r->v;
		return 1;
	}
	return 0;
}

/* First time from this socket to this destination: remembered, and 1. A
 * map that refuses the entry is counted and the destination reported. */
static __always_inline int ms_first_seen(struct bpf_sock_addr *ctx, const struct ms_dest *d)
{
	struct ms_sent_key k = {};
	k.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(k.addr, d->k.addr, 16);
	k.port = d->port;
	if (bpf_map_lookup_elem(&SENT, &k))
		return 0;
	__u8 one = 1;
	if (bpf_map_update_elem(&SENT, &k, &one, BPF_NOEXIST))
		ms_count(MS_CNT_SENT_FULL, 1);
	return 1;
}

/* The record: the destination rebuilt as the sockaddr a caller passes. */
static __always_inline void ms_sock_record(struct task_struct *t, const struct ms_watch *w, const struct ms_dest *d,
					   __u8 op, __u32 flags)
{
	struct ms_connect *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_CONNECT);
		return;
	}
	ms_fill_header(&e->h, MS_EV_CONNECT, t, w->session);
	e->h.flags = flags;
	e->ret = flags & MS_F_DENIED ? -MS_EPERM : 0;
	e->fd = MS_FD_NONE;
	e->op = op;
	e->hook = d->hook;
	e->transport = d->transport;
	e->_pad = 0;
	__builtin_memset(e->sockaddr, 0, sizeof(e->sockaddr));
	__u16 port = bpf_htons(d->port);
	if (d->family == MS_AF_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)e->sockaddr;
		s->sin6_family = MS_AF_INET6;
		s->sin6_port = port;
		__builtin_memcpy(&s->sin6_addr, d->k.addr, 16);
		e->addrlen = sizeof(*s);
	} else {
		struct sockaddr_in *s = (struct sockaddr_in *)e->sockaddr;
		s->sin_family = MS_AF_INET;
		s->sin_port = port;
		__builtin_memcpy(&s->sin_addr, &d->k.addr[12], 4);
		e->addrlen = sizeof(*s);
	}
	bpf_ringbuf_submit(e, ms_wakeup());
}

/* The one path of all four programs. */
static __always_inline int ms_sock_addr(struct bpf_sock_addr *ctx, struct ms_dest *d)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct ms_watch *w = ms_watched(t, bpf_get_current_pid_tgid() >> 32);
	if (!w)
		return MS_ALLOW;
	int send = d->hook == MS_HOOK_SENDMSG4 || d->hook == MS_HOOK_SENDMSG6;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ms_inflight *in = send ? NULL : bpf_map_lookup_elem(&INFLIGHT, &tid);
	if (in)
		in->transport = d->transport;
	__u8 op = ms_sock_op(t);
	struct ms_verdict v = {};
	int deny = ms_net_verdict(w, d, &v);
	__u32 flags = 0;
	if (deny) {
		ms_enf_count(send ? MS_ENF_DENY_SEND : MS_ENF_DENY_CONNECT);
		flags = MS_F_DENIED | ((v.rule + 1) << MS_F_RULE_SHIFT);
		/* connect(2)'s exit kills when the rule says so */
		if (!send && (in || op == MS_OP_CONNECT))
			if (bpf_map_update_elem(&DENIED, &tid, &v, BPF_ANY))
				ms_count(MS_CNT_DENIED_FULL, 1);
	}
	/* connect(2)'s own record reports it */
	if (in)
		return deny ? MS_REFUSE : MS_ALLOW;
	if (deny || ms_first_seen(ctx, d))
		ms_sock_record(t, w, d, op, flags);
	return deny ? MS_REFUSE : MS_ALLOW;
}

static __always_inline int ms_sock_addr4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct ms_dest d = { .k = { .prefixlen = 128 }, .hook = hook, .family = MS_AF_INET };
	d.k.addr[10] = 0xff;
	d.k.addr[11] = 0xff;
	__u32 a = ctx->user_ip4; /* network order */
	__builtin_memcpy(&d.k.addr[12], &a, 4);
	d.port = bpf_ntohs((__u16)ctx->user_port);
	d.transport = ms_transport(ctx->protocol);
	return ms_sock_addr(ctx, &d);
}

static __always_inline int ms_sock_addr6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct ms_dest d = { .k = { .prefixlen = 128 }, .hook = hook, .family = MS_AF_INET6 };
	/* one constant-offset load per word: the verifier refuses ctx
	 * access through a computed pointer */
	__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__builtin_memcpy(d.k.addr, w, 16);
	d.port = bpf_ntohs((__u16)ctx->user_port);
	d.transport = ms_transport(ctx->protocol);
	return ms_sock_addr(ctx, &d);
}

SEC("cgroup/connect4")
int ms_cg_connect4(struct bpf_sock_addr *ctx)
{
	return ms_sock_addr4(ctx, MS_HOOK_CONNECT4);
}

SEC("cgroup/connect6")
int ms_cg_connect6(struct bpf_sock_addr *ctx)
{
	return ms_sock_addr6(ctx, MS_HOOK_CONNECT6);
}

SEC("cgroup/sendmsg4")
int ms_cg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return ms_sock_addr4(ctx, MS_HOOK_SENDMSG4);
}

SEC("cgroup/sendmsg6")
int ms_cg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return ms_sock_addr6(ctx, MS_HOOK_SENDMSG6);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
