//! Mobile numbers in the form Campaign Monitor's SMS features take: international, a `+`
//! and the country code and number, digits only (E.164: at most 15 digits). People write
//! them with spaces, dashes, dots and brackets; those are dropped, nothing else is guessed
//! (a national number has no country code, and guessing one would text a stranger).

/// The number as sent, or `None` when it is not in international form.
pub fn normalise_mobile(text: &str) -> Option<String> {
    let text = text.trim();
    let rest = text.strip_prefix('+')?;
    let mut number = String::with_capacity(text.len());
    number.push('+');
    for c in rest.chars() {
        match c {
            '0'..='9' => number.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = number.len() - 1;
    (8..=15).contains(&digits).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn international_numbers_pass_with_their_punctuation_dropped() {
        assert_eq!(normalise_mobile(" +40 712-345.678 ").as_deref(), Some("+40712345678"));
        assert_eq!(normalise_mobile("+1 (415) 555-2671").as_deref(), Some("+14155552671"));
        for refused in [
            "0712345678",
            "+40 712 ABC 678",
            "+1234567",
            "+1234567890123456",
            "",
            "+",
            "++40712345678",
        ] {
            assert_eq!(normalise_mobile(refused), None, "{refused:?}");
        }
    }
}
