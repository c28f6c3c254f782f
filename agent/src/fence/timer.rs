//! The fence's alarm, on `CLOCK_BOOTTIME` at an absolute instant.
//!
//! tokio's timers run on `CLOCK_MONOTONIC`, which stops while the machine is suspended: a
//! fence that slept "7 s more" would wake 7 s after the resume, although by the clock the
//! lease is judged on its deadline passed during the suspend, and a new leader may be working.
//! A timerfd on `CLOCK_BOOTTIME` armed at the absolute deadline is past due on resume and fires
//! at once.

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

/// A one-shot alarm at an absolute `CLOCK_BOOTTIME` instant.
pub struct BootAlarm {
    fd: AsyncFd<OwnedFd>,
}

impl BootAlarm {
    /// A disarmed alarm.
    pub fn new() -> std::io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Boottime,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self {
            fd: super::sys::readiness(fd)?,
        })
    }

    /// Arms it for `at` (absolute `CLOCK_BOOTTIME` microseconds), or disarms it for `None`. An
    /// instant already past fires at once.
    pub fn set(&self, at: Option<u64>) -> std::io::Result<()> {
        // A zero value disarms a timerfd: the earliest instant that still fires is 1 ns.
        let value = at.map_or(
            Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            |micros| Timespec {
                tv_sec: i64::try_from(micros / 1_000_000).unwrap_or(i64::MAX),
                tv_nsec: ((micros % 1_000_000) * 1_000).max(1) as _,
            },
        );
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &spec)?;
        Ok(())
    }

    /// Resolves when the armed instant has come (never while disarmed).
    pub async fn fired(&self) {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            let mut expirations = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                Ok(_) => return,
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(_) => return std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn boot_micros() -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
    }

    #[tokio::test]
    async fn fires_at_the_instant_and_at_once_when_it_is_past() {
        let alarm = BootAlarm::new().unwrap();
        alarm.set(Some(boot_micros() + 100_000)).unwrap();
        let start = std::time::Instant::now();
        alarm.fired().await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(95), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        alarm.set(Some(boot_micros() - 5_000_000)).unwrap();
        tokio::time::timeout(Duration::from_millis(200), alarm.fired())
            .await
            .expect("a past instant fires at once");
    }

    #[tokio::test]
    async fn a_disarmed_alarm_never_fires() {
        let alarm = BootAlarm::new().unwrap();
        alarm.set(Some(boot_micros() + 50_000)).unwrap();
        alarm.set(None).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), alarm.fired())
                .await
                .is_err()
        );
    }
}
