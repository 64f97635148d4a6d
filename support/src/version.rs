//! A release number, as users write it (`0.27.1` or `v0.27.1`) and as the Go module proxy
//! names it (`v0.27.1`): three numbers, compared as numbers.

use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version { major, minor, patch }
    }

    /// The module version the Go module proxy serves it as: `v0.27.1`.
    pub fn tag(&self) -> String {
        format!("v{self}")
    }

    /// The same major.minor series (`0.27.1` and `0.27.0`).
    pub fn same_series(&self, other: &Version) -> bool {
        (self.major, self.minor) == (other.major, other.minor)
    }
}

/// The release a word begins with, as programs print their own: `2.25.0pre2024…` is 2.25.0,
/// `1.22rc1` is 1.22.0 (a missing patch number counts as 0); `None` without major and minor.
pub fn leading(word: &str) -> Option<Version> {
    let numbers: Vec<u32> = word
        .split('.')
        .map(|part| part.chars().take_while(char::is_ascii_digit).collect::<String>())
        .take_while(|digits| !digits.is_empty())
        .take(3)
        .map(|digits| digits.parse().unwrap_or(u32::MAX))
        .collect();
    match numbers.as_slice() {
        [major, minor] => Some(Version::new(*major, *minor, 0)),
        [major, minor, patch] => Some(Version::new(*major, *minor, *patch)),
        _ => None,
    }
}

impl fmt::Display for Version {
    /// Bare, as the programs report themselves: `0.27.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = anyhow::Error;

    /// `0.27.1` or `v0.27.1`; nothing else (no `0.27`, no `-rc.1`, no spaces inside).
    fn from_str(text: &str) -> Result<Version> {
        let bare = text.trim().strip_prefix('v').unwrap_or(text.trim());
        let parts: Vec<&str> = bare.split('.').collect();
        let number = |p: &str| -> Option<u32> {
            (!p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0')))
                .then(|| p.parse().ok())
                .flatten()
        };
        match parts.as_slice() {
            [a, b, c] => match (number(a), number(b), number(c)) {
                (Some(major), Some(minor), Some(patch)) => Ok(Version { major, minor, patch }),
                _ => bail!("{text:?} is not a release number"),
            },
            _ => bail!("{text:?} is not a release number"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_numbers_parse_with_or_without_their_v() {
        assert_eq!("0.27.1".parse::<Version>().unwrap(), Version::new(0, 27, 1));
        assert_eq!("v1.98.10".parse::<Version>().unwrap(), Version::new(1, 98, 10));
        assert_eq!(Version::new(0, 27, 1).tag(), "v0.27.1");
        assert_eq!(Version::new(1, 90, 9).to_string(), "1.90.9");
        for bad in ["0.27", "0.27.1.2", "0.27.x", "vv0.27.1", "0.27.1-rc.1", "", "1..2", "01.2.3", "0.27. 1", "latest"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert!(Version::new(1, 100, 0) > Version::new(1, 98, 10));
        assert!(Version::new(1, 80, 3) >= Version::new(1, 80, 0));
        assert!(Version::new(0, 27, 1).same_series(&Version::new(0, 27, 0)));
    }
}
