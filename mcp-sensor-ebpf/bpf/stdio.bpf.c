// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * stdio.bpf.c: capture of the JSON-RPC channel of watched MCP servers.
 *
 * The channel is identified by the pipe or socket itself (device, inode in
 * CHANNELS, registered by the agent), never by fd number: servers dup it
 * off fds 0/1 and hand it to children. The exit program checks the fd's
 * file against CHANNELS and copies the bytes actually transferred, in
 * records of MS_CHUNK_SMALL or MS_CHUNK_LARGE bytes, each with its byte offset in the
 * channel direction. Bytes past ms_stdio_cap per syscall, failed reserves
 * and unreadable buffers leave a gap in the offsets and are counted, so the
 * agent knows exactly what it did not see.
 */
#include "discover.bpf.h"

/* Bytes captured from one syscall at most (set by the loader). */
const volatile __u64 ms_stdio_cap = 16 << 20;

#define MS_IOV_MAX 16

/* flags bit 0: arg[0] is an iovec array (readv/writev family). */
#define MS_IO_IOV 1

/* A channel read/write, as its exit program sees it. */
struct ms_io {
	__u32 syscall;    /* MS_DIR_* */
	__u32 session;
	__u32 fd;
	__u32 flags;
	__u64 arg[2];     /* buffer or iovec array; count or iovcnt */
	__u32 chan_dev;
	__u32 _pad;
	__u64 chan_ino;
};

/*
 * Exit only, no entry program: a syscall tracepoint program costs ~130 ns
 * per invocation on this kernel even when it returns at once (BENCHMARKS.md,
 * "After exit-only programs"), and every read and write on the host paid
 * it twice. The arguments are still in the task's saved user
 * registers at exit (x86_64: fd, buffer, count in di, si, dx; a syscall
 * rewrites only ax), so the exit reads them there.
 *
 * The fd is resolved at exit, not at entry: if another thread of the
 * server replaced the fd while the syscall ran, the transfer is judged by
 * the new file: captured only if that file is itself a channel of the same
 * server, else not at all. No real server replaces its channel's fd while
 * another thread transfers on it.
 */
static __always_inline int ms_io_at_exit(long ret, int nr, struct ms_io *io, __u32 dir, __u32 iov,
					 struct ms_chan **chanp)
{
	if (ret <= 0)
		return 0;
	struct ms_watch *w = ms_watched_current();
	if (!w)
		return 0;
	struct pt_regs *regs = ms_user_regs();
	if (!ms_regs_ok(regs, nr))
		return 0;
	__u64 fd = BPF_CORE_READ(regs, di);
	struct file *file = ms_fd_file((struct task_struct *)bpf_get_current_task(), fd);
	if (!file)
		return 0;
	struct ms_chan_key key = {};
	ms_file_id(file, &key.dev, &key.ino);
	struct ms_chan *chan = bpf_map_lookup_elem(&CHANNELS, &key);
	if (!chan)
		return 0;
	/* only the server's own tree is captured on its channel: a watched
	 * process of another session (a client that is itself a candidate
	 * under `run`) writing to it is the other end */
	if (chan->session != w->session)
		return 0;
	io->syscall = dir;
	io->session = chan->session;
	io->fd = fd;
	io->flags = iov;
	io->arg[0] = BPF_CORE_READ(regs, si);
	io->arg[1] = BPF_CORE_READ(regs, dx);
	io->chan_dev = key.dev;
	io->chan_ino = key.ino;
	*chanp = chan;
	return 1;
}

/* One span to capture, chunk i covering [i * MS_CHUNK_LARGE, ...). The
 * callback never writes it: with an unchanging stack the verifier checks
 * the step once instead of once per chunk (kernels that verify bpf_loop
 * callbacks until their state converges, 6.8+, never converge on offsets
 * that grow by a known chunk each step). */
struct ms_emit {
	__u64 ptr;   /* user address of the span */
	__u64 len;   /* bytes in the span */
	__u64 off;   /* channel offset of ptr */
	struct ms_io *in;
};

#define MS_EMIT_CLASS(CLS)                                                     \
	do {                                                                   \
		struct ms_stdio *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e) + (CLS), 0); \
		if (!e) {                                                      \
			ms_count_drop(MS_EV_STDIO);                            \
			break;                                                 \
		}                                                              \
		__u64 n = step;                                                \
		barrier_var(n);                                                \
		MS_SIZE_BOUND(n, CLS);                                         \
		if (n > (CLS))                                                 \
			n = (CLS);                                             \
		if (bpf_probe_read_user(e->data, n, (void *)(x->ptr + at))) {  \
			bpf_ringbuf_discard(e, 0);                             \
			ms_count(MS_CNT_STDIO_FAULT, n);                       \
			break;                                                 \
		}                                                              \
		ms_fill_header(&e->h, MS_EV_STDIO,                             \
			       (struct task_struct *)bpf_get_current_task(),   \
			       in->session);                                   \
		e->chan_ino = in->chan_ino;                                    \
		e->chan_dev = in->chan_dev;                                    \
		e->dir = in->syscall;                                          \
		e->_pad0 = 0;                                                  \
		e->len = n;                                                    \
		e->offset = x->off + at;                                       \
		e->fd = in->fd;                                                \
		e->_pad1 = 0;                                                  \
		bpf_ringbuf_submit(e, ms_wakeup());                            \
	} while (0)

#if !MS_COMPAT
static long ms_emit_chunk(__u64 i, struct ms_emit *x)
{
	struct ms_io *in = x->in;
	__u64 at = i * MS_CHUNK_LARGE;

	if (at >= x->len)
		return 1;
	__u64 step = x->len - at;
	if (step > MS_CHUNK_LARGE)
		step = MS_CHUNK_LARGE;
	/* a lost chunk is counted; the next one's offset shows the gap */
	if (step <= MS_CHUNK_SMALL)
		MS_EMIT_CLASS(MS_CHUNK_SMALL);
	else
		MS_EMIT_CLASS(MS_CHUNK_LARGE);
	return 0;
}
#endif

#if MS_COMPAT
/*
 * Compat: no bpf_loop, so the capture is one bounded loop the verifier
 * walks step by step, each step a chunk or the taking up of an iovec. Its
 * state lives in a per-CPU map value, read back as unknown at each step,
 * so the states of a step's outcomes prune (tracked on the stack, 32
 * chunks did not verify in 1M instructions on 5.10). Per CPU is safe
 * there: these kernels run tracepoint programs with preemption disabled.
 * At most MS_COMPAT_STEPS steps: a plain buffer's first 48 chunks, a
 * readv/writev's at least 32 (features.rs: COMPAT_STDIO_CAP); the rest is
 * counted as MS_CNT_STDIO_CAP, a visible gap.
 */
#define MS_COMPAT_STEPS 48

struct ms_emit_state {
	__u64 ptr;      /* next byte of the current span */
	__u64 left;     /* bytes left in the current span */
	__u64 want;     /* bytes left to capture in all */
	__u64 off;      /* channel offset of ptr */
	__u64 iovs;     /* the iovec array; 0: a plain buffer */
	__u32 iovcnt;
	__u32 iov;      /* next iovec to take up */
	/* the record's fields, named as in struct ms_io for MS_EMIT_CLASS */
	__u32 session;
	__u32 fd;
	__u32 syscall;
	__u32 chan_dev;
	__u64 chan_ino;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_emit_state);
} EMIT_STATE SEC(".maps");

static __always_inline long ms_emit_step(struct ms_emit_state *x)
{
	struct ms_emit_state *in = x;
	__u64 at = 0;
	if (x->want == 0)
		return 1;
	if (x->left == 0) {
		__u32 v = x->iov;
		if (!x->iovs || v >= MS_IOV_MAX || v >= x->iovcnt)
			return 1;
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(x->iovs + v * sizeof(iov))))
			return 1;
		x->iov = v + 1;
		x->ptr = (__u64)iov.iov_base;
		x->left = iov.iov_len < x->want ? iov.iov_len : x->want;
		return 0;
	}
	__u64 step = x->left < MS_CHUNK_LARGE ? x->left : MS_CHUNK_LARGE;
	if (step <= MS_CHUNK_SMALL)
		MS_EMIT_CLASS(MS_CHUNK_SMALL);
	else
		MS_EMIT_CLASS(MS_CHUNK_LARGE);
	x->ptr += step;
	x->left -= step;
	x->want -= step;
	x->off += step;
	return 0;
}

/* Captures `want` bytes of the transfer from channel offset `base`;
 * returns the bytes not captured. */
static __always_inline __u64 ms_capture(struct ms_io *in, __u64 want, __u64 base)
{
	__u32 zero = 0;
	struct ms_emit_state *x = bpf_map_lookup_elem(&EMIT_STATE, &zero);
	if (!x)
		return want;
	int iov = in->flags & MS_IO_IOV;
	x->ptr = iov ? 0 : in->arg[0];
	x->left = iov ? 0 : want;
	x->want = want;
	x->off = base;
	x->iovs = iov ? in->arg[0] : 0;
	x->iovcnt = in->arg[1];
	x->iov = 0;
	x->session = in->session;
	x->fd = in->fd;
	x->syscall = in->syscall;
	x->chan_dev = in->chan_dev;
	x->chan_ino = in->chan_ino;
	for (__u32 i = 0; i < MS_COMPAT_STEPS; i++)
		if (ms_emit_step(x))
			break;
	return x->want;
}
#else
/* Captures `want` bytes of the transfer from channel offset `base`, a
 * bpf_loop per span; returns the bytes not captured. */
static __always_inline void ms_emit_span(struct ms_emit *x)
{
	bpf_loop((ms_stdio_cap / MS_CHUNK_LARGE) + 2, ms_emit_chunk, x, 0);
}

static __always_inline __u64 ms_capture(struct ms_io *in, __u64 want, __u64 base)
{
	struct ms_emit x = { .off = base, .in = in };
	if (!(in->flags & MS_IO_IOV)) {
		x.ptr = in->arg[0];
		x.len = want;
		ms_emit_span(&x);
		return 0;
	}
	for (int i = 0; i < MS_IOV_MAX && i < in->arg[1] && want > 0; i++) {
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(in->arg[0] + i * sizeof(iov))))
			break;
		__u64 take = iov.iov_len < want ? iov.iov_len : want;
		x.ptr = (__u64)iov.iov_base;
		x.len = take;
		ms_emit_span(&x);
		x.off += take;
		want -= take;
	}
	return want; /* more than MS_IOV_MAX vectors */
}
#endif

/* The first transfer of a direction on a candidate channel (discover.bpf.h):
 * returns 1 when it rejected the candidate and nothing is to be captured. */
static __always_inline int ms_reject_first(struct ms_io *in, struct ms_chan_key *key, __u64 len, __u32 dir)
{
	__u64 ptr = in->arg[0];
	if (in->flags & MS_IO_IOV) {
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)ptr))
			return 0;
		ptr = (__u64)iov.iov_base;
		if (iov.iov_len < len)
			len = iov.iov_len;
	}
	__u8 byte = 0;
	if (ms_may_be_jsonrpc(ptr, len, &byte)) {
		/* spoke JSON-RPC as MCP frames it (one JSON text a line): a
		 * `Content-Length:` header is LSP's, whose servers are rejected
		 * later and must not be enforced as servers meanwhile */
		if (dir == MS_DIR_OUT && (byte == '{' || byte == '['))
			ms_mark_spoke(in->session);
		return 0;
	}
	ms_reject_candidate(key, in->session, dir, byte);
	return 1;
}

static __always_inline int ms_io_exit(long ret, int nr, __u32 sysdir, __u32 iov)
{
	struct ms_io io = {}, *in = &io;
	struct ms_chan *chan = NULL;
	if (!ms_io_at_exit(ret, nr, in, sysdir, iov, &chan))
		return 0;
	struct ms_chan_key key = { .ino = in->chan_ino, .dev = in->chan_dev };
	__u32 dir = in->syscall & 1;
	__u64 base = ms_fetch_add(&chan->off[dir], (__u64)ret);
	if (base == 0 && (chan->flags & MS_CH_CANDIDATE) && ms_reject_first(in, &key, (__u64)ret, dir))
		return 0;
	if (base == 0 && dir == MS_DIR_IN) {
		/* the server's first read of its channel: the client's first
		 * message (MCP's `initialize` request) has arrived */
		__u64 now = bpf_ktime_get_boot_ns();
		if (bpf_map_update_elem(&FIRST_REQ, &in->session, &now, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&FIRST_REQ, &in->session))
			ms_count(MS_CNT_FIRST_REQ_FULL, 1);
	}

	__u64 want = ret;
	if (want > ms_stdio_cap) {
		ms_count(MS_CNT_STDIO_CAP, want - ms_stdio_cap);
		want = ms_stdio_cap;
	}
	__u64 lost = ms_capture(in, want, base);
	if (lost > 0)
		ms_count(MS_CNT_STDIO_CAP, lost);
	return 0;
}

/*
 * One program for the twelve read/write syscalls, attached to each one's
 * exit tracepoint by the loader (loader.rs, MULTI_ATTACH): verified once,
 * not twelve times. Direction and buffer kind come from the record's id
 * (x86_64 numbers).
 */
SEC("tracepoint/syscalls/sys_exit_read")
int ms_stdio_exits(struct trace_event_raw_sys_exit *ctx)
{
	__u32 dir, iov = 0;
	switch (ms_exit_nr(ctx)) {
	case 0:   /* read */
	case 17:  /* pread64 */
	case 45:  /* recvfrom */
		dir = MS_DIR_IN;
		break;
	case 19:  /* readv */
	case 295: /* preadv */
	case 327: /* preadv2 */
		dir = MS_DIR_IN;
		iov = MS_IO_IOV;
		break;
	case 1:   /* write */
	case 18:  /* pwrite64 */
	case 44:  /* sendto */
		dir = MS_DIR_OUT;
		break;
	case 20:  /* writev */
	case 296: /* pwritev */
	case 328: /* pwritev2 */
		dir = MS_DIR_OUT;
		iov = MS_IO_IOV;
		break;
	default:
		return 0;
	}
	return ms_io_exit(ctx->ret, ms_exit_nr(ctx), dir, iov);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
