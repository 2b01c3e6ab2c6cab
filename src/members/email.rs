//! Email normalisation and validation: the rules an address must follow to leave for the API.

/// Why a row's address cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProblem {
    /// Null, empty or only whitespace.
    Missing,
    Invalid,
}

/// Every character `str::trim` removes (Unicode `White_Space`): SQL that must find the same
/// address as [`normalise`] trims exactly these (`btrim(email, WHITESPACE)`).
pub const WHITESPACE: &str = "\t\n\u{b}\u{c}\r \u{85}\u{a0}\u{1680}\u{2000}\u{2001}\u{2002}\u{2003}\u{2004}\u{2005}\u{2006}\u{2007}\u{2008}\u{2009}\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}";

/// Trims `raw` and checks it. On success returns the trimmed address (original case).
///
/// Valid means: ASCII only, no whitespace or control characters, exactly one `@`, a local
/// part of 1..=64 characters that neither starts nor ends with `.` nor holds `..`, a domain
/// of at least two labels of letters, digits and `-` (no label starting or ending with
/// `-`), and at most 254 characters in all.
pub fn normalise(raw: Option<&str>) -> Result<&str, EmailProblem> {
    let email = raw.map(trim).unwrap_or("");
    if email.is_empty() {
        return Err(EmailProblem::Missing);
    }
    if is_valid(email.as_bytes()) {
        Ok(email)
    } else {
        Err(EmailProblem::Invalid)
    }
}

/// `str::trim`, without its Unicode walk when both ends are plain ASCII (nearly always).
fn trim(text: &str) -> &str {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// The rules of [`normalise`], in one pass over the bytes.
fn is_valid(email: &[u8]) -> bool {
    if email.len() > 254 {
        return false;
    }
    // The local part: printable ASCII, no `..`, not starting or ending with `.`.
    let mut previous = b'.';
    let mut at = None;
    for (i, &b) in email.iter().enumerate() {
        if b == b'@' {
            at = Some(i);
            break;
        }
        if !b.is_ascii_graphic() || (b == b'.' && previous == b'.') {
            return false;
        }
        previous = b;
    }
    let Some(at) = at else { return false };
    if !(1..=64).contains(&at) || previous == b'.' {
        return false;
    }
    // The domain: two or more labels of letters, digits and `-`, none empty, none starting
    // or ending with `-` (a second `@` is none of those).
    let (mut labels, mut label_len, mut previous) = (1, 0, b'.');
    for &b in &email[at + 1..] {
        match b {
            b'.' if label_len > 0 && previous != b'-' => {
                labels += 1;
                label_len = 0;
            }
            b'-' if label_len > 0 => label_len += 1,
            b if b.is_ascii_alphanumeric() => label_len += 1,
            _ => return false,
        }
        previous = b;
    }
    labels >= 2 && label_len > 0 && previous != b'-'
}

/// `jane@example.com` -> `j***@example.com`, for log lines.
pub fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_what_trim_removes() {
        let trimmed: Vec<char> = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.to_string().trim().is_empty())
            .collect();
        assert_eq!(WHITESPACE.chars().collect::<Vec<_>>(), trimmed);
    }

    #[test]
    fn valid_addresses() {
        for ok in [
            "a@b.co",
            "Jane.Doe+news@Example.COM",
            "x_y-z@sub-domain.example.org",
            "o'brien@example.ie",
            "1@2.3",
        ] {
            assert_eq!(normalise(Some(ok)), Ok(ok), "{ok}");
        }
        assert_eq!(normalise(Some("  a@b.co\t")), Ok("a@b.co"));
        let long_local = format!("{}@example.com", "a".repeat(64));
        assert!(normalise(Some(&long_local)).is_ok());
    }

    #[test]
    fn invalid_addresses() {
        let too_long_local = format!("{}@example.com", "a".repeat(65));
        let too_long = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
        for bad in [
            "plainaddress",
            "two@@example.com",
            "a@b@example.com",
            "a@example",
            ".a@example.com",
            "a.@example.com",
            "a..b@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            "a@example-.com",
            "a@example..com",
            "a@.example.com",
            "a@example.com.",
            "a@exam_ple.com",
            "jöhn@example.com",
            "a\u{7}@example.com",
            "@example.com",
            too_long_local.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(normalise(Some(bad)), Err(EmailProblem::Invalid), "{bad}");
        }
    }

    #[test]
    fn missing_addresses() {
        for missing in [None, Some(""), Some("   "), Some("\t\n")] {
            assert_eq!(normalise(missing), Err(EmailProblem::Missing), "{missing:?}");
        }
    }

    #[test]
    fn keys_and_masks() {
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("nonsense"), "***");
    }
}
