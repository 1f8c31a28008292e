//! A server's text made safe to show: what a terminal would act on instead of showing
//! (escape sequences, OSC 52 clipboard writes, BEL, CR, backspace, C1 controls, bidi
//! overrides) written out as visible escapes, and an error description cut to a length
//! a person reads.
//!
//! [`escape`] is for people (tables, event lines, progress and error messages);
//! [`escape_json`] is for JSON text, where serde_json already escapes U+0000–U+001F but
//! leaves DEL, the C1 controls (U+0080–U+009F, which xterm and VTE act on when they
//! arrive UTF-8 encoded: U+009B is a CSI) and the bidi controls as they are. It writes
//! them as `\uXXXX`, which is the same JSON value: `jq` reads exactly what esm sent.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most characters of a server's error description the client shows.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Whether a terminal (or a bidi-aware renderer) could act on `c` rather than show it:
/// the C0 controls with DEL and the C1 controls (Unicode's `Cc`), the bidi embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069), the directional marks
/// (U+200E, U+200F, U+061C) and the line and paragraph separators (U+2028, U+2029).
pub fn is_active(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `text` with every [active](is_active) character written as a visible escape: `\n`,
/// `\r`, `\t`, otherwise `\u{1b}`. Backslashes are left alone, so escaping twice
/// changes nothing (a sink may escape what a table cell already escaped); the price is
/// that a server's literal `\u{1b}` reads the same as an ESC (`-o json` tells them apart).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_active) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_active(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON text (as serde_json writes it) with the active characters serde_json leaves
/// raw written as `\uXXXX` escapes: the same JSON value. They can only stand inside
/// strings (outside them JSON allows only its own whitespace), so any occurrence is one
/// to escape; the newlines of pretty printing are not active here (serde_json has
/// already escaped every control character inside strings).
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let raw = |c: char| is_active(c) && !matches!(c, '\n' | ' ' | '\t' | '\r');
    if !json.chars().any(raw) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` characters, with `…` and how much was cut when it was.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}… ({} bytes more)", &text[..end], text.len() - end)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_terminal_control_is_shown_escaped() {
        let hostile =
            "a\u{1b}]0;title\u{7}\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}b\r\u{8}\u{7f}\u{9b}31m\u{202e}x\u{2066}\u{2028}";
        let shown = escape(hostile);
        assert!(!shown.chars().any(is_active), "{shown}");
        assert_eq!(
            shown,
            "a\\u{1b}]0;title\\u{7}\\u{1b}[2J\\u{1b}]52;c;ZXZpbA==\\u{7}b\\r\\u{8}\\u{7f}\\u{9b}31m\\u{202e}x\\u{2066}\\u{2028}"
        );
        assert_eq!(escape("line\nnext\ttab"), "line\\nnext\\ttab");
    }

    #[test]
    fn plain_text_and_escaped_text_are_left_as_they_are() {
        assert!(matches!(escape("svc-1 ünïcode 名前 \\ back"), Cow::Borrowed(_)));
        let once = escape("\u{1b}[2J").into_owned();
        assert_eq!(escape(&once), once, "escaping twice changes nothing");
    }

    #[test]
    fn every_active_character_is_escaped() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32).filter(|c| is_active(*c)) {
            let text = c.to_string();
            assert!(!escape(&text).chars().any(is_active), "{:x}", u32::from(c));
        }
    }

    #[test]
    fn json_keeps_its_value_and_loses_the_raw_controls() {
        let value = serde_json::json!({"name": "a\u{1b}[2J\u{7f}\u{9b}\u{202e}\u{2029}b", "n": [1, 2]});
        let text = serde_json::to_string_pretty(&value).expect("JSON");
        assert!(text.contains('\u{9b}'), "serde_json leaves C1 controls raw: {text:?}");
        let safe = escape_json(&text);
        assert!(!safe.chars().any(|c| is_active(c) && c != '\n'), "{safe:?}");
        assert!(safe.contains("\\u001b[2J\\u007f\\u009b\\u202e\\u2029"), "{safe}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).expect("still JSON"), value);
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 2), "éé… (6 bytes more)");
        let long = "x".repeat(5000);
        let cut = truncate(&long, MAX_MESSAGE_CHARS);
        assert_eq!(cut, format!("{}… (4000 bytes more)", "x".repeat(MAX_MESSAGE_CHARS)));
    }
}
