//! The pinned kernels (tests/vm/kernels.txt): fetched from Debian's registry
//! with apt-get, with a sources list, package lists and caches of the
//! runner's own (the system's apt state is never touched), checked against
//! Debian's archive keyring, and kept unpacked in a cache outside the source
//! tree, keyed by package name: a second run does not download again.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's registry. The suites' `-security` pockets live beside it.
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(Clone, Debug)]
pub struct Pin {
    pub name: String,
    pub suite: String,
    pub package: String,
    /// The sensor's kernel object this kernel must get (`full` or
    /// `compat`): the in-VM tests' expectation, from the pin, not the sensor.
    pub object: String,
}

pub fn read_pins(path: &Path) -> Result<Vec<Pin>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pins: Vec<Pin> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, suite, package, object] = f[..] else {
            bail!("{}:{}: expected `NAME SUITE PACKAGE OBJECT`, got {line:?}", path.display(), i + 1);
        };
        if object != "full" && object != "compat" {
            bail!("{}:{}: OBJECT is `full` or `compat`, got {object:?}", path.display(), i + 1);
        }
        if pins.iter().any(|p| p.name == name) {
            bail!("{}:{}: kernel {name} is pinned twice", path.display(), i + 1);
        }
        pins.push(Pin { name: name.into(), suite: suite.into(), package: package.into(), object: object.into() });
    }
    if pins.is_empty() {
        bail!("{}: no kernel pinned", path.display());
    }
    Ok(pins)
}

/// One unpacked kernel package.
pub struct Kernel {
    pub pin: Pin,
    pub vmlinuz: PathBuf,
    pub config: PathBuf,
    /// `lib/modules/<release>` inside the unpacked package.
    pub modules: PathBuf,
    pub release: String,
}

impl Kernel {
    /// The LSMs the kernel enables when `lsm=` is not given (CONFIG_LSM).
    pub fn default_lsms(&self) -> Result<Vec<String>> {
        let text = fs::read_to_string(&self.config)?;
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix("CONFIG_LSM="))
            .with_context(|| format!("{} has no CONFIG_LSM", self.config.display()))?;
        Ok(v.trim_matches('"').split(',').filter(|s| !s.is_empty()).map(String::from).collect())
    }

    /// The `lsm=` list: the kernel's default with `bpf` added or removed.
    pub fn lsm_arg(&self, bpf: bool) -> Result<String> {
        Ok(lsm_list(&self.default_lsms()?, bpf))
    }
}

fn lsm_list(default: &[String], bpf: bool) -> String {
    let mut l: Vec<&str> = default.iter().map(String::as_str).filter(|s| *s != "bpf").collect();
    if bpf {
        l.push("bpf");
    }
    l.join(",")
}

/// Where the runner keeps its apt state, .debs and unpacked kernels:
/// `$MCP_SENSOR_VMTEST_CACHE`, else `$XDG_CACHE_HOME/mcp-sensor-vmtest`, else
/// `/var/cache/mcp-sensor-vmtest`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MCP_SENSOR_VMTEST_CACHE") {
        return d.into();
    }
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => Path::new(&d).join("mcp-sensor-vmtest"),
        _ => "/var/cache/mcp-sensor-vmtest".into(),
    }
}

/// The kernels for `pins`, downloaded and unpacked if the cache lacks them.
pub fn fetch(cache: &Path, all: &[Pin], wanted: &[Pin]) -> Result<Vec<Kernel>> {
    let mut apt = Apt::new(cache, all)?;
    let mut out = Vec::new();
    for pin in wanted {
        let dir = cache.join("kernels").join(&pin.package);
        if !dir.join(".complete").exists() {
            let deb = cache.join("debs").join(format!("{}.deb", pin.package));
            if !deb.exists() {
                apt.download(pin, &deb)?;
            }
            unpack(&deb, &dir)?;
        }
        out.push(locate(pin, &dir)?);
    }
    Ok(out)
}

fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    eprintln!("vmtest: unpacking {}", deb.display());
    // a partial directory of our own: another run may unpack the same package
    let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(&tmp)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    fs::write(tmp.join(".complete"), b"")?;
    if fs::rename(&tmp, dir).is_err() && dir.join(".complete").exists() {
        // another run was quicker
        fs::remove_dir_all(&tmp)?;
    }
    Ok(())
}

fn locate(pin: &Pin, dir: &Path) -> Result<Kernel> {
    let boot = dir.join("boot");
    let find = |prefix: &str| -> Result<PathBuf> {
        for e in fs::read_dir(&boot).with_context(|| format!("{}", boot.display()))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(prefix) {
                return Ok(e.path());
            }
        }
        bail!("{} has no {prefix}*: is {} a kernel image package?", boot.display(), pin.package)
    };
    let vmlinuz = find("vmlinuz-")?;
    let config = find("config-")?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    // merged-/usr packages (trixie on) ship usr/lib/modules
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&release))
        .find(|p| p.is_dir())
        .with_context(|| format!("{} has no lib/modules/{release}", dir.display()))?;
    Ok(Kernel { pin: pin.clone(), vmlinuz, config, modules, release })
}

/// apt-get with the runner's own sources list, lists and caches.
struct Apt {
    root: PathBuf,
    opts: Vec<String>,
    updated: bool,
}

impl Apt {
    fn new(cache: &Path, pins: &[Pin]) -> Result<Apt> {
        let root = cache.join("apt");
        let mut suites: Vec<&str> = pins.iter().map(|p| p.suite.as_str()).collect();
        suites.sort();
        suites.dedup();
        let mut list = String::from("# written by cargo xtask vmtest from tests/vm/kernels.txt\n");
        for s in &suites {
            // Packages only: no translations, no AppStream metadata
            let o = format!("[arch=amd64 signed-by={KEYRING} target=Packages]");
            list += &format!("deb {o} {MIRROR} {s} main\ndeb {o} {SECURITY_MIRROR} {s}-security main\n");
        }
        let sources = root.join("sources.list");
        let lists = root.join("lists");
        let stale = fs::read_to_string(&sources).ok().as_deref() != Some(list.as_str());
        fs::create_dir_all(lists.join("partial"))?;
        fs::create_dir_all(root.join("cache/archives/partial"))?;
        if stale {
            fs::write(&sources, &list)?;
            // lists of a previous sources.list would satisfy nothing new
            for e in fs::read_dir(&lists)? {
                let p = e?.path();
                if p.is_file() && p.file_name().is_some_and(|n| n != "lock") {
                    fs::remove_file(p)?;
                }
            }
        }
        let p = |d: &Path| d.display().to_string();
        let opts = vec![
            format!("Dir::Etc::sourcelist={}", p(&sources)),
            "Dir::Etc::sourceparts=-".into(),
            format!("Dir::State::Lists={}", p(&lists)),
            format!("Dir::Cache={}", p(&root.join("cache"))),
            // the system's dpkg state is read, never written: keep it out entirely
            "Dir::State::status=/dev/null".into(),
            // signatures are checked: an unsigned or badly signed suite is an error
            "Acquire::AllowInsecureRepositories=false".into(),
            "Acquire::AllowDowngradeToInsecureRepositories=false".into(),
            // the files are ours (root's); apt's _apt user could not write them
            "APT::Sandbox::User=root".into(),
        ];
        Ok(Apt { root, opts, updated: false })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("apt-get");
        c.arg("-q");
        for o in &self.opts {
            c.arg("-o").arg(o);
        }
        c.args(args).env("LC_ALL", "C");
        c
    }

    fn update(&mut self) -> Result<()> {
        if !Path::new(KEYRING).exists() {
            bail!("{KEYRING} is missing: install debian-archive-keyring (scripts/install-deps.sh does)");
        }
        eprintln!("vmtest: apt-get update (the runner's own lists in {})", self.root.display());
        run(&mut self.cmd(&["--error-on=any", "update"])).context(
            "apt-get update of the kernels' suites failed. If it names NO_PUBKEY, the installed \
             debian-archive-keyring lacks that suite's key: install a newer debian-archive-keyring",
        )?;
        self.updated = true;
        Ok(())
    }

    fn download(&mut self, pin: &Pin, deb: &Path) -> Result<()> {
        let has_lists = fs::read_dir(self.root.join("lists"))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(&format!("_{}_", pin.suite)));
        if !has_lists {
            self.update()?;
        }
        let tmp = deb.parent().unwrap().join(format!("partial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        eprintln!("vmtest: apt-get download {} ({})", pin.package, pin.suite);
        let mut ok = self.cmd(&["download", &pin.package]).current_dir(&tmp).status()?.success();
        if !ok && !self.updated {
            // the lists may predate the pin
            self.update()?;
            ok = self.cmd(&["download", &pin.package]).current_dir(&tmp).status()?.success();
        }
        if !ok {
            let o = self.opts.iter().map(|o| format!(" -o {o}")).collect::<String>();
            bail!(
                "{} ({}) could not be downloaded from Debian's registry. If it is no longer \
                 served, pin its successor in tests/vm/kernels.txt; list the candidates with\n  \
                 apt-cache{o} search '^linux-image-.*-cloud-amd64-unsigned$'",
                pin.package,
                pin.suite
            );
        }
        let got: Vec<PathBuf> = fs::read_dir(&tmp)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        let [one] = &got[..] else { bail!("apt-get download left {got:?} in {}", tmp.display()) };
        fs::rename(one, deb)?;
        fs::remove_dir(&tmp)?;
        Ok(())
    }
}

fn run(c: &mut Command) -> Result<()> {
    let st = c.status().with_context(|| format!("running {c:?}"))?;
    if !st.success() {
        bail!("{c:?} failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_file_parses() {
        let pins = read_pins(&crate::root().join("tests/vm/kernels.txt")).unwrap();
        let names: Vec<&str> = pins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["5.10", "6.1", "6.12"]);
        assert!(pins.iter().all(|p| p.package.starts_with("linux-image-")), "{pins:?}");
    }

    #[test]
    fn bpf_is_added_last_or_removed() {
        let d: Vec<String> = "landlock,lockdown,bpf,ipe".split(',').map(String::from).collect();
        assert_eq!(lsm_list(&d, true), "landlock,lockdown,ipe,bpf");
        assert_eq!(lsm_list(&d, false), "landlock,lockdown,ipe");
    }
}
