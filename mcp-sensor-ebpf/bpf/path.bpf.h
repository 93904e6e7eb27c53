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

/* Components walked at most; deeper paths are reported truncated. */
#define MS_PATH_DEPTH 64

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
	__u32 off;
	__u32 flags;
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

MS_LOOP_CB ms_walk_step(__u64 i, struct ms_walk *w)
{
	struct ms_walk_state *st = w->s;
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
		if (dentry != mnt_root)
			return 1; /* disconnected from its mount */
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt)
			return 1; /* the global root */
		st->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		st->mnt = up;
		st->vfsmnt = (struct vfsmount *)((void *)up + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}

	struct qstr name = BPF_CORE_READ(dentry, d_name);
	__u32 len = name.len & 0xff;
	__u32 off = st->off;
	if (len + 1 > off || i == MS_PATH_DEPTH - 1) {
		st->flags |= MS_F_PATH_TRUNC;
		return 1;
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
		*flags |= MS_F_PATH_TRUNC;
		buf[MS_PATH_MAX] = 1;
		return MS_PATH_MAX;
	}
#else
	struct ms_walk_state state, *st = &state;
#endif
	st->dentry = dentry;
	st->vfsmnt = vfsmnt;
	st->mnt = ms_real_mount(vfsmnt);
	st->off = MS_PATH_MAX;
	st->flags = 0;
	struct ms_walk w = { .buf = buf, .s = st };

	if (BPF_CORE_READ(dentry, d_op, d_dname))
		st->flags |= MS_F_PSEUDO;
	/* d_unlinked(): unhashed and not a root */
	if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry)
		st->flags |= MS_F_DELETED;

	ms_loop(MS_PATH_DEPTH, ms_walk_step, &w);
	__u32 off = st->off;
	if (off >= MS_PATH_MAX) {
		off = MS_PATH_MAX - 1;
		buf[off] = '/';
	}
	*flags |= st->flags;
	buf[MS_PATH_MAX] = (st->flags & MS_F_PATH_TRUNC) ? 1 : 0;
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
