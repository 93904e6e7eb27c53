// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * uring.bpf.c: io_uring set up by a watched process, and its refusal
 * under --enforce.
 *
 * io_uring submits reads, writes, opens and connects without the syscalls
 * the other programs hook, so a server that sets one up has a way around
 * them. The io_uring_create tracepoint fires once per successful
 * io_uring_setup(2), in the caller's context, before the syscall returns.
 *
 * Under --enforce, when the agent set ENF_CFG's `uring` (the kernel
 * enforces open rules, which the ring's IORING_OP_OPENAT would pass: the
 * open exit programs never see it), the caller is sent SIGKILL here. The
 * signal is delivered as io_uring_setup returns, so no submission queue
 * entry can ever be written. Where BPF LSM decides opens (ms_lsm_enforce)
 * the ring is allowed: io_uring's openat goes through security_file_open
 * in the server's own threads (inline, or its io-wq workers), and the
 * file_open program refuses it like any other open (the VM matrix's
 * kernel_ring_opens_* test shows it on 5.10, 6.1 and 6.12).
 */
#include "enforce.bpf.h"

/* The record flags of the kill, or 0 when io_uring is allowed. */
static __always_inline __u32 ms_enforce_uring(const struct ms_watch *w)
{
	if (ms_lsm_enforce || !ms_enf_applies(w))
		return 0;
	__u32 zero = 0;
	struct ms_enf_cfg *c = bpf_map_lookup_elem(&ENF_CFG, &zero);
	if (!c || c->uring == 0)
		return 0;
	struct ms_verdict v = { .rule = c->uring - 1, .flags = MS_VF_KILL };
	return ms_enf_kill(&v, w->session, MS_ENF_KILL_URING);
}

SEC("tp_btf/io_uring_create")
int BPF_PROG(ms_io_uring_create, int fd, void *ring, __u32 sq_entries, __u32 cq_entries, __u32 flags)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct ms_watch *w = ms_watched(t, bpf_get_current_pid_tgid() >> 32);
	if (!w)
		return 0;
	/* before the reserve: a full ring loses the record, never the kill */
	__u32 enf = ms_enforce_uring(w);

	struct ms_io_uring *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_IO_URING);
		return 0;
	}
	ms_fill_header(&e->h, MS_EV_IO_URING, t, w->session);
	e->h.flags |= enf;
	e->fd = fd;
	e->sq_entries = sq_entries;
	e->cq_entries = cq_entries;
	e->flags = flags;
	bpf_ringbuf_submit(e, ms_wakeup());
	return 0;
}
