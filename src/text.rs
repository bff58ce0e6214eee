//! Shortening text for messages, status fields and Kubernetes Events without splitting a UTF-8
//! character. Pure; never panics, whatever the input.
//!
//! Limits come in two units: characters (what a human reads, e.g. an utterance quoted in a
//! validation message) and bytes (what an API enforces, e.g. the 1024-byte `note` of an
//! `events.k8s.io/v1` Event).

/// The mark appended by [`truncate_chars`] and [`truncate_bytes`] when they cut text.
pub const ELLIPSIS: char = '…';

/// `s` cut to its first `max_chars` characters, with [`ELLIPSIS`] appended when anything was
/// cut (so the result has at most `max_chars + 1` characters). Text that fits is returned whole.
pub fn truncate_chars(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some((end, _)) => format!("{}{ELLIPSIS}", &s[..end]),
    }
}

/// The longest prefix of `s` that is at most `max_bytes` bytes long and ends on a character
/// boundary. Nothing is appended; use [`truncate_bytes`] to mark the cut.
pub fn clip_bytes(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    // `end < s.len()` here, and offset 0 is always a boundary, so this stops.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` within `max_bytes` bytes: whole if it fits, otherwise cut at a character boundary with
/// [`ELLIPSIS`] appended, the ellipsis included in the budget. For API fields with a byte limit,
/// such as an Event's `note` (1024 bytes) or a status message. If `max_bytes` is too small to
/// hold the ellipsis, the text is only clipped.
pub fn truncate_bytes(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_string();
    }
    let mark = ELLIPSIS.len_utf8();
    if max_bytes < mark {
        return clip_bytes(s, max_bytes).to_string();
    }
    let mut out = clip_bytes(s, max_bytes - mark).to_string();
    out.push(ELLIPSIS);
    out
}

/// Decodes standard base64 (RFC 4648 §4), padding optional.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let trimmed = input.trim_end_matches('=');
    if input.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// A size for a message: `16 MiB`, `64 KiB` or `1000 bytes` (the largest unit that divides it).
pub fn human_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn truncate_chars_keeps_short_text_and_marks_a_cut() {
        assert_eq!(truncate_chars("hello", 5), "hello");
        assert_eq!(truncate_chars("hello", 10), "hello");
        assert_eq!(truncate_chars("hello", 4), "hell…");
        assert_eq!(truncate_chars("hello", 0), "…");
        assert_eq!(truncate_chars("", 0), "");
    }

    #[test]
    fn truncate_chars_counts_characters_not_bytes() {
        // "é" is 2 bytes, "日" 3, "😀" 4: each counts as one character.
        assert_eq!(truncate_chars("éé日😀x", 4), "éé日😀…");
        assert_eq!(truncate_chars("éé日😀x", 5), "éé日😀x");
        assert_eq!(truncate_chars("😀😀😀", 1), "😀…");
    }

    #[test]
    fn clip_bytes_never_splits_a_character() {
        let s = "aé日😀"; // bytes: a=0, é=1..3, 日=3..6, 😀=6..10
        assert_eq!(s.len(), 10);
        let expected = [
            (0, ""),
            (1, "a"),
            (2, "a"),
            (3, "aé"),
            (4, "aé"),
            (5, "aé"),
            (6, "aé日"),
            (7, "aé日"),
            (9, "aé日"),
            (10, s),
            (11, s),
        ];
        for (max, want) in expected {
            assert_eq!(clip_bytes(s, max), want, "max_bytes {max}");
        }
    }

    #[test]
    fn truncate_bytes_fits_the_ellipsis_into_the_budget() {
        assert_eq!(truncate_bytes("hello", 5), "hello");
        assert_eq!(truncate_bytes("hello", 4), "h…"); // 1 + 3 bytes
        assert_eq!(truncate_bytes("日日日", 8), "日…"); // 3 + 3; a second 日 would need 9
        assert_eq!(truncate_bytes("日日日", 9), "日日日");
        assert_eq!(truncate_bytes("日日日", 2), ""); // no room for a character or the mark
        assert_eq!(truncate_bytes("abc", 2), "ab");
    }

    #[test]
    fn an_event_note_of_multibyte_text_stays_within_1024_bytes() {
        let note = "Überprüfung fehlgeschlagen: 日本語 😀 ".repeat(100);
        let clipped = truncate_bytes(&note, 1024);
        assert!(clipped.len() <= 1024, "{} bytes", clipped.len());
        assert!(
            clipped.len() >= 1024 - 3,
            "no more than a character's worth lost"
        );
        assert!(clipped.ends_with(ELLIPSIS));
        assert!(note.starts_with(clipped.trim_end_matches(ELLIPSIS)));
    }

    proptest! {
        #[test]
        fn clip_bytes_is_the_longest_boundary_prefix(s in ".{0,40}", max in 0usize..200) {
            let c = clip_bytes(&s, max);
            prop_assert!(c.len() <= max);
            prop_assert!(s.starts_with(c));
            if c.len() < s.len() {
                // The next character would not have fitted.
                let next = s[c.len()..].chars().next().unwrap();
                prop_assert!(c.len() + next.len_utf8() > max);
            }
        }

        #[test]
        fn truncate_bytes_is_within_budget_and_marks_the_cut(s in ".{0,40}", max in 0usize..200) {
            let t = truncate_bytes(&s, max);
            prop_assert!(t.len() <= max);
            prop_assert_eq!(t == s, s.len() <= max);
            if t != s && max >= ELLIPSIS.len_utf8() {
                let body = t.strip_suffix(ELLIPSIS).expect("a cut is marked");
                prop_assert!(s.starts_with(body));
                prop_assert_eq!(body, clip_bytes(&s, max - ELLIPSIS.len_utf8()));
            }
        }

        #[test]
        fn truncate_chars_is_a_prefix_of_at_most_max_chars(s in ".{0,40}", max in 0usize..50) {
            let t = truncate_chars(&s, max);
            let n = s.chars().count();
            if n <= max {
                prop_assert_eq!(&t, &s);
            } else {
                prop_assert_eq!(t.chars().count(), max + 1);
                prop_assert!(t.ends_with(ELLIPSIS));
                prop_assert!(s.starts_with(t.strip_suffix(ELLIPSIS).unwrap()));
            }
        }
    }
}
