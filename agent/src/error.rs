//! The agent's one error type and its exit codes (documented in README.md):
//! 0 success, 1 runtime failure, 2 usage or configuration, 3 permission.

use std::fmt;

/// How the process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Done, or stopped by a signal after releasing.
    Success = 0,
    /// The API server, the network or a child process failed at run time.
    Runtime = 1,
    /// Bad flags, a bad config file or invalid timing: nothing was sent to the API server.
    Usage = 2,
    /// RBAC denies a verb the agent needs (403) or the credentials are refused (401).
    Permission = 3,
}

/// An error to print before exiting with its code.
#[derive(Debug)]
pub struct AgentError {
    /// The exit code.
    pub code: ExitCode,
    /// The message: what went wrong and how to fix it.
    pub message: String,
}

impl AgentError {
    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Usage,
            message: message.into(),
        }
    }

    /// A run-time failure (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Runtime,
            message: message.into(),
        }
    }

    /// A permission failure (exit 3).
    pub fn permission(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Permission,
            message: message.into(),
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {}
