//! One log line per event, JSON or pretty, with the `trace_id` and `span_id` of the
//! OpenTelemetry span the event happened in, so a line found in the logs leads to its trace
//! and a trace leads to its lines.
//!
//! JSON lines are tracing-subscriber's own (event fields flattened, the current span and the
//! span list), with the two ids added as top-level fields. Pretty lines are written here:
//! tracing-subscriber's compact format cannot be extended at the end of a line without losing
//! its colours.

use super::LogFormat;
use nu_ansi_term::{Color, Style};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The log layer for `format`, writing to `writer`, in colour when `ansi`.
pub(super) fn layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(LogLine::json())
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .event_format(LogLine::Pretty)
            .boxed(),
    }
}

/// The event formatter of both formats.
#[derive(Debug)]
pub(super) enum LogLine {
    Pretty,
    Json(Format<Json>),
}

impl LogLine {
    fn json() -> Self {
        LogLine::Json(
            tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(true),
        )
    }
}

/// The ids of the OpenTelemetry span current on this thread, if there is one. The
/// OpenTelemetry layer makes a span's context current while the span is entered.
fn current_ids() -> Option<(TraceId, SpanId)> {
    opentelemetry::Context::map_current(|context| {
        let span = context.span();
        let span_context = span.span_context();
        span_context
            .is_valid()
            .then(|| (span_context.trace_id(), span_context.span_id()))
    })
}

impl<S, N> FormatEvent<S, N> for LogLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match self {
            LogLine::Json(json) => format_json(json, ctx, writer, event),
            LogLine::Pretty => format_pretty(ctx, writer, event),
        }
    }
}

fn format_json<S, N>(
    json: &Format<Json>,
    ctx: &FmtContext<'_, S, N>,
    mut writer: Writer<'_>,
    event: &Event<'_>,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let mut line = String::with_capacity(256);
    json.format_event(ctx, Writer::new(&mut line), event)?;
    if let Some((trace_id, span_id)) = current_ids() {
        // The object closes with the last `}`; the ids go just before it. Hex ids need no
        // escaping.
        if let Some(end) = line.rfind('}') {
            let comma = if line[..end].trim_end().ends_with('{') {
                ""
            } else {
                ","
            };
            line.insert_str(
                end,
                &format!("{comma}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""),
            );
        }
    }
    writer.write_str(&line)
}

/// `TIME LEVEL span{fields}:span{fields}: target: message fields trace_id=… span_id=…`
fn format_pretty<S, N>(
    ctx: &FmtContext<'_, S, N>,
    mut writer: Writer<'_>,
    event: &Event<'_>,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let ansi = writer.has_ansi_escapes();
    let paint = |style: Style, text: &str| -> String {
        if ansi {
            style.paint(text).to_string()
        } else {
            text.to_owned()
        }
    };
    let metadata = event.metadata();

    if ansi {
        write!(writer, "{}", Style::new().dimmed().prefix())?;
    }
    SystemTime.format_time(&mut writer)?;
    if ansi {
        write!(writer, "{}", Style::new().dimmed().suffix())?;
    }
    let level = format!("{:>5}", metadata.level());
    write!(
        writer,
        " {} ",
        paint(level_style(*metadata.level()), &level)
    )?;

    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            write!(writer, "{}", paint(Style::new().bold(), span.name()))?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                if !fields.is_empty() {
                    write!(writer, "{{{fields}}}")?;
                }
            }
            writer.write_char(':')?;
        }
        writer.write_char(' ')?;
    }
    write!(
        writer,
        "{} ",
        paint(Style::new().dimmed(), &format!("{}:", metadata.target()))
    )?;
    ctx.format_fields(writer.by_ref(), event)?;
    if let Some((trace_id, span_id)) = current_ids() {
        let ids = format!("trace_id={trace_id} span_id={span_id}");
        write!(writer, " {}", paint(Style::new().dimmed(), &ids))?;
    }
    writeln!(writer)
}

fn level_style(level: Level) -> Style {
    match level {
        Level::ERROR => Color::Red.normal(),
        Level::WARN => Color::Yellow.normal(),
        Level::INFO => Color::Green.normal(),
        Level::DEBUG => Color::Blue.normal(),
        Level::TRACE => Color::Purple.normal(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    /// Collects what the log layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Logs `message` inside a span under a subscriber local to this thread, and returns what
    /// was written and the ids of that span.
    fn log_in_a_span(format: LogFormat) -> (String, String, String) {
        let provider = SdkTracerProvider::builder().build();
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(layer(format, captured.clone(), false));
        let ids = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("work", job = "ingest");
            let _entered = span.enter();
            tracing::info!(rows = 3, "stored");
            current_ids().unwrap()
        });
        (captured.text(), ids.0.to_string(), ids.1.to_string())
    }

    #[test]
    fn a_json_line_carries_the_trace_and_span_id_of_its_span() {
        let (text, trace_id, span_id) = log_in_a_span(LogFormat::Json);

        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["trace_id"], trace_id.as_str());
        assert_eq!(line["span_id"], span_id.as_str());
        assert_eq!(line["message"], "stored");
        assert_eq!(line["rows"], 3);
        assert_eq!(line["span"]["job"], "ingest");
        assert_ne!(trace_id, TraceId::INVALID.to_string());
    }

    #[test]
    fn a_pretty_line_carries_the_trace_and_span_id_of_its_span() {
        let (text, trace_id, span_id) = log_in_a_span(LogFormat::Pretty);

        assert!(
            text.ends_with(&format!(" trace_id={trace_id} span_id={span_id}\n")),
            "{text}"
        );
        assert!(text.contains(" INFO work{job=\"ingest\"}: "), "{text}");
        assert!(text.contains("stored rows=3"), "{text}");
    }

    #[test]
    fn a_line_outside_any_span_has_no_ids() {
        let captured = Captured::default();
        let subscriber =
            tracing_subscriber::registry().with(layer(LogFormat::Json, captured.clone(), false));
        tracing::subscriber::with_default(subscriber, || tracing::info!("alone"));

        let line: serde_json::Value = serde_json::from_str(captured.text().trim_end()).unwrap();
        assert_eq!(line["message"], "alone");
        assert!(line.get("trace_id").is_none());
    }
}
