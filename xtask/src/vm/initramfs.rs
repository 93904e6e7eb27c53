//! The VM's initramfs: Debian's static busybox, `init.sh` as /init, the
//! kernel modules virtiofs (and the overlays) need on this kernel, in
//! dependency order, and the command to run. Written as an uncompressed
//! cpio (newc) archive straight from memory: no staging tree, so the device
//! node and the modes are exact without root-owned temporary files.

use super::kernels::Kernel;
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUSYBOX: &str = "/bin/busybox";
const INIT: &str = include_str!("init.sh");

/// What the VM needs that some kernels build as modules: virtiofs (with
/// fuse and virtio_pci) for the host's root, overlay for the writable
/// overlays. Dependencies are added from each module's own `depends=`.
const MODULES: &[&str] = &["virtio_pci", "virtiofs", "overlay"];

pub struct Guest<'a> {
    pub hostname: String,
    /// Empty tmpfs mounts (absolute paths that exist on the host).
    pub tmpfs: &'a [String],
    /// Overlays: the host's directory stays visible, writes go to memory.
    pub overlay: &'a [String],
    /// Overlays made inside an empty tmpfs (the checkout, when under /tmp).
    pub kept: &'a [String],
    /// The command's shell script (run by the host's /bin/sh in the chroot).
    pub script: String,
}

pub fn build(kernel: &Kernel, guest: &Guest, out: &Path) -> Result<()> {
    let busybox = fs::read(BUSYBOX).with_context(|| format!("{BUSYBOX}: install busybox-static"))?;
    if has_interp(&busybox) {
        bail!("{BUSYBOX} is dynamically linked: install busybox-static (it replaces busybox)");
    }
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "modules", "vmtest"] {
        c.dir(d);
    }
    // the kernel opens /dev/console for init before anything is mounted
    c.node("dev/console", 0o020600, 5, 1);
    c.file("bin/busybox", 0o755, &busybox);
    c.file("init", 0o755, INIT.as_bytes());
    let mut names = Vec::new();
    for (i, (name, path)) in modules(&kernel.modules, MODULES)?.into_iter().enumerate() {
        let file = format!("{i:02}-{name}.ko");
        c.file(&format!("modules/{file}"), 0o644, &module_bytes(&path)?);
        names.push(file);
    }
    for p in guest.tmpfs.iter().chain(guest.overlay).chain(guest.kept) {
        if !p.starts_with('/') || p.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
            bail!("writable directory {p:?}: an absolute path without spaces or quotes, please");
        }
    }
    let config = format!(
        "VMTEST_MODULES='{}'\nVMTEST_TMPFS='{}'\nVMTEST_OVERLAY='{}'\nVMTEST_KEPT='{}'\nVMTEST_HOSTNAME='{}'\n",
        names.join(" "),
        guest.tmpfs.join(" "),
        guest.overlay.join(" "),
        guest.kept.join(" "),
        guest.hostname
    );
    c.file("vmtest/config", 0o644, config.as_bytes());
    c.file("vmtest/cmd.sh", 0o755, guest.script.as_bytes());
    fs::write(out, c.finish()).with_context(|| format!("writing {}", out.display()))
}

/// `names` and their dependencies as (name, file), each after what it
/// depends on; built-in modules are left out.
fn modules(dir: &Path, names: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut files = HashMap::new();
    index(&dir.join("kernel"), &mut files)?;
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: HashSet<String> = builtin.lines().filter_map(|l| module_name(Path::new(l))).collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for n in names {
        visit(&norm(n), &files, &builtin, &mut seen, &mut out, dir)?;
    }
    Ok(out)
}

fn visit(
    name: &str,
    files: &HashMap<String, PathBuf>,
    builtin: &HashSet<String>,
    seen: &mut HashSet<String>,
    out: &mut Vec<(String, PathBuf)>,
    dir: &Path,
) -> Result<()> {
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let Some(path) = files.get(name) else {
        if builtin.contains(name) {
            return Ok(());
        }
        bail!("module {name} is neither built into {} nor in its modules", dir.display());
    };
    let bytes = module_bytes(path)?;
    let deps = modinfo(&bytes, "depends").with_context(|| format!("{}", path.display()))?;
    for d in deps.split(',').filter(|d| !d.is_empty()) {
        visit(&norm(d), files, builtin, seen, out, dir)?;
    }
    out.push((name.to_string(), path.clone()));
    Ok(())
}

fn index(dir: &Path, files: &mut HashMap<String, PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            index(&p, files)?;
        } else if let Some(n) = module_name(&p) {
            files.insert(n, p);
        }
    }
    Ok(())
}

/// `kernel/fs/fuse/virtiofs.ko.xz` -> `virtiofs`.
fn module_name(p: &Path) -> Option<String> {
    let f = p.file_name()?.to_str()?;
    let stem = f.strip_suffix(".ko").or_else(|| Some(&f[..f.find(".ko.")?]))?;
    Some(norm(stem))
}

/// Module names treat `-` and `_` alike.
fn norm(n: &str) -> String {
    n.replace('-', "_")
}

/// The module as the kernel loads it (busybox's insmod does not decompress).
fn module_bytes(p: &Path) -> Result<Vec<u8>> {
    let tool = match p.extension().and_then(|e| e.to_str()) {
        Some("ko") => return fs::read(p).with_context(|| format!("{}", p.display())),
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => bail!("{}: unknown module compression", p.display()),
    };
    let o = Command::new(tool).arg("-dc").arg(p).output().with_context(|| format!("running {tool}"))?;
    if !o.status.success() {
        bail!("{tool} -dc {} failed: {}", p.display(), String::from_utf8_lossy(&o.stderr));
    }
    Ok(o.stdout)
}

// --- ELF, just enough: the .modinfo section of a module, PT_INTERP ---

fn u16_at(b: &[u8], o: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?) as usize)
}
fn u32_at(b: &[u8], o: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as usize)
}
fn u64_at(b: &[u8], o: usize) -> Option<usize> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?) as usize)
}

fn is_elf64le(b: &[u8]) -> bool {
    b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1
}

/// The value of `key=` in a module's .modinfo section ("" when absent).
fn modinfo(b: &[u8], key: &str) -> Result<String> {
    let sections = || -> Option<Vec<(usize, usize, usize)>> {
        let (shoff, shentsize, shnum) = (u64_at(b, 0x28)?, u16_at(b, 0x3a)?, u16_at(b, 0x3c)?);
        (0..shnum)
            .map(|i| {
                let h = shoff + i * shentsize;
                Some((u32_at(b, h)?, u64_at(b, h + 0x18)?, u64_at(b, h + 0x20)?))
            })
            .collect()
    };
    let secs = if is_elf64le(b) { sections() } else { None }.context("not an ELF64 module")?;
    let strtab = secs.get(u16_at(b, 0x3e).unwrap_or(0)).context("no section names")?;
    let name = |off: usize| -> &[u8] {
        let s = b.get(strtab.1 + off..).unwrap_or(&[]);
        &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
    };
    let (_, off, size) = *secs.iter().find(|s| name(s.0) == b".modinfo").context("no .modinfo section")?;
    let data = b.get(off..off + size).context("truncated .modinfo")?;
    let prefix = format!("{key}=");
    for kv in data.split(|&c| c == 0) {
        if let Some(v) = kv.strip_prefix(prefix.as_bytes()) {
            return Ok(String::from_utf8_lossy(v).into_owned());
        }
    }
    Ok(String::new())
}

/// A dynamically linked executable names its loader in PT_INTERP.
fn has_interp(b: &[u8]) -> bool {
    let f = || -> Option<bool> {
        let (phoff, phentsize, phnum) = (u64_at(b, 0x20)?, u16_at(b, 0x36)?, u16_at(b, 0x38)?);
        Some((0..phnum).any(|i| u32_at(b, phoff + i * phentsize) == Some(3)))
    };
    !is_elf64le(b) || f().unwrap_or(true)
}

/// cpio "newc" (the format the kernel unpacks), uncompressed.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }
    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }
    fn node(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, mode, (major, minor), &[]);
    }
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_drop_compression_and_dashes() {
        assert_eq!(module_name(Path::new("kernel/fs/fuse/virtiofs.ko")).as_deref(), Some("virtiofs"));
        assert_eq!(module_name(Path::new("a/virtio-rng.ko.xz")).as_deref(), Some("virtio_rng"));
        assert_eq!(module_name(Path::new("a/modules.order")), None);
    }

    #[test]
    fn cpio_entries_are_aligned_and_end_with_the_trailer() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let b = c.finish();
        assert_eq!(b.len() % 4, 0);
        assert!(b.starts_with(b"070701"));
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
