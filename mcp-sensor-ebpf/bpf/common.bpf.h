/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * common.bpf.h: the maps every program shares and the few helpers around
 * them: "is this process watched?", the record header, and drop counting.
 *
 * Maps are defined __weak so that each .bpf.c can include this header and
 * bpftool's linker folds the copies into one map.
 */
#ifndef MCP_SENSOR_COMMON_BPF_H
#define MCP_SENSOR_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "abi.h"

#define MS_WEAK __attribute__((weak))

/* The ring buffer. Its size is set by the loader (--ring-buffer-size). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} EVENTS SEC(".maps") MS_WEAK;

/* tgid -> ms_watch: the set of watched processes. Sized by the loader
 * (--max-watched, sensor.max_watched): a full map is counted
 * (MS_CNT_WATCH_FULL), never silent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct ms_watch);
} WATCHED SEC(".maps") MS_WEAK;

/* (dev, ino) of a pipe or socket -> ms_chan: the JSON-RPC channels
 * (stdio.bpf.c captures them; discover.bpf.h registers candidates', two
 * per idle piped process). Sized by the loader (--max-channels,
 * sensor.max_channels); a refused insert is counted (MS_CNT_CHAN_FULL). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ms_chan_key);
	__type(value, struct ms_chan);
} CHANNELS SEC(".maps") MS_WEAK;

/* session -> boot-time ns of its server's first read of its channel
 * (abi.h, FIRST_REQ): written by stdio.bpf.c, read by enforcement's
 * "after the first request"; kept past the root's exit (members that
 * outlive it), reset by a new session of the pid, removed by the agent
 * when it drops a candidate. LRU, sized as WATCHED at load: stamps of
 * sessions long gone age out, and a live session's stamp evicted by a
 * flood of sessions is restored by the agent within a second and counted
 * (agent.rs, `first_request_evicted`). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096); /* replaced at load (loader.rs, Tables) */
	__type(key, __u32);
	__type(value, __u64);
} FIRST_REQ SEC(".maps") MS_WEAK;

/* Ring-buffer reserves that failed, per CPU and per event kind. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MS_EV_KIND_MAX);
	__type(key, __u32);
	__type(value, __u64);
} DROPS SEC(".maps") MS_WEAK;

/* Other losses, per CPU (MS_CNT_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} COUNTERS SEC(".maps") MS_WEAK;

/* Wake the agent only once this many bytes are pending: a wakeup per event
 * costs more than the event. Set by the loader: an eighth of the ring, at
 * most 512 KiB. The agent also polls every 10 ms (reader.rs), so a quiet
 * trickle is delayed by that much at most. A fixed 64 KiB woke it every ~5
 * exec records (12.5 KiB each): on 2 cores the agent's wakeups for a storm
 * of piped short-lived processes cost the storm ~5% (BENCHMARKS.md, issue
 * 17). */
const volatile __u64 ms_wakeup_bytes MS_WEAK = 512 << 10;

/* Producer position at the last forced wakeup (one per object file; races
 * between CPUs cost at most an extra wakeup). */
static __u64 ms_woken_at;

/*
 * Past the threshold, wake once per ms_wakeup_bytes produced, not on every
 * record: while the agent is behind, each forced wakeup queues irq work (a
 * self-IPI, a VM exit under a hypervisor), which cost more than the capture
 * of a small record itself (BENCHMARKS.md). The agent drains the ring whole
 * when woken, so the next crossing of the threshold is at least that far on.
 */
static __always_inline __u64 ms_wakeup(void)
{
	if (bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA) < ms_wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	__u64 prod = bpf_ringbuf_query(&EVENTS, BPF_RB_PROD_POS);
	if (prod - ms_woken_at < ms_wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	ms_woken_at = prod;
	return BPF_RB_FORCE_WAKEUP;
}

static __always_inline void ms_count_drop(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&DROPS, &kind);
	if (n)
		*n += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline void ms_count(__u32 counter, __u64 by)
{
	__u64 *n = bpf_map_lookup_elem(&COUNTERS, &counter);
	if (n)
		*n += by;
}

#include "compat.bpf.h"

static __always_inline __u64 ms_task_start_ns(struct task_struct *task)
{
	/* start_boottime (5.5+) matches /proc/PID/stat's starttime. */
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

/*
 * The one lookup every program does first. Returns the watch entry of the
 * current process, or NULL. An entry whose start time does not match the
 * current process belongs to an earlier process with the same (recycled)
 * pid: it is treated as absent.
 */
static __always_inline struct ms_watch *ms_watched(struct task_struct *task, __u32 tgid)
{
	struct ms_watch *w = bpf_map_lookup_elem(&WATCHED, &tgid);
	if (!w)
		return NULL;
	__u64 start = ms_task_start_ns(task);
	if (w->start_ns == 0) {
		/* claim on first sight, see struct ms_watch */
		w->start_ns = start;
		return w;
	}
	return w->start_ns == start ? w : NULL;
}

static __always_inline struct ms_watch *ms_watched_current(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return ms_watched((struct task_struct *)bpf_get_current_task(), tgid);
}

/* A discovery candidate whose channel has carried JSON-RPC written by its
 * tree (MS_F_CAND_SPOKE, on the entry or on its session root's). */
static __always_inline int ms_cand_spoke(const struct ms_watch *w)
{
	if (w->flags & MS_F_CAND_SPOKE)
		return 1;
	__u32 root = w->session;
	struct ms_watch *r = bpf_map_lookup_elem(&WATCHED, &root);
	return r && (r->flags & MS_F_CAND_SPOKE);
}

/* Maximum PID namespace nesting (MAX_PID_NS_LEVEL, include/linux/pid_namespace.h). */
#define MS_PID_NS_LEVEL_MAX 32

/*
 * Where the task lives: its cgroup v2 id, read as bpf_get_current_cgroup_id()
 * computes it (task->cgroups->dfl_cgrp->kn->id, a u64 since 5.5) but with
 * CO-RE reads, which every program type here may do (the cgroup sock_addr
 * programs included); and its process's pid in its own PID namespace
 * (group_leader->thread_pid->numbers[level].nr, see pid_nr_ns()). The agent
 * turns the cgroup id into a container id (identity.rs).
 */
static __always_inline void ms_fill_identity(struct ms_header *h, struct task_struct *task)
{
	h->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	struct pid *p = BPF_CORE_READ(task, group_leader, thread_pid);
	__u32 level = BPF_CORE_READ(p, level);
	h->ns_level = level;
	h->ns_pid = h->pid;
	if (!p || level == 0 || level > MS_PID_NS_LEVEL_MAX)
		return;
	int nr = 0;
	const void *up = (const void *)p + bpf_core_field_offset(struct pid, numbers) +
			 (__u64)level * bpf_core_type_size(struct upid) +
			 bpf_core_field_offset(struct upid, nr);
	if (bpf_probe_read_kernel(&nr, sizeof(nr), up) == 0)
		h->ns_pid = nr;
}

static __always_inline void ms_fill_header(struct ms_header *h, __u32 kind,
					   struct task_struct *task, __u32 session)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();

	h->kind = kind;
	h->flags = 0;
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->session = session;
	h->start_ns = ms_task_start_ns(task);
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	ms_fill_identity(h, task);
}

/*
 * The syscall number of a syscalls:sys_exit_* record. Those records carry
 * it as an int (`__syscall_nr`) where vmlinux.h's raw sys_exit struct has
 * a long `id`: only the low 32 bits are the number, the rest is padding.
 */
static __always_inline int ms_exit_nr(struct trace_event_raw_sys_exit *ctx)
{
	return (int)ctx->id;
}

/* The struct file behind fd in task's table, or NULL. */
static __always_inline struct file *ms_fd_file(struct task_struct *task, __u32 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

#endif /* MCP_SENSOR_COMMON_BPF_H */
