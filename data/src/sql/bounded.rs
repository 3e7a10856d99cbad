//! Scalar functions under a bound on what they build. DataFusion's memory pool counts what
//! operators keep (hash tables, sorts, aggregate states, a recursive query's rows), not the
//! values a scalar function computes: `repeat('x', 1000000000)` would allocate a gigabyte in one
//! call. The functions whose output can be far larger than their input, or whose work grows
//! with the product of their inputs ([`AMPLIFIERS`]), are wrapped: they check a bound of it from
//! their arguments *before* they run, and the size of their output after. Either check fails
//! the query with a resources-exhausted error naming the limit. Other functions build at most a
//! small multiple of their input, which the operators' batch sizes bound; they are left as they
//! are, so that optimizer rules that recognise them keep working.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::kernels::length::length;
use arrow::datatypes::FieldRef;
use arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::ExprSchema;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};

/// Largest value (one function call over one batch) a scalar function may build, in bytes,
/// unless it is at most [`GROWTH`] times the size of its arguments.
pub const MAX_COMPUTED_BYTES: u64 = 128 << 20;

/// How many times larger than its arguments a function's output may be beyond
/// [`MAX_COMPUTED_BYTES`] (functions that copy or reformat their input).
const GROWTH: u64 = 4;

/// Most steps of work (pairs of characters) a function of two strings may do in one call.
pub const MAX_PAIRWISE_STEPS: u64 = 1 << 30;

/// The functions wrapped: those whose output is not bounded by a small multiple of their
/// input, and those whose work grows with the product of their inputs.
pub const AMPLIFIERS: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "array_repeat",
    "array_resize",
    "range",
    "generate_series",
    "replace",
    "regexp_replace",
    "string_to_array",
    "levenshtein",
    "concat",
    "concat_ws",
    "array_concat",
    "translate",
];

/// Wraps the [`AMPLIFIERS`] registered in `state`.
pub(super) fn bound_functions(state: &mut SessionState) -> DfResult<()> {
    for name in AMPLIFIERS {
        if let Some(f) = state.scalar_functions().get(*name).cloned() {
            state.register_udf(Arc::new(ScalarUDF::new_from_impl(Bounded { inner: f })))?;
        }
    }
    Ok(())
}

/// A scalar function with bounds on what it builds.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
}

fn exhausted(message: String) -> DataFusionError {
    DataFusionError::ResourcesExhausted(message)
}

/// Bytes of a value as it is held in memory.
fn size_of(v: &ColumnarValue) -> u64 {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size() as u64,
        ColumnarValue::Scalar(s) => s.size() as u64,
    }
}

/// An upper bound of the bytes one call of `name` builds over `args`, for the functions
/// whose output is not bounded by a small multiple of their input; `None` for the others.
fn estimate(name: &str, args: &[ColumnarValue], rows: usize) -> DfResult<Option<u64>> {
    let arg = |i: usize| args.get(i);
    let pairs = |a: Option<Vec<u64>>, b: Option<Vec<u64>>, f: &dyn Fn(u64, u64) -> u64| match (a, b)
    {
        (Some(a), Some(b)) => Some(
            a.iter()
                .zip(b.iter())
                .fold(0u64, |acc, (x, y)| acc.saturating_add(f(*x, *y))),
        ),
        _ => None,
    };
    Ok(match name {
        "repeat" => pairs(
            text_lengths(arg(0), rows)?,
            counts(arg(1), rows)?,
            &|l, n| l.saturating_mul(n),
        ),
        // A character takes at most 4 bytes.
        "lpad" | "rpad" => counts(arg(1), rows)?.map(|n| {
            n.iter()
                .fold(0u64, |acc, n| acc.saturating_add(n.saturating_mul(4)))
        }),
        "array_repeat" => {
            let element = arg(0).map_or(8, |v| (size_of(v) / rows.max(1) as u64).max(8));
            counts(arg(1), rows)?.map(|n| {
                n.iter()
                    .fold(0u64, |acc, n| acc.saturating_add(n.saturating_mul(element)))
            })
        }
        "array_resize" => counts(arg(1), rows)?.map(|n| {
            n.iter()
                .fold(0u64, |acc, n| acc.saturating_add(n.saturating_mul(16)))
        }),
        "range" | "generate_series" => series_lengths(args, rows)?.map(|n| {
            n.iter()
                .fold(0u64, |acc, n| acc.saturating_add(n.saturating_mul(8)))
        }),
        // Every match (at most one per character, and one more) replaced by `to`.
        "replace" => {
            let text = text_lengths(arg(0), rows)?;
            let to = text_lengths(arg(2), rows)?;
            pairs(text, to, &|l, t| {
                l.saturating_add((l + 1).saturating_mul(t))
            })
        }
        // As `replace`, and a reference to a group may copy the whole text each time.
        "regexp_replace" => {
            let text = text_lengths(arg(0), rows)?;
            let with = text_lengths(arg(2), rows)?;
            pairs(text, with, &|l, w| {
                let each = w.saturating_add(w.saturating_mul(l));
                l.saturating_add((l + 1).saturating_mul(each))
            })
        }
        _ => None,
    })
}

/// An upper bound of the work of a function whose work grows with the product of its inputs.
fn work(name: &str, args: &[ColumnarValue], rows: usize) -> DfResult<Option<u64>> {
    Ok(match name {
        "levenshtein" => {
            match (
                text_lengths(args.first(), rows)?,
                text_lengths(args.get(1), rows)?,
            ) {
                (Some(a), Some(b)) => Some(
                    a.iter()
                        .zip(b.iter())
                        .fold(0u64, |acc, (x, y)| acc.saturating_add(x.saturating_mul(*y))),
                ),
                _ => None,
            }
        }
        _ => None,
    })
}

/// The byte length of each row's text (0 for null), if `v` is text.
fn text_lengths(v: Option<&ColumnarValue>, rows: usize) -> DfResult<Option<Vec<u64>>> {
    Ok(match v {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(t) | ScalarValue::LargeUtf8(t) | ScalarValue::Utf8View(t),
        )) => Some(vec![t.as_ref().map_or(0, |t| t.len() as u64); rows]),
        Some(ColumnarValue::Scalar(_)) => None,
        Some(ColumnarValue::Array(a)) => match a.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(
                int64s(&length(a.as_ref())?)?
                    .into_iter()
                    .map(|n| n.max(0) as u64)
                    .collect(),
            ),
            _ => None,
        },
        None => None,
    })
}

/// Each row's integer value (negative and null as 0), if `v` is an integer.
fn counts(v: Option<&ColumnarValue>, rows: usize) -> DfResult<Option<Vec<u64>>> {
    let Some(v) = v else { return Ok(None) };
    if !v.data_type().is_integer() {
        return Ok(None);
    }
    let a = v.to_array(rows)?;
    Ok(Some(
        int64s(&a)?.into_iter().map(|n| n.max(0) as u64).collect(),
    ))
}

/// `a` cast to 64-bit integers, nulls as 0.
fn int64s(a: &ArrayRef) -> DfResult<Vec<i64>> {
    let cast = arrow::compute::cast(a, &DataType::Int64)?;
    let ints = cast.as_primitive::<Int64Type>();
    Ok((0..ints.len())
        .map(|i| if ints.is_null(i) { 0 } else { ints.value(i) })
        .collect())
}

/// How many elements `range`/`generate_series` make per row: integers, or dates and
/// timestamps stepped by an interval (a month counted as 28 days, so the bound is high).
fn series_lengths(args: &[ColumnarValue], rows: usize) -> DfResult<Option<Vec<u64>>> {
    let (start, stop, step) = match args {
        [stop] => (None, stop, None),
        [start, stop] => (Some(start), stop, None),
        [start, stop, step] => (Some(start), stop, Some(step)),
        _ => return Ok(None),
    };
    let points = |v: &ColumnarValue| -> DfResult<Option<Vec<i128>>> {
        let a = v.to_array(rows)?;
        let nanos = match a.data_type() {
            t if t.is_integer() => {
                return Ok(Some(int64s(&a)?.into_iter().map(i128::from).collect()));
            }
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
                arrow::compute::cast(&a, &DataType::Timestamp(TimeUnit::Nanosecond, None))?
            }
            _ => return Ok(None),
        };
        let ints = arrow::compute::cast(&nanos, &DataType::Int64)?;
        Ok(Some(int64s(&ints)?.into_iter().map(i128::from).collect()))
    };
    let Some(stop) = points(stop)? else {
        return Ok(None);
    };
    let start = match start {
        Some(s) => match points(s)? {
            Some(s) => s,
            None => return Ok(None),
        },
        None => vec![0; rows],
    };
    let step: Vec<i128> = match step {
        None => vec![1; rows],
        Some(s) if s.data_type().is_integer() => int64s(&s.to_array(rows)?)?
            .into_iter()
            .map(i128::from)
            .collect(),
        Some(s) if matches!(s.data_type(), DataType::Interval(_)) => {
            let a = s.to_array(rows)?;
            let a = arrow::compute::cast(
                &a,
                &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
            )?;
            let iv = a.as_primitive::<IntervalMonthDayNanoType>();
            (0..iv.len())
                .map(|i| {
                    let v = iv.value(i);
                    i128::from(v.months) * 28 * 86_400_000_000_000
                        + i128::from(v.days) * 86_400_000_000_000
                        + i128::from(v.nanoseconds)
                })
                .collect()
        }
        Some(_) => return Ok(None),
    };
    Ok(Some(
        (0..rows.min(stop.len()).min(start.len()).min(step.len()))
            .map(|i| {
                let (span, s) = ((stop[i] - start[i]).abs(), step[i].abs().max(1));
                u64::try_from(span / s + 1).unwrap_or(u64::MAX)
            })
            .collect(),
    ))
}

#[warn(clippy::missing_trait_methods)]
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn display_name(&self, args: &[Expr]) -> DfResult<String> {
        #[expect(deprecated, reason = "delegated as is")]
        self.inner.inner().display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn with_updated_config(&self, config: &datafusion::config::ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Bounded {
            inner: Arc::new(inner),
        }))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated, reason = "delegated as is")]
        self.inner.inner().is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let name = self.inner.name();
        let rows = args.number_rows;
        if let Some(bytes) = estimate(name, &args.args, rows)?
            && bytes > MAX_COMPUTED_BYTES
        {
            return Err(exhausted(format!(
                "{name}() would build about {bytes} bytes; one function call may build at most \
                 {MAX_COMPUTED_BYTES} bytes"
            )));
        }
        if let Some(steps) = work(name, &args.args, rows)?
            && steps > MAX_PAIRWISE_STEPS
        {
            return Err(exhausted(format!(
                "{name}() would take {steps} steps; one function call may take at most \
                 {MAX_PAIRWISE_STEPS}"
            )));
        }
        let input: u64 = args.args.iter().map(size_of).sum();
        let out = self.inner.inner().invoke_with_args(args)?;
        let built = size_of(&out);
        if built > MAX_COMPUTED_BYTES && built > input.saturating_mul(GROWTH) {
            return Err(exhausted(format!(
                "{name}() built {built} bytes; one function call may build at most \
                 {MAX_COMPUTED_BYTES} bytes"
            )));
        }
        Ok(out)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> DfResult<PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> DfResult<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> DfResult<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> DfResult<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> DfResult<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> DfResult<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.inner().struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.inner().placement(args)
    }
}
