//! A list's members by address, compared case-insensitively as the API does. The members
//! sit in one vector and a table beside it holds `(hash, index)`: growing the table moves 16
//! bytes per member and hashes nothing again, and no member carries a second, lowercased
//! copy of its address. A million-member import is the emulator's heaviest work; the
//! benchmarks must measure the exporter, not this.

use std::borrow::Cow;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::lists::Member;

#[derive(Debug, Default)]
pub struct Members {
    all: Vec<Member>,
    table: HashTable<(u64, usize)>,
    hasher: foldhash::fast::RandomState,
}

/// The address as the table compares it: trimmed, ASCII-lowercased (borrowed when it is).
pub fn key(email: &str) -> Cow<'_, str> {
    let email = email.trim();
    match email.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(email.to_ascii_lowercase()),
        false => Cow::Borrowed(email),
    }
}

impl Members {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key.as_bytes())
    }

    fn find(&self, key: &str) -> Option<usize> {
        let hash = self.hash(key);
        self.table
            .find(hash, |&(h, i)| h == hash && self.all[i].email.eq_ignore_ascii_case(key))
            .map(|&(_, i)| i)
    }

    /// The member with `email`, in any case and with any surrounding whitespace.
    pub fn get(&self, email: &str) -> Option<&Member> {
        self.find(&key(email)).map(|i| &self.all[i])
    }

    pub fn get_mut(&mut self, email: &str) -> Option<&mut Member> {
        self.find(&key(email)).map(|i| &mut self.all[i])
    }

    /// Like [`Members::get_mut`] for an address already trimmed and lowercased.
    pub(super) fn by_key_mut(&mut self, key: &str) -> Option<&mut Member> {
        self.find(key).map(|i| &mut self.all[i])
    }

    /// Adds a member the list does not have (its address trimmed, any case).
    pub(super) fn insert_new(&mut self, member: Member) {
        let hash = self.hash(&key(&member.email));
        debug_assert!(self.find(&key(&member.email)).is_none());
        self.table.insert_unique(hash, (hash, self.all.len()), |&(h, _)| h);
        self.all.push(member);
    }

    /// Takes a member off the list entirely (tests use it to make a member vanish).
    pub fn remove(&mut self, email: &str) -> Option<Member> {
        let key = key(email);
        let hash = self.hash(&key);
        let all = &self.all;
        let entry = self
            .table
            .find_entry(hash, |&(h, i)| h == hash && all[i].email.eq_ignore_ascii_case(&key))
            .ok()?;
        let ((_, index), _) = entry.remove();
        let last = self.all.len() - 1;
        if index != last {
            // The last member moves into the gap: its entry must say where it went.
            let moved = self.hash(&key_of(&self.all[last]));
            if let Some((_, at)) = self.table.find_mut(moved, |&(h, i)| h == moved && i == last) {
                *at = index;
            }
        }
        Some(self.all.swap_remove(index))
    }

    pub fn values(&self) -> impl Iterator<Item = &Member> {
        self.all.iter()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

fn key_of(member: &Member) -> Cow<'_, str> {
    key(&member.email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::MemberState;

    fn member(email: &str) -> Member {
        Member {
            email: email.into(),
            name: String::new(),
            state: MemberState::Active,
            custom_fields: vec![],
            consent_to_track: "Yes",
            date: "d".into(),
            joined: "d".into(),
        }
    }

    #[test]
    fn finds_by_any_case_and_survives_removals() {
        let mut members = Members::default();
        for i in 0..10_000 {
            members.insert_new(member(&format!("Member{i}@Example.com")));
        }
        assert_eq!(
            members.get(" member42@EXAMPLE.com ").unwrap().email,
            "Member42@Example.com"
        );
        assert_eq!(
            members.remove("MEMBER0@example.com").unwrap().email,
            "Member0@Example.com"
        );
        assert!(members.get("member0@example.com").is_none());
        // The last member moved into the gap and is still found.
        assert_eq!(
            members.get("member9999@example.com").unwrap().email,
            "Member9999@Example.com"
        );
        members.by_key_mut("member9999@example.com").unwrap().name = "moved".into();
        assert_eq!(members.get("Member9999@Example.com").unwrap().name, "moved");
        assert_eq!(members.len(), 9_999);
        assert_eq!(members.values().count(), 9_999);
    }
}
