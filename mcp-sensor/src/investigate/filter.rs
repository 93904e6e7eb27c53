//! Filters: which sessions, calls and outside-call events an investigation
//! shows. Raw `--flags` are validated here into [`Filters`] (bad values are
//! errors with a hint), then [`apply`] narrows a built report.
//!
//! - `--server` picks sessions; `--tool`, `--id`, `--pid`, `--rule` pick
//!   calls (all given must hold) and show each kept call whole;
//! - activity outside calls is kept when no call filter is given, or for
//!   `--pid`/`--rule` when that event matches them (`--tool`/`--id` name
//!   calls, so they drop it);
//! - `--since`/`--until` keep calls whose span (request to response, or
//!   to their last activity) overlaps the window, and events inside it;
//! - with any filter, sessions left empty are dropped.

use super::model::{Activity, Alert, Call, Report, Server};
use crate::cli::InvestigateArgs;
use anyhow::{anyhow, bail, Context, Result};
use globset::{Glob, GlobMatcher};
use serde_json::{json, Value};

#[derive(Debug, Default)]
pub struct Filters {
    server: Option<String>,
    server_glob: Option<GlobMatcher>,
    tool: Option<GlobMatcher>,
    id: Option<String>,
    pid: Option<u32>,
    rule: Option<GlobMatcher>,
    since: Option<i128>,
    until: Option<i128>,
    raw: Option<Value>,
}

fn glob(flag: &str, pattern: &str) -> Result<GlobMatcher> {
    Ok(Glob::new(pattern)
        .with_context(|| format!("{flag} `{pattern}` is not a valid glob (use `*`, `?`, `[abc]`)"))?
        .compile_matcher())
}

/// Unix-epoch ns of `s`: RFC 3339 with `Z` or an offset, a date alone
/// (midnight UTC), or a duration before `now_ns` (`30s`, `10m`, `2h`,
/// `1d`, `1w`, optionally followed by ` ago`).
pub fn parse_time(s: &str, now_ns: i128) -> Result<i128> {
    let t = s.trim();
    let rel = t.strip_suffix("ago").unwrap_or(t).trim();
    let split = rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len());
    if split > 0 {
        let unit: Option<i128> = match rel[split..].trim() {
            "s" | "sec" => Some(1),
            "m" | "min" => Some(60),
            "h" => Some(3600),
            "d" => Some(86_400),
            "w" => Some(7 * 86_400),
            _ => None,
        };
        if let (Some(unit), Ok(n)) = (unit, rel[..split].parse::<i128>()) {
            return Ok(now_ns - n * unit * 1_000_000_000);
        }
    }
    let hint = || anyhow!("`{s}` is not a time: use RFC 3339 (2026-11-21T12:00:00Z, 2026-11-21T14:00:00+02:00, 2026-11-21) or an age (30s, 10m, 2h, 1d)");
    let upper = t.replace(['t', ' '], "T").replace('z', "Z");
    if upper.len() == 10 {
        return crate::timefmt::parse_rfc3339(&format!("{upper}T00:00:00Z")).ok_or_else(hint);
    }
    if upper.ends_with('Z') {
        return crate::timefmt::parse_rfc3339(&upper).ok_or_else(hint);
    }
    // `+hh:mm` / `-hh:mm`: local time minus the offset is UTC
    let (local, offset) = upper.split_at(upper.len().saturating_sub(6));
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(hint()),
    };
    let (hh, mm) = offset[1..].split_once(':').ok_or_else(hint)?;
    let minutes = hh.parse::<i128>().map_err(|_| hint())? * 60 + mm.parse::<i128>().map_err(|_| hint())?;
    let utc = crate::timefmt::parse_rfc3339(&format!("{local}Z")).ok_or_else(hint)?;
    Ok(utc - sign * minutes * 60 * 1_000_000_000)
}

impl Filters {
    /// Validates the filter flags; relative times count back from `now_ns`.
    pub fn from_args(a: &InvestigateArgs, now_ns: i128) -> Result<Filters> {
        let f = Filters {
            server: a.server.clone(),
            server_glob: a.server.as_deref().filter(|v| v.contains(['*', '?', '['])).map(|v| glob("--server", v)).transpose()?,
            tool: a.tool.as_deref().map(|t| glob("--tool", t)).transpose()?,
            id: a.id.clone(),
            pid: a.pid,
            rule: a.rule.as_deref().map(|r| glob("--rule", r)).transpose()?,
            since: a.since.as_deref().map(|t| parse_time(t, now_ns).context("--since")).transpose()?,
            until: a.until.as_deref().map(|t| parse_time(t, now_ns).context("--until")).transpose()?,
            raw: None,
        };
        if let (Some(s), Some(u)) = (f.since, f.until) {
            if s > u {
                bail!("--since is after --until: nothing can match (swap them?)");
            }
        }
        let given = [("server", &a.server), ("tool", &a.tool), ("id", &a.id), ("rule", &a.rule), ("since", &a.since), ("until", &a.until)];
        let mut raw = serde_json::Map::new();
        for (k, v) in given {
            if let Some(v) = v {
                raw.insert(k.into(), json!(v));
            }
        }
        if let Some(p) = a.pid {
            raw.insert("pid".into(), json!(p));
        }
        Ok(Filters { raw: (!raw.is_empty()).then_some(Value::Object(raw)), ..f })
    }

    fn any(&self) -> bool {
        self.raw.is_some()
    }

    fn call_filter(&self) -> bool {
        self.tool.is_some() || self.id.is_some() || self.pid.is_some() || self.rule.is_some()
    }

    /// `--server`: a pid, a glob (with `*`, `?` or `[`) matched against
    /// each name the server had, or else a case-insensitive part of one.
    fn server_matches(&self, s: &Server) -> bool {
        let Some(want) = &self.server else { return true };
        if want.parse::<u32>().is_ok_and(|p| p == s.pid) {
            return true;
        }
        if let Some(g) = &self.server_glob {
            return s.names.iter().any(|n| g.is_match(n));
        }
        let lower = want.to_lowercase();
        s.names.iter().any(|n| n.to_lowercase().contains(&lower))
    }

    fn in_window(&self, from: i128, to: i128) -> bool {
        self.since.is_none_or(|s| to >= s) && self.until.is_none_or(|u| from <= u)
    }

    fn rule_matches(&self, alerts: &[Alert]) -> bool {
        self.rule.as_ref().is_none_or(|g| alerts.iter().any(|a| g.is_match(&a.rule)))
    }

    fn call_matches(&self, c: &Call) -> bool {
        let id_ok = self.id.as_ref().is_none_or(|want| c.id.as_str() == Some(want) || serde_json::from_str::<Value>(want).is_ok_and(|v| v == c.id));
        let tool_ok = self.tool.as_ref().is_none_or(|g| g.is_match(c.label()));
        let pid_ok = self.pid.is_none_or(|p| c.activity.iter().any(|a| a.pid() == Some(p)));
        let times = c.start_ns.into_iter().chain(c.end_ns).chain(c.activity.iter().map(|a| a.ts_ns()));
        let (from, to) = times.fold((i128::MAX, i128::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        let time_ok = from > to || self.in_window(from, to);
        id_ok && tool_ok && pid_ok && time_ok && self.rule_matches(&c.alerts)
    }

    fn outside_matches(&self, a: &Activity) -> bool {
        self.tool.is_none()
            && self.id.is_none()
            && self.pid.is_none_or(|p| a.pid() == Some(p))
            && self.rule_matches(a.alerts())
            && (self.rule.is_none() || !a.alerts().is_empty())
            && self.in_window(a.ts_ns(), a.ts_ns())
    }
}

/// The alerts of `s` on its calls (and their activity) and on its
/// outside events.
pub(crate) fn shown_alerts(s: &super::model::Session) -> u64 {
    let on_calls: usize = s.calls.iter().map(|c| c.alerts.len()).sum();
    let outside: usize = s.outside.iter().map(|a| a.alerts().len()).sum();
    (on_calls + outside) as u64
}

/// Narrows `r` to what `f` selects (see the module doc).
pub fn apply(r: &mut Report, f: &Filters) {
    r.filters = f.raw.clone();
    if !f.any() {
        return;
    }
    r.sessions.retain_mut(|s| {
        if !f.server_matches(&s.server) {
            return false;
        }
        s.calls.retain(|c| f.call_matches(c));
        s.outside.retain(|a| f.outside_matches(a));
        // the session's alerts are those shown: on its kept calls (and
        // their activity) and kept outside events
        s.alerts = shown_alerts(s);
        let only_server = f.server.is_some() && !f.call_filter() && f.since.is_none() && f.until.is_none();
        only_server || !s.calls.is_empty() || !s.outside.is_empty()
    });
    let unnamed_ok = f.server.is_none() && f.tool.is_none() && f.id.is_none();
    r.other_alerts.retain(|a| {
        let pid_ok = f.pid.is_none_or(|p| a.pid == Some(u64::from(p)));
        unnamed_ok && pid_ok && f.rule.as_ref().is_none_or(|g| g.is_match(&a.rule)) && f.in_window(a.ts_ns, a.ts_ns)
    });
}
