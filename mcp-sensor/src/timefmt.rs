//! Timestamps: kernel boot-time ns to wall-clock RFC 3339 strings.
//!
//! The kernel stamps events with CLOCK_BOOTTIME (it does not jump with
//! settimeofday and counts suspend); the agent converts with one offset
//! taken at start-up.

/// Converts kernel boot-time ns to Unix-epoch ns.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    pub fn now() -> Self {
        Clock { offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME) }
    }

    /// Current boot-time ns, on the kernel's clock.
    pub fn boot_ns() -> u64 {
        clock_ns(libc::CLOCK_BOOTTIME) as u64
    }

    pub fn to_unix_ns(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 + self.offset_ns
    }

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339(self.to_unix_ns(boot_ns))
    }
}

/// Unix-epoch ns as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
///
/// Every event line carries one: the digits are written straight into a
/// fixed buffer (the `format!` machinery cost ten times more, measured in
/// BENCHMARKS.md); years outside 0..=9999 take the general path.
pub fn rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{nanos:09}Z");
    }
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut b[0..4], y as u32);
    digits(&mut b[5..7], m);
    digits(&mut b[8..10], d);
    digits(&mut b[11..13], hh);
    digits(&mut b[14..16], mm);
    digits(&mut b[17..19], ss);
    digits(&mut b[20..29], nanos);
    // only ASCII digits were written over an ASCII template
    String::from_utf8(b.to_vec()).expect("ASCII")
}

/// Writes `v` as decimal into all of `out`, zero-padded (`v` fits).
fn digits(out: &mut [u8], mut v: u32) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses what [`rfc3339`] writes (and the same without fraction) back to
/// Unix-epoch ns; used by investigation filters.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (dp.next()??, dp.next()??, dp.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut tp = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (tp.next()??, tp.next()??, tp.next()??);
    let frac_ns: i64 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    let days = days_from_civil(y, m, d);
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) as i128) * 1_000_000_000 + frac_ns as i128)
}

// Howard Hinnant's civil-calendar algorithms (public domain), proleptic
// Gregorian, days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (leap day) 12:34:56.789
        assert_eq!(rfc3339(951_827_696_789_000_000), "2000-02-29T12:34:56.789000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        // 9999-12-31T23:59:59.999999999, then the first instant of year 10000
        let end = 253_402_300_800_000_000_000i128;
        assert_eq!(rfc3339(end - 1), "9999-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339(end), "10000-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(-62_167_219_200_000_000_001), "-001-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn parse_inverts_format() {
        for ns in [0i128, 951_827_696_789_000_000, 1_795_000_000_123_456_789] {
            assert_eq!(parse_rfc3339(&rfc3339(ns)), Some(ns));
        }
        assert_eq!(parse_rfc3339("2026-11-21T12:00:00Z"), parse_rfc3339("2026-11-21T12:00:00.000Z"));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
