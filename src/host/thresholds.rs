//! Judging metrics against warning/critical thresholds, the seed app's
//! defaults included: cpu 70/90 %, memory 70/90 %, disk 80/95 %.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckStatus {
    Ok,
    /// Ordered between OK and WARNING: not knowing is worse than fine, but
    /// not an alarm by itself.
    Unknown,
    Warning,
    Critical,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK",
            CheckStatus::Unknown => "UNKNOWN",
            CheckStatus::Warning => "WARNING",
            CheckStatus::Critical => "CRITICAL",
        }
    }
}

/// Warning and critical levels for one metric (higher is worse).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    pub warning: f64,
    pub critical: f64,
}

impl Threshold {
    pub const CPU: Threshold = Threshold {
        warning: 70.0,
        critical: 90.0,
    };
    pub const MEMORY: Threshold = Threshold {
        warning: 70.0,
        critical: 90.0,
    };
    pub const DISK: Threshold = Threshold {
        warning: 80.0,
        critical: 95.0,
    };
    pub const INODES: Threshold = Threshold {
        warning: 80.0,
        critical: 95.0,
    };
    /// CPU temperature, °C.
    pub const TEMPERATURE: Threshold = Threshold {
        warning: 80.0,
        critical: 90.0,
    };

    pub fn judge(&self, value: f64) -> CheckStatus {
        if value >= self.critical {
            CheckStatus::Critical
        } else if value >= self.warning {
            CheckStatus::Warning
        } else {
            CheckStatus::Ok
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    pub value: Option<f64>,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    pub message: String,
    /// Per-mount results, perfdata, missing processes… when there are any.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl CheckStatus {
    /// The exit code a monitoring plugin would use.
    pub fn exit_code(self) -> u8 {
        match self {
            CheckStatus::Ok => 0,
            CheckStatus::Warning => 1,
            CheckStatus::Critical => 2,
            CheckStatus::Unknown => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_inclusive() {
        let t = Threshold::CPU;
        assert_eq!(t.judge(69.99), CheckStatus::Ok);
        assert_eq!(t.judge(70.0), CheckStatus::Warning);
        assert_eq!(t.judge(90.0), CheckStatus::Critical);
    }

    #[test]
    fn worst_status_wins() {
        let worst = [CheckStatus::Ok, CheckStatus::Critical, CheckStatus::Warning]
            .into_iter()
            .max();
        assert_eq!(worst, Some(CheckStatus::Critical));
        assert!(CheckStatus::Unknown < CheckStatus::Warning);
    }
}
