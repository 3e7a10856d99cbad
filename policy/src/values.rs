//! Typed literal values: `xsd:dateTime`, `xsd:date` and `xsd:duration` (day-time only).
//!
//! Each type parses its lexical form, refuses anything outside the lexical space with a
//! [`ValueError`], and prints a canonical lexical form that parses back to the same value.
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, SecondsFormat, TimeDelta, Utc,
};

/// Why a literal is outside the lexical space of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not an `xsd:dateTime`.
    #[error("`{0}` is not an xsd:dateTime")]
    DateTime(String),
    /// Not an `xsd:date`.
    #[error("`{0}` is not an xsd:date")]
    Date(String),
    /// Not a day-time `xsd:duration`.
    #[error("`{0}` is not a day-time xsd:duration")]
    Duration(String),
    /// A duration in years or months, which has no exact length (D2).
    #[error("duration `{0}` uses years or months, which have no exact length")]
    InexactDuration(String),
}

/// An `xsd:dateTime` instant with the offset it was written with.
///
/// A value without an offset is read as UTC; a time without seconds (`2023-12-31T06:00Z`, as in
/// Dataspace Protocol examples) is accepted. Equality compares the instant and the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XsdDateTime {
    instant: DateTime<Utc>,
    offset_secs: i32,
}

impl XsdDateTime {
    /// The instant in UTC.
    pub fn instant(&self) -> DateTime<Utc> {
        self.instant
    }
    /// The value written in UTC.
    pub fn from_utc(instant: DateTime<Utc>) -> XsdDateTime {
        XsdDateTime {
            instant,
            offset_secs: 0,
        }
    }
    fn with_offset(&self) -> DateTime<FixedOffset> {
        let offset = FixedOffset::east_opt(self.offset_secs).unwrap_or(Utc.fix());
        self.instant.with_timezone(&offset)
    }
}

/// Whether `s` is `YYYY-MM-DD` in digits: chrono's `%Y` alone would also take a sign and fewer
/// digits (`-025-07-01`), which it then prints as another string (`-0025-07-01`).
fn is_four_digit_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

impl FromStr for XsdDateTime {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let err = || ValueError::DateTime(s.to_owned());
        let (date, time) = s.split_once('T').ok_or_else(err)?;
        // Split the time into clock and zone.
        let zone_at = time.find(['Z', '+', '-']).unwrap_or(time.len());
        let (clock, zone) = time.split_at(zone_at);
        let clock = if clock.len() == 5 {
            format!("{clock}:00")
        } else {
            clock.to_owned()
        };
        if clock.len() < 8 || !is_four_digit_date(date) {
            return Err(err());
        }
        let naive =
            NaiveDateTime::parse_from_str(&format!("{date}T{clock}"), "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|_| err())?;
        let offset_secs = match zone {
            "" | "Z" => 0,
            z => {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let (h, m) = z[1..].split_once(':').ok_or_else(err)?;
                if h.len() != 2 || m.len() != 2 {
                    return Err(err());
                }
                let h: i32 = h.parse().map_err(|_| err())?;
                let m: i32 = m.parse().map_err(|_| err())?;
                if h > 14 || m > 59 {
                    return Err(err());
                }
                sign * (h * 3600 + m * 60)
            }
        };
        let offset = FixedOffset::east_opt(offset_secs).ok_or_else(err)?;
        let local = naive.and_local_timezone(offset).single().ok_or_else(err)?;
        Ok(XsdDateTime {
            instant: local.with_timezone(&Utc),
            offset_secs,
        })
    }
}

impl fmt::Display for XsdDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .with_offset()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )
    }
}

/// An `xsd:date`; compared as the instant 00:00:00Z of that day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XsdDate(pub NaiveDate);

impl XsdDate {
    /// Midnight UTC at the start of the day.
    pub fn instant(&self) -> DateTime<Utc> {
        self.0.and_time(chrono::NaiveTime::MIN).and_utc()
    }
}

impl FromStr for XsdDate {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if !is_four_digit_date(s) {
            return Err(ValueError::Date(s.to_owned()));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(XsdDate)
            .map_err(|_| ValueError::Date(s.to_owned()))
    }
}

impl fmt::Display for XsdDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A non-negative day-time `xsd:duration` (`PnDTnHnMnS`), held as an exact length.
///
/// Years and months are refused (D2); one day is 86 400 s. Printed canonically, e.g.
/// `P30D`, `PT1H30M`, `PT0.5S`, `PT0S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct XsdDuration {
    secs: u64,
    nanos: u32,
}

impl XsdDuration {
    /// A duration of `secs` seconds and `nanos` nanoseconds (`nanos` < 10⁹ is enforced).
    pub fn new(secs: u64, nanos: u32) -> XsdDuration {
        XsdDuration {
            secs: secs + u64::from(nanos / 1_000_000_000),
            nanos: nanos % 1_000_000_000,
        }
    }
    /// Whole seconds.
    pub fn secs(&self) -> u64 {
        self.secs
    }
    /// The nanoseconds beyond the whole seconds.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }
    /// The length as a chrono delta (saturating at its maximum).
    pub fn as_delta(&self) -> TimeDelta {
        i64::try_from(self.secs)
            .ok()
            .and_then(|s| TimeDelta::new(s, self.nanos))
            .unwrap_or(TimeDelta::MAX)
    }
}

impl FromStr for XsdDuration {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let err = || ValueError::Duration(s.to_owned());
        let rest = s.strip_prefix('P').ok_or_else(err)?;
        let (date, time) = match rest.split_once('T') {
            Some((d, t)) if !t.is_empty() => (d, Some(t)),
            Some(_) => return Err(err()),
            None => (rest, None),
        };
        if date.is_empty() && time.is_none() {
            return Err(err());
        }
        let mut secs: u64 = 0;
        let mut nanos: u32 = 0;
        let mut num = String::new();
        for c in date.chars() {
            match c {
                '0'..='9' => num.push(c),
                'D' => {
                    let n: u64 = num.parse().map_err(|_| err())?;
                    secs = n.checked_mul(86_400).ok_or_else(err)?;
                    num.clear();
                }
                'Y' | 'M' => return Err(ValueError::InexactDuration(s.to_owned())),
                _ => return Err(err()),
            }
        }
        if !num.is_empty() {
            return Err(err());
        }
        let mut last = 0;
        for c in time.unwrap_or("").chars() {
            match c {
                '0'..='9' | '.' => num.push(c),
                'H' | 'M' | 'S' => {
                    let rank = match c {
                        'H' => 1,
                        'M' => 2,
                        _ => 3,
                    };
                    if rank <= last || num.is_empty() {
                        return Err(err());
                    }
                    last = rank;
                    let (whole, frac) = match num.split_once('.') {
                        Some((w, f)) if c == 'S' && !f.is_empty() && f.len() <= 9 => (w, f),
                        Some(_) => return Err(err()),
                        None => (num.as_str(), ""),
                    };
                    let n: u64 = whole.parse().map_err(|_| err())?;
                    let mult = match c {
                        'H' => 3600,
                        'M' => 60,
                        _ => 1,
                    };
                    secs = n
                        .checked_mul(mult)
                        .and_then(|v| secs.checked_add(v))
                        .ok_or_else(err)?;
                    if !frac.is_empty() {
                        let padded = format!("{frac:0<9}");
                        nanos = padded.parse().map_err(|_| err())?;
                    }
                    num.clear();
                }
                _ => return Err(err()),
            }
        }
        if !num.is_empty() {
            return Err(err());
        }
        Ok(XsdDuration { secs, nanos })
    }
}

impl fmt::Display for XsdDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs / 86_400;
        let rest = self.secs % 86_400;
        let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
        f.write_str("P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if rest == 0 && self.nanos == 0 {
            if days == 0 {
                f.write_str("T0S")?;
            }
            return Ok(());
        }
        f.write_str("T")?;
        if h > 0 {
            write!(f, "{h}H")?;
        }
        if m > 0 {
            write!(f, "{m}M")?;
        }
        if s > 0 || self.nanos > 0 {
            if self.nanos > 0 {
                let frac = format!("{:09}", self.nanos);
                write!(f, "{s}.{}S", frac.trim_end_matches('0'))?;
            } else {
                write!(f, "{s}S")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times() {
        let t: XsdDateTime = "2023-12-31T06:00Z".parse().unwrap();
        assert_eq!(t.to_string(), "2023-12-31T06:00:00Z");
        let t: XsdDateTime = "2017-12-19T15:00:00".parse().unwrap();
        assert_eq!(t.to_string(), "2017-12-19T15:00:00Z");
        let t: XsdDateTime = "2025-01-01T01:00:00.5+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2025-01-01T01:00:00.500+01:00");
        assert_eq!(t.to_string().parse::<XsdDateTime>().unwrap(), t);
        assert_eq!(
            t.instant(),
            "2025-01-01T00:00:00.5Z"
                .parse::<XsdDateTime>()
                .unwrap()
                .instant()
        );
        for bad in [
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "yesterday",
            "2025-01-01T00:00:00+1",
            // A signed or short year (the policy_jsonld crash of 7 December 2026: it printed
            // as `-0025-07-01T00:00:00Z`, which did not parse again).
            "-025-07-01T00:00:00Z",
            "+025-07-01T00:00:00Z",
            "025-007-01T00:00:00Z",
        ] {
            assert!(bad.parse::<XsdDateTime>().is_err(), "{bad}");
        }
        for bad in ["-025-07-01", "+2025-7-01", "2025-07-1 "] {
            assert!(bad.parse::<XsdDate>().is_err(), "{bad}");
        }
        // Years far from now still print as they parse.
        for s in [
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
        ] {
            let t: XsdDateTime = s.parse().unwrap();
            assert_eq!(t.to_string().parse::<XsdDateTime>().unwrap(), t, "{s}");
        }
    }

    #[test]
    fn durations() {
        for (s, canon, secs) in [
            ("P30D", "P30D", 30 * 86_400),
            ("PT1H30M", "PT1H30M", 5400),
            ("PT0S", "PT0S", 0),
            ("P1DT0.25S", "P1DT0.25S", 86_400),
            ("PT90M", "PT1H30M", 5400),
        ] {
            let d: XsdDuration = s.parse().unwrap();
            assert_eq!(d.to_string(), canon);
            assert_eq!(d.secs(), secs);
            assert_eq!(canon.parse::<XsdDuration>().unwrap(), d);
        }
        assert!(matches!(
            "P1Y".parse::<XsdDuration>(),
            Err(ValueError::InexactDuration(_))
        ));
        assert!(matches!(
            "P2M".parse::<XsdDuration>(),
            Err(ValueError::InexactDuration(_))
        ));
        for bad in ["P", "PT", "30D", "-P1D", "PT1S2H", "P1.5D"] {
            assert!(bad.parse::<XsdDuration>().is_err(), "{bad}");
        }
    }
}
