//! Known files: the identity (dev, ino) of each file an open rule names by
//! path, with the path it is known by (its canonical name). An open of the
//! same inode under another name (a hard link, a bind mount, a handle from
//! `open_by_handle_at`, `/proc/<pid>/fd/N`) is then judged as an open of
//! the canonical name too, and its event names both.
//!
//! Learned from the home scan of the rules' path globs and from every open
//! the sensor sees of a path a rule names (detect.rs); pure here. Bounded:
//! past [`MAX_KNOWN`] identities new ones are refused and counted.

use std::collections::HashMap;

/// Identities kept at most (about 100 bytes each with the path).
pub const MAX_KNOWN: usize = 65_536;

/// Where an identity was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The scan of the homes for the rules' path globs.
    Scan,
    /// An open the sensor saw of a path a rule names.
    Open,
}

#[derive(Debug, Default)]
pub struct KnownFiles {
    /// (kernel dev, ino) -> canonical path. The kernel's dev encoding, as
    /// [`super::FileId`].
    by_id: HashMap<(u32, u64), (Box<str>, Source)>,
    /// Identities refused because the table was full.
    pub refused: u64,
}

impl KnownFiles {
    /// Records `path` as the name of `id`. A name already known for the
    /// identity stays (the first one seen is canonical) unless it came from
    /// an open and this one from the scan. Returns whether the identity is
    /// new.
    pub fn learn(&mut self, id: super::FileId, path: &str, src: Source) -> bool {
        let key = (id.dev, id.ino);
        if let Some(e) = self.by_id.get_mut(&key) {
            if e.0.as_ref() != path && e.1 == Source::Open && src == Source::Scan {
                *e = (path.into(), src);
            }
            return false;
        }
        if self.by_id.len() >= MAX_KNOWN {
            self.refused += 1;
            return false;
        }
        self.by_id.insert(key, (path.into(), src));
        true
    }

    /// The canonical name of `id`, when it is known.
    pub fn canonical(&self, id: super::FileId) -> Option<&str> {
        self.by_id.get(&(id.dev, id.ino)).map(|e| &*e.0)
    }

    /// Forgets `id` (its canonical name no longer has it: deleted, and the
    /// inode number reused).
    pub fn forget(&mut self, id: super::FileId) {
        self.by_id.remove(&(id.dev, id.ino));
    }

    /// Forgets what the scan found (a rescan follows); what opens taught stays.
    pub fn forget_scanned(&mut self) {
        self.by_id.retain(|_, e| e.1 == Source::Open);
    }

    /// The names learned from opens: what the home scan did not find (a key
    /// under a home that is not in /etc/passwd), for the kernel's identity
    /// set too.
    pub fn learned_from_opens(&self) -> impl Iterator<Item = &str> {
        self.by_id.values().filter(|e| e.1 == Source::Open).map(|e| &*e.0)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::FileId;

    const KEY: FileId = FileId { dev: 8 << 20 | 1, ino: 42 };

    #[test]
    fn the_first_name_is_canonical_and_the_scan_outranks_an_open() {
        let mut k = KnownFiles::default();
        assert!(k.learn(KEY, "/tmp/x/.ssh/id_rsa", Source::Open));
        assert!(!k.learn(KEY, "/root/.ssh/id_rsa2", Source::Open));
        assert_eq!(k.canonical(KEY), Some("/tmp/x/.ssh/id_rsa"));
        assert!(!k.learn(KEY, "/root/.ssh/id_rsa", Source::Scan));
        assert_eq!(k.canonical(KEY), Some("/root/.ssh/id_rsa"));
        assert_eq!(k.learned_from_opens().count(), 0);
        k.forget_scanned();
        assert!(k.is_empty());
    }

    #[test]
    fn a_full_table_refuses_and_counts() {
        let mut k = KnownFiles::default();
        for i in 0..MAX_KNOWN as u64 {
            k.learn(FileId { dev: 1, ino: i }, "/a", Source::Scan);
        }
        assert!(!k.learn(KEY, "/root/.ssh/id_rsa", Source::Open));
        assert_eq!(k.refused, 1);
        assert_eq!(k.canonical(KEY), None);
        k.forget(FileId { dev: 1, ino: 0 });
        assert!(k.learn(KEY, "/root/.ssh/id_rsa", Source::Open));
        assert_eq!(k.learned_from_opens().collect::<Vec<_>>(), ["/root/.ssh/id_rsa"]);
    }
}
