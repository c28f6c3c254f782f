//! The work as a tree of processes under the fence: the child's process group, plus whatever
//! left the group (`setsid`, a double fork) and was re-parented to the fence, a child subreaper.
//!
//! Every descendant of the child that loses its parent is re-parented to the fence, so "nothing
//! of the work is left" is exactly "the fence has no children": `wait` answers `ECHILD`.

use rustix::io::Errno;
use rustix::process::{
    Pid, Signal, WaitOptions, getpgid, getpid, kill_process, kill_process_group,
};
use std::collections::HashSet;

/// Whether anything of the work is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    /// Some process of the work runs (or awaits reaping).
    Some,
    /// Every process has been reaped.
    Nothing,
}

/// The child's process tree, as the fence signals and reaps it.
pub struct Tree {
    main: Pid,
    main_code: Option<i32>,
    /// The strongest signal sent so far; processes adopted later get it too.
    level: Option<Signal>,
    /// Processes already sent SIGTERM: a second one can make a program skip its clean-up.
    terminated: HashSet<Pid>,
}

impl Tree {
    /// The tree of `main`, the child started in its own process group.
    pub fn new(main: Pid) -> Self {
        Self {
            main,
            main_code: None,
            level: None,
            terminated: HashSet::new(),
        }
    }

    /// The main process's exit code as a shell reports it, once it has been reaped.
    pub fn main_code(&self) -> Option<i32> {
        self.main_code
    }

    /// Reaps every process of the tree that has exited.
    pub fn reap(&mut self) -> Left {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    self.terminated.remove(&pid);
                    if pid == self.main {
                        self.main_code = Some(match status.terminating_signal() {
                            Some(signal) => 128 + signal,
                            None => status.exit_status().unwrap_or(1),
                        });
                    }
                }
                Ok(None) => return Left::Some,
                Err(Errno::CHILD) => return Left::Nothing,
                Err(Errno::INTR) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot reap the child command's processes");
                    return Left::Some;
                }
            }
        }
    }

    /// Sends `signal` to the child's process group and to every process the fence adopted.
    pub fn signal(&mut self, signal: Signal) {
        if self.level != Some(Signal::KILL) {
            self.level = Some(signal);
        }
        // ESRCH: the group is empty (its members may have left it, or be zombies' ids).
        let _ = kill_process_group(self.main, signal);
        self.follow_up();
    }

    /// Gives the strongest signal sent so far to the processes adopted since: a process that
    /// left the group is re-parented to the fence only when its parent dies.
    pub fn follow_up(&mut self) {
        let Some(signal) = self.level else {
            return;
        };
        if signal == Signal::KILL {
            let _ = kill_process_group(self.main, signal);
        }
        for pid in children() {
            let due = signal == Signal::KILL
                // A member of the group got the group's SIGTERM already.
                || (self.terminated.insert(pid) && getpgid(Some(pid)).ok() != Some(self.main));
            if due {
                // A child cannot be reused for another process before the fence reaps it.
                let _ = kill_process(pid, signal);
            }
        }
    }
}

/// The fence's children, from `/proc/*/stat` (the parent of a process adopted by a subreaper can
/// be any of its threads, so the per-thread `children` lists are not enough).
fn children() -> Vec<Pid> {
    let me = getpid().as_raw_nonzero().get();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        tracing::error!(
            "cannot read /proc: processes that left the child's group are not signalled"
        );
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = Pid::from_raw(entry.file_name().to_str()?.parse().ok()?)?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            if parent_in_stat(&stat)? == me {
                Some(pid)
            } else {
                None
            }
        })
        .collect()
}

/// The parent pid in a `/proc/PID/stat` line: the second field after the command name, which is
/// in parentheses and may itself contain spaces and parentheses.
fn parent_in_stat(stat: &str) -> Option<i32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_after_a_command_name_with_spaces_and_parentheses() {
        assert_eq!(
            parent_in_stat("4242 (sh) S 17 4242 4242 0 -1 4194560 0 0"),
            Some(17)
        );
        assert_eq!(parent_in_stat("4243 (a) b (c) R 99 4243 17 0"), Some(99));
        assert_eq!(parent_in_stat("garbage"), None);
    }

    #[test]
    fn this_process_children_are_found_through_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        assert!(children().contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
