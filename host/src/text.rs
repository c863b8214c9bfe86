//! Text from plugins and the API, made safe for a terminal.
//!
//! A plugin (or whoever wrote a stored value) controls these strings: a
//! raw escape sequence would clear the screen, retitle the window or forge
//! a hyperlink, and an embedded newline would print a line that looks like
//! the host's own. Every human-readable output of the CLI goes through
//! [`safe`]; `--json` output is JSON-escaped already.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with control characters (C0, DEL, C1: ESC, BEL, CR, LF, NUL, …)
/// and bidirectional overrides escaped as `\u{…}` (`\n`, `\r`, `\t` as
/// such), everything else unchanged.
pub fn safe(text: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn control_sequences_and_newlines_are_escaped() {
        assert_eq!(safe("plain text, é ✓"), "plain text, é ✓");
        assert_eq!(
            safe("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
        );
        assert_eq!(
            safe("ok\nINFO forged line\r\0"),
            "ok\\nINFO forged line\\r\\u{0}"
        );
        assert_eq!(safe("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(safe("\u{9b}31m"), "\\u{9b}31m");
    }
}
