//! Checks of single fields that every section's validator shares: safe names, and fields
//! given where they mean nothing. Each failure is a [`Problem`] naming the field's path.
//!
//! Kept apart from [`validate`](super::validate), which calls the section validators
//! ([`limiters`](super::limiters), [`traffic`](super::traffic)), so those depend on this
//! module and `validate` on them, never both ways.

use super::error::Problem;

/// Names become directory names and CSV cells: keep them to a safe alphabet.
pub(super) fn check_name(path: &str, name: &str) -> Result<String, Problem> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Problem::new(
            path,
            format!(
                "invalid name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        ))
    }
}

/// `Ok` when the field at `path` is absent; otherwise a problem saying it is not used
/// `why` (e.g. `by target = "mock"`).
pub(super) fn not_used(path: String, present: bool, why: &str) -> Result<(), Problem> {
    if present {
        Err(Problem::new(path, format!("not used {why}")))
    } else {
        Ok(())
    }
}
