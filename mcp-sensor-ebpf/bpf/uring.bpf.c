// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * uring.bpf.c: io_uring set up by a watched process.
 *
 * io_uring submits reads, writes, opens and connects without the syscalls
 * the other programs hook, so a server that sets one up has a way around
 * them. The io_uring_create tracepoint fires once per successful
 * io_uring_setup(2), in the caller's context.
 */
#include "common.bpf.h"

SEC("tp_btf/io_uring_create")
int BPF_PROG(ms_io_uring_create, int fd, void *ring, __u32 sq_entries, __u32 cq_entries, __u32 flags)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct ms_watch *w = ms_watched(t, bpf_get_current_pid_tgid() >> 32);
	if (!w)
		return 0;

	struct ms_io_uring *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_IO_URING);
		return 0;
	}
	ms_fill_header(&e->h, MS_EV_IO_URING, t, w->session);
	e->fd = fd;
	e->sq_entries = sq_entries;
	e->cq_entries = cq_entries;
	e->flags = flags;
	bpf_ringbuf_submit(e, ms_wakeup());
	return 0;
}
