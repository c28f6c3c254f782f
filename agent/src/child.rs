//! The child command run while this agent leads (or holds a slot): started in its own process
//! group, stopped with SIGTERM to the whole group and SIGKILL after a grace period, so a shell
//! wrapper's children stop too.

use crate::error::AgentError;
use rustix::process::{Pid, Signal, kill_process_group};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running child.
pub struct Running {
    child: Child,
    group: Option<Pid>,
}

impl Running {
    /// Starts `argv` with `env` added to the agent's environment.
    pub fn spawn(argv: &[String], env: &[(&str, String)]) -> Result<Self, AgentError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| AgentError::usage("the child command is empty"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| {
            AgentError::runtime(format!("cannot start the child command \"{program}\": {e}"))
        })?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        tracing::info!(pid = child.id(), command = %argv.join(" "), "started the child command");
        Ok(Self { child, group })
    }

    /// Waits for the child to exit on its own.
    pub async fn wait(&mut self) -> ExitStatus {
        match self.child.wait().await {
            Ok(status) => status,
            Err(e) => {
                tracing::error!(error = %e, "cannot wait for the child command");
                ExitStatus::from_raw(1 << 8)
            }
        }
    }

    /// SIGTERM to the child's group, then SIGKILL if it is still running after `grace`.
    pub async fn stop(mut self, grace: Duration) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        self.signal(Signal::TERM);
        tracing::info!(grace = ?grace, "sent SIGTERM to the child command");
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(grace = ?grace, "the child command outlived its grace period: SIGKILL");
                self.signal(Signal::KILL);
                self.wait().await
            }
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(group) = self.group {
            // It may have exited just now; then there is nothing to signal.
            let _ = kill_process_group(group, signal);
        }
    }
}

/// The exit code a shell would report: the child's code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn passes_its_environment_and_exit_code() {
        let mut child = Running::spawn(
            &sh("test \"$LEASEHOLD_EPOCH\" = 7 && exit 42"),
            &[("LEASEHOLD_EPOCH", "7".into())],
        )
        .unwrap();
        assert_eq!(exit_code(child.wait().await), 42);
    }

    #[tokio::test]
    async fn stop_sends_sigterm_first() {
        let child = Running::spawn(&sh("trap 'exit 3' TERM; sleep 30 & wait"), &[]).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(exit_code(child.stop(Duration::from_secs(20)).await), 3);
    }

    #[tokio::test]
    async fn stop_kills_what_ignores_sigterm() {
        let child = Running::spawn(&sh("trap '' TERM; sleep 30"), &[]).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = child.stop(Duration::from_millis(200)).await;
        assert_eq!(exit_code(status), 128 + 9);
    }

    #[test]
    fn an_empty_command_is_a_usage_error() {
        let e = Running::spawn(&[], &[]).err().unwrap();
        assert_eq!(e.code, crate::ExitCode::Usage);
    }
}
