/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * path.bpf.h: the absolute path of a kernel `struct path`, walked from the
 * dentry up through mounts to the global root.
 *
 * bpf_d_path() is only allowed in fentry/LSM programs, which this kernel
 * refuses, so the walk is done by hand, the way d_path() does it: it works
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

/* State of one walk, advanced one component per bpf_loop step so the
 * verifier checks the step once, whatever the depth. */
struct ms_walk {
	char *buf;
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 off;
	__u32 flags;
};

static long ms_walk_step(__u64 i, struct ms_walk *w)
{
	/* locals first: BPF_CORE_READ on w->x would relocate struct ms_walk */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (dentry == mnt_root || dentry == parent) {
		if (dentry != mnt_root)
			return 1; /* disconnected from its mount */
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt)
			return 1; /* the global root */
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->vfsmnt = (struct vfsmount *)((void *)up + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}

	struct qstr name = BPF_CORE_READ(dentry, d_name);
	__u32 len = name.len & 0xff;
	__u32 off = w->off;
	if (len + 1 > off || i == MS_PATH_DEPTH - 1) {
		w->flags |= MS_F_PATH_TRUNC;
		return 1;
	}
	off -= len;
	char *buf = w->buf;
	bpf_probe_read_kernel(&buf[off & (MS_PATH_MAX - 1)], len, name.name);
	off -= 1;
	buf[off & (MS_PATH_MAX - 1)] = '/';
	w->off = off;
	w->dentry = parent;
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
	struct ms_walk w = {
		.buf = buf,
		.dentry = dentry,
		.vfsmnt = vfsmnt,
		.mnt = ms_real_mount(vfsmnt),
		.off = MS_PATH_MAX,
		.flags = 0,
	};

	if (BPF_CORE_READ(dentry, d_op, d_dname))
		w.flags |= MS_F_PSEUDO;
	/* d_unlinked(): unhashed and not a root */
	if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry)
		w.flags |= MS_F_DELETED;

	bpf_loop(MS_PATH_DEPTH, ms_walk_step, &w, 0);
	if (w.off == MS_PATH_MAX) {
		w.off -= 1;
		buf[w.off & (MS_PATH_MAX - 1)] = '/';
	}
	*flags |= w.flags;
	return w.off;
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
