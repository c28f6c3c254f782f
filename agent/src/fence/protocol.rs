//! The lines the agent and its fence exchange over the fence's stdin, a Unix socket: orders one
//! way, reports the other, one per line, so that either side can be read with `lines()`.
//!
//! Agent to fence: the validity instant after each renew, as absolute `CLOCK_BOOTTIME`
//! microseconds (a bare number), or `stop`. The socket closing means the agent died.
//! Fence to agent: `started PID`, then `exited CODE CAUSE` once nothing of the work is left; or
//! `refused` (the validity had already run out: nothing was started), or `failed MESSAGE` (the
//! command could not be started).

use leasehold_core::StopCause;
use std::fmt;

/// What the agent tells its fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// A renew succeeded: the work may run until this absolute `CLOCK_BOOTTIME` instant, in µs.
    ValidUntil(u64),
    /// Stop the work within the grace period.
    Stop,
}

impl Order {
    /// Reads one line (without its newline); `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        match line.trim() {
            "stop" => Some(Self::Stop),
            micros => micros.parse().ok().map(Self::ValidUntil),
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ValidUntil(micros) => writeln!(f, "{micros}"),
            Self::Stop => writeln!(f, "stop"),
        }
    }
}

/// What the fence tells the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The child runs as `pid`, which is also its process group.
    Started {
        /// The child's pid.
        pid: i32,
    },
    /// Every process of the work has been reaped.
    Exited {
        /// The child's exit code as a shell reports it (128 + signal when a signal ended it).
        code: i32,
        /// Why it ended.
        cause: StopCause,
    },
    /// The validity had run out before the start: nothing was started.
    Refused,
    /// The command could not be started.
    Failed {
        /// Why, on one line.
        message: String,
    },
}

impl Report {
    /// Reads one line (without its newline); `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let (word, rest) = line
            .trim_end()
            .split_once(' ')
            .unwrap_or((line.trim_end(), ""));
        match word {
            "started" => rest.parse().ok().map(|pid| Self::Started { pid }),
            "exited" => {
                let (code, cause) = rest.split_once(' ')?;
                Some(Self::Exited {
                    code: code.parse().ok()?,
                    cause: cause_from_name(cause)?,
                })
            }
            "refused" if rest.is_empty() => Some(Self::Refused),
            "failed" => Some(Self::Failed {
                message: rest.to_owned(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started { pid } => writeln!(f, "started {pid}"),
            Self::Exited { code, cause } => writeln!(f, "exited {code} {}", cause_name(*cause)),
            Self::Refused => writeln!(f, "refused"),
            Self::Failed { message } => {
                let one_line: String = message
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                writeln!(f, "failed {one_line}")
            }
        }
    }
}

/// The name of a stop cause, in reports and logs.
pub fn cause_name(cause: StopCause) -> &'static str {
    match cause {
        StopCause::Expired => "expired",
        StopCause::Stopped => "stopped",
        StopCause::HolderGone => "holder-gone",
        StopCause::Exited => "exited",
    }
}

fn cause_from_name(name: &str) -> Option<StopCause> {
    [
        StopCause::Expired,
        StopCause::Stopped,
        StopCause::HolderGone,
        StopCause::Exited,
    ]
    .into_iter()
    .find(|c| cause_name(*c) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_read_back_what_is_written() {
        for order in [
            Order::ValidUntil(0),
            Order::ValidUntil(u64::MAX),
            Order::Stop,
        ] {
            let line = order.to_string();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Order::parse(line.trim_end()), Some(order));
        }
        assert_eq!(Order::parse("-1"), None);
        assert_eq!(Order::parse("soon"), None);
        assert_eq!(Order::parse(""), None);
    }

    #[test]
    fn reports_read_back_what_is_written() {
        let reports = [
            Report::Started { pid: 4242 },
            Report::Exited {
                code: 143,
                cause: StopCause::Expired,
            },
            Report::Exited {
                code: 0,
                cause: StopCause::HolderGone,
            },
            Report::Refused,
            Report::Failed {
                message: "No such file or directory (os error 2)".into(),
            },
        ];
        for report in reports {
            let line = report.to_string();
            assert_eq!(Report::parse(line.trim_end()), Some(report));
        }
        assert_eq!(Report::parse("exited 1 sideways"), None);
        assert_eq!(Report::parse("started"), None);
        assert_eq!(Report::parse("hello"), None);
    }

    #[test]
    fn a_failure_message_stays_on_one_line() {
        let line = Report::Failed {
            message: "bad\nexited 0 exited".into(),
        }
        .to_string();
        assert_eq!(line, "failed bad exited 0 exited\n");
    }
}
