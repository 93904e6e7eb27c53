// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fchange.bpf.c: the ways a watched process changes a file without
 * opening it for writing: rename, renameat, renameat2 (the name replaced),
 * link, linkat, symlink, symlinkat (the name created), truncate and
 * ftruncate (the file shortened or grown).
 *
 * One exit program, ms_fchange_exits, attached to each of those syscalls'
 * exit tracepoints (loader.rs, MULTI_ATTACH), reports the change with the
 * caller's strings (read from the saved registers, as file.bpf.c reads an
 * open's) and the base the kernel resolved for a relative destination:
 * the directory fd's path or the cwd. ftruncate is reported with its
 * file's own path and identity.
 *
 * BPF LSM (where the kernel has it active, and under --enforce): the
 * inode_rename, inode_link, inode_symlink and path_truncate hooks refuse a
 * change onto a name the write rules protect (the deny maps of
 * enforce.bpf.h, asked with MS_WR_CHANGE). The refusal is noted in DENIED
 * for the syscall's exit, which writes the record with MS_F_DENIED.
 */
#include "enforce.bpf.h"

#define MS_AT_FDCWD (-100)

struct ms_fchange_args {
	__u64 path;      /* user pointer: the name changed; 0: none (ftruncate) */
	__u64 source;    /* user pointer: the old name or the link's target; 0: none */
	__u64 length;
	__s32 dirfd;
	__s32 src_dirfd;
	__s32 fd;        /* ftruncate: the file; else -1 */
	__u32 rflags;
	__u32 sys;       /* MS_SYS_* */
};

/* The arguments of syscall nr (x86_64 numbers) from its saved registers;
 * 0 when nr is none of the changes. The switch only assigns (see
 * file.bpf.c's ms_open_args_of). */
static __always_inline int ms_fchange_args_of(int nr, struct pt_regs *regs, struct ms_fchange_args *a)
{
	a->dirfd = MS_AT_FDCWD;
	a->src_dirfd = MS_AT_FDCWD;
	a->fd = -1;
	switch (nr) {
	case 82: /* rename(old, new) */
		a->sys = MS_SYS_RENAME;
		a->source = BPF_CORE_READ(regs, di);
		a->path = BPF_CORE_READ(regs, si);
		break;
	case 264: /* renameat(olddfd, old, newdfd, new) */
		a->sys = MS_SYS_RENAMEAT;
		a->src_dirfd = BPF_CORE_READ(regs, di);
		a->source = BPF_CORE_READ(regs, si);
		a->dirfd = BPF_CORE_READ(regs, dx);
		a->path = BPF_CORE_READ(regs, r10);
		break;
	case 316: /* renameat2(olddfd, old, newdfd, new, flags) */
		a->sys = MS_SYS_RENAMEAT2;
		a->src_dirfd = BPF_CORE_READ(regs, di);
		a->source = BPF_CORE_READ(regs, si);
		a->dirfd = BPF_CORE_READ(regs, dx);
		a->path = BPF_CORE_READ(regs, r10);
		a->rflags = BPF_CORE_READ(regs, r8);
		break;
	case 86: /* link(old, new) */
		a->sys = MS_SYS_LINK;
		a->source = BPF_CORE_READ(regs, di);
		a->path = BPF_CORE_READ(regs, si);
		break;
	case 265: /* linkat(olddfd, old, newdfd, new, flags) */
		a->sys = MS_SYS_LINKAT;
		a->src_dirfd = BPF_CORE_READ(regs, di);
		a->source = BPF_CORE_READ(regs, si);
		a->dirfd = BPF_CORE_READ(regs, dx);
		a->path = BPF_CORE_READ(regs, r10);
		a->rflags = BPF_CORE_READ(regs, r8);
		break;
	case 88: /* symlink(target, linkpath) */
		a->sys = MS_SYS_SYMLINK;
		a->source = BPF_CORE_READ(regs, di);
		a->path = BPF_CORE_READ(regs, si);
		break;
	case 266: /* symlinkat(target, newdfd, linkpath) */
		a->sys = MS_SYS_SYMLINKAT;
		a->source = BPF_CORE_READ(regs, di);
		a->dirfd = BPF_CORE_READ(regs, si);
		a->path = BPF_CORE_READ(regs, dx);
		break;
	case 76: /* truncate(path, length) */
		a->sys = MS_SYS_TRUNCATE;
		a->path = BPF_CORE_READ(regs, di);
		a->length = BPF_CORE_READ(regs, si);
		break;
	case 77: /* ftruncate(fd, length) */
		a->sys = MS_SYS_FTRUNCATE;
		a->fd = BPF_CORE_READ(regs, di);
		a->length = BPF_CORE_READ(regs, si);
		break;
	default:
		return 0;
	}
	return 1;
}

/* A user string into a record field; its length without the NUL. */
static __always_inline __u16 ms_user_str(char *dst, __u64 src)
{
	if (!src)
		return 0;
	long n = bpf_probe_read_user_str(dst, MS_PATH_MAX, (void *)src);
	return n > 0 ? n - 1 : 0;
}

static __always_inline void ms_emit_fchange(struct task_struct *task, const struct ms_fchange_args *a, long ret,
					    __u32 flags, __u32 session)
{
	struct ms_fchange *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		ms_count_drop(MS_EV_FCHANGE);
		return;
	}
	ms_fill_header(&e->h, MS_EV_FCHANGE, task, session);
	e->ret = ret;
	e->syscall = a->sys;
	e->rflags = a->rflags;
	e->dirfd = a->dirfd;
	e->src_dirfd = a->src_dirfd;
	e->dev = 0;
	e->ino = 0;
	e->length = a->length;
	e->dir_off = MS_PATH_MAX;
	e->_pad = 0;
	e->path_len = ms_user_str(e->path, a->path);
	e->source_len = ms_user_str(e->source, a->source);

	/* One walk: ftruncate's file, else the base of a relative path, or of
	 * a relative source with the same base (a symlink's target is text,
	 * not a path of the caller's); the verifier checks a walk per call
	 * site. */
	struct file *base = NULL;
	struct dentry *d = NULL;
	struct vfsmount *mnt = NULL;
	int src_rel = e->source_len && e->source[0] != '/' && a->src_dirfd == a->dirfd &&
		      a->sys != MS_SYS_SYMLINK && a->sys != MS_SYS_SYMLINKAT;
	if (a->fd >= 0) {
		base = ms_fd_file(task, a->fd);
		if (base)
			ms_file_id(base, &e->dev, &e->ino);
	} else if ((e->path_len && e->path[0] != '/') || src_rel) {
		if (a->dirfd == MS_AT_FDCWD) {
			d = BPF_CORE_READ(task, fs, pwd.dentry);
			mnt = BPF_CORE_READ(task, fs, pwd.mnt);
		} else {
			base = ms_fd_file(task, a->dirfd);
		}
	}
	if (base) {
		d = BPF_CORE_READ(base, f_path.dentry);
		mnt = BPF_CORE_READ(base, f_path.mnt);
	}
	if (a->fd < 0)
		flags |= MS_F_UNRESOLVED; /* the path is the caller's string */
	if (d && mnt)
		e->dir_off = ms_path_build(e->dir, d, mnt, &flags);
	e->h.flags = flags;
	bpf_ringbuf_submit(e, ms_wakeup());
}

/* The record flags of a change BPF LSM refused in this thread's syscall
 * (ms_lsm_change), or 0. */
static __always_inline __u32 ms_change_denied(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ms_verdict *v = bpf_map_lookup_elem(&DENIED, &tid);
	if (!v)
		return 0;
	__u32 flags = MS_F_DENIED | ((v->rule + 1) << MS_F_RULE_SHIFT);
	if (v->flags & MS_VF_KILL)
		flags |= MS_F_KILLED | (v->flags & MS_VF_TREE ? MS_F_KILL_TREE : 0);
	bpf_map_delete_elem(&DENIED, &tid);
	return flags;
}

SEC("tracepoint/syscalls/sys_exit_rename")
int ms_fchange_exits(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	struct ms_watch *w = ms_watched_current();
	if (!w)
		return 0;
	__u32 session = w->session;
	struct pt_regs *regs = ms_user_regs();
	int nr = ms_exit_nr(ctx);
	if (!ms_regs_ok(regs, nr))
		return 0;
	struct ms_fchange_args a = {};
	if (!ms_fchange_args_of(nr, regs, &a))
		return 0;
	__u32 flags = ret == -MS_EPERM && ms_lsm_enforce ? ms_change_denied() : 0;
	ms_emit_fchange((struct task_struct *)bpf_get_current_task(), &a, ret, flags, session);
	return 0;
}

/* The packed verdict (enforce.bpf.h) on changing the name `dentry`: only
 * the write rules decide. Global, verified once for the four hooks. */
__noinline int ms_change_verdict(__u64 dentry, __u32 session)
{
	struct dentry *d = (struct dentry *)dentry;
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	__u32 dev = 0;
	__u64 ino = 0;
	if (inode) {
		dev = BPF_CORE_READ(inode, i_sb, s_dev);
		ino = BPF_CORE_READ(inode, i_ino);
	}
	struct ms_verdict v;
	if (!ms_name_verdict(d, dev, ino, MS_WR_CHANGE, session, &v))
		return 0;
	return ms_verdict_pack(&v);
}

/* A watched server's change onto `dentry` (a scalar: 5.10 passes nothing
 * else to a global function): refused when the name is protected. Inside
 * one of the syscalls above, the refusal is left in DENIED for the exit
 * program's record; elsewhere (io_uring's renameat, linkat, symlinkat) it
 * is only counted. */
static __always_inline int ms_lsm_change(__u64 dentry)
{
	struct ms_watch *w = ms_watched_current();
	if (!ms_enf_applies(w))
		return 0;
	__u32 session = w->session;
	struct ms_verdict v;
	if (!ms_verdict_unpack(ms_change_verdict(dentry, session), &v))
		return 0;
	ms_lsm_deny(&v, session, MS_ENF_DENY_CHANGE, MS_ENF_KILL_CHANGE);
	struct ms_fchange_args a = {};
	struct pt_regs *regs = ms_user_regs();
	if (ms_fchange_args_of((int)BPF_CORE_READ(regs, orig_ax), regs, &a)) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		if (bpf_map_update_elem(&DENIED, &tid, &v, BPF_ANY))
			ms_count(MS_CNT_DENIED_FULL, 1);
	}
	return -MS_EPERM;
}

/* ctx[i] as a scalar (see ms_lsm_change). */
static __always_inline __u64 ms_ctx_arg(unsigned long long *ctx, int i)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &ctx[i]);
	return v;
}

/* rename, and each side of RENAME_EXCHANGE (the kernel calls the hook
 * twice): the name replaced is new_dentry. */
SEC("lsm/inode_rename")
int BPF_PROG(ms_lsm_inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	return ms_lsm_change(ms_ctx_arg(ctx, 3));
}

SEC("lsm/inode_link")
int BPF_PROG(ms_lsm_inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	return ms_lsm_change(ms_ctx_arg(ctx, 2));
}

SEC("lsm/inode_symlink")
int BPF_PROG(ms_lsm_inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name, int ret)
{
	if (ret)
		return ret;
	return ms_lsm_change(ms_ctx_arg(ctx, 1));
}

/* truncate and ftruncate only: an open with O_TRUNC passes here too, but
 * its open was decided in file_open (the flag makes it a write). */
SEC("lsm/path_truncate")
int BPF_PROG(ms_lsm_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	int nr = (int)BPF_CORE_READ(ms_user_regs(), orig_ax);
	if (nr != 76 && nr != 77)
		return 0;
	return ms_lsm_change((__u64)BPF_CORE_READ(path, dentry));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
