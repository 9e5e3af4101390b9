//! The modes a user picks and the words they are spelled with.
//!
//! Each mode has one spelling, given by its `name()`, and it is the same on
//! the command line, in the tracer's environment, in JSON and in messages.
//! `FromStr` is its inverse, and `ALL` lists the modes in the order the
//! command line's help shows them, so a parser can be built from it. All of
//! this works without `std`: the tracer reads [`UnwindMode`] from its
//! environment before it may allocate.

use core::fmt;

/// A word that names none of a mode's values.
///
/// It does not allocate: without `std` it only knows what was expected.
/// With `std` it also keeps what was found, for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    expected: &'static [&'static str],
    #[cfg(feature = "std")]
    found: std::string::String,
}

impl UnknownName {
    #[cfg_attr(not(feature = "std"), allow(unused_variables))]
    fn new(expected: &'static [&'static str], found: &str) -> Self {
        UnknownName {
            expected,
            #[cfg(feature = "std")]
            found: found.into(),
        }
    }

    /// The names that would have been accepted.
    pub fn expected(&self) -> &'static [&'static str] {
        self.expected
    }
}

impl fmt::Display for UnknownName {
    /// `expected full, tables or none, found "most"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected ")?;
        let n = self.expected.len();
        for (i, name) in self.expected.iter().enumerate() {
            match i {
                0 => {}
                _ if i + 1 == n => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            f.write_str(name)?;
        }
        #[cfg(feature = "std")]
        write!(f, ", found {:?}", self.found)?;
        Ok(())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for UnknownName {}

/// `ALL`, `NAMES`, `name`, `from_name`, `FromStr` and `Display` for a
/// field-less enum, from one table of (variant, spelling) in help order.
macro_rules! spelled {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order the command line lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// Their names, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The one spelling: command line, environment, JSON, messages.
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }

            /// The value spelled `name`, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl core::str::FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                Self::from_name(s).ok_or_else(|| UnknownName::new(Self::NAMES, s))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Which memory a snapshot keeps (`--memory`, and the snapshot note's
/// `options.memory`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum MemoryMode {
    /// All writable and all anonymous memory (what findleaks needs), plus
    /// the ELF header page of every module and the vDSO.
    #[default]
    Full,
    /// Only the tracer's audit region, plus module ELF headers and the vDSO.
    Tables,
    /// Notes only: threads, registers, mappings and metadata.
    None,
}

spelled!(MemoryMode {
    Full => "full",
    Tables => "tables",
    None => "none",
});

impl MemoryMode {
    /// Whether a snapshot taken this way holds the process's memory, which
    /// reachability and reference searches need.
    pub fn keeps_memory(self) -> bool {
        self == MemoryMode::Full
    }
}

/// How the tracer captures stacks (`--unwind`, the tracer's
/// [`crate::handover::UNWIND`]). Stored as a `u32` in
/// [`crate::Header::unwind_mode`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnwindMode {
    /// No stacks: only sizes, threads and times.
    None = 0,
    /// Frame pointers only.
    FramePointer = 1,
    /// DWARF CFI where the code has it, frame pointers elsewhere.
    #[default]
    Dwarf = 2,
}

spelled!(UnwindMode {
    Dwarf => "dwarf",
    FramePointer => "fp",
    None => "none",
});

impl UnwindMode {
    /// Decodes a stored mode word.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::FramePointer,
            2 => Self::Dwarf,
            _ => return None,
        })
    }
}

/// What reachability made of a live block, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum LeakKind {
    /// Unreached and not pointed to by other unreached blocks.
    Definite,
    /// Unreached, pointed to by unreached blocks.
    Indirect,
    /// Reached only through interior pointers.
    Possible,
    /// Reached through start pointers.
    Reachable,
}

spelled!(LeakKind {
    Definite => "definite",
    Indirect => "indirect",
    Possible => "possible",
    Reachable => "reachable",
});

impl LeakKind {
    /// The word used in text output.
    pub fn describe(self) -> &'static str {
        match self {
            LeakKind::Definite => "definitely lost",
            LeakKind::Indirect => "indirectly lost",
            LeakKind::Possible => "possibly lost",
            LeakKind::Reachable => "still reachable",
        }
    }
}

/// Which leaks fail a check (`leaks --fail-on`): this kind "or worse".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailOn {
    /// Definitely lost blocks, and the indirectly lost ones they hold.
    Definite,
    /// Those, and possibly lost blocks.
    Possible,
}

spelled!(FailOn {
    Definite => "definite",
    Possible => "possible",
});

impl FailOn {
    /// Whether blocks of `kind` fail the check. An indirectly lost block is
    /// only there because a definitely lost one holds it, so it counts
    /// whenever definite ones do; reachable blocks never count.
    pub fn counts(self, kind: LeakKind) -> bool {
        match kind {
            LeakKind::Definite | LeakKind::Indirect => true,
            LeakKind::Possible => self == FailOn::Possible,
            LeakKind::Reachable => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(all: &[T], names: &[&str], name: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + fmt::Debug + core::str::FromStr<Err = UnknownName>,
    {
        assert_eq!(all.len(), names.len());
        for (&v, &n) in all.iter().zip(names) {
            assert_eq!(name(v), n);
            assert_eq!(n.parse::<T>(), Ok(v), "{n}");
        }
        for bad in ["", "FULL", "Dwarf", " fp", "fp ", "definitely", "nonee"] {
            assert!(bad.parse::<T>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        round_trip(MemoryMode::ALL, MemoryMode::NAMES, MemoryMode::name);
        round_trip(UnwindMode::ALL, UnwindMode::NAMES, UnwindMode::name);
        round_trip(LeakKind::ALL, LeakKind::NAMES, LeakKind::name);
        round_trip(FailOn::ALL, FailOn::NAMES, FailOn::name);
    }

    #[test]
    fn names_are_what_users_type() {
        assert_eq!(MemoryMode::NAMES, ["full", "tables", "none"]);
        assert_eq!(UnwindMode::NAMES, ["dwarf", "fp", "none"]);
        assert_eq!(FailOn::NAMES, ["definite", "possible"]);
        assert_eq!(MemoryMode::default(), MemoryMode::Full);
        assert_eq!(UnwindMode::default(), UnwindMode::Dwarf);
    }

    #[test]
    fn unwind_words_round_trip() {
        for &m in UnwindMode::ALL {
            assert_eq!(UnwindMode::from_u32(m as u32), Some(m));
        }
        assert_eq!(UnwindMode::from_u32(3), None);
    }

    #[cfg(feature = "std")]
    #[test]
    fn unknown_names_say_what_was_expected() {
        let e = "most".parse::<MemoryMode>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"expected full, tables or none, found "most""#
        );
        assert_eq!(e.expected(), MemoryMode::NAMES);
        let e = "x".parse::<FailOn>().unwrap_err();
        assert_eq!(e.to_string(), r#"expected definite or possible, found "x""#);
    }

    #[test]
    fn fail_on_counts_this_kind_or_worse() {
        use LeakKind::*;
        let counted = |on: FailOn| {
            let mut v = [None; 4];
            for (slot, &k) in v.iter_mut().zip(LeakKind::ALL) {
                *slot = on.counts(k).then_some(k);
            }
            v
        };
        assert_eq!(
            counted(FailOn::Definite),
            [Some(Definite), Some(Indirect), None, None]
        );
        assert_eq!(
            counted(FailOn::Possible),
            [Some(Definite), Some(Indirect), Some(Possible), None]
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_spelling_is_the_name() {
        for &m in MemoryMode::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<MemoryMode>(&json).unwrap(), m);
        }
        for &k in LeakKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
    }
}
