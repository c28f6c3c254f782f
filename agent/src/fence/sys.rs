//! The agent's only `unsafe` code, two calls that `std` and tokio offer only as `unsafe`
//! functions:
//!
//! - a hook run in the forked child between `fork` and `exec`, which asks the kernel to SIGKILL
//!   the child when the fence dies (`PR_SET_PDEATHSIG`), so a fence that is itself killed does
//!   not leave the child running unfenced;
//! - the registration of the fence's timer descriptor with tokio's reactor.
#![allow(unsafe_code)]

use rustix::process::{Pid, Signal, getppid, set_parent_process_death_signal};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use tokio::io::unix::AsyncFd;

/// Registers `fd` with tokio's reactor, so that its readiness can be awaited.
pub fn readiness(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: tokio asks that the descriptor stay open and the same for as long as it is
    // registered. An `OwnedFd` owns its descriptor: it stays open until the `AsyncFd` (which
    // owns the `OwnedFd`) drops it, after deregistering it, and `as_raw_fd` always returns it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

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
