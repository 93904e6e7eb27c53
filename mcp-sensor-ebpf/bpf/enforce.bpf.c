// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * enforce.bpf.c: connects to denied destinations are refused in the kernel.
 *
 * cgroup/connect4 and connect6 programs, attached at the cgroup v2 root,
 * see the kernel's own copy of the address (no user-memory race). For a
 * watched process whose destination and port are in DENY_NETS they return
 * 0: the caller's connect fails with EPERM and no packet leaves. Whether
 * the process is also killed is decided at the connect's exit
 * (ms_enforce_connect_exit in net.bpf.c), where bpf_send_signal is allowed.
 */
#include "enforce.bpf.h"
#include <bpf/bpf_endian.h>

#define MS_ALLOW 1
#define MS_REFUSE 0

static __always_inline int ms_connect_check(struct bpf_sock_addr *ctx, struct ms_net_key *k)
{
	if (!ms_enf_applies(ms_watched_current()))
		return MS_ALLOW;
	struct ms_net_deny *d = bpf_map_lookup_elem(&DENY_NETS, k);
	if (!d)
		return MS_ALLOW;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	for (__u32 i = 0; i < MS_NET_PORTS; i++) {
		if (i >= d->n)
			break;
		struct ms_port_rule *r = &d->r[i];
		if (port < r->lo || port > r->hi)
			continue;
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		bpf_map_update_elem(&DENIED, &tid, &r->v, BPF_ANY);
		ms_enf_count(MS_ENF_DENY_CONNECT);
		return MS_REFUSE;
	}
	return MS_ALLOW;
}

SEC("cgroup/connect4")
int ms_cg_connect4(struct bpf_sock_addr *ctx)
{
	struct ms_net_key k = { .prefixlen = 128 };
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__u32 a = ctx->user_ip4; /* network order */
	__builtin_memcpy(&k.addr[12], &a, 4);
	return ms_connect_check(ctx, &k);
}

SEC("cgroup/connect6")
int ms_cg_connect6(struct bpf_sock_addr *ctx)
{
	struct ms_net_key k = { .prefixlen = 128 };
	/* one constant-offset load per word: the verifier refuses ctx
	 * access through a computed pointer */
	__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__builtin_memcpy(k.addr, w, 16);
	return ms_connect_check(ctx, &k);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
