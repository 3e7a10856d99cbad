//! Sample data: the shipped district master data (Destatis, CC-BY-4.0) and a deterministic
//! generator of hourly traffic counts and air-quality readings per city.
//!
//! The generator uses its own SplitMix64 sequence so that the same arguments give the same bytes
//! on every machine and in every version; the values are synthetic, shaped like real ones
//! (rush hours, quiet nights and weekends, winter NO2 peaks).

use std::io::Write;

use chrono::{Datelike, Duration, NaiveDate, Timelike, Weekday};

/// The German districts as of 2018-12-31 (Destatis, CC-BY-4.0; see `data/README.md`).
pub const DISTRICTS_CSV: &str = include_str!("../../data/districts-de-2018.csv");

/// Attribution that must accompany [`DISTRICTS_CSV`].
pub const DISTRICTS_ATTRIBUTION: &str =
    "© Statistisches Bundesamt (Destatis), Gemeindeverzeichnis 2018, CC-BY-4.0";

/// The common schema name of generated traffic data (`dct:conformsTo`).
pub const TRAFFIC_SCHEMA: &str = "urn:allmende:schema:traffic_hourly:1";
/// The common schema name of generated air-quality data (`dct:conformsTo`).
pub const AIR_QUALITY_SCHEMA: &str = "urn:allmende:schema:air_quality_hourly:1";

/// SplitMix64: a tiny, fixed pseudo-random sequence.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal, mean 0, standard deviation 1 (sum of uniforms).
    fn gauss(&mut self) -> f64 {
        (0..6).map(|_| self.unit()).sum::<f64>() - 3.0
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The city's district key (AGS); also seeds the sequence.
    pub district_key: String,
    /// First day (UTC).
    pub start: NaiveDate,
    /// Number of days.
    pub days: u32,
    /// Number of measuring stations.
    pub stations: u32,
    /// Extra seed, to make different data for the same city.
    pub seed: u64,
}

fn seed_of(spec: &Spec, salt: u64) -> u64 {
    let key: u64 = spec.district_key.parse().unwrap_or(0);
    key.wrapping_mul(1_000_003) ^ spec.seed.rotate_left(17) ^ salt
}

/// Share of daily traffic in each hour: low at night, peaks at 8 and 17 h.
fn hour_profile(hour: u32) -> f64 {
    const P: [f64; 24] = [
        0.15, 0.1, 0.08, 0.08, 0.12, 0.3, 0.65, 1.0, 1.15, 0.9, 0.8, 0.82, 0.88, 0.86, 0.9, 1.0,
        1.1, 1.2, 1.0, 0.75, 0.55, 0.42, 0.32, 0.22,
    ];
    P[hour as usize % 24]
}

fn each_hour(
    spec: &Spec,
    mut row: impl FnMut(chrono::NaiveDateTime, u32) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let start = spec.start.and_hms_opt(0, 0, 0).unwrap_or_default();
    for h in 0..u64::from(spec.days) * 24 {
        let at = start + Duration::hours(h as i64);
        for station in 1..=spec.stations {
            row(at, station)?;
        }
    }
    Ok(())
}

/// Writes hourly traffic counts as CSV:
/// `district_key,station,timestamp,vehicles,bicycles`.
pub fn write_traffic(spec: &Spec, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "district_key,station,timestamp,vehicles,bicycles")?;
    let mut rng = SplitMix::new(seed_of(spec, 1));
    let base: Vec<f64> = (0..spec.stations)
        .map(|_| 300.0 + rng.unit() * 900.0)
        .collect();
    each_hour(spec, |at, station| {
        let weekend = matches!(at.weekday(), Weekday::Sat | Weekday::Sun);
        let level =
            base[station as usize - 1] * hour_profile(at.hour()) * if weekend { 0.6 } else { 1.0 };
        let vehicles = (level * (1.0 + 0.12 * rng.gauss())).max(0.0).round() as u64;
        let summer =
            1.0 + 0.5 * ((f64::from(at.ordinal()) - 80.0) / 365.0 * std::f64::consts::TAU).sin();
        let bicycles = (level * 0.18 * summer * (1.0 + 0.2 * rng.gauss()))
            .max(0.0)
            .round() as u64;
        writeln!(
            out,
            "{},{}-S{:03},{}Z,{},{}",
            spec.district_key,
            spec.district_key,
            station,
            at.format("%Y-%m-%dT%H:%M:%S"),
            vehicles,
            bicycles
        )
    })
}

/// Writes hourly air-quality readings as CSV:
/// `district_key,station,timestamp,no2_ugm3,pm10_ugm3`.
pub fn write_air_quality(spec: &Spec, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "district_key,station,timestamp,no2_ugm3,pm10_ugm3")?;
    let mut rng = SplitMix::new(seed_of(spec, 2));
    let base: Vec<f64> = (0..spec.stations)
        .map(|_| 18.0 + rng.unit() * 22.0)
        .collect();
    each_hour(spec, |at, station| {
        let winter =
            1.0 + 0.35 * ((f64::from(at.ordinal()) + 100.0) / 365.0 * std::f64::consts::TAU).sin();
        let traffic = 0.6 + 0.4 * hour_profile(at.hour());
        let no2 =
            (base[station as usize - 1] * winter * traffic * (1.0 + 0.15 * rng.gauss())).max(1.0);
        let pm10 = (no2 * 0.7 + 6.0 + 3.0 * rng.gauss()).max(1.0);
        writeln!(
            out,
            "{},{}-L{:02},{}Z,{:.1},{:.1}",
            spec.district_key,
            spec.district_key,
            station,
            at.format("%Y-%m-%dT%H:%M:%S"),
            no2,
            pm10
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            district_key: "05515".into(),
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            days: 2,
            stations: 3,
            seed: 0,
        }
    }

    #[test]
    fn is_deterministic_and_complete() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_traffic(&spec(), &mut a).unwrap();
        write_traffic(&spec(), &mut b).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count(), 1 + 2 * 24 * 3);
        assert!(text.contains("05515,05515-S001,2024-01-01T00:00:00Z,"));
        let mut other = spec();
        other.district_key = "09663".into();
        let mut c = Vec::new();
        write_traffic(&other, &mut c).unwrap();
        assert_ne!(text.as_bytes(), &c[..]);
    }

    #[test]
    fn air_quality_values_are_plausible() {
        let mut out = Vec::new();
        write_air_quality(&spec(), &mut out).unwrap();
        for line in String::from_utf8(out).unwrap().lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            let no2: f64 = cols[3].parse().unwrap();
            let pm10: f64 = cols[4].parse().unwrap();
            assert!(
                (1.0..200.0).contains(&no2) && (1.0..200.0).contains(&pm10),
                "{line}"
            );
        }
    }

    #[test]
    fn ships_the_districts() {
        assert_eq!(DISTRICTS_CSV.lines().count(), 402);
        assert!(DISTRICTS_CSV.contains("05515;Kreisfreie Stadt;Münster"));
    }
}
