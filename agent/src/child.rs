//! The child command, run under a fence (see [`crate::fence`]): the agent starts its own binary
//! as the fence, hands it each new validity instant, asks it to stop, and reads its report. The
//! fence, not the agent, enforces the deadline, so the work stops by it even when the agent is
//! paused or dead.

use crate::cli::LogFormat;
use crate::duration;
use crate::error::AgentError;
use crate::fence::protocol::{Order, Report};
use leasehold_core::{StopCause, Timing};
use rustix::process::{Pid, Signal, kill_process_group};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::OwnedReadHalf;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The validity of work that no lease fences (a pool that proceeds without leases).
pub const UNBOUNDED: u64 = u64::MAX;

/// The grace period between SIGTERM and SIGKILL: `--grace-period` if given, else the core's
/// default ([`Timing::child_grace`], which also refuses a grace that leaves no time to renew).
pub fn grace_period(given: Option<Duration>, timing: &Timing) -> Result<Duration, AgentError> {
    timing
        .child_grace(given.map(duration::to_core))
        .map(duration::to_std)
        .map_err(|e| {
            AgentError::usage(format!(
                "--grace-period {}: {e}; give a shorter --grace-period (or a longer \
                 --renew-deadline)",
                given.map(duration::format).unwrap_or_default()
            ))
        })
}

/// How to start fences: this binary, with the agent's grace period and log settings.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The agent's `--log-format`, so the fence's lines look like the agent's.
    pub log_format: LogFormat,
    /// The agent's `--log-level`.
    pub log_level: tracing::Level,
}

/// How the child ended, from the fence's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every process of the work is gone.
    Exited {
        /// The child's exit code (128 + signal when a signal ended it).
        code: i32,
        /// Why it stopped.
        cause: StopCause,
    },
    /// The validity had run out when the fence got it: nothing was started.
    Refused,
}

/// A child command under its fence.
pub struct Running {
    fence: Child,
    orders: mpsc::UnboundedSender<Order>,
    reports: Lines<BufReader<OwnedReadHalf>>,
    group: Option<Pid>,
    program: String,
}

impl Launcher {
    /// Starts `argv` under a fence, with `env` added to the agent's environment, valid until
    /// `valid_until` (absolute `CLOCK_BOOTTIME` µs, or [`UNBOUNDED`]).
    pub fn spawn(
        &self,
        argv: &[String],
        env: &[(&str, String)],
        valid_until: u64,
    ) -> Result<Running, AgentError> {
        let program = argv
            .first()
            .ok_or_else(|| AgentError::usage("the child command is empty"))?
            .clone();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .and_then(|(ours, theirs)| ours.set_nonblocking(true).map(|()| (ours, theirs)))
            .and_then(|(ours, theirs)| Ok((tokio::net::UnixStream::from_std(ours)?, theirs)))
            .map_err(|e| AgentError::runtime(format!("cannot make a socket for the fence: {e}")))?;
        let mut command = Command::new(fence_program());
        command
            .arg0("leasehold")
            .arg("--log-format")
            .arg(match self.log_format {
                LogFormat::Human => "human",
                LogFormat::Json => "json",
            })
            .arg("--log-level")
            .arg(self.log_level.as_str())
            .arg("__fence")
            .arg("--grace-ms")
            .arg(self.grace.as_millis().to_string())
            .arg("--valid-until-us")
            .arg(valid_until.to_string())
            .arg("--")
            .args(argv)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            // Its own group: a Ctrl-C or a group kill aimed at the agent must reach the fence
            // only through the agent (a stop) or the agent's death (the socket closes).
            .process_group(0);
        let fence = command.spawn().map_err(|e| {
            AgentError::runtime(format!(
                "cannot start the fence for the child command \"{program}\": {e}"
            ))
        })?;
        let (reports, mut writer) = ours.into_split();
        let (orders, mut queued) = mpsc::unbounded_channel::<Order>();
        // Orders are written by their own task so a stopped fence never blocks the agent. The
        // socket's write side closes when the `Running` is dropped: the fence then stops the work.
        tokio::spawn(async move {
            while let Some(order) = queued.recv().await {
                if writer
                    .write_all(order.to_string().as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Running {
            fence,
            orders,
            reports: BufReader::new(reports).lines(),
            group: None,
            program,
        })
    }
}

/// This very binary: `/proc/self/exe` still names it after the file on disk was replaced (an
/// upgrade in place), which the path `current_exe` returns would not.
fn fence_program() -> std::path::PathBuf {
    let proc = std::path::PathBuf::from("/proc/self/exe");
    if proc.exists() {
        return proc;
    }
    std::env::current_exe().unwrap_or(proc)
}

impl Running {
    /// A renew succeeded: the work may run until `valid_until` (absolute `CLOCK_BOOTTIME` µs).
    pub fn extend(&self, valid_until: u64) {
        let _ = self.orders.send(Order::ValidUntil(valid_until));
    }

    /// Asks the fence to stop the work: SIGTERM now, SIGKILL after the grace period (or at the
    /// validity's end, if sooner). [`wait`](Self::wait) tells when it is gone.
    pub fn stop(&self) {
        let _ = self.orders.send(Order::Stop);
    }

    /// Waits until every process of the work is gone, and says how it ended. Cancel-safe.
    pub async fn wait(&mut self) -> Result<Ended, AgentError> {
        loop {
            match self.reports.next_line().await {
                Ok(Some(line)) => match Report::parse(&line) {
                    Some(Report::Started { pid }) => {
                        self.group = Pid::from_raw(pid);
                        tracing::info!(pid, command = %self.program, "started the child command");
                    }
                    Some(Report::Exited { code, cause }) => {
                        return Ok(Ended::Exited { code, cause });
                    }
                    Some(Report::Refused) => return Ok(Ended::Refused),
                    Some(Report::Failed { message }) => {
                        return Err(AgentError::runtime(format!(
                            "cannot start the child command \"{}\": {message}",
                            self.program
                        )));
                    }
                    None => tracing::warn!(line, "unexpected line from the fence"),
                },
                Ok(None) | Err(_) => return Err(self.fence_died().await),
            }
        }
    }

    /// The fence ended without a report: kill what it fenced, as far as the agent can see it.
    async fn fence_died(&mut self) -> AgentError {
        if let Some(group) = self.group {
            let _ = kill_process_group(group, Signal::KILL);
        }
        let status = match self.fence.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        };
        AgentError::runtime(format!(
            "the fence of the child command \"{}\" ended without a report ({status}); the \
             child's process group was killed",
            self.program
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(lease: u64, renew_ms: u64, retry_ms: u64) -> Timing {
        Timing::new(
            leasehold_core::Duration::from_secs(lease),
            leasehold_core::Duration::from_millis(renew_ms),
            leasehold_core::Duration::from_millis(retry_ms),
        )
        .unwrap()
    }

    #[test]
    fn the_default_grace_leaves_room_for_renews_before_sigterm() {
        assert_eq!(
            grace_period(None, &Timing::DEFAULT).unwrap(),
            Duration::from_secs(3),
            "client-go's 10 s / 2 s: 8 s of room, 3 s at most"
        );
        assert_eq!(
            grace_period(None, &timing(3, 2000, 500)).unwrap(),
            Duration::from_millis(750),
            "half of renew − retry when that is shorter"
        );
    }

    #[test]
    fn a_grace_that_leaves_no_time_to_renew_is_refused_naming_the_flag() {
        let t = Timing::DEFAULT;
        assert_eq!(
            grace_period(Some(Duration::from_millis(7999)), &t).unwrap(),
            Duration::from_millis(7999)
        );
        for refused in [
            Duration::ZERO,
            Duration::from_secs(8),
            Duration::from_secs(60),
        ] {
            let e = grace_period(Some(refused), &t).unwrap_err();
            assert_eq!(e.code, crate::ExitCode::Usage);
            assert!(e.message.starts_with("--grace-period"), "{e}");
            assert!(e.message.contains("10s − 2s = 8s"), "{e}");
        }
    }
}
