//! The language's types and literals in Arrow's and DataFusion's terms.
use std::sync::Arc;

use allmende_protocol::plan::{DataType as PlanType, Scalar, TimeUnit as PlanUnit};
use arrow::datatypes::{DataType, IntervalDayTime, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;

use super::SubPlanError;

fn unit_to_df(u: PlanUnit) -> TimeUnit {
    match u {
        PlanUnit::Second => TimeUnit::Second,
        PlanUnit::Millisecond => TimeUnit::Millisecond,
        PlanUnit::Microsecond => TimeUnit::Microsecond,
        PlanUnit::Nanosecond => TimeUnit::Nanosecond,
    }
}

pub(super) fn unit_from_df(u: &TimeUnit) -> PlanUnit {
    match u {
        TimeUnit::Second => PlanUnit::Second,
        TimeUnit::Millisecond => PlanUnit::Millisecond,
        TimeUnit::Microsecond => PlanUnit::Microsecond,
        TimeUnit::Nanosecond => PlanUnit::Nanosecond,
    }
}

/// The Arrow type of a language type.
pub fn type_to_df(t: &PlanType) -> DataType {
    match t {
        PlanType::Null => DataType::Null,
        PlanType::Boolean => DataType::Boolean,
        PlanType::Int8 => DataType::Int8,
        PlanType::Int16 => DataType::Int16,
        PlanType::Int32 => DataType::Int32,
        PlanType::Int64 => DataType::Int64,
        PlanType::UInt8 => DataType::UInt8,
        PlanType::UInt16 => DataType::UInt16,
        PlanType::UInt32 => DataType::UInt32,
        PlanType::UInt64 => DataType::UInt64,
        PlanType::Float32 => DataType::Float32,
        PlanType::Float64 => DataType::Float64,
        PlanType::Decimal128 { precision, scale } => DataType::Decimal128(*precision, *scale),
        PlanType::Utf8 => DataType::Utf8,
        PlanType::LargeUtf8 => DataType::LargeUtf8,
        PlanType::Utf8View => DataType::Utf8View,
        PlanType::Binary => DataType::Binary,
        PlanType::Date32 => DataType::Date32,
        PlanType::Date64 => DataType::Date64,
        PlanType::Time64(u) => DataType::Time64(unit_to_df(*u)),
        PlanType::Timestamp { unit, timezone } => {
            DataType::Timestamp(unit_to_df(*unit), timezone.as_deref().map(Arc::from))
        }
        PlanType::Duration(u) => DataType::Duration(unit_to_df(*u)),
        PlanType::IntervalYearMonth => DataType::Interval(IntervalUnit::YearMonth),
        PlanType::IntervalDayTime => DataType::Interval(IntervalUnit::DayTime),
        PlanType::IntervalMonthDayNano => DataType::Interval(IntervalUnit::MonthDayNano),
    }
}

/// The language type of an Arrow type, or `None` for one outside the language.
pub fn type_from_df(t: &DataType) -> Option<PlanType> {
    Some(match t {
        DataType::Null => PlanType::Null,
        DataType::Boolean => PlanType::Boolean,
        DataType::Int8 => PlanType::Int8,
        DataType::Int16 => PlanType::Int16,
        DataType::Int32 => PlanType::Int32,
        DataType::Int64 => PlanType::Int64,
        DataType::UInt8 => PlanType::UInt8,
        DataType::UInt16 => PlanType::UInt16,
        DataType::UInt32 => PlanType::UInt32,
        DataType::UInt64 => PlanType::UInt64,
        DataType::Float32 => PlanType::Float32,
        DataType::Float64 => PlanType::Float64,
        DataType::Decimal128(precision, scale) => PlanType::Decimal128 {
            precision: *precision,
            scale: *scale,
        },
        DataType::Utf8 => PlanType::Utf8,
        DataType::LargeUtf8 => PlanType::LargeUtf8,
        DataType::Utf8View => PlanType::Utf8View,
        DataType::Binary => PlanType::Binary,
        DataType::Date32 => PlanType::Date32,
        DataType::Date64 => PlanType::Date64,
        DataType::Time64(u) => PlanType::Time64(unit_from_df(u)),
        DataType::Timestamp(unit, tz) => PlanType::Timestamp {
            unit: unit_from_df(unit),
            timezone: tz.as_deref().map(str::to_owned),
        },
        DataType::Duration(u) => PlanType::Duration(unit_from_df(u)),
        DataType::Interval(IntervalUnit::YearMonth) => PlanType::IntervalYearMonth,
        DataType::Interval(IntervalUnit::DayTime) => PlanType::IntervalDayTime,
        DataType::Interval(IntervalUnit::MonthDayNano) => PlanType::IntervalMonthDayNano,
        _ => return None,
    })
}

/// The engine's value of a language literal.
pub fn scalar_to_df(s: &Scalar) -> Result<ScalarValue, SubPlanError> {
    let tz = |t: &Option<String>| t.as_deref().map(Arc::from);
    Ok(match s {
        Scalar::Null(t) => ScalarValue::try_new_null(&type_to_df(t))?,
        Scalar::Boolean(v) => ScalarValue::Boolean(Some(*v)),
        Scalar::Int8(v) => ScalarValue::Int8(Some(*v)),
        Scalar::Int16(v) => ScalarValue::Int16(Some(*v)),
        Scalar::Int32(v) => ScalarValue::Int32(Some(*v)),
        Scalar::Int64(v) => ScalarValue::Int64(Some(*v)),
        Scalar::UInt8(v) => ScalarValue::UInt8(Some(*v)),
        Scalar::UInt16(v) => ScalarValue::UInt16(Some(*v)),
        Scalar::UInt32(v) => ScalarValue::UInt32(Some(*v)),
        Scalar::UInt64(v) => ScalarValue::UInt64(Some(*v)),
        Scalar::Float32(v) => ScalarValue::Float32(Some(*v)),
        Scalar::Float64(v) => ScalarValue::Float64(Some(*v)),
        Scalar::Decimal128 {
            unscaled,
            precision,
            scale,
        } => ScalarValue::Decimal128(
            Some(
                unscaled
                    .parse()
                    .map_err(|_| SubPlanError::Unrepresentable("decimal"))?,
            ),
            *precision,
            *scale,
        ),
        Scalar::Utf8(v) => ScalarValue::Utf8(Some(v.clone())),
        Scalar::LargeUtf8(v) => ScalarValue::LargeUtf8(Some(v.clone())),
        Scalar::Utf8View(v) => ScalarValue::Utf8View(Some(v.clone())),
        Scalar::Binary(v) => ScalarValue::Binary(Some(v.to_vec())),
        Scalar::Date32(v) => ScalarValue::Date32(Some(*v)),
        Scalar::Date64(v) => ScalarValue::Date64(Some(*v)),
        Scalar::Time64 { value, unit } => match unit {
            PlanUnit::Microsecond => ScalarValue::Time64Microsecond(Some(*value)),
            PlanUnit::Nanosecond => ScalarValue::Time64Nanosecond(Some(*value)),
            PlanUnit::Second | PlanUnit::Millisecond => {
                return Err(SubPlanError::Unrepresentable(
                    "Time64 of seconds or milliseconds",
                ));
            }
        },
        Scalar::Timestamp {
            value,
            unit,
            timezone,
        } => match unit {
            PlanUnit::Second => ScalarValue::TimestampSecond(Some(*value), tz(timezone)),
            PlanUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(*value), tz(timezone)),
            PlanUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(*value), tz(timezone)),
            PlanUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(*value), tz(timezone)),
        },
        Scalar::Duration { value, unit } => match unit {
            PlanUnit::Second => ScalarValue::DurationSecond(Some(*value)),
            PlanUnit::Millisecond => ScalarValue::DurationMillisecond(Some(*value)),
            PlanUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(*value)),
            PlanUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(*value)),
        },
        Scalar::IntervalYearMonth(v) => ScalarValue::IntervalYearMonth(Some(*v)),
        Scalar::IntervalDayTime { days, milliseconds } => {
            ScalarValue::IntervalDayTime(Some(IntervalDayTime::new(*days, *milliseconds)))
        }
        Scalar::IntervalMonthDayNano {
            months,
            days,
            nanoseconds,
        } => ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
            *months,
            *days,
            *nanoseconds,
        ))),
    })
}

/// The language literal of an engine value, or `None` for one outside the language.
pub fn scalar_from_df(v: &ScalarValue) -> Option<Scalar> {
    if v.is_null() {
        return Some(Scalar::Null(type_from_df(&v.data_type())?));
    }
    let tz = |t: &Option<Arc<str>>| t.as_deref().map(str::to_owned);
    Some(match v {
        ScalarValue::Boolean(Some(v)) => Scalar::Boolean(*v),
        ScalarValue::Int8(Some(v)) => Scalar::Int8(*v),
        ScalarValue::Int16(Some(v)) => Scalar::Int16(*v),
        ScalarValue::Int32(Some(v)) => Scalar::Int32(*v),
        ScalarValue::Int64(Some(v)) => Scalar::Int64(*v),
        ScalarValue::UInt8(Some(v)) => Scalar::UInt8(*v),
        ScalarValue::UInt16(Some(v)) => Scalar::UInt16(*v),
        ScalarValue::UInt32(Some(v)) => Scalar::UInt32(*v),
        ScalarValue::UInt64(Some(v)) => Scalar::UInt64(*v),
        ScalarValue::Float32(Some(v)) => Scalar::Float32(*v),
        ScalarValue::Float64(Some(v)) => Scalar::Float64(*v),
        ScalarValue::Decimal128(Some(v), precision, scale) => Scalar::Decimal128 {
            unscaled: v.to_string(),
            precision: *precision,
            scale: *scale,
        },
        ScalarValue::Utf8(Some(v)) => Scalar::Utf8(v.clone()),
        ScalarValue::LargeUtf8(Some(v)) => Scalar::LargeUtf8(v.clone()),
        ScalarValue::Utf8View(Some(v)) => Scalar::Utf8View(v.clone()),
        ScalarValue::Binary(Some(v)) => Scalar::Binary(v.clone().into()),
        ScalarValue::Date32(Some(v)) => Scalar::Date32(*v),
        ScalarValue::Date64(Some(v)) => Scalar::Date64(*v),
        ScalarValue::Time64Microsecond(Some(v)) => Scalar::Time64 {
            value: *v,
            unit: PlanUnit::Microsecond,
        },
        ScalarValue::Time64Nanosecond(Some(v)) => Scalar::Time64 {
            value: *v,
            unit: PlanUnit::Nanosecond,
        },
        ScalarValue::TimestampSecond(Some(v), t) => timestamp(*v, PlanUnit::Second, tz(t)),
        ScalarValue::TimestampMillisecond(Some(v), t) => {
            timestamp(*v, PlanUnit::Millisecond, tz(t))
        }
        ScalarValue::TimestampMicrosecond(Some(v), t) => {
            timestamp(*v, PlanUnit::Microsecond, tz(t))
        }
        ScalarValue::TimestampNanosecond(Some(v), t) => timestamp(*v, PlanUnit::Nanosecond, tz(t)),
        ScalarValue::DurationSecond(Some(v)) => duration(*v, PlanUnit::Second),
        ScalarValue::DurationMillisecond(Some(v)) => duration(*v, PlanUnit::Millisecond),
        ScalarValue::DurationMicrosecond(Some(v)) => duration(*v, PlanUnit::Microsecond),
        ScalarValue::DurationNanosecond(Some(v)) => duration(*v, PlanUnit::Nanosecond),
        ScalarValue::IntervalYearMonth(Some(v)) => Scalar::IntervalYearMonth(*v),
        ScalarValue::IntervalDayTime(Some(v)) => Scalar::IntervalDayTime {
            days: v.days,
            milliseconds: v.milliseconds,
        },
        ScalarValue::IntervalMonthDayNano(Some(v)) => Scalar::IntervalMonthDayNano {
            months: v.months,
            days: v.days,
            nanoseconds: v.nanoseconds,
        },
        _ => return None,
    })
}

fn timestamp(value: i64, unit: PlanUnit, timezone: Option<String>) -> Scalar {
    Scalar::Timestamp {
        value,
        unit,
        timezone,
    }
}

fn duration(value: i64, unit: PlanUnit) -> Scalar {
    Scalar::Duration { value, unit }
}
