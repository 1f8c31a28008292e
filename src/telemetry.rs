//! Logging: a tracing subscriber filtered by `RUST_LOG`, as text or JSON lines.
//!
//! Client text (ids, notes, descriptions, an engine's error echoing a request) reaches
//! log fields and messages. Each record stays one line whatever that text holds: the
//! JSON formatter escapes by construction, and the text formatter writes every field
//! value and message through [`EscapingFields`], so no call site can forget.

use std::fmt;
use std::io::IsTerminal;

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber, writing to stdout. Defaults to `info` when
/// `RUST_LOG` is unset. Text lines are coloured only when stdout is a terminal (and
/// `NO_COLOR` is unset), so a log redirected to a file or a pipe has no escape codes.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = crate::backend::kubernetes::quiet_client_failures(filter, std::env::var("RUST_LOG").ok().as_deref());
    let ansi = use_colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    // A second init (tests start several servers in one process) is harmless: ignore it.
    let _ = subscriber(format, filter, ansi, std::io::stdout).try_init();
}

/// The subscriber [`init`] installs, writing each record to what `writer` makes.
fn subscriber<W, O>(format: LogFormat, filter: EnvFilter, ansi: bool, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: Fn() -> O + Send + Sync + 'static,
    O: std::io::Write,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // A line stdout cannot take (its reader is gone: `esm | head`) is dropped
        // quietly, not reported on stderr once per line.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => Box::new(builder.with_writer(writer).fmt_fields(EscapingFields).finish()),
        LogFormat::Json => {
            Box::new(builder.with_writer(move || JsonLines(writer())).json().flatten_event(true).finish())
        }
    }
}

/// The JSON formatter's writer. JSON escapes the C0 controls but may leave DEL, the C1
/// controls (`U+009B` is a CSI to some terminals), the line and paragraph separators
/// and the bidirectional controls raw inside strings; this writes each of them as a
/// `\uXXXX` escape, which is the same JSON value. Outside strings a JSON line is
/// ASCII, so only string contents change. The formatter hands over one whole record per
/// write.
struct JsonLines<W>(W);

impl<W: std::io::Write> std::io::Write for JsonLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            // Below U+0020 JSON has escaped already.
            Ok(text) if text.chars().any(|c| c > '\x1f' && must_escape(c)) => {
                let mut escaped = String::with_capacity(text.len() + 16);
                for c in text.chars() {
                    if c > '\x1f' && must_escape(c) {
                        escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
                    } else {
                        escaped.push(c);
                    }
                }
                self.0.write_all(escaped.as_bytes())?;
            }
            _ => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Colour for a terminal only, and never when `NO_COLOR` is set to something
/// (<https://no-color.org>).
fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The text formatter's fields: `message key=value …` as tracing-subscriber's default
/// writes them (`%` values as Display, `?` and string values as Debug, errors with
/// their sources), except that every control character, line or paragraph separator
/// and bidirectional control in a value or the message is written as an escape
/// (`\n`, `\u{1b}`). Used for span fields too, so a client-controlled span field is
/// escaped as well.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapingFields;

impl<'w> FormatFields<'w> for EscapingFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor { writer, is_empty: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes one record's fields, escaped, to the line being formatted.
struct EscapingVisitor<'w> {
    /// The line (or a span's stored fields).
    writer: Writer<'w>,
    /// No field written yet: the next one needs no separating space.
    is_empty: bool,
    /// The first write error, after which nothing more is written.
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    /// Writes `name=` (the message has no name), then `value` through the escaper.
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.is_empty) { "" } else { " " };
        self.result = (|| {
            self.writer.write_str(separator)?;
            if field.name() != "message" {
                let name = field.name().trim_start_matches("r#");
                if self.writer.has_ansi_escapes() {
                    // Italic name and dimmed `=`, as the default formatter styles them.
                    write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
                } else {
                    write!(self.writer, "{name}=")?;
                }
            }
            fmt::Write::write_fmt(&mut Escaper(&mut self.writer), value)
        })();
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, format_args!("{value}"));
        if value.source().is_some() {
            let sources = SourceList(value.source());
            let name = field.name().trim_start_matches("r#");
            if self.result.is_ok() {
                self.result = write!(self.writer, " {name}.sources=")
                    .and_then(|()| fmt::Write::write_fmt(&mut Escaper(&mut self.writer), format_args!("{sources}")));
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// An error's chain of sources, `[first, second]`, as the default formatter writes it.
struct SourceList<'a>(Option<&'a (dyn std::error::Error + 'static)>);

impl fmt::Display for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = self.0;
        while let Some(error) = next {
            list.entry(&format_args!("{error}"));
            next = error.source();
        }
        list.finish()
    }
}

/// A writer that passes text through with every character [`must_escape`] holds for
/// written as an escape, so what it writes has no line break and no terminal control.
struct Escaper<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| must_escape(c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Characters a log line must not carry raw: C0 and C1 controls and DEL (line breaks,
/// terminal escapes, bells), the Unicode line and paragraph separators (a line break
/// to many readers), and the bidirectional controls (which reorder what a reader sees).
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".as_ref())));
        assert!(!use_colour(true, Some("1".as_ref())));
        assert!(!use_colour(false, None), "a file or a pipe gets no escape codes");
    }

    /// Text a hostile client might put in an id, a note or a description: a forged
    /// second record, a carriage return, ESC sequences (clear screen, set title), BEL, a
    /// C1 CSI, NEL, DEL, the Unicode line and paragraph separators and a bidi override.
    const HOSTILE: &str = "a\nERROR forged=1\r\x1b[2J\x1b]0;t\x07\u{9b}31m\u{85}\x7f\u{2028}\u{2029}\u{202e}\tz";

    /// An error whose text and whose source's text are the client's.
    #[derive(Debug)]
    struct Failed(&'static str, Option<Box<Failed>>);

    impl fmt::Display for Failed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    /// Formats `emit`'s records (debug and up) as `init` sets the subscriber up.
    fn log(format: LogFormat, ansi: bool, emit: impl FnOnce()) -> String {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = subscriber(format, EnvFilter::new("debug"), ansi, move || Sink(sink.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One record of every field kind carrying hostile text: the message (format
    /// arguments and a plain literal), `%` Display, `?` Debug, a string, an error with
    /// a source, a Debug value that prints raw, and span fields set at creation and
    /// recorded later. Returns how many records were emitted.
    fn emit_every_field_kind() -> usize {
        // A Debug that writes its text unquoted, as `anyhow::Error`'s does.
        struct RawDebug;
        impl fmt::Debug for RawDebug {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(HOSTILE)
            }
        }
        let error = Failed(HOSTILE, Some(Box::new(Failed(HOSTILE, None))));
        let span = tracing::info_span!("op", instance = %HOSTILE, later = tracing::field::Empty);
        let _entered = span.enter();
        span.record("later", HOSTILE);
        tracing::info!("dropped: {HOSTILE}");
        tracing::warn!(note = %HOSTILE, "instance dropped");
        tracing::warn!(note = ?HOSTILE, plan = HOSTILE, "pool");
        tracing::error!(error = &error as &(dyn std::error::Error + 'static), "deploy clean-up failed");
        tracing::error!(error = %error, detail = ?RawDebug, "takeover");
        tracing::debug!(HOSTILE);
        6
    }

    #[test]
    fn every_text_record_is_one_line_without_a_raw_control_character() {
        let log = log(LogFormat::Text, false, || {
            let emitted = emit_every_field_kind();
            assert_eq!(emitted, 6, "the count below follows the emitter");
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 6, "one line per record: {log}");
        for line in &lines {
            let raw: Vec<char> = line.chars().filter(|&c| must_escape(c)).collect();
            assert!(raw.is_empty(), "raw {raw:?} in {line:?}");
            assert!(!line.contains("\nERROR forged"), "{line}");
            assert!(line.contains("a\\nERROR forged=1\\r\\u{1b}[2J"), "escaped, not dropped: {line}");
        }
        assert!(lines[1].contains("note=a\\nERROR"), "a Display field keeps its name: {}", lines[1]);
        assert!(lines[0].contains("instance=a\\n") && lines[0].contains("later="), "span fields: {}", lines[0]);
        assert!(lines[3].contains("error.sources=[a\\n"), "error sources: {}", lines[3]);
    }

    #[test]
    fn coloured_text_records_are_one_line_with_the_client_escape_escaped() {
        let log = log(LogFormat::Text, true, || {
            emit_every_field_kind();
        });
        assert_eq!(log.lines().count(), 6, "{log}");
        assert!(!log.contains("\x1b[2J") && !log.contains("\x1b]0;"), "{log:?}");
    }

    #[test]
    fn a_json_record_is_one_line() {
        let log = log(LogFormat::Json, false, || {
            emit_every_field_kind();
        });
        assert_eq!(log.lines().count(), 6, "{log}");
        for line in log.lines() {
            let raw: Vec<char> = line.chars().filter(|&c| must_escape(c)).collect();
            assert!(raw.is_empty(), "raw {raw:?} in {line:?}");
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        assert_eq!(first["message"], format!("dropped: {HOSTILE}"), "the same JSON value");
        assert_eq!(first["span"]["instance"], HOSTILE);
        {}
    }
}
