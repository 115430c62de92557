//! JSON log lines with the fields of the spans an event is in as top-level keys (so that
//! `request_id` and `route` sit beside `message` on every line logged while serving a request),
//! which tracing-subscriber's own JSON format keeps nested under `span`/`spans`.
//!
//! Written straight into the line, with no intermediate map: a span's fields are kept as a JSON
//! fragment (`,"request_id":"…","method":"GET"`) that a later `record` appends to, and an event
//! is serialised field by field. (tracing-subscriber's `JsonFields` re-parses and re-serialises a
//! span's whole object on every `record`, which cost the request path more than the rest of the
//! logging together.)

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object a line: `timestamp`, `level`, the spans' fields (outermost first), the
/// event's own fields, `target`.
pub struct JsonLines;

/// How span fields are kept: a JSON fragment, each field with its leading comma.
pub struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut out = String::new();
        fields.record(&mut Fragment(&mut out));
        writer.write_str(&out)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        fields.record(&mut Fragment(&mut current.fields));
        Ok(())
    }
}

impl<S> FormatEvent<S, SpanFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(512);
        line.push_str("{\"timestamp\":\"");
        write!(
            line,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        )?;
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<SpanFields>>() {
                    line.push_str(fields);
                }
            }
        }
        event.record(&mut Fragment(&mut line));
        line.push_str(",\"target\":");
        string(&mut line, meta.target());
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Appends `,"name":value` per field: numbers and booleans as themselves, everything else as
/// the JSON string of its `Display` (or, failing that, `Debug`) text.
struct Fragment<'a>(&'a mut String);

impl Fragment<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        string(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for Fragment<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            self.0.push_str("null");
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        string(self.0, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        quoted(self.0, format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        quoted(self.0, format_args!("{value:?}"));
    }
}

/// `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    out.push('"');
    let _ = Escaped(out).write_str(s);
    out.push('"');
}

/// What `args` formats to, as a JSON string, without an intermediate `String`.
fn quoted(out: &mut String, args: fmt::Arguments<'_>) {
    out.push('"');
    let _ = Escaped(out).write_fmt(args);
    out.push('"');
}

/// Writes text JSON-escaped.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc: &str = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.push_str(&s[start..i]);
            if esc.is_empty() {
                let _ = write!(self.0, "\\u{b:04x}");
            } else {
                self.0.push_str(esc);
            }
            start = i + 1;
        }
        self.0.push_str(&s[start..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_needs() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }
}
