//! The one way a command ends other than success or an error to report: an exit code
//! chosen after it printed what it had to say (a failure reported line by line, or
//! `plan --detailed-exitcode` finding changes).

/// Exit with this code; the command already said why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl Exit {
    /// Something failed and was reported (a checked file that differs, a damaged store).
    pub const FAILURE: Exit = Exit(1);
    /// `--detailed-exitcode`: there are changes (as `terraform plan`).
    pub const CHANGES: Exit = Exit(2);
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {} (reported above)", self.0)
    }
}

impl std::error::Error for Exit {}
