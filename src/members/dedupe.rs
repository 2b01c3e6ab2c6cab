//! First occurrence wins. Memory grows with distinct members, not with rows.

use std::collections::HashSet;

#[derive(Debug, Default)]
pub struct Dedupe {
    seen: HashSet<Box<str>>,
}

impl Dedupe {
    pub fn new() -> Self {
        Self::default()
    }

    /// True the first time `email` (compared case-insensitively) is offered.
    pub fn first_time(&mut self, email: &str) -> bool {
        if email.bytes().any(|b| b.is_ascii_uppercase()) {
            let key = email.to_ascii_lowercase();
            if self.seen.contains(key.as_str()) {
                return false;
            }
            self.seen.insert(key.into_boxed_str())
        } else {
            if self.seen.contains(email) {
                return false;
            }
            self.seen.insert(email.into())
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_wins_case_insensitively() {
        let mut d = Dedupe::new();
        assert!(d.first_time("Jane@Example.com"));
        assert!(!d.first_time("jane@example.com"));
        assert!(!d.first_time("JANE@EXAMPLE.COM"));
        assert!(d.first_time("john@example.com"));
        assert_eq!(d.len(), 2);
    }
}
