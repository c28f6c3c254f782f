//! The agent's only `unsafe` code: a hook run in the forked child between `fork` and `exec`,
//! which `std` can only offer as an `unsafe` function.
//!
//! The hook asks the kernel to SIGKILL the child when the fence dies (`PR_SET_PDEATHSIG`), so a
//! fence that is itself killed does not leave the child running unfenced.
#![allow(unsafe_code)]

use rustix::process::{Pid, Signal, getppid, set_parent_process_death_signal};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `command`'s process die by SIGKILL when `fence` (the calling process) dies.
///
/// The parent-death signal follows the *thread* that forked: call this, and spawn, from the
/// fence's main thread, which lives as long as the fence.
pub fn die_with(command: &mut Command, fence: Pid) {
    // SAFETY: the closure runs in the child after `fork`, where only async-signal-safe work is
    // allowed. It makes two raw system calls through rustix (`prctl` and `getppid`), allocates
    // nothing (an error built from an errno is not boxed) and takes no lock.
    unsafe {
        command.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The fence may have died between the fork and the prctl: then the signal was never
            // armed, and the child has already been re-parented.
            if getppid() != Some(fence) {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            Ok(())
        });
    }
}
