//! Where an event happened: the host (name, machine id, boot id), the
//! container and Kubernetes pod its process runs in, and its pid in its own
//! PID namespace.
//!
//! Owns the mapping from a record's cgroup id (abi.h `ms_header.cgroup_id`,
//! the cgroup v2 directory's inode) to a container: the id is turned into
//! the cgroup's path with `open_by_handle_at` on the cgroup2 mount (the
//! kernel's kernfs file handle is the id itself), and the path is parsed
//! for the container runtimes' naming schemes. Where the process is not in
//! a cgroup v2 container path (cgroup v1 or hybrid hosts: the v2 id is the
//! root's), its `/proc/<pid>/cgroup` lines are parsed instead, once per
//! process. Both caches are bounded; they are caches, so a reset loses
//! nothing but time.

use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The machine the sensor runs on: OpenTelemetry's `host.name` and
/// `host.id` (the machine id), plus the boot id, which tells reboots
/// apart (pids and boot-time stamps restart with each boot).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Host {
    /// `uname -n` (the sensor's UTS namespace).
    pub name: String,
    /// `/etc/machine-id` (systemd's machine-id(5)); absent where unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `/proc/sys/kernel/random/boot_id`: random per boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl Host {
    /// Reads the host's identity; a file that cannot be read leaves its
    /// field out.
    pub fn read() -> Host {
        let first_line = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let name = first_line("/proc/sys/kernel/hostname").unwrap_or_default();
        Host { name, id: first_line("/etc/machine-id"), boot_id: first_line("/proc/sys/kernel/random/boot_id") }
    }
}

/// The container a process runs in, from its cgroup path. JSON field
/// `container` (docs/events.md); OpenTelemetry names: `container.id`,
/// `container.runtime`, `k8s.pod.uid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The runtime's container id: 64 hex digits.
    pub id: String,
    /// `docker`, `containerd`, `cri-o`, `podman`, or `unknown` (a bare id
    /// under a parent that does not name its runtime).
    pub runtime: &'static str,
    /// The Kubernetes pod's UID, where the path carries it (kubelet's
    /// `pod<uid>` cgroup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// Runtimes' scope prefixes (systemd cgroup driver): `docker-<id>.scope`.
const SCOPE_PREFIXES: &[(&str, &str)] =
    &[("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("libpod-", "podman")];

/// The container in a cgroup path such as
/// `/system.slice/docker-<id>.scope`, `/docker/<id>`,
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
/// or `/kubepods/besteffort/pod<uid>/<id>`; `None` when no component is a
/// container id. The deepest container id wins (nested containers).
pub fn parse_cgroup_path(path: &str) -> Option<Container> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (at, id, runtime) = comps.iter().enumerate().rev().find_map(|(i, c)| container_id(c).map(|(id, rt)| (i, id, rt)))?;
    let runtime = runtime.unwrap_or_else(|| runtime_of_parents(&comps[..at]));
    let pod_uid = comps[..at].iter().rev().find_map(|c| pod_uid(c));
    Some(Container { id: id.to_string(), runtime, pod_uid })
}

/// A component that is a container: `<prefix><64 hex>.scope` (runtime
/// known) or a bare 64-hex id (runtime from the parents).
fn container_id(comp: &str) -> Option<(&str, Option<&'static str>)> {
    if let Some(stem) = comp.strip_suffix(".scope") {
        return SCOPE_PREFIXES.iter().find_map(|(p, rt)| stem.strip_prefix(p).filter(|id| is_hex64(id)).map(|id| (id, Some(*rt))));
    }
    is_hex64(comp).then_some((comp, None))
}

fn runtime_of_parents(parents: &[&str]) -> &'static str {
    for c in parents.iter().rev() {
        match *c {
            "docker" => return "docker",
            "libpod_parent" | "machine.slice" => return "podman",
            _ if c.starts_with("crio") => return "cri-o",
            _ => {}
        }
    }
    "unknown"
}

/// `pod<uid>` or `kubepods-<qos>-pod<uid with _>.slice`: the pod's UID in
/// its usual dashed form.
fn pod_uid(comp: &str) -> Option<String> {
    let comp = comp.strip_suffix(".slice").unwrap_or(comp);
    let at = comp.rfind("pod")?;
    let uid = &comp[at + 3..];
    let ok = uid.len() == 36 && uid.chars().enumerate().all(|(i, ch)| match i {
        8 | 13 | 18 | 23 => ch == '-' || ch == '_',
        _ => ch.is_ascii_hexdigit(),
    });
    ok.then(|| uid.replace('_', "-"))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Entries each cache holds before it is reset.
const MAX_CACHED: usize = 16384;
/// The cgroup v2 root's id: processes there are in no v2 container path.
const ROOT_CGROUP_ID: u64 = 1;

/// The cgroup-id and per-process container caches.
#[derive(Debug, Default)]
pub struct Places {
    /// Mount point of the cgroup2 hierarchy (`/sys/fs/cgroup` on a unified
    /// host, `/sys/fs/cgroup/unified` on a hybrid one); `None` without one.
    v2_root: Option<PathBuf>,
    /// No cgroup v1 hierarchy is mounted: a process's v2 cgroup is its
    /// only one, so a v2 path without a container settles it.
    unified: bool,
    /// cgroup id -> (its path was read, the container it names).
    by_cgroup: RefCell<HashMap<u64, (bool, Option<Arc<Container>>)>>,
    by_proc: RefCell<HashMap<(u32, u64), Option<Arc<Container>>>>,
    /// Hybrid hosts: v2 cgroup ids whose process's v1 cgroups named no
    /// container either. Later processes of that v2 cgroup are taken to be
    /// in none, without reading /proc (a runtime puts a container in the
    /// unified hierarchy too: runc since 1.0, systemd scopes).
    v1_none: RefCell<HashMap<u64, ()>>,
}

impl Places {
    /// Finds the cgroup2 mount in /proc/self/mountinfo.
    pub fn new() -> Places {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Places { v2_root: cgroup2_mount(&mi), unified: !has_cgroup_v1(&mi), ..Default::default() }
    }

    /// The container of the process a record is about: by its cgroup id
    /// (once per cgroup), else (cgroup v1 or hybrid, or a cgroup gone
    /// before its path was read) from `/proc/<pid>/cgroup`, read once per
    /// (pid, start). On a unified host a v2 cgroup that names no container
    /// settles it without reading /proc: one read per new process cost the
    /// agent ~3 µs per short-lived piped process. `None` for a process in
    /// no container, or gone before its cgroup could be read.
    pub fn container(&self, cgroup_id: u64, pid: u32, start_ns: u64) -> Option<Arc<Container>> {
        if let Some(root) = &self.v2_root {
            if cgroup_id == ROOT_CGROUP_ID && self.unified {
                return None;
            }
            if cgroup_id > ROOT_CGROUP_ID {
                let (read, found) = cached(&self.by_cgroup, cgroup_id, || {
                    let path = cgroup_path(root, cgroup_id);
                    (path.is_some(), path.and_then(|p| parse_cgroup_path(&p)).map(Arc::new))
                });
                if found.is_some() || (read && self.unified) {
                    return found;
                }
            }
            if cgroup_id != 0 && self.v1_none.borrow().contains_key(&cgroup_id) {
                return None;
            }
        }
        let found = cached(&self.by_proc, (pid, start_ns), || proc_container(pid).map(Arc::new));
        if found.is_none() && cgroup_id != 0 && self.v2_root.is_some() && std::fs::metadata(format!("/proc/{pid}")).is_ok() {
            // read while the process lived (not gone before its read)
            cached(&self.v1_none, cgroup_id, || ());
        }
        found
    }
}

fn cached<K: std::hash::Hash + Eq, V: Clone>(cache: &RefCell<HashMap<K, V>>, key: K, find: impl FnOnce() -> V) -> V {
    if let Some(c) = cache.borrow().get(&key) {
        return c.clone();
    }
    let c = find();
    let mut m = cache.borrow_mut();
    if m.len() >= MAX_CACHED {
        m.clear();
    }
    m.insert(key, c.clone());
    c
}

/// The cgroup2 mount point named in a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split(' ').next() != Some("cgroup2") {
            return None;
        }
        Some(PathBuf::from(pre.split(' ').nth(4)?.replace("\\040", " ")))
    })
}

/// Whether a mountinfo text mounts a cgroup v1 hierarchy (fs type
/// `cgroup`): a hybrid or legacy host.
fn has_cgroup_v1(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| l.split_once(" - ").is_some_and(|(_, post)| post.split(' ').next() == Some("cgroup")))
}

/// The first container named by any line of `/proc/<pid>/cgroup`
/// (`hierarchy:controllers:path`).
fn proc_container(pid: u32) -> Option<Container> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().filter_map(|l| l.splitn(3, ':').nth(2)).find_map(parse_cgroup_path)
}

/// The path of cgroup `id` below the cgroup2 mount `root`, by opening it
/// from its kernfs file handle (type FILEID_KERNFS, the 8-byte id; needs
/// CAP_DAC_READ_SEARCH) and reading the descriptor's name back.
fn cgroup_path(root: &Path, id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const FILEID_KERNFS: i32 = 0xfe;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        id: [u8; 8],
    }
    let dir = std::fs::File::open(root).ok()?;
    let mut h = Handle { bytes: 8, kind: FILEID_KERNFS, id: id.to_ne_bytes() };
    // SAFETY: `h` is a valid file_handle with 8 bytes of f_handle; the
    // returned descriptor, if any, is owned here.
    let fd = unsafe {
        libc::syscall(libc::SYS_open_by_handle_at, dir.as_raw_fd(), &mut h as *mut Handle, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd was just returned by the kernel and is not owned elsewhere.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let full = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let rel = full.strip_prefix(root).ok()?;
    Some(format!("/{}", rel.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1e8c0d2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";

    #[test]
    fn runtimes_by_their_scope_names() {
        for (path, rt) in [
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (format!("/system.slice/crio-{ID}.scope"), "cri-o"),
            (format!("/machine.slice/libpod-{ID}.scope/container"), "podman"),
            (format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"), "podman"),
            (format!("/docker/{ID}"), "docker"),
            (format!("/some/parent/{ID}"), "unknown"),
        ] {
            let c = parse_cgroup_path(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((c.id.as_str(), c.runtime, c.pod_uid), (ID, rt, None), "{path}");
        }
    }

    #[test]
    fn kubernetes_pods_in_both_cgroup_drivers() {
        let uid = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d";
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid.replace('-', "_")
        );
        let cgroupfs = format!("/kubepods/besteffort/pod{uid}/{ID}");
        for p in [systemd, cgroupfs] {
            let c = parse_cgroup_path(&p).unwrap();
            assert_eq!((c.id.as_str(), c.pod_uid.as_deref()), (ID, Some(uid)), "{p}");
        }
    }

    #[test]
    fn paths_without_a_container() {
        for p in ["/", "/user.slice/user-0.slice/session-3.scope", "/system.slice/docker.service", "/process_api/46216d33ef7f44c29cf3d486a3355cfc", "/system.slice/crio-conmon-x.scope"] {
            assert_eq!(parse_cgroup_path(p), None, "{p}");
        }
    }

    #[test]
    fn the_cgroup2_mount_of_a_hybrid_host() {
        let mi = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                  31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(mi), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_mount("30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n"), None);
        let v1 = "32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n";
        assert!(!has_cgroup_v1(mi));
        assert!(has_cgroup_v1(&format!("{mi}{v1}")));
    }

    #[test]
    fn the_host_has_a_name_and_a_boot_id() {
        let h = Host::read();
        assert!(!h.name.is_empty());
        assert_eq!(h.boot_id.as_deref().map(str::len), Some(36), "{h:?}");
    }
}
