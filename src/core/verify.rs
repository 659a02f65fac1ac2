//! What `tandem verify` concludes about one file from the baseline's digest and what each
//! side's copy hashes to now: verified, corrupt on one side (the other still matching
//! the baseline is the good one), changed alike on both, or beyond telling.
//!
//! Corruption is content that changed while the file's size and mtime did not: what a
//! disk or controller does beneath the filesystem. A file whose size or mtime moved was
//! edited, and is the next sync's business, not verify's.

use crate::core::plan::Side;
use crate::core::tree::{Digest, Entry};

/// One side's copy of a file the baseline agreed on, as verify found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// As the baseline has it by size and mtime; its contents hash to this.
    Hashed(Digest),
    /// Gone, no longer a file, or a different size or mtime: edited since the last sync.
    Changed,
    /// It could not be read (why).
    Unreadable(String),
}

/// Whether `now` still looks like the baseline's `base` without reading it: a file of the
/// same size and mtime (the stamps an edit moves; bit rot moves neither).
pub fn looks_unchanged(base: &Entry, now: Option<&Entry>) -> bool {
    now.is_some_and(|n| n.is_file() && n.size == base.size && n.mtime_ns == base.mtime_ns)
}

/// The verdict on one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Both copies hash to the baseline's digest.
    Verified,
    /// The baseline had no digest; both copies hash alike, and that digest is now recorded.
    Recorded(Digest),
    /// `bad`'s copy changed beneath its stamps; `good` says whether the other side's still
    /// matches the baseline (the copy to repair from) or was edited since.
    Corrupt {
        /// The side whose copy is wrong.
        bad: Side,
        /// The other side's copy matches the baseline (it can be repaired from).
        repairable: bool,
    },
    /// Both copies changed beneath their stamps, to the same content: no side is wrong
    /// by the other, but neither matches the baseline.
    SameChange,
    /// Both copies changed beneath their stamps, differently: neither is known good.
    BothCorrupt,
    /// The baseline had no digest and the copies differ: no way to tell which is right.
    Undecidable,
    /// A copy was edited since the last sync (size or mtime): not verified.
    Changed,
    /// A copy could not be read.
    Unreadable {
        /// Which.
        side: Side,
        /// Why.
        why: String,
    },
}

impl Finding {
    /// The status word of the per-file line and the JSON event.
    pub fn word(&self) -> &'static str {
        match self {
            Finding::Verified => "VERIFIED",
            Finding::Recorded(_) => "VERIFIED(new)",
            Finding::Corrupt {
                bad: Side::Local, ..
            } => "CORRUPT(local)",
            Finding::Corrupt {
                bad: Side::Remote, ..
            } => "CORRUPT(remote)",
            Finding::SameChange => "CHANGED(both)",
            Finding::BothCorrupt => "CORRUPT(both)",
            Finding::Undecidable => "DIFFERENT",
            Finding::Changed => "SKIPPED(edited)",
            Finding::Unreadable { .. } => "UNREADABLE",
        }
    }

    /// What it means, in words, for the status line.
    pub fn detail(&self) -> String {
        match self {
            Finding::Verified => "both copies match the last sync".into(),
            Finding::Recorded(_) => {
                "both copies match; the baseline had no digest, now it has".into()
            }
            Finding::Corrupt { bad, repairable } => {
                let good = bad.other().word();
                let bad = bad.word();
                if *repairable {
                    format!(
                        "the {bad} copy changed though its size and mtime did not; the {good} \
                         copy still matches the last sync (repair with --repair)"
                    )
                } else {
                    format!(
                        "the {bad} copy changed though its size and mtime did not; the {good} \
                         copy was edited since, so there is no good copy to repair from"
                    )
                }
            }
            Finding::SameChange => "both copies changed alike though their size and mtime \
                 did not: neither matches the last sync; not repaired"
                .into(),
            Finding::BothCorrupt => "both copies changed, differently, though their size and \
                 mtime did not: neither matches the last sync; both kept, not repaired"
                .into(),
            Finding::Undecidable => "the copies differ and the baseline has no digest to tell \
                 which is right; not repaired"
                .into(),
            Finding::Changed => "edited since the last sync: the next sync takes care of it".into(),
            Finding::Unreadable { side, why } => format!("the {} copy: {why}", side.word()),
        }
    }

    /// A finding the user must act on (exit bit 2 unless repaired; 8 for unreadable).
    pub fn is_problem(&self) -> bool {
        !matches!(
            self,
            Finding::Verified | Finding::Recorded(_) | Finding::Changed
        )
    }

    /// The side to copy over, and the side to copy from, when `--repair` may fix it.
    pub fn repair(&self) -> Option<(Side, Side)> {
        match self {
            Finding::Corrupt {
                bad,
                repairable: true,
            } => Some((*bad, bad.other())),
            _ => None,
        }
    }
}

/// Judges one file from the baseline's digest (`None`: it has none) and both copies.
pub fn judge(base: Option<Digest>, local: &Seen, remote: &Seen) -> Finding {
    use Seen::*;
    for (side, seen) in [(Side::Local, local), (Side::Remote, remote)] {
        if let Unreadable(why) = seen {
            return Finding::Unreadable {
                side,
                why: why.clone(),
            };
        }
    }
    let Some(base) = base else {
        return match (local, remote) {
            (Hashed(l), Hashed(r)) if l == r => Finding::Recorded(*l),
            (Hashed(_), Hashed(_)) => Finding::Undecidable,
            _ => Finding::Changed,
        };
    };
    let corrupt = |bad: Side, other: &Seen| Finding::Corrupt {
        bad,
        repairable: *other == Hashed(base),
    };
    match (local, remote) {
        (Hashed(l), Hashed(r)) if *l == base && *r == base => Finding::Verified,
        (Hashed(l), Hashed(r)) if *l != base && *r != base => {
            if l == r {
                Finding::SameChange
            } else {
                Finding::BothCorrupt
            }
        }
        (Hashed(l), other) if *l != base => corrupt(Side::Local, other),
        (other, Hashed(r)) if *r != base => corrupt(Side::Remote, other),
        _ => Finding::Changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Seen::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn judges_every_combination() {
        let bad = |s: Side, repairable: bool| Finding::Corrupt { bad: s, repairable };
        let table: Vec<(Option<Digest>, Seen, Seen, Finding)> = vec![
            (Some(d(1)), Hashed(d(1)), Hashed(d(1)), Finding::Verified),
            (
                Some(d(1)),
                Hashed(d(2)),
                Hashed(d(1)),
                bad(Side::Local, true),
            ),
            (
                Some(d(1)),
                Hashed(d(1)),
                Hashed(d(2)),
                bad(Side::Remote, true),
            ),
            (Some(d(1)), Hashed(d(2)), Changed, bad(Side::Local, false)),
            (Some(d(1)), Changed, Hashed(d(2)), bad(Side::Remote, false)),
            (Some(d(1)), Hashed(d(2)), Hashed(d(2)), Finding::SameChange),
            (Some(d(1)), Hashed(d(2)), Hashed(d(3)), Finding::BothCorrupt),
            (Some(d(1)), Hashed(d(1)), Changed, Finding::Changed),
            (Some(d(1)), Changed, Hashed(d(1)), Finding::Changed),
            (Some(d(1)), Changed, Changed, Finding::Changed),
            (None, Hashed(d(4)), Hashed(d(4)), Finding::Recorded(d(4))),
            (None, Hashed(d(4)), Hashed(d(5)), Finding::Undecidable),
            (None, Hashed(d(4)), Changed, Finding::Changed),
        ];
        for (base, l, r, want) in table {
            assert_eq!(judge(base, &l, &r), want, "{base:?} {l:?} {r:?}");
        }
    }

    #[test]
    fn unreadable_wins_and_names_its_side() {
        let f = judge(Some(d(1)), &Hashed(d(2)), &Unreadable("denied".into()));
        assert_eq!(
            f,
            Finding::Unreadable {
                side: Side::Remote,
                why: "denied".into()
            }
        );
        assert!(f.is_problem());
        assert_eq!(f.repair(), None);
    }

    #[test]
    fn only_a_corrupt_copy_with_a_good_other_is_repaired() {
        let f = judge(Some(d(1)), &Hashed(d(1)), &Hashed(d(9)));
        assert_eq!(f.repair(), Some((Side::Remote, Side::Local)));
        assert_eq!(f.word(), "CORRUPT(remote)");
        for f in [
            judge(Some(d(1)), &Hashed(d(9)), &Hashed(d(8))),
            judge(Some(d(1)), &Hashed(d(9)), &Hashed(d(9))),
            judge(Some(d(1)), &Hashed(d(9)), &Changed),
            judge(None, &Hashed(d(9)), &Hashed(d(8))),
        ] {
            assert!(f.is_problem(), "{f:?}");
            assert_eq!(f.repair(), None, "{f:?}");
        }
        assert!(!judge(Some(d(1)), &Changed, &Changed).is_problem());
    }

    #[test]
    fn looks_unchanged_needs_a_file_of_the_same_size_and_mtime() {
        use crate::core::tree::EntryKind;
        let base = Entry::new(EntryKind::File, 10, 100, 0o644);
        assert!(looks_unchanged(
            &base,
            Some(&Entry::new(EntryKind::File, 10, 100, 0o600))
        ));
        assert!(!looks_unchanged(
            &base,
            Some(&Entry::new(EntryKind::File, 11, 100, 0o644))
        ));
        assert!(!looks_unchanged(
            &base,
            Some(&Entry::new(EntryKind::File, 10, 101, 0o644))
        ));
        assert!(!looks_unchanged(
            &base,
            Some(&Entry::new(EntryKind::Dir, 10, 100, 0o644))
        ));
        assert!(!looks_unchanged(&base, None));
    }
}
