//! `training.resources`: what a Slurm job of a training asks the scheduler for. Separate
//! because it is about where a stage runs, never about what it computes (no key reads it).

use serde::{Deserialize, Serialize};

use super::options::{Invalid, fail};

/// `training.resources`: what one Slurm job asks the scheduler for. Every field is
/// optional; an unset one leaves the site's default (`sbatch` without that flag).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// CPU cores of the job's one task (`--cpus-per-task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// GPUs (`--gres=gpu:N`); 0 asks for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Memory of the node share (`--mem`): a whole number with an optional K, M, G or T
    /// suffix (`8G`, `500M`); megabytes without one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_whole_number"
    )]
    pub mem: Option<String>,
    /// Wall-clock limit (`--time`) in a Slurm format: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`,
    /// `D-HH:MM` or `D-HH:MM:SS`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_whole_number"
    )]
    pub time: Option<String>,
    /// Partition (`--partition`); the cluster's default partition when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

/// `mem: 4096` and `time: 30` (YAML integers) mean what `"4096"` and `"30"` do.
fn text_or_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string (`8G`, `2:00:00`) or a whole number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_any(Visitor)
}

impl Resources {
    /// Checks each value's form, so a typo fails before anything is submitted.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.cpus == Some(0) {
            return fail("training.resources.cpus", "must be at least 1");
        }
        if let Some(mem) = &self.mem {
            let digits = mem.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
            let suffix_len = mem.len() - digits.len();
            if digits.is_empty()
                || suffix_len > 1
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || digits.bytes().all(|b| b == b'0')
            {
                return fail(
                    "training.resources.mem",
                    format!(
                        "`{mem}` is not a memory size; write a whole number with an optional \
                         K, M, G or T suffix (`8G`, `500M`)"
                    ),
                );
            }
        }
        if let Some(time) = &self.time
            && !is_slurm_time(time)
        {
            return fail(
                "training.resources.time",
                format!(
                    "`{time}` is not a Slurm time limit; write MM, MM:SS, HH:MM:SS, D-HH, \
                     D-HH:MM or D-HH:MM:SS (`2:00:00` is two hours)"
                ),
            );
        }
        if let Some(p) = &self.partition
            && (p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
        {
            return fail(
                "training.resources.partition",
                format!("`{p}` is not a partition name (letters, digits, `_`, `-`, `.`)"),
            );
        }
        Ok(())
    }
}

/// Whether `text` is one of the time formats `sbatch --time` accepts.
fn is_slurm_time(text: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    // Without days: MM, MM:SS, HH:MM:SS; with them: D-HH, D-HH:MM, D-HH:MM:SS.
    parts.iter().all(|p| number(p)) && days.is_none_or(number) && (1..=3).contains(&parts.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainingConfig;

    /// Where a training runs (Slurm resources) cannot change what it computes.
    #[test]
    fn resources_are_not_in_the_train_key_and_are_checked() {
        let resources = Resources {
            cpus: Some(4),
            gpus: Some(1),
            mem: Some("8G".to_string()),
            time: Some("1-02:00:00".to_string()),
            partition: Some("gpu-a100".to_string()),
        };
        let with = TrainingConfig {
            resources: Some(resources.clone()),
            ..TrainingConfig::default()
        };
        assert_eq!(
            with.shared_key_value(),
            TrainingConfig::default().shared_key_value()
        );
        with.validate().unwrap();
        for time in ["30", "30:00", "2:00:00", "1-0", "1-2:30", "0:00:01"] {
            assert!(is_slurm_time(time), "{time}");
        }
        for time in ["", "1:2:3:4", "1h", "-1", "1-", "a:00", "1-2:3:4:5"] {
            assert!(!is_slurm_time(time), "{time}");
        }
        let bad = |r: Resources| r.validate().unwrap_err().0;
        let base = || resources.clone();
        assert_eq!(
            bad(Resources {
                cpus: Some(0),
                ..base()
            }),
            "training.resources.cpus"
        );
        for mem in ["", "G", "8GB", "0", "-1G", "1.5G"] {
            let r = Resources {
                mem: Some(mem.to_string()),
                ..base()
            };
            assert_eq!(bad(r), "training.resources.mem", "{mem}");
        }
        let r = Resources {
            time: Some("2h".to_string()),
            ..base()
        };
        assert_eq!(bad(r), "training.resources.time");
        let r = Resources {
            partition: Some("a b".to_string()),
            ..base()
        };
        assert_eq!(bad(r), "training.resources.partition");
    }
}
