//! Timing parameters and their validation, identical to client-go's `NewLeaderElector` checks so
//! a leasehold candidate and a client-go candidate accept the same configurations.

use core::fmt;
use embassy_time::{Duration, TICK_HZ};

/// client-go's `JitterFactor`: followers retry after `retry × (1 + U[0,1) × 1.2)`, and the renew
/// deadline must exceed `retry × 1.2` so a leader gets at least one jittered retry.
pub const JITTER_FACTOR_PERMILLE: u64 = 1200;

/// Lease duration, renew deadline and retry period of one election.
///
/// The only way to build one is [`Timing::new`] (or [`Timing::DEFAULT`]), so a `Timing` value is
/// always valid and no API call is ever made with a configuration client-go would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// Which timing value an error is about; its `Display` is the user-facing name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimingField {
    /// `lease_duration` / `--lease-duration` / `leader_leaseduration`.
    LeaseDuration,
    /// `renew_deadline` / `--renew-deadline` / `leader_renewdeadline`.
    RenewDeadline,
    /// `retry_period` / `--retry-period` / `leader_retryperiod`.
    RetryPeriod,
    /// A heartbeat's `renew_interval` / `--renew-interval`.
    RenewInterval,
}

impl fmt::Display for TimingField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LeaseDuration => "lease duration",
            Self::RenewDeadline => "renew deadline",
            Self::RetryPeriod => "retry period",
            Self::RenewInterval => "renew interval",
        })
    }
}

/// A timing set that client-go (or the Lease API) would refuse. The message names the rule and
/// the values, so the user knows which flag to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimingError {
    /// A value is zero.
    NotPositive {
        /// The offending value.
        field: TimingField,
    },
    /// The lease duration is not a whole number of seconds, or more than `i32::MAX` seconds:
    /// `leaseDurationSeconds` is an int32 count of seconds on the wire.
    LeaseNotWholeSeconds {
        /// The lease duration given.
        lease_duration: Duration,
    },
    /// `lease_duration <= renew_deadline`: a follower could take over while the leader still
    /// believes it leads.
    LeaseNotAboveRenew {
        /// The lease duration given.
        lease_duration: Duration,
        /// The renew deadline given.
        renew_deadline: Duration,
    },
    /// A heartbeat's renew interval is not shorter than its lease duration: the lease would lapse
    /// between renewals.
    RenewNotBelowLease {
        /// The renew interval given.
        renew_interval: Duration,
        /// The lease duration given.
        lease_duration: Duration,
    },
    /// `renew_deadline <= retry_period × 1.2`: the leader would not get a jittered retry before
    /// its deadline.
    RenewNotAboveJitteredRetry {
        /// The renew deadline given.
        renew_deadline: Duration,
        /// The retry period given.
        retry_period: Duration,
    },
}

impl fmt::Display for TimingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotPositive { field } => write!(f, "{field} must be greater than zero"),
            Self::LeaseNotWholeSeconds { lease_duration } => write!(
                f,
                "lease duration {} must be a whole number of seconds between 1s and {}s \
                 (leaseDurationSeconds is an int32 count of seconds)",
                Secs(lease_duration),
                i32::MAX
            ),
            Self::LeaseNotAboveRenew {
                lease_duration,
                renew_deadline,
            } => write!(
                f,
                "lease duration {} must be greater than renew deadline {}",
                Secs(lease_duration),
                Secs(renew_deadline)
            ),
            Self::RenewNotBelowLease {
                renew_interval,
                lease_duration,
            } => write!(
                f,
                "renew interval {} must be shorter than lease duration {}",
                Secs(renew_interval),
                Secs(lease_duration)
            ),
            Self::RenewNotAboveJitteredRetry {
                renew_deadline,
                retry_period,
            } => write!(
                f,
                "renew deadline {} must be greater than retry period {} × 1.2 = {}",
                Secs(renew_deadline),
                Secs(retry_period),
                Secs(Duration::from_ticks(mul_div(
                    retry_period.as_ticks(),
                    JITTER_FACTOR_PERMILLE,
                    1000
                )))
            ),
        }
    }
}

impl core::error::Error for TimingError {}

impl Timing {
    /// client-go's and Elastic Agent's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub const DEFAULT: Self = Self {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    /// Validates a timing set with client-go's rules: every value above zero,
    /// `lease > renew`, and `renew > retry × 1.2` computed exactly as client-go does it (a float
    /// product truncated to nanoseconds). The lease duration must also be whole seconds, its unit
    /// on the wire.
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, TimingError> {
        for (value, field) in [
            (lease_duration, TimingField::LeaseDuration),
            (renew_deadline, TimingField::RenewDeadline),
            (retry_period, TimingField::RetryPeriod),
        ] {
            if value.as_ticks() == 0 {
                return Err(TimingError::NotPositive { field });
            }
        }
        if lease_duration <= renew_deadline {
            return Err(TimingError::LeaseNotAboveRenew {
                lease_duration,
                renew_deadline,
            });
        }
        let retry_ns = to_nanos(retry_period);
        // client-go: `RenewDeadline <= time.Duration(JitterFactor * float64(RetryPeriod))`.
        let jittered_ns = (1.2f64 * retry_ns as f64) as u64;
        if to_nanos(renew_deadline) <= jittered_ns {
            return Err(TimingError::RenewNotAboveJitteredRetry {
                renew_deadline,
                retry_period,
            });
        }
        let whole = lease_duration.as_ticks() % TICK_HZ == 0;
        if !whole || lease_duration.as_ticks() / TICK_HZ > i32::MAX as u64 {
            return Err(TimingError::LeaseNotWholeSeconds { lease_duration });
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }

    /// How long a holder's claim lasts after it was last seen renewed.
    pub const fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long a leader keeps acting without a successful renew.
    pub const fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// Base interval between tries.
    pub const fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// `leaseDurationSeconds` to write.
    pub const fn lease_duration_seconds(&self) -> u32 {
        (self.lease_duration.as_ticks() / TICK_HZ) as u32
    }
}

impl Default for Timing {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `value × num / den` without intermediate overflow, saturating at `u64::MAX`.
pub(crate) fn mul_div(value: u64, num: u64, den: u64) -> u64 {
    let wide = u128::from(value) * u128::from(num) / u128::from(den);
    u64::try_from(wide).unwrap_or(u64::MAX)
}

fn to_nanos(d: Duration) -> u64 {
    mul_div(d.as_ticks(), 1_000_000_000, TICK_HZ)
}

/// Displays a duration in seconds with up to six decimals ("10s", "10.8s", "0.25s"), the form
/// users type in flags and config files.
#[derive(Clone, Copy, Debug)]
pub struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = mul_div(self.0.as_ticks(), 1_000_000, TICK_HZ);
        let (whole, mut frac) = (micros / 1_000_000, micros % 1_000_000);
        if frac == 0 {
            return write!(f, "{whole}s");
        }
        let mut digits = 6;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{whole}.{frac:0digits$}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;
    use heapless::String;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn text(e: impl fmt::Display) -> String<200> {
        let mut s = String::new();
        write!(s, "{e}").unwrap();
        s
    }

    #[test]
    fn defaults_are_client_go_defaults_and_valid() {
        let t = Timing::new(secs(15), secs(10), secs(2)).unwrap();
        assert_eq!(t, Timing::DEFAULT);
        assert_eq!(t.lease_duration_seconds(), 15);
    }

    #[test]
    fn renew_must_exceed_retry_times_jitter_factor() {
        let err = Timing::new(secs(15), secs(10), secs(9)).unwrap_err();
        assert_eq!(
            text(err).as_str(),
            "renew deadline 10s must be greater than retry period 9s × 1.2 = 10.8s"
        );
        // Exactly 1.2 × retry is refused, as client-go's `<=` does.
        assert!(Timing::new(secs(15), Duration::from_millis(12_000), secs(10)).is_err());
        assert!(Timing::new(secs(15), Duration::from_millis(12_001), secs(10)).is_ok());
    }

    #[test]
    fn lease_must_exceed_renew() {
        let err = Timing::new(secs(10), secs(10), secs(2)).unwrap_err();
        assert_eq!(
            text(err).as_str(),
            "lease duration 10s must be greater than renew deadline 10s"
        );
    }

    #[test]
    fn zero_values_are_refused_naming_the_field() {
        let err = Timing::new(secs(15), secs(10), secs(0)).unwrap_err();
        assert_eq!(text(err).as_str(), "retry period must be greater than zero");
        assert_eq!(
            Timing::new(secs(0), secs(10), secs(2)),
            Err(TimingError::NotPositive {
                field: TimingField::LeaseDuration
            })
        );
    }

    #[test]
    fn lease_duration_must_be_whole_seconds_on_the_wire() {
        let err = Timing::new(Duration::from_millis(15_500), secs(10), secs(2)).unwrap_err();
        assert!(text(err).starts_with("lease duration 15.5s must be a whole number of seconds"));
    }

    #[test]
    fn secs_display_trims_trailing_zeros() {
        assert_eq!(text(Secs(Duration::from_millis(250))).as_str(), "0.25s");
        assert_eq!(text(Secs(Duration::from_micros(1))).as_str(), "0.000001s");
        assert_eq!(text(Secs(secs(40))).as_str(), "40s");
    }
}
