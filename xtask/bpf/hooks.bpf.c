// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * hooks.bpf.c: `cargo xtask bench --hooks` (issue 16). The same body,
 * what the sensor's open program does for an unwatched process (one
 * lookup of the current tgid in a 16384-entry hash that does not hold
 * it, then return), behind each hook that could serve opens. The bench
 * loads and attaches one of them at a time (xtask/src/bench_hooks.rs).
 *
 * hk_calls counts invocations (a plain add to global data, no helper),
 * so the bench can check that the hook fired for its loop.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* as mcp-sensor-ebpf/bpf/abi.h's struct ms_watch */
struct hk_watch {
	__u64 start_ns;
	__u32 session;
	__u32 flags;
};

/* as WATCHED in mcp-sensor-ebpf/bpf/common.bpf.h */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct hk_watch);
} WATCHED SEC(".maps");

__u64 hk_calls = 0;
__u64 hk_hits = 0;

static __always_inline int hk_unwatched(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	hk_calls++;
	struct hk_watch *w = bpf_map_lookup_elem(&WATCHED, &tgid);
	if (!w)
		return 0;
	hk_hits++; /* never: the bench's loops are not in the map */
	return 0;
}

/* what the sensor uses today */
SEC("tracepoint/syscalls/sys_exit_openat")
int hk_tracepoint(struct trace_event_raw_sys_exit *ctx)
{
	return hk_unwatched();
}

/* BPF trampoline at the function's return: sees the result, as the
 * sensor's exit program needs */
SEC("fexit/do_sys_openat2")
int BPF_PROG(hk_fexit)
{
	return hk_unwatched();
}

/* BPF trampoline at the function's entry (no result) */
SEC("fentry/do_sys_openat2")
int BPF_PROG(hk_fentry)
{
	return hk_unwatched();
}

/* kprobe at the function's entry (no result) */
SEC("kprobe/do_sys_openat2")
int BPF_KPROBE(hk_kprobe)
{
	return hk_unwatched();
}

/* kretprobe: the result, as fexit */
SEC("kretprobe/do_sys_openat2")
int BPF_KRETPROBE(hk_kretprobe)
{
	return hk_unwatched();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
