//! What a stored string may hold, and the JSON Schema patterns that say the same.
//!
//! Control characters (Unicode category Cc: U+0000–U+001F and U+007F–U+009F) are refused in
//! every stored string: PostgreSQL `text` can't hold NUL, and none of them belong in a
//! title or a tag. Descriptions may hold tab, line feed and carriage return. The patterns
//! use only syntax that ECMA-262, Python's `re` and Rust's `regex` read alike, and the
//! tests below check that each accepts exactly what the matching check accepts.

/// Unicode `White_Space`, which `str::trim` removes, as a character-class body.
const WHITE_SPACE: &str =
    r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Category Cc, as a character-class body.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// Descriptions: no control character but tab, line feed and carriage return.
pub const MULTILINE_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

/// Whether `c` may stand in a single-line string (title, tag, search text).
pub fn allowed_in_line(c: char) -> bool {
    !c.is_control()
}

/// Whether `c` may stand in a description.
pub fn allowed_in_multiline(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// The pattern of a string that, once trimmed, is `min..=max` characters (`min` 0 or 1)
/// with no control character.
pub fn trimmed_pattern(min: usize, max: usize) -> String {
    let ws = format!("[{WHITE_SPACE}]*");
    let edge = format!("[^{WHITE_SPACE}{CONTROL}]");
    let inner = format!("[^{CONTROL}]");
    let core = match max {
        0 => String::new(),
        1 => edge.clone(),
        _ => format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2),
    };
    let core = if min == 0 && max > 0 {
        format!("(?:{core})?")
    } else {
        core
    };
    format!("^{ws}{core}{ws}$")
}

/// Trims `raw` and checks it is `min..=max` characters of single-line text; the error says
/// what is wrong in words a person can act on.
pub fn trimmed_line(raw: &str, min: usize, max: usize) -> Result<&str, String> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len < min {
        Err("must not be empty".into())
    } else if len > max {
        Err(format!("must be at most {max} characters (got {len})"))
    } else if !trimmed.chars().all(allowed_in_line) {
        Err(CONTROL_MESSAGE.into())
    } else {
        Ok(trimmed)
    }
}

/// The message for a string holding a refused control character.
pub const CONTROL_MESSAGE: &str =
    "must not contain control characters (U+0000-U+001F, U+007F-U+009F)";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;

    /// Characters around every boundary the rules draw, plus ordinary text.
    fn interesting() -> impl Strategy<Value = char> {
        prop_oneof![
            proptest::sample::select(vec![
                '\0', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{1f}', ' ', '\u{7f}',
                '\u{85}', '\u{9f}', '\u{a0}', '\u{1680}', '\u{180e}', '\u{2000}', '\u{200a}',
                '\u{200b}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}', '\u{feff}',
                'a', 'Z', 'é', 'İ', '日', '😀',
            ]),
            any::<char>(),
        ]
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(interesting(), 0..max).prop_map(|c| c.into_iter().collect())
    }

    /// Ordinary text of about `max` characters between a few interesting ones, to probe the
    /// length limit.
    fn padded() -> impl Strategy<Value = String> {
        (text(3), "[a-zé日 ]{28,36}", text(3)).prop_map(|(a, b, c)| format!("{a}{b}{c}"))
    }

    fn check(pattern: &str, accepts: impl Fn(&str) -> bool, s: &str) -> Result<(), TestCaseError> {
        let re = Regex::new(pattern).unwrap();
        prop_assert_eq!(re.is_match(s), accepts(s), "{:?} against {}", s, pattern);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_trimmed_pattern_accepts_exactly_what_trimmed_line_accepts(
            s in prop_oneof![text(12), padded()],
            max in prop_oneof![Just(1usize), Just(2), Just(5), Just(32)],
            min in 0usize..=1,
        ) {
            check(&trimmed_pattern(min, max), |s| trimmed_line(s, min, max).is_ok(), &s)?;
        }

        #[test]
        fn the_multiline_pattern_accepts_exactly_the_allowed_characters(s in text(12)) {
            check(MULTILINE_PATTERN, |s| s.chars().all(allowed_in_multiline), &s)?;
        }
    }

    #[test]
    fn trimming_follows_unicode_white_space() {
        assert_eq!(trimmed_line("\u{3000} a b\t\n", 1, 5), Ok("a b"));
        assert!(trimmed_line("a\u{0}b", 1, 5).is_err());
        assert!(trimmed_line("a\tb", 1, 5).is_err());
        assert!(trimmed_line(" \u{85} ", 1, 5).is_err());
        assert!(trimmed_line("abcdef", 1, 5).is_err());
        assert_eq!(trimmed_line("   ", 0, 5), Ok(""));
    }
}
