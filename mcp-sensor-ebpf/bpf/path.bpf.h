/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * path.bpf.h: the absolute path of a kernel `struct path`, walked from the
 * dentry up through mounts to the global root.
 *
 * bpf_d_path() is only allowed in fentry/LSM programs, which not every
 * kernel offers, and only on some hooks, so the walk is done by hand, the way d_path() does it: it works
 * on the object the kernel actually opened or executed, so symlinks, `..`,
 * dirfd-relative and /proc/self/root paths all come out resolved.
 */
#ifndef MCP_SENSOR_PATH_BPF_H
#define MCP_SENSOR_PATH_BPF_H

#include "common.bpf.h"

/* Steps walked at most (a component or a mount crossed each); deeper
 * paths are reported truncated. With bpf_loop (5.17+) the step is
 * verified once, so the walk goes on to the root of a path far longer
 * than MS_PATH_MAX (a payload 1,000 directories deep); the compat
 * object's unrolled loop is verified step by step, and 64 steps is what
 * 5.10's verifier takes (a second, counting-only walk of 1,024 steps past
 * them was tried: 5.10 refused the exec program at 1M instructions, after
 * 32 s). So the compat walk copies 56 steps, and a path deeper than that
 * jumps to the root of the mount it is on and spends the other 8 on that
 * mount point's path (ms_walk_mount_top): `/tmp/…/dddd/payload`, the
 * components between unknown (the cut's `gap`), but where it is known.
 * One loop of 64 steps, not a second loop: 5.10 refused a second one
 * ("back-edge from insn 808 to 809"). */
#if MS_COMPAT
#define MS_PATH_DEPTH 64
#define MS_PATH_COPY_DEPTH 56
#else
#define MS_PATH_DEPTH 4096
#endif

/* struct mount is private to fs/; find it from its embedded vfsmount with a
 * CO-RE offset so a layout change between kernels is relocated. */
static __always_inline struct mount *ms_real_mount(struct vfsmount *vfsmnt)
{
	return (struct mount *)((void *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
}

/* State of one walk, advanced one component per loop step (with bpf_loop
 * the verifier checks the step once, whatever the depth). */
struct ms_walk_state {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *head0;  /* the topmost component not copied */
	struct dentry *head1;  /* the one below it */
	__u32 off;
	__u32 flags;
	__u32 total;   /* bytes of the path walked, "/name" per component */
	__u32 skipped; /* components not copied: the buffer was full */
	__u32 done;    /* the walk reached the root (or a disconnected top) */
	__u32 gap;     /* the walk jumped from inside a mount to its root */
};

struct ms_walk {
	char *buf;                /* the record's path buffer (ring memory) */
	struct ms_walk_state *s;
};

#if MS_COMPAT
/*
 * Without bpf_loop the verifier walks every step and keeps each step's
 * outcomes apart while the offset is a value it tracks on the stack: 64
 * steps of "a component, or a mount crossed" did not verify in 1M
 * instructions. Kept in a map value, the state reads back as unknown at
 * each step, so the steps' states prune. Per CPU, not shared: on the
 * compat kernels (before 6.x's faultable syscall tracepoints) programs
 * run with preemption disabled, and the walks of one program run one
 * after another.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_walk_state);
} WALK_STATE SEC(".maps") MS_WEAK;
#endif

#if MS_COMPAT
/* Step MS_PATH_COPY_DEPTH of a compat walk still inside the path: jump to
 * the root of the mount the walk is in, so the steps left walk that
 * mount point's path to the global root (a few: /tmp, /dev/shm), copying
 * nothing and keeping its top two components as the cut's head. Sets
 * `gap`: the components between are not known. */
static __always_inline void ms_walk_mount_top(struct ms_walk_state *st)
{
	struct vfsmount *vfsmnt = st->vfsmnt;
	st->dentry = BPF_CORE_READ(vfsmnt, mnt_root);
	st->head0 = st->head1 = 0;
	/* nonzero: the step counts and keeps heads instead of copying (the 1
	 * is taken off at the end, ms_path_build) */
	st->skipped = 1;
	st->gap = 1;
	st->flags |= MS_F_PATH_TRUNC;
}
#endif

MS_LOOP_CB ms_walk_step(__u64 i, struct ms_walk *w)
{
	struct ms_walk_state *st = w->s;
#if MS_COMPAT
	if (i == MS_PATH_COPY_DEPTH)
		ms_walk_mount_top(st);
#endif
	/* locals first: BPF_CORE_READ on st->x would relocate the struct */
	struct dentry *dentry = st->dentry;
	struct vfsmount *vfsmnt = st->vfsmnt;
	struct mount *mnt = st->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	/* a pseudo file's own dentry (memfd:NAME on the internal shmem
	 * mount) is its own parent: its name is all the path it has, as
	 * d_path()'s simple_dname() shows it (without " (deleted)") */
	int own_name = i == 0 && dentry == parent && dentry != mnt_root && (st->flags & MS_F_PSEUDO);
	if (!own_name && (dentry == mnt_root || dentry == parent)) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (dentry != mnt_root || up == mnt) {
			/* disconnected from its mount, or the global root */
			st->done = 1;
			return 1;
		}
		st->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		st->mnt = up;
		st->vfsmnt = (struct vfsmount *)((void *)up + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}

	struct qstr name = BPF_CORE_READ(dentry, d_name);
	__u32 len = name.len & 0xff;
	__u32 off = st->off;
	st->total += len + 1;
	if (st->skipped || len + 1 > off) {
		/* the buffer is full: walk on to the root, counting, and keep
		 * the topmost two components */
		st->flags |= MS_F_PATH_TRUNC;
		st->skipped++;
		st->head1 = st->head0;
		st->head0 = dentry;
		st->dentry = parent;
		return 0;
	}
	off -= len;
	char *buf = w->buf;
	bpf_probe_read_kernel(&buf[off & (MS_PATH_MAX - 1)], len, name.name);
	off -= 1;
	buf[off & (MS_PATH_MAX - 1)] = '/';
	st->off = off;
	st->dentry = parent;
	return 0;
}

/* One leading component of a cut path into `to` (MS_PATH_HEAD bytes);
 * returns 1 if its name did not fit. */
static __always_inline __u8 ms_path_head(char *to, struct dentry *d)
{
	struct qstr name = BPF_CORE_READ(d, d_name);
	if (bpf_probe_read_kernel_str(to, MS_PATH_HEAD, name.name) < 0)
		to[0] = 0;
	return (name.len & 0xff) >= MS_PATH_HEAD;
}

/* The path buffer's slack (abi.h struct ms_path_cut). */
static __always_inline void ms_path_cut(char *buf, const struct ms_walk_state *st)
{
	struct ms_path_cut *c = (struct ms_path_cut *)(buf + MS_PATH_MAX);
	c->cut = (st->flags & MS_F_PATH_TRUNC) ? 1 : 0;
	if (!c->cut)
		return;
	int known = st->done;
	c->skipped = st->skipped > 255 ? 255 : st->skipped;
	c->total = known && !st->gap ? st->total : 0;
	c->head_cut = 0;
	c->gap = known && st->gap;
	c->head[0][0] = 0;
	c->head[1][0] = 0;
	if (known && st->skipped >= 1)
		c->head_cut |= ms_path_head(c->head[0], st->head0);
	if (known && st->skipped >= 2)
		c->head_cut |= ms_path_head(c->head[1], st->head1) << 1;
}

/*
 * Writes the path backwards so that it ends at buf[MS_PATH_MAX] (exclusive)
 * and returns where it starts. buf must hold MS_PATH_BUF bytes. Sets
 * MS_F_PATH_TRUNC, MS_F_PSEUDO, MS_F_DELETED in *flags as they apply.
 */
static __always_inline __u32 ms_path_build(char *buf, struct dentry *dentry,
					   struct vfsmount *vfsmnt, __u32 *flags)
{
#if MS_COMPAT
	__u32 zero = 0;
	struct ms_walk_state *st = bpf_map_lookup_elem(&WALK_STATE, &zero);
	if (!st) {
		/* no state (an array's key 0: cannot happen): a cut path with
		 * nothing known of it */
		struct ms_walk_state none = { .flags = MS_F_PATH_TRUNC };
		*flags |= MS_F_PATH_TRUNC;
		ms_path_cut(buf, &none);
		return MS_PATH_MAX;
	}
#else
	struct ms_walk_state state, *st = &state;
#endif
	st->dentry = dentry;
	st->vfsmnt = vfsmnt;
	st->mnt = ms_real_mount(vfsmnt);
	/* compat.bpf.h, ms_opaque_zero: fields the step changes, unknown to
	 * pre-6.7 verifiers, so no branch of the step is dead code (a
	 * constant offset made "the buffer is full" unreachable) */
	st->off = MS_PATH_MAX + ms_opaque_zero;
	st->flags = 0;
	st->head0 = st->head1 = 0;
	st->total = st->skipped = st->done = st->gap = ms_opaque_zero;
	struct ms_walk w = { .buf = buf, .s = st };

	if (BPF_CORE_READ(dentry, d_op, d_dname))
		st->flags |= MS_F_PSEUDO;
	/* d_unlinked(): unhashed and not a root */
	if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry)
		st->flags |= MS_F_DELETED;

	ms_loop(MS_PATH_DEPTH, ms_walk_step, &w);
	if (st->gap && st->skipped)
		st->skipped -= 1; /* the mount point's components */
	if (!st->done)
		st->flags |= MS_F_PATH_TRUNC; /* deeper than the walk goes */
	__u32 off = st->off;
	if (off >= MS_PATH_MAX) {
		off = MS_PATH_MAX - 1;
		buf[off] = '/';
	}
	*flags |= st->flags;
	ms_path_cut(buf, st);
	return off;
}

static __always_inline __u32 ms_file_path(char *buf, struct file *file, __u32 *flags)
{
	return ms_path_build(buf, BPF_CORE_READ(file, f_path.dentry),
			     BPF_CORE_READ(file, f_path.mnt), flags);
}

/* Identity of an open file: superblock device and inode number. */
static __always_inline void ms_file_id(struct file *file, __u32 *dev, __u64 *ino)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	*dev = BPF_CORE_READ(inode, i_sb, s_dev);
	*ino = BPF_CORE_READ(inode, i_ino);
}

#endif /* MCP_SENSOR_PATH_BPF_H */
