//! Cron expressions as people write them, normalised into the form plans carry.
//!
//! People write crontab: five fields, an optional leading seconds field, `@daily`-style macros,
//! and day-of-week numbers where 0 and 7 are Sunday. The `cron` crate the agent schedules with
//! wants six fields and counts day-of-week from 1 = Sunday. The normalised form writes
//! day-of-week as names (`Mon-Fri`), which both dialects read the same way, so a plan is
//! unambiguous to the agent and to the person reading `holdfast plan`.

use std::str::FromStr;

use chrono::{TimeZone, Utc};

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 0 1 1 *"),
    ("@annually", "0 0 0 1 1 *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@weekly", "0 0 0 * * Sun"),
    ("@daily", "0 0 0 * * *"),
    ("@midnight", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
];

/// Why a cron expression or a time zone is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CronSpecError {
    #[error("unknown cron macro `{expression}`; expected one of {expected}")]
    UnknownMacro {
        expression: String,
        /// The known macros, comma-separated.
        expected: String,
    },
    #[error(
        "`{expression}` has {fields} fields; expected 5 (minute hour day-of-month month \
         day-of-week), 6 with a leading seconds field, or a macro such as @daily"
    )]
    FieldCount { expression: String, fields: usize },
    #[error("invalid day-of-week `{field}` in `{expression}`: {source}")]
    DayOfWeek {
        field: String,
        expression: String,
        #[source]
        source: DayOfWeekError,
    },
    #[error("invalid {name} `{field}` in `{expression}`: {source}")]
    Field {
        /// What the field holds: `minute`, `hour`, …
        name: &'static str,
        field: String,
        expression: String,
        #[source]
        source: FieldError,
    },
    /// What the `cron` crate refuses after our own checks passed; its messages can span lines.
    #[error("invalid cron expression `{expression}`: {}", one_line(&source.to_string()))]
    Invalid {
        expression: String,
        #[source]
        source: cron::error::Error,
    },
    #[error("cron expression `{expression}` never fires")]
    NeverFires { expression: String },
    #[error("unknown time zone `{name}`; use an IANA name such as `UTC` or `Europe/Berlin`")]
    UnknownTimeZone { name: String },
}

/// What is wrong with a crontab day-of-week field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DayOfWeekError {
    #[error("step `{0}` is not a positive number")]
    Step(String),
    #[error("range `{0}` runs backwards")]
    BackwardsRange(String),
    #[error("day `{0}` is out of range 0-7")]
    DayOutOfRange(usize),
    #[error("`{0}` is not a day (0-7 or Sun..Sat)")]
    NotADay(String),
}

/// What is wrong with a seconds, minute, hour, day-of-month or month field. Ranges are
/// inclusive, as crontab(5) writes them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("`{value}` is out of range {range}")]
    OutOfRange { value: String, range: &'static str },
    #[error("`{value}` is not a value of {range}")]
    NotAValue { value: String, range: &'static str },
    #[error("step `{step}` is out of range 1-{max}")]
    Step { step: String, max: u32 },
    #[error("range `{0}` runs backwards")]
    BackwardsRange(String),
    #[error("the field is empty")]
    Empty,
}

/// The values one crontab field takes.
struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    /// The range as messages state it.
    range: &'static str,
    /// Month names (`Jan`, `January`) are accepted besides numbers.
    month_names: bool,
    /// `?` (no specific value) is accepted.
    any: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const MONTH_FULL_NAMES: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Seconds, minute, hour, day of month and month, in the order of the six-field form.
const FIELDS: [FieldKind; 5] = [
    FieldKind {
        name: "seconds",
        min: 0,
        max: 59,
        range: "0-59",
        month_names: false,
        any: false,
    },
    FieldKind {
        name: "minute",
        min: 0,
        max: 59,
        range: "0-59",
        month_names: false,
        any: false,
    },
    FieldKind {
        name: "hour",
        min: 0,
        max: 23,
        range: "0-23",
        month_names: false,
        any: false,
    },
    FieldKind {
        name: "day-of-month",
        min: 1,
        max: 31,
        range: "1-31",
        month_names: false,
        any: true,
    },
    FieldKind {
        name: "month",
        min: 1,
        max: 12,
        range: "1-12 or Jan-Dec",
        month_names: true,
        any: false,
    },
];

impl FieldKind {
    /// Checks a field (lists, ranges, steps) the way the `cron` crate reads it, so that its
    /// errors, which state exclusive bounds as inclusive ones and span lines, are never seen.
    fn check(&self, field: &str) -> Result<(), FieldError> {
        if field.is_empty() {
            return Err(FieldError::Empty);
        }
        for item in field.split(',') {
            let range = match item.split_once('/') {
                Some((range, step)) => {
                    let valid = step.bytes().all(|b| b.is_ascii_digit())
                        && step
                            .parse::<u32>()
                            .is_ok_and(|s| (1..=self.max).contains(&s));
                    if !valid {
                        return Err(FieldError::Step {
                            step: step.to_string(),
                            max: self.max,
                        });
                    }
                    range
                }
                None => item,
            };
            if range == "*" || (self.any && range == "?") {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    if self.value(a)? > self.value(b)? {
                        return Err(FieldError::BackwardsRange(range.to_string()));
                    }
                }
                None => {
                    self.value(range)?;
                }
            }
        }
        Ok(())
    }

    fn value(&self, text: &str) -> Result<u32, FieldError> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u32>() {
                Ok(n) if (self.min..=self.max).contains(&n) => Ok(n),
                _ => Err(FieldError::OutOfRange {
                    value: text.to_string(),
                    range: self.range,
                }),
            };
        }
        let lower = text.to_ascii_lowercase();
        let month = MONTH_NAMES
            .iter()
            .position(|n| *n == lower)
            .or_else(|| MONTH_FULL_NAMES.iter().position(|n| *n == lower));
        match month.filter(|_| self.month_names) {
            Some(i) => Ok(i as u32 + 1),
            None => Err(FieldError::NotAValue {
                value: text.to_string(),
                range: self.range,
            }),
        }
    }
}

/// A message of several lines as one, for diagnostics that must fit a line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A valid cron expression in normalised six-field form.
#[derive(Clone, Debug)]
pub struct CronSpec {
    pub normalized: String,
    pub schedule: cron::Schedule,
}

/// Parses and normalises what a Schedule's `cron` says.
pub fn parse(expression: &str) -> Result<CronSpec, CronSpecError> {
    let expression = expression.trim();
    let normalized = if expression.starts_with('@') {
        match MACROS.iter().find(|(name, _)| *name == expression) {
            Some((_, fields)) => fields.to_string(),
            None => {
                let names: Vec<&str> = MACROS.iter().map(|(n, _)| *n).collect();
                return Err(CronSpecError::UnknownMacro {
                    expression: expression.to_string(),
                    expected: names.join(", "),
                });
            }
        }
    } else {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(CronSpecError::FieldCount {
                    expression: expression.to_string(),
                    fields: n,
                });
            }
        };
        for (kind, field) in FIELDS
            .iter()
            .zip(std::iter::once(seconds).chain(rest[..4].iter().copied()))
        {
            kind.check(field).map_err(|source| CronSpecError::Field {
                name: kind.name,
                field: field.to_string(),
                expression: expression.to_string(),
                source,
            })?;
        }
        let day_of_week = day_of_week(rest[4]).map_err(|source| CronSpecError::DayOfWeek {
            field: rest[4].to_string(),
            expression: expression.to_string(),
            source,
        })?;
        format!(
            "{seconds} {} {} {} {} {day_of_week}",
            rest[0], rest[1], rest[2], rest[3]
        )
    };
    let schedule =
        cron::Schedule::from_str(&normalized).map_err(|source| CronSpecError::Invalid {
            expression: expression.to_string(),
            source,
        })?;
    // From a fixed moment, so that validation does not depend on the clock.
    let epoch = Utc
        .timestamp_opt(946_684_800, 0)
        .single()
        .unwrap_or_default(); // 2000-01-01
    if schedule.after(&epoch).next().is_none() {
        return Err(CronSpecError::NeverFires {
            expression: expression.to_string(),
        });
    }
    Ok(CronSpec {
        normalized,
        schedule,
    })
}

/// Checks an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<chrono_tz::Tz, CronSpecError> {
    chrono_tz::Tz::from_str(name).map_err(|_| CronSpecError::UnknownTimeZone {
        name: name.to_string(),
    })
}

/// Rewrites a crontab day-of-week field (0–7, names, ranges, steps, lists) as names.
fn day_of_week(field: &str) -> Result<String, DayOfWeekError> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: usize = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| DayOfWeekError::Step(step.to_string()))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (first, last) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (day(a)?, day(b)?);
            if a > b {
                return Err(DayOfWeekError::BackwardsRange(range.to_string()));
            }
            (a, b)
        } else {
            let d = day(range)?;
            // `1/2` means from Monday to the end of the week, every second day.
            (d, if step.is_some() { 6 } else { d })
        };
        for d in (first..=last).step_by(step.unwrap_or(1)) {
            days[d % 7] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".into());
    }
    // Runs of three or more consecutive days become ranges, for people reading plans.
    let mut parts = Vec::new();
    let mut d = 0;
    while d < 7 {
        if !days[d] {
            d += 1;
            continue;
        }
        let start = d;
        while d + 1 < 7 && days[d + 1] {
            d += 1;
        }
        match d - start {
            0 => parts.push(DAY_NAMES[start].to_string()),
            1 => parts.push(format!("{},{}", DAY_NAMES[start], DAY_NAMES[d])),
            _ => parts.push(format!("{}-{}", DAY_NAMES[start], DAY_NAMES[d])),
        }
        d += 1;
    }
    Ok(parts.join(","))
}

/// A day as crontab writes it: 0–7 (both 0 and 7 are Sunday) or a three-letter name.
fn day(text: &str) -> Result<usize, DayOfWeekError> {
    if let Ok(n) = text.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(DayOfWeekError::DayOutOfRange(n))
        };
    }
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .ok_or_else(|| DayOfWeekError::NotADay(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn normalized(e: &str) -> String {
        parse(e)
            .map(|c| c.normalized)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn five_fields_get_a_zero_seconds_field() {
        assert_eq!(normalized("30 2 * * *"), "0 30 2 * * *");
        assert_eq!(normalized("*/5 * * * * *"), "*/5 * * * * *");
    }

    #[test]
    fn macros_expand() {
        assert_eq!(normalized("@daily"), "0 0 0 * * *");
        assert_eq!(normalized("@weekly"), "0 0 0 * * Sun");
        assert!(
            parse("@reboot")
                .unwrap_err()
                .to_string()
                .contains("unknown cron macro `@reboot`")
        );
    }

    #[test]
    fn crontab_days_of_week_become_names() {
        assert_eq!(normalized("0 3 * * 0"), "0 0 3 * * Sun");
        assert_eq!(normalized("0 3 * * 7"), "0 0 3 * * Sun");
        assert_eq!(normalized("0 3 * * 1-5"), "0 0 3 * * Mon-Fri");
        assert_eq!(normalized("0 3 * * 5-7"), "0 0 3 * * Sun,Fri,Sat");
        assert_eq!(normalized("0 3 * * */2"), "0 0 3 * * Sun,Tue,Thu,Sat");
        assert_eq!(normalized("0 3 * * sat,SUN"), "0 0 3 * * Sun,Sat");
        assert_eq!(normalized("0 3 * * 0-7"), "0 0 3 * * *");
        assert_eq!(normalized("0 3 * * 1,2"), "0 0 3 * * Mon,Tue");
    }

    #[test]
    fn sunday_means_sunday_to_the_cron_crate() {
        let spec = parse("0 3 * * 0").unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(); // a Sunday, noon
        let next = spec.schedule.after(&after).next().unwrap();
        assert_eq!(next.weekday(), Weekday::Sun);
        assert_eq!((next.day(), next.hour()), (29, 3));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        assert!(
            parse("0 2 * *")
                .unwrap_err()
                .to_string()
                .contains("has 4 fields")
        );
        assert!(
            parse("0 3 * * 8")
                .unwrap_err()
                .to_string()
                .contains("day `8` is out of range")
        );
        assert!(
            parse("0 3 * * 5-1")
                .unwrap_err()
                .to_string()
                .contains("runs backwards")
        );
        assert!(
            parse("0 0 30 2 *")
                .unwrap_err()
                .to_string()
                .contains("never fires")
        );
    }

    /// `expression<TAB>expected` lines of a fixture, comments and blank lines left out.
    fn fixture(text: &'static str) -> Vec<(&'static str, &'static str)> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                l.split_once('\t')
                    .unwrap_or_else(|| panic!("no tab in {l:?}"))
            })
            .collect()
    }

    #[test]
    fn every_field_error_states_the_inclusive_range_on_one_line() {
        let cases = fixture(include_str!("../tests/fixtures/cron/errors.txt"));
        assert!(!cases.is_empty());
        for (expression, expected) in cases {
            let message = match parse(expression) {
                Ok(spec) => panic!("`{expression}` accepted as `{}`", spec.normalized),
                Err(e) => e.to_string(),
            };
            assert_eq!(message, expected, "{expression}");
        }
    }

    #[test]
    fn what_the_field_checks_accept_the_cron_crate_accepts() {
        let cases = fixture(include_str!("../tests/fixtures/cron/valid.txt"));
        assert!(!cases.is_empty());
        for (expression, expected) in cases {
            assert_eq!(normalized(expression), expected, "{expression}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(
            parse_time_zone("Mars/Olympus")
                .unwrap_err()
                .to_string()
                .contains("unknown time zone")
        );
    }
}
