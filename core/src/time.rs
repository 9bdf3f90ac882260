//! Between chrono, which the controller computes with, and the `jiff` timestamps inside
//! Kubernetes' `metav1.Time`.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub fn k8s(t: DateTime<Utc>) -> Time {
    Time(Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).unwrap_or_default())
}

pub fn chrono(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_to_the_nanosecond() {
        let now = chrono::Utc::now();
        assert_eq!(super::chrono(&super::k8s(now)), now);
    }
}
