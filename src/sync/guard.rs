//! The guard on mirror's removals: a run that would remove more than its bound (or anyone
//! at all when the segment came back empty) removes nothing and sends nothing.

use crate::config::MaxRemovals;

/// What the guard looks at.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// Members of the state no row of the segment has any more.
    pub leaving: u64,
    /// Members this export has on the list (the synced state).
    pub on_list: u64,
    pub max_removals: MaxRemovals,
    /// `--allow-removals N`: this many past the bound, for this run.
    pub allowed_extra: u64,
    /// Rows the export query returned.
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Remove them all.
    Remove,
    /// Remove nobody and send nothing, for this reason.
    Refuse(String),
}

impl Guard {
    /// The most removals this run may make.
    pub fn bound(&self) -> u64 {
        self.max_removals.of(self.on_list) + self.allowed_extra
    }

    pub fn verdict(&self) -> Verdict {
        if self.leaving == 0 {
            return Verdict::Remove;
        }
        if self.rows == 0 && self.leaving > self.allowed_extra {
            // An empty segment looks like everyone left, but is far more often a broken
            // source or query: only an explicit allowance may act on it.
            return Verdict::Refuse(format!(
                "the segment returned no rows, so mirror would remove all {} members this export has on the list; nothing was removed or sent. Check the source and the segment's SQL; if the segment is meant to be empty, run once with --allow-removals {}",
                self.leaving, self.leaving
            ));
        }
        let bound = self.bound();
        if self.leaving > bound {
            return Verdict::Refuse(format!(
                "mirror would remove {} of the {} members this export has on the list, more than `options.max-removals` = {} allows ({}{}); nothing was removed or sent. Check the source and the segment's SQL; to remove them anyway, run once with --allow-removals {}",
                self.leaving,
                self.on_list,
                self.max_removals,
                self.max_removals.of(self.on_list),
                match self.allowed_extra {
                    0 => String::new(),
                    n => format!(" + {n} from --allow-removals"),
                },
                self.leaving - self.max_removals.of(self.on_list)
            ));
        }
        Verdict::Remove
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(leaving: u64, rows: u64, allowed_extra: u64) -> Guard {
        Guard {
            leaving,
            on_list: 1000,
            max_removals: MaxRemovals::Percent(10.0),
            allowed_extra,
            rows,
        }
    }

    #[test]
    fn removals_over_the_bound_or_from_an_empty_segment_are_refused() {
        assert_eq!(guard(0, 0, 0).verdict(), Verdict::Remove);
        assert_eq!(guard(100, 900, 0).verdict(), Verdict::Remove);
        let Verdict::Refuse(why) = guard(300, 700, 0).verdict() else {
            panic!("30% passed")
        };
        assert!(
            why.contains("remove 300 of the 1000 members")
                && why.contains("`options.max-removals` = 10% allows (100)")
                && why.ends_with("--allow-removals 200"),
            "{why}"
        );
        assert_eq!(guard(300, 700, 200).verdict(), Verdict::Remove);
        let Verdict::Refuse(why) = guard(300, 700, 150).verdict() else {
            panic!("short of the allowance")
        };
        assert!(why.contains("(100 + 150 from --allow-removals)"), "{why}");
        let Verdict::Refuse(why) = guard(50, 0, 0).verdict() else {
            panic!("an empty segment passed")
        };
        assert!(
            why.contains("the segment returned no rows") && why.ends_with("--allow-removals 50"),
            "{why}"
        );
        assert_eq!(guard(50, 0, 50).verdict(), Verdict::Remove);
    }
}
