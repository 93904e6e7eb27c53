/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * compat.bpf.h: everything that differs between the kernels the sensor
 * runs on, one named accessor per difference (in the spirit of
 * libbpf-tools' core_fixes.bpf.h).
 *
 * build.rs compiles every program twice into two embedded objects:
 * - the full object (MS_COMPAT 0) for kernels with bpf_loop (5.17+), which
 *   have everything below;
 * - the compat object (MS_COMPAT 1) for 5.10 to 5.16 (Debian 11, Ubuntu
 *   20.04/22.04 HWE, RHEL 8/9 generations).
 * The loader picks one by probing the kernel's BTF for the helpers
 * (loader.rs, `Features`), never by version number: distributions
 * backport. What the compat object gives up is listed in ARCHITECTURE.md
 * ("Kernels") and reported by `doctor` and the log's first line.
 */
#ifndef MCP_SENSOR_COMPAT_BPF_H
#define MCP_SENSOR_COMPAT_BPF_H

#ifndef MS_COMPAT
#define MS_COMPAT 0
#endif

/*
 * Loops. bpf_loop() (5.17) verifies a callback once, whatever the count.
 * Without it the loop is a bounded loop (5.3+) that the verifier walks
 * iteration by iteration, so its count must be a small constant, and the
 * callback is inlined: 5.10's verifier refuses callback subprograms
 * ("number of funcs in func_info doesn't match number of subprogs").
 * MS_LOOP_CB declares a callback: long cb(__u64 i, T *ctx), returning 1
 * to stop.
 */
#if MS_COMPAT
#define MS_LOOP_CB static __always_inline long
#define ms_loop(n, cb, ctx)                                                    \
	do {                                                                   \
		for (__u32 __ms_i = 0; __ms_i < (n); __ms_i++)                 \
			if (cb(__ms_i, ctx))                                   \
				break;                                         \
	} while (0)
#else
#define MS_LOOP_CB static long
#define ms_loop(n, cb, ctx) bpf_loop((n), (cb), (ctx), 0)
#endif

/*
 * A zero the verifier cannot see through (a writable global: its value
 * reads as an unknown scalar). Before Linux 6.7 the verifier checked a
 * bpf_loop() callback as if it ran once, from the state its context has
 * at the call: a state field that starts as a known constant made the
 * branches needing another value dead code, and dead branches are
 * hard-wired away, so the loop computed something else at run time (6.1:
 * the shell argv parse took `sh -c` for a script run). Fixed upstream by
 * "bpf: verify callbacks as if they are called unknown number of times"
 * (6.7). A loop's state fields that change across iterations start from
 * this instead of a literal 0.
 */
volatile __u32 ms_opaque_zero MS_WEAK = 0;

/*
 * The calling task's saved user registers, where an exit program finds
 * the syscall's arguments (x86_64: di, si, dx, r10; a syscall rewrites
 * only ax). bpf_task_pt_regs() is 5.15; before it, they are where
 * task_pt_regs() puts them: the top of the task's kernel stack
 * (arch/x86/include/asm/processor.h), THREAD_SIZE 16 KiB on x86_64
 * without KASAN, which no distribution kernel enables. ms_regs_ok()
 * checks the guess against the syscall number the kernel saved there.
 */
#define MS_THREAD_SIZE (16 << 10)

/* The stack-top guess, for both objects: also where bpf_task_pt_regs()
 * is not offered (cgroup programs, sockaddr.bpf.c). */
static __always_inline struct pt_regs *ms_stack_regs(struct task_struct *t)
{
	void *stack = BPF_CORE_READ(t, stack);
	return (struct pt_regs *)(stack + MS_THREAD_SIZE) - 1;
}

static __always_inline struct pt_regs *ms_user_regs(void)
{
#if MS_COMPAT
	return ms_stack_regs((struct task_struct *)bpf_get_current_task());
#else
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
#endif
}

/* Whether regs are the registers of syscall nr (compat: the stack-top
 * guess; a mismatch is counted and the record skipped, never guessed). */
static __always_inline int ms_regs_ok(struct pt_regs *regs, int nr)
{
#if MS_COMPAT
	if ((int)BPF_CORE_READ(regs, orig_ax) == nr)
		return 1;
	ms_count(MS_CNT_REGS, 1);
	return 0;
#else
	return 1;
#endif
}

/*
 * *p += v, returning the old value. Fetching atomics are 5.12; before,
 * the read and the add are separate, so two threads of one server
 * writing the same channel in the same instant can be given overlapping
 * offsets (the agent then sees a gap or an overlap, never silently wrong
 * bytes: the reassembly checks offsets).
 */
static __always_inline __u64 ms_fetch_add(__u64 *p, __u64 v)
{
#if MS_COMPAT
	__u64 old = *p;
	__sync_fetch_and_add(p, v);
	return old;
#else
	return __sync_fetch_and_add(p, v);
#endif
}

/*
 * Before a size is clamped to at most `most` for a helper: 5.10's verifier
 * keeps no signed lower bound through the clamp alone ("R2 min value is
 * negative"), so the compat object masks first. The full object does not:
 * on 6.8+ the mask's wider range kept bpf_loop callback states from
 * converging.
 */
#if MS_COMPAT
#define MS_SIZE_BOUND(n, most) ((n) &= 2 * (most) - 1)
#else
#define MS_SIZE_BOUND(n, most) ((void)0)
#endif

#endif /* MCP_SENSOR_COMPAT_BPF_H */
