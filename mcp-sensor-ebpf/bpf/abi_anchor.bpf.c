// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * abi_anchor.bpf.c: puts every ring-buffer record type of abi.h into the
 * object's BTF (clang only emits BTF for types that globals and functions
 * use, not for locals), so the agent's tests can check its mirror of the
 * ABI against what clang laid out. Never read at run time.
 */
#include "common.bpf.h"

struct ms_abi_anchor {
	struct ms_header header;
	struct ms_fork fork;
	struct ms_exec exec;
	struct ms_exit exit;
	struct ms_io_uring io_uring;
	struct ms_ptrace ptrace;
	struct ms_open open;
	struct ms_fchange fchange;
	struct ms_connect connect;
	struct ms_chan_reject chan_reject; /* discovery */
	struct ms_comm_key comm_key;      /* discovery */
	struct ms_path_cut path_cut;      /* a path buffer's slack */
	struct ms_stdio stdio;            /* last: ends in a flexible array */
};

struct ms_abi_anchor *ms_abi_anchor __attribute__((used));
