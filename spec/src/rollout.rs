//! Rollouts (`kind: Rollout`): which hosts each wave of a new generation takes, judged purely
//! from the hosts the caller lists. The waves are driven by the caller (`fleetctl apply`), and
//! each bundle it signs names the hosts that may take it, so a node enforces its wave.

use std::time::Duration;

use crate::FleetModel;
use crate::model::{RolloutDocument, RolloutSpec, RolloutWave};
use crate::selector::{HostFacts, Selector};

/// One wave as planned for a given set of hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWave {
    /// The wave's `name`, `wave-N` when it has none, or `rest` for the hosts no wave took.
    pub name: String,
    /// The hosts this wave adds, in name order.
    pub hosts: Vec<String>,
}

/// The failure threshold when the spec gives none: the first failed host halts.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 1;

/// The name of the wave that takes the hosts no declared wave took.
pub const REST_WAVE: &str = "rest";

impl FleetModel {
    /// The fleet's rollouts (validation allows at most one).
    pub fn rollouts(&self) -> impl Iterator<Item = (usize, &RolloutDocument)> {
        self.documents
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match d {
                crate::Document::Rollout(r) => Some((i, r)),
                _ => None,
            })
    }

    /// The Rollout that governs applies of this fleet, if it declares one.
    pub fn rollout(&self) -> Option<&RolloutDocument> {
        self.rollouts().next().map(|(_, r)| r)
    }
}

impl RolloutSpec {
    /// How many failed hosts halt the rollout.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
            .unwrap_or(DEFAULT_FAILURE_THRESHOLD)
            .max(1)
    }

    /// How long a wave may take to report Synced and Healthy, when the spec says.
    pub fn wave_timeout(&self) -> Option<Duration> {
        self.wave_timeout
            .as_deref()
            .and_then(|text| humantime::parse_duration(text).ok())
    }
}

/// Splits `hosts` into the rollout's waves. Each declared wave adds hosts that no earlier wave
/// took: those its `target` selects, or the next `count` (or `percent` of all the hosts,
/// rounded up) in name order. A wave that finds no host is left out; hosts left after the
/// declared waves form a last wave, [`REST_WAVE`], so every host is in exactly one wave.
pub fn plan_waves(spec: &RolloutSpec, hosts: &[HostFacts]) -> Vec<PlannedWave> {
    let mut remaining: Vec<&HostFacts> = hosts.iter().collect();
    remaining.sort_by(|a, b| a.name.cmp(&b.name));
    remaining.dedup_by(|a, b| a.name == b.name);
    let total = remaining.len();
    let mut waves = Vec::new();
    for (index, wave) in spec.waves.iter().enumerate() {
        let taken = take(wave, &mut remaining, total);
        if !taken.is_empty() {
            waves.push(PlannedWave {
                name: wave
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("wave-{}", index + 1)),
                hosts: taken,
            });
        }
    }
    if !remaining.is_empty() {
        waves.push(PlannedWave {
            name: REST_WAVE.to_string(),
            hosts: remaining.iter().map(|h| h.name.clone()).collect(),
        });
    }
    waves
}

fn take(wave: &RolloutWave, remaining: &mut Vec<&HostFacts>, total: usize) -> Vec<String> {
    let picked: Vec<String> = if let Some(target) = &wave.target {
        // An invalid selector is reported by validation; here it takes nothing.
        match Selector::parse(target) {
            Ok(selector) => remaining
                .iter()
                .filter(|h| selector.matches(h))
                .map(|h| h.name.clone())
                .collect(),
            Err(_) => Vec::new(),
        }
    } else {
        let wanted = match (wave.count, wave.percent) {
            (Some(count), _) => count as usize,
            (None, Some(percent)) if percent > 0 => {
                (total * percent.min(100) as usize).div_ceil(100).max(1)
            }
            _ => 0,
        };
        remaining
            .iter()
            .take(wanted)
            .map(|h| h.name.clone())
            .collect()
    };
    remaining.retain(|h| !picked.contains(&h.name));
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[(&str, &[&str])]) -> Vec<HostFacts> {
        names
            .iter()
            .map(|(name, tags)| {
                tags.iter()
                    .fold(HostFacts::new(*name), |h, tag| h.with_tag(*tag))
            })
            .collect()
    }

    fn wave(
        name: Option<&str>,
        target: Option<&str>,
        count: Option<u32>,
        percent: Option<u32>,
    ) -> RolloutWave {
        RolloutWave {
            name: name.map(str::to_string),
            target: target.map(str::to_string),
            count,
            percent,
        }
    }

    fn planned(spec: &RolloutSpec, all: &[HostFacts]) -> Vec<(String, Vec<String>)> {
        plan_waves(spec, all)
            .into_iter()
            .map(|w| (w.name, w.hosts))
            .collect()
    }

    #[test]
    fn a_canary_selector_then_counts_then_the_rest() {
        let all = hosts(&[
            ("web-3", &["web"]),
            ("web-1", &["web", "canary"]),
            ("web-2", &["web"]),
            ("db-1", &["db"]),
        ]);
        let spec = RolloutSpec {
            waves: vec![
                wave(Some("canary"), Some("tag:canary"), None, None),
                wave(None, None, Some(2), None),
            ],
            ..RolloutSpec::default()
        };
        assert_eq!(
            planned(&spec, &all),
            vec![
                ("canary".to_string(), vec!["web-1".to_string()]),
                (
                    "wave-2".to_string(),
                    vec!["db-1".to_string(), "web-2".to_string()]
                ),
                ("rest".to_string(), vec!["web-3".to_string()]),
            ]
        );
    }

    #[test]
    fn percentages_round_up_and_empty_waves_are_left_out() {
        let all = hosts(&[("a", &[]), ("b", &[]), ("c", &[]), ("d", &[]), ("e", &[])]);
        let spec = RolloutSpec {
            waves: vec![
                wave(Some("none"), Some("tag:nothing"), None, None),
                wave(None, None, None, Some(10)),
                wave(None, None, None, Some(50)),
                wave(None, None, None, Some(100)),
            ],
            ..RolloutSpec::default()
        };
        assert_eq!(
            planned(&spec, &all),
            vec![
                ("wave-2".to_string(), vec!["a".to_string()]),
                (
                    "wave-3".to_string(),
                    vec!["b".to_string(), "c".to_string(), "d".to_string()]
                ),
                ("wave-4".to_string(), vec!["e".to_string()]),
            ]
        );
    }

    #[test]
    fn every_host_is_in_exactly_one_wave() {
        let all = hosts(&[("x", &["t"]), ("y", &["t"]), ("z", &[])]);
        let spec = RolloutSpec {
            waves: vec![
                wave(None, Some("tag:t"), None, None),
                wave(None, Some("all"), None, None),
            ],
            ..RolloutSpec::default()
        };
        let waves = plan_waves(&spec, &all);
        let mut seen: Vec<String> = waves.iter().flat_map(|w| w.hosts.clone()).collect();
        seen.sort();
        assert_eq!(seen, vec!["x", "y", "z"]);
        assert_eq!(waves.len(), 2);
        assert_eq!(spec.failure_threshold(), 1);
    }
}
