//! A list's members by address, compared case-insensitively as the API does. The members
//! sit in one vector, their hashes in another, and the table holds only 4-byte indexes:
//! a lookup of a million-member list misses the cache on the table, so the table is kept
//! small; growing it hashes nothing again, and no member carries a second, lowercased copy
//! of its address. A million-member import is the emulator's heaviest work; the benchmarks
//! must measure the exporter, not this.

use std::borrow::Cow;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::lists::Member;

#[derive(Debug, Default)]
pub struct Members {
    all: Vec<Member>,
    /// Per member, `request << 1 | reported`: the last request that named it, and whether
    /// that request named it twice. One lookup per subscriber tells new, known or repeated.
    marks: Vec<u64>,
    /// Per member, its address's hash folded to 32 bits (see [`spread`]).
    hashes: Vec<u32>,
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    request: u64,
}

/// What one lookup of an address found, for the request being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Not on the list: its hash, to insert it without hashing again.
    Absent(u64),
    /// On the list, named for the first time in this request.
    Known(usize),
    /// Named before in this request; `first_repeat` the first time it comes again.
    Repeated { index: usize, first_repeat: bool },
}

/// The address as the table compares it: trimmed, ASCII-lowercased (borrowed when it is).
pub fn key(email: &str) -> Cow<'_, str> {
    let email = email.trim();
    match email.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(email.to_ascii_lowercase()),
        false => Cow::Borrowed(email),
    }
}

/// The table's hash from a stored 32-bit one: the table takes its bucket from the low
/// bits and its tag from the top ones, so both halves carry the same bits.
fn spread(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

impl Members {
    fn hash(&self, key: &str) -> u64 {
        let full = self.hasher.hash_one(key.as_bytes());
        spread((full ^ full >> 32) as u32)
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.find_hashed(self.hash(key), key)
    }

    fn find_hashed(&self, hash: u64, key: &str) -> Option<usize> {
        self.table
            .find(hash, |&i| {
                let i = i as usize;
                spread(self.hashes[i]) == hash && self.all[i].email().eq_ignore_ascii_case(key)
            })
            .map(|&i| i as usize)
    }

    /// The member with `email`, in any case and with any surrounding whitespace.
    pub fn get(&self, email: &str) -> Option<&Member> {
        self.find(&key(email)).map(|i| &self.all[i])
    }

    pub fn get_mut(&mut self, email: &str) -> Option<&mut Member> {
        self.find(&key(email)).map(|i| &mut self.all[i])
    }

    /// Starts a request: what earlier ones named no longer counts as repeated.
    pub(super) fn begin_request(&mut self) {
        self.request += 1;
    }

    /// Looks up an address already trimmed and lowercased, and marks it named by the
    /// current request.
    pub(super) fn visit(&mut self, key: &str) -> Visit {
        let hash = self.hash(key);
        let Some(i) = self.find_hashed(hash, key) else {
            return Visit::Absent(hash);
        };
        let mark = &mut self.marks[i];
        if *mark >> 1 == self.request {
            let first_repeat = *mark & 1 == 0;
            *mark |= 1;
            Visit::Repeated { index: i, first_repeat }
        } else {
            *mark = self.request << 1;
            Visit::Known(i)
        }
    }

    pub(super) fn at_mut(&mut self, index: usize) -> &mut Member {
        &mut self.all[index]
    }

    /// Adds a member the list does not have, `hash` from [`Members::visit`], marked named
    /// by the current request.
    pub(super) fn insert_new(&mut self, hash: u64, member: Member) -> &mut Member {
        debug_assert_eq!(hash, self.hash(&key(member.email())));
        let index = u32::try_from(self.all.len()).expect("a list holds fewer than 2^32 members");
        let hashes = &self.hashes;
        self.table.insert_unique(hash, index, |&i| spread(hashes[i as usize]));
        self.hashes.push(hash as u32);
        self.all.push(member);
        self.marks.push(self.request << 1);
        self.all.last_mut().expect("just pushed")
    }

    /// Takes a member off the list entirely (tests use it to make a member vanish).
    pub fn remove(&mut self, email: &str) -> Option<Member> {
        let wanted = key(email);
        let index = self.find(&wanted)?;
        let hash = spread(self.hashes[index]);
        if let Ok(entry) = self.table.find_entry(hash, |&i| i as usize == index) {
            entry.remove();
        }
        let last = self.all.len() - 1;
        if index != last {
            // The last member moves into the gap: its entry must say where it went.
            let moved = spread(self.hashes[last]);
            if let Some(at) = self.table.find_mut(moved, |&i| i as usize == last) {
                *at = index as u32;
            }
        }
        self.hashes.swap_remove(index);
        self.marks.swap_remove(index);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::Stamp;

    fn member(email: &str) -> Member {
        Member::new(email, "", Stamp::now())
    }

    #[test]
    fn finds_by_any_case_and_survives_removals() {
        let mut members = Members::default();
        members.begin_request();
        for i in 0..10_000 {
            let Visit::Absent(hash) = members.visit(&format!("member{i}@example.com")) else {
                panic!("not there yet")
            };
            members.insert_new(hash, member(&format!("Member{i}@Example.com")));
        }
        assert_eq!(
            members.get(" member42@EXAMPLE.com ").unwrap().email(),
            "Member42@Example.com"
        );
        assert_eq!(
            members.remove("MEMBER0@example.com").unwrap().email(),
            "Member0@Example.com"
        );
        assert!(members.get("member0@example.com").is_none());
        // The last member moved into the gap and is still found.
        assert_eq!(
            members.get("member9999@example.com").unwrap().email(),
            "Member9999@Example.com"
        );
        members.get_mut("member9999@example.com").unwrap().set_name("moved");
        assert_eq!(members.get("Member9999@Example.com").unwrap().name(), "moved");
        assert_eq!(
            members.get("Member9999@Example.com").unwrap().email(),
            "Member9999@Example.com"
        );
        assert_eq!(members.len(), 9_999);
        assert_eq!(members.values().count(), 9_999);
    }

    #[test]
    fn a_member_is_96_bytes_and_keeps_its_address_apart_from_its_name() {
        // A million-member list is mostly its members: the import's memory, page faults
        // and allocations are measured in this size (see the hot_paths bench).
        assert!(std::mem::size_of::<Member>() <= 96);
        let mut m = member("A@x.com");
        m.set_name("Ann");
        assert_eq!((m.email(), m.name()), ("A@x.com", "Ann"));
    }

    #[test]
    fn a_request_that_names_a_member_again_is_told_once() {
        let mut members = Members::default();
        members.begin_request();
        let Visit::Absent(hash) = members.visit("a@x.com") else {
            panic!()
        };
        members.insert_new(hash, member("A@x.com"));
        let repeated = |first_repeat| Visit::Repeated { index: 0, first_repeat };
        assert_eq!(members.visit("a@x.com"), repeated(true));
        assert_eq!(members.visit("a@x.com"), repeated(false));
        members.begin_request();
        assert_eq!(members.visit("a@x.com"), Visit::Known(0));
        assert_eq!(members.visit("a@x.com"), repeated(true));
    }
}
