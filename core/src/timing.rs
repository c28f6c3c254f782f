//! Timing parameters and their validation, identical to client-go's `NewLeaderElector` checks so
//! a leasehold candidate and a client-go candidate accept the same configurations.

use core::fmt;
use embassy_time::{Duration, TICK_HZ};

/// client-go's `JitterFactor`: followers retry after `retry × (1 + U[0,1) × 1.2)`, and the renew
/// deadline must exceed `retry × 1.2` so a leader gets at least one jittered retry.
pub const JITTER_FACTOR_PERMILLE: u64 = 1200;

/// The shortest per-request timeout: below it, an API server that is merely busy would look
/// down.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The per-request timeout of work that races no deadline (a one-shot list or delete, which may
/// page through a large namespace).
pub const UNHURRIED_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest default grace period: client-go's 10 s renew deadline less its 2 s retry period
/// leaves 8 s, of which a 3 s stop keeps more than two renew attempts before SIGTERM.
pub const MAX_DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// client-go's `HealthzAdaptor` timeout: a leader is unhealthy once it has not renewed for a
/// lease duration plus this.
pub const HEALTHZ_SLACK: Duration = Duration::from_secs(20);

/// The one per-request timeout rule: half of the time a renewal has before it is too late
/// (`budget`), and at least [`MIN_REQUEST_TIMEOUT`]. A hung call then leaves time to retry once
/// before the budget runs out.
///
/// An election's budget is its renew deadline ([`Timing::request_timeout`], client-go's
/// `max(1 s, renew_deadline / 2)`); a heartbeat has no renew deadline, and its budget is its
/// renew interval ([`crate::Heartbeat::request_timeout`]): a renewal must answer well before the
/// next one is due.
pub fn request_timeout_within(budget: Duration) -> Duration {
    Duration::from_ticks(budget.as_ticks() / 2).max(MIN_REQUEST_TIMEOUT)
}

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
    /// The work's grace period between SIGTERM and SIGKILL / `--grace-period`.
    GracePeriod,
}

impl fmt::Display for TimingField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LeaseDuration => "lease duration",
            Self::RenewDeadline => "renew deadline",
            Self::RetryPeriod => "retry period",
            Self::RenewInterval => "renew interval",
            Self::GracePeriod => "grace period",
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
    /// A grace period of zero, or not shorter than `renew_deadline − retry_period`: the work
    /// would have no time to stop cleanly, or would be stopped before the first renew could
    /// extend it.
    GraceOutOfRange {
        /// The grace period given.
        grace: Duration,
        /// The renew deadline in force.
        renew_deadline: Duration,
        /// The retry period in force.
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
            Self::GraceOutOfRange {
                grace,
                renew_deadline,
                retry_period,
            } => write!(
                f,
                "grace period {} must be more than zero and shorter than renew deadline − retry \
                 period ({} − {} = {}): the work gets SIGTERM this long before the renew \
                 deadline, so a longer grace leaves no time to work and renew",
                Secs(grace),
                Secs(renew_deadline),
                Secs(retry_period),
                Secs(renew_room(renew_deadline, retry_period))
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

    /// How long a transport waits for one answer: client-go's `max(1 s, renew_deadline / 2)`
    /// (see [`request_timeout_within`]).
    pub fn request_timeout(&self) -> Duration {
        request_timeout_within(self.renew_deadline)
    }

    /// The grace period between SIGTERM and SIGKILL of the work a leader runs: `given`, or by
    /// default the smaller of [`MAX_DEFAULT_GRACE`] and half of `renew − retry`.
    ///
    /// The work's fence sends SIGTERM `grace` before the renew deadline, so a renew must succeed
    /// within `renew − grace` of the previous one or the work is stopped. A leader renews every
    /// retry period, so a grace of `renew − retry` or more would stop the work before even the
    /// first renew could extend it: refused, as is zero (no time to stop cleanly).
    pub fn child_grace(&self, given: Option<Duration>) -> Result<Duration, TimingError> {
        let room = renew_room(self.renew_deadline, self.retry_period);
        match given {
            None => Ok(MAX_DEFAULT_GRACE.min(Duration::from_ticks(room.as_ticks() / 2))),
            Some(grace) if grace.as_ticks() == 0 || grace >= room => {
                Err(TimingError::GraceOutOfRange {
                    grace,
                    renew_deadline: self.renew_deadline,
                    retry_period: self.retry_period,
                })
            }
            Some(grace) => Ok(grace),
        }
    }

    /// client-go's leader-election watchdog (`HealthzAdaptor`): a leader that has not renewed for
    /// this long is unhealthy, a lease duration plus [`HEALTHZ_SLACK`].
    pub fn healthz_after(&self) -> Duration {
        Duration::from_ticks(
            self.lease_duration
                .as_ticks()
                .saturating_add(HEALTHZ_SLACK.as_ticks()),
        )
    }
}

/// `renew − retry`: how long a leader's renewals have, after the first retry, before its
/// deadline. Validation keeps it positive (`renew > 1.2 × retry`).
fn renew_room(renew_deadline: Duration, retry_period: Duration) -> Duration {
    Duration::from_ticks(
        renew_deadline
            .as_ticks()
            .saturating_sub(retry_period.as_ticks()),
    )
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

    fn text(e: impl fmt::Display) -> String<300> {
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
    fn every_field_is_named_as_the_user_knows_it() {
        let names = [
            (TimingField::LeaseDuration, "lease duration"),
            (TimingField::RenewDeadline, "renew deadline"),
            (TimingField::RetryPeriod, "retry period"),
            (TimingField::RenewInterval, "renew interval"),
            (TimingField::GracePeriod, "grace period"),
        ];
        for (field, name) in names {
            assert_eq!(text(field).as_str(), name);
        }
        let err = TimingError::RenewNotBelowLease {
            renew_interval: secs(40),
            lease_duration: secs(40),
        };
        assert_eq!(
            text(err).as_str(),
            "renew interval 40s must be shorter than lease duration 40s"
        );
        assert_eq!(Timing::default(), Timing::DEFAULT);
    }

    #[test]
    fn lease_duration_must_be_whole_seconds_on_the_wire() {
        let err = Timing::new(Duration::from_millis(15_500), secs(10), secs(2)).unwrap_err();
        assert!(text(err).starts_with("lease duration 15.5s must be a whole number of seconds"));
    }

    #[test]
    fn the_request_timeout_is_half_the_budget_and_at_least_a_second() {
        assert_eq!(
            Timing::DEFAULT.request_timeout(),
            secs(5),
            "client-go: 10 s / 2"
        );
        let short = Timing::new(
            secs(2),
            Duration::from_millis(1_500),
            Duration::from_millis(500),
        );
        assert_eq!(short.unwrap().request_timeout(), secs(1), "never below 1 s");
        assert_eq!(request_timeout_within(secs(10)), secs(5));
        assert_eq!(request_timeout_within(Duration::from_ticks(0)), secs(1));
    }

    #[test]
    fn the_default_grace_leaves_room_for_renews_before_sigterm() {
        assert_eq!(
            Timing::DEFAULT.child_grace(None),
            Ok(secs(3)),
            "client-go's 10 s / 2 s: 8 s of room, 3 s at most"
        );
        let tight = Timing::new(
            secs(3),
            Duration::from_millis(2_000),
            Duration::from_millis(500),
        );
        assert_eq!(
            tight.unwrap().child_grace(None),
            Ok(Duration::from_millis(750)),
            "half of renew − retry when that is shorter"
        );
    }

    #[test]
    fn a_grace_that_leaves_no_time_to_renew_is_refused() {
        let t = Timing::DEFAULT;
        let given = Duration::from_millis(7_999);
        assert_eq!(t.child_grace(Some(given)), Ok(given));
        for refused in [Duration::from_ticks(0), secs(8), secs(60)] {
            let e = t.child_grace(Some(refused)).unwrap_err();
            assert!(matches!(e, TimingError::GraceOutOfRange { .. }), "{e:?}");
            assert!(text(e).contains("(10s − 2s = 8s)"), "{}", text(e));
        }
    }

    #[test]
    fn the_watchdog_fires_a_lease_duration_plus_20_seconds_without_a_renew() {
        assert_eq!(Timing::DEFAULT.healthz_after(), secs(35));
    }

    #[test]
    fn secs_display_trims_trailing_zeros() {
        assert_eq!(text(Secs(Duration::from_millis(250))).as_str(), "0.25s");
        assert_eq!(text(Secs(Duration::from_micros(1))).as_str(), "0.000001s");
        assert_eq!(text(Secs(secs(40))).as_str(), "40s");
    }
}
