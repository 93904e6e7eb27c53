/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * net.bpf.h: what connect(2)'s tracepoints (net.bpf.c) and the cgroup
 * socket programs (sockaddr.bpf.c) share: the per-thread stash of a
 * connect(2) in progress. Its presence tells the cgroup connect program
 * that connect(2)'s own record will report this connect (one event per
 * connect); the program leaves the transport it saw in it.
 */
#ifndef MCP_SENSOR_NET_BPF_H
#define MCP_SENSOR_NET_BPF_H

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
	__u8 transport;   /* MS_TR_*, left by the cgroup connect program */
	__u8 _pad[7];
	__u8 sockaddr[MS_SOCKADDR_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct ms_inflight);
} INFLIGHT SEC(".maps") MS_WEAK;

#endif /* MCP_SENSOR_NET_BPF_H */
