//! Error text that leaves the process (reports, history, alerts, logs): one line, and no
//! personal data in it.

/// The error and its causes on one line: `a: b: c`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An error about the data itself, with the values it quotes masked. Arrow and DataFusion
/// quote the offending value (`Cannot cast string 'jane@example.com' to ...`): a value
/// between quotes becomes `'***'`, and any word holding an `@` is masked as an address is in
/// logs (`j***@example.com`). Column and function names are left as they are.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('\'') {
        out.push_str(&mask_addresses(&rest[..open]));
        match rest[open + 1..].find('\'') {
            Some(close) => {
                out.push_str("'***'");
                rest = &rest[open + 1 + close + 1..];
            }
            None => {
                // An unpaired quote: mask everything after it, it may be a cut value.
                out.push_str("'***");
                rest = "";
            }
        }
    }
    out.push_str(&mask_addresses(rest));
    out
}

/// The query of every URL in `text` cut to `?…`: a store's errors quote the URLs they
/// requested, and a query may carry a signature (an Azure SAS token, a presigned URL).
pub fn hide_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_url = false;
    let mut hiding = false;
    let mut word_start = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '<' | '>' | ')' | '(') {
            in_url = false;
            hiding = false;
            word_start = i + c.len_utf8();
        } else if !in_url && text[word_start..i + c.len_utf8()].ends_with("://") {
            in_url = true;
        } else if in_url && c == '?' && !hiding {
            hiding = true;
            out.push_str("?…");
            continue;
        }
        if !hiding {
            out.push(c);
        }
    }
    out
}

/// Any word holding an `@` masked as logs mask addresses (`j***@example.com`): for error
/// text that does not quote data, yet may name an address (a literal in segment SQL).
pub fn mask_addresses(text: &str) -> String {
    if !text.contains('@') {
        return text.to_owned();
    }
    text.split(' ')
        .map(|word| match word.split_once('@') {
            Some((local, domain)) if !local.is_empty() || !domain.is_empty() => {
                // Quotes or brackets before the address stay.
                let start = local.find(|c: char| c.is_alphanumeric()).unwrap_or(local.len());
                let first: String = local[start..].chars().next().into_iter().collect();
                format!("{}{first}***@{domain}", &local[..start])
            }
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_of_urls_are_hidden() {
        assert_eq!(
            hide_queries(
                "Error performing GET https://a.blob.core.windows.net/c/x?sv=2021&sig=SECRET in 3ms - why? because"
            ),
            "Error performing GET https://a.blob.core.windows.net/c/x?… in 3ms - why? because"
        );
        assert_eq!(hide_queries("`s3://b/k?x=1`, then"), "`s3://b/k?…`, then");
    }

    #[test]
    fn masks_quoted_values_and_addresses() {
        assert_eq!(
            redact("Cast error: Cannot cast string 'jane.doe@example.com' to value of Int64 type"),
            "Cast error: Cannot cast string '***' to value of Int64 type"
        );
        assert_eq!(
            redact("bad value jane@example.com in column `email`"),
            "bad value j***@example.com in column `email`"
        );
        assert_eq!(redact("cut 'jane@exa"), "cut '***");
        assert_eq!(redact("no values here"), "no values here");
        assert_eq!(
            mask_addresses("table 'profile' not found near 'jane@example.com'"),
            "table 'profile' not found near 'j***@example.com'"
        );
    }
}
