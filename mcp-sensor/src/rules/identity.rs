//! File identity for `file:` fields: a rule naming `/home/u/.aws/credentials`
//! also matches the same inode opened through a hard link, a bind mount or
//! a `/proc/self/root/...` path.
//!
//! The engine stays pure: the agent stats [`super::RuleSet::identity_paths`]
//! (and again when they change), builds a [`FileIdentities`] and passes it
//! in [`super::EvalContext::identities`].

use std::collections::HashMap;

/// A file's identity as the kernel reports it in events: the superblock's
/// device number in the kernel's encoding (`major << 20 | minor`) and the
/// inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u32,
    pub ino: u64,
}

impl FileId {
    /// From `stat(2)`'s `st_dev`/`st_ino`. `st_dev` uses glibc's encoding,
    /// events carry the kernel's; this converts. (On btrfs, `st_dev` is the
    /// subvolume's anonymous device, not the superblock's: such files match
    /// by path only.)
    pub fn from_stat(st_dev: u64, st_ino: u64) -> FileId {
        let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
        let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
        FileId {
            dev: ((major as u32) << 20) | (minor as u32 & 0xfffff),
            ino: st_ino,
        }
    }
}

/// The identities of the rule set's `file:` paths.
#[derive(Debug, Clone, Default)]
pub struct FileIdentities {
    /// identity -> indices into `RuleSet::identity_paths`
    by_id: HashMap<(u32, u64), Vec<u32>>,
}

impl FileIdentities {
    /// Resolves every path with `stat`; paths it returns `None` for (not
    /// there yet) match by path only until resolved again.
    pub fn resolve(
        paths: &[String],
        mut stat: impl FnMut(&str) -> Option<FileId>,
    ) -> FileIdentities {
        let mut t = FileIdentities::default();
        for (i, p) in paths.iter().enumerate() {
            if let Some(id) = stat(p) {
                t.by_id.entry((id.dev, id.ino)).or_default().push(i as u32);
            }
        }
        t
    }

    /// Indices of the configured paths with this identity.
    pub fn lookup(&self, dev: u32, ino: u64) -> &[u32] {
        if self.by_id.is_empty() {
            return &[];
        }
        self.by_id.get(&(dev, ino)).map_or(&[], |v| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_dev_to_kernel_encoding() {
        // 8:1 (sda1): glibc makedev(8, 1) == 0x801; kernel MKDEV(8, 1) == 8 << 20 | 1.
        assert_eq!(FileId::from_stat(0x801, 7).dev, 8 << 20 | 1);
        // 259:65536 needs glibc's high bits for the minor.
        let (major, minor) = (259u64, 65536u64);
        let glibc = (major & 0xfff) << 8 | (minor & 0xff) | (minor & !0xff) << 12;
        assert_eq!(FileId::from_stat(glibc, 1).dev, 259 << 20 | 65536);
    }
}
