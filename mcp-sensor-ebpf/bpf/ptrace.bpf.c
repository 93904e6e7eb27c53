// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ptrace.bpf.c: a watched process reaching into another process's memory:
 * ptrace(PTRACE_ATTACH) or ptrace(PTRACE_SEIZE) (after which it can read
 * and write the tracee's memory and registers), process_vm_readv(2) and
 * process_vm_writev(2). The MCP client's memory holds the conversation and
 * its API keys; /proc/<pid>/mem opens are the open hooks' (file.bpf.c).
 *
 * One exit program, ms_ptrace_exits, attached to the three syscalls' exit
 * tracepoints by the loader (MULTI_ATTACH), arguments from the saved user
 * registers as in file.bpf.c. Other ptrace requests are not reported:
 * PEEK/POKE and the rest need an attach first (or PTRACE_TRACEME, by
 * which a process offers itself to its parent).
 */
#include "common.bpf.h"

#define MS_NR_PTRACE 101            /* x86_64 */
#define MS_NR_PROCESS_VM_READV 310
#define MS_NR_PROCESS_VM_WRITEV 311
#define MS_PTRACE_ATTACH 16
#define MS_PTRACE_SEIZE 0x4206

SEC("tracepoint/syscalls/sys_exit_ptrace")
int ms_ptrace_exits(struct trace_event_raw_sys_exit *ctx)
{
	struct ms_watch *w = ms_watched_current();
	if (!w)
		return 0;
	int nr = ms_exit_nr(ctx);
	struct pt_regs *regs = ms_user_regs();
	if (!ms_regs_ok(regs, nr))
		return 0;
	__u32 sys = 0, request = 0, target = 0;
	switch (nr) {
	case MS_NR_PTRACE:
		sys = MS_SYS_PTRACE;
		request = BPF_CORE_READ(regs, di);
		target = BPF_CORE_READ(regs, si);
		break;
	case MS_NR_PROCESS_VM_READV:
		sys = MS_SYS_PROCESS_VM_READV;
		target = BPF_CORE_READ(regs, di);
		break;
	case MS_NR_PROCESS_VM_WRITEV:
		sys = MS_SYS_PROCESS_VM_WRITEV;
		target = BPF_CORE_READ(regs, di);
		break;
	default:
		return 0;
	}
	if (sys == MS_SYS_PTRACE && request != MS_PTRACE_ATTACH && request != MS_PTRACE_SEIZE)
		return 0;

	struct ms_ptrace *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_PTRACE);
		return 0;
	}
	ms_fill_header(&e->h, MS_EV_PTRACE, (struct task_struct *)bpf_get_current_task(), w->session);
	e->ret = ctx->ret;
	e->target = target;
	e->syscall = sys;
	e->request = request;
	bpf_ringbuf_submit(e, ms_wakeup());
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
