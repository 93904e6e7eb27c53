//! Precompiled value matchers: names, globs, CIDRs, ports, regexes.
//!
//! Built once when rules are compiled; matching never allocates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use globset::{Candidate, Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

pub(crate) fn glob(pattern: &str, path: bool) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(path)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

/// Exact names plus globs; `*` in a name glob also matches `/`.
#[derive(Debug, Clone)]
pub(crate) struct StrMatch {
    exact: Vec<Box<str>>,
    globs: Option<GlobSet>,
    /// The globs' text, for enforcement to compile (`rules::kernel`).
    glob_src: Vec<Box<str>>,
}

impl StrMatch {
    /// Every item must already be a valid glob (see [`glob`]).
    pub fn new<'a>(items: impl IntoIterator<Item = &'a str>) -> StrMatch {
        let mut exact = Vec::new();
        let mut b = GlobSetBuilder::new();
        let mut n = 0;
        let mut glob_src = Vec::new();
        for s in items {
            if has_glob_meta(s) {
                b.add(glob(s, false).expect("validated"));
                glob_src.push(Box::from(s));
                n += 1;
            } else {
                exact.push(Box::from(s));
            }
        }
        exact.sort();
        exact.dedup();
        let globs = (n > 0).then(|| b.build().expect("validated globs build"));
        StrMatch { exact, globs, glob_src }
    }

    /// Every value, exact names first, then the globs' text.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().chain(&self.glob_src).map(|s| &**s)
    }

    /// No value at all (an empty list): matches nothing.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.glob_src.is_empty()
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.exact.binary_search_by(|e| (**e).cmp(s)).is_ok()
            || self.globs.as_ref().is_some_and(|g| g.is_match(s))
    }
}

/// Path globs, literal paths included (globset matches those by hash).
#[derive(Debug, Clone)]
pub(crate) struct PathMatch {
    set: GlobSet,
    /// Kept to build the per-kind gate (see `eval`).
    pub globs: Vec<Glob>,
}

impl PathMatch {
    pub fn new<'a>(items: impl IntoIterator<Item = &'a str>) -> PathMatch {
        let globs: Vec<Glob> = items
            .into_iter()
            .map(|s| glob(s, true).expect("validated"))
            .collect();
        PathMatch::from_globs(globs)
    }

    pub fn from_globs(globs: Vec<Glob>) -> PathMatch {
        let mut b = GlobSetBuilder::new();
        for g in &globs {
            b.add(g.clone());
        }
        PathMatch {
            set: b.build().expect("validated globs build"),
            globs,
        }
    }

    pub fn is_match(&self, c: &Candidate<'_>) -> bool {
        self.set.is_match_candidate(c)
    }
}

/// IPv4 and IPv6 networks. IPv4-mapped IPv6 addresses match as IPv4, so
/// `::ffff:169.254.169.254` cannot slip past a rule about 169.254.169.254.
#[derive(Debug, Clone, Default)]
pub(crate) struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    pub fn add(&mut self, s: &str) -> Result<(), String> {
        let bad = || {
            format!("invalid address or CIDR `{s}`, expected e.g. `10.0.0.0/8`, `169.254.169.254` or `fd00:ec2::254/128`")
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => {
                let p = prefix.unwrap_or(32);
                if p > 32 {
                    return Err(bad());
                }
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                self.v4.push((u32::from(a) & mask, mask));
            }
            IpAddr::V6(a) => {
                let p = prefix.unwrap_or(128);
                if p > 128 {
                    return Err(bad());
                }
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                self.v6.push((u128::from(a) & mask, mask));
            }
        }
        Ok(())
    }

    /// The networks as (address, prefix length); IPv4 as IPv4.
    pub fn nets(&self) -> impl Iterator<Item = (IpAddr, u8)> + '_ {
        let v4 = self.v4.iter().map(|(n, m)| (IpAddr::V4((*n).into()), m.count_ones() as u8));
        let v6 = self.v6.iter().map(|(n, m)| (IpAddr::V6((*n).into()), m.count_ones() as u8));
        v4.chain(v6)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|(net, mask)| a & mask == *net)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|(net, mask)| a & mask == *net)
            }
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

/// Parses an event's address text; `None` for anything that is not an IP.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| {
            s.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
        })
        .ok()
}

/// Ports and inclusive port ranges (`443`, `8000-8999`).
#[derive(Debug, Clone, Default)]
pub(crate) struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    pub fn add(&mut self, s: &str) -> Result<(), String> {
        let bad =
            || format!("invalid port `{s}`, expected a number 0-65535 or a range like `8000-8999`");
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u16>().map_err(|_| bad())?,
                b.trim().parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let p = s.trim().parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        self.0.push((lo, hi));
        Ok(())
    }

    /// Inclusive ranges.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }

    pub fn contains(&self, p: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p))
    }
}

/// Checks one regex on its own (for an error at its position), so that the
/// combined alternation built by [`regex_any`] cannot fail.
pub(crate) fn check_regex(s: &str) -> Result<(), String> {
    Regex::new(s).map(|_| ()).map_err(|e| {
        let msg = e.to_string();
        // regex's message is multi-line with a caret diagram: keep the last line.
        let last = msg
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!(
            "invalid regex `{s}`: {}",
            last.trim().trim_start_matches("error: ")
        )
    })
}

/// One regex matching when any of `items` does.
pub(crate) fn regex_any<'a>(items: impl IntoIterator<Item = &'a str>) -> Regex {
    let alt: Vec<String> = items.into_iter().map(|s| format!("(?:{s})")).collect();
    let src = if alt.is_empty() {
        "[^\\s\\S]".to_string()
    } else {
        alt.join("|")
    };
    Regex::new(&src).expect("each alternative was validated")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_mapped_addresses() {
        let mut s = IpSet::default();
        s.add("169.254.169.254").unwrap();
        s.add("fd00:ec2::254").unwrap();
        s.add("10.0.0.0/8").unwrap();
        assert!(s.contains(parse_ip("169.254.169.254").unwrap()));
        assert!(s.contains(parse_ip("::ffff:169.254.169.254").unwrap()));
        assert!(s.contains(parse_ip("fd00:ec2::254").unwrap()));
        assert!(s.contains(parse_ip("10.1.2.3").unwrap()));
        assert!(!s.contains(parse_ip("11.1.2.3").unwrap()));
        assert!(s.add("10.0.0.0/33").is_err());
        assert!(s.add("10.0.0/8").is_err());
    }

    #[test]
    fn names_and_paths() {
        let m = StrMatch::new(["bash", "python3*"]);
        assert!(m.is_match("bash") && m.is_match("python3.12") && !m.is_match("bas"));
        let p = PathMatch::new(["/home/*/.ssh/id_*", "**/.env"]);
        assert!(p.is_match(&Candidate::new("/home/u/.ssh/id_ed25519")));
        assert!(!p.is_match(&Candidate::new("/home/u/x/.ssh/id_ed25519")));
        assert!(p.is_match(&Candidate::new("/srv/app/.env")));
        assert!(glob("a[", true).is_err());
    }

    #[test]
    fn ports_and_regexes() {
        let mut p = PortSet::default();
        p.add("8000-8999").unwrap();
        assert!(p.contains(8080) && !p.contains(9000));
        assert!(p.add("70000").is_err() && p.add("9-1").is_err());
        assert!(check_regex("a(").is_err());
        assert!(regex_any(["x+", "AKIA[0-9A-Z]{16}"]).is_match("key AKIAABCDEFGHIJKLMNOP"));
        assert!(!regex_any([]).is_match("anything"));
    }
}
