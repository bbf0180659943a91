//! `flagctl explain`: the decision path of one flag for one user.

use std::path::Path;

use super::CtlError;

/// Explains `key` for `user`.
pub async fn run(
    key: &str,
    _user: &str,
    _context: Option<&str>,
    _file: Option<&Path>,
    _table: Option<&str>,
) -> Result<(), CtlError> {
    Err(CtlError::input(key, "-", "explain is not implemented yet"))
}
