//! Placement: which engine an instance goes to. A plan says what its instances need
//! in its metadata's `placement` ([`Placement`]); [`rank`] orders the engines that fit
//! and says why each other one was passed over. No I/O: the broker reads the engines
//! and their loads, ranks, then takes a slot on the first that still has room.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::engine::{EngineState, Labels};

/// The most reasons a refusal lists; the rest are counted.
const MAX_REASONS: usize = 20;

/// How engines that fit are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The least loaded first (by the share of its capacity used).
    #[default]
    Spread,
    /// The fullest that still fits first: engines fill one by one.
    Binpack,
}

/// What a plan's instances need of an engine: `metadata.placement` of the plan in the
/// catalog (`{"requires": {"zone": "a"}, "prefers": {"tier": "ssd"}, "strategy":
/// "binpack", "relocatable": true}`). Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Labels an engine must have, with these values.
    #[serde(default)]
    pub requires: Labels,
    /// Labels an engine should have: engines with more of them come first.
    #[serde(default)]
    pub prefers: Labels,
    /// How engines that fit are ordered.
    #[serde(default)]
    pub strategy: Strategy,
    /// Whether draining an engine may re-deploy these instances on another one (their
    /// data does not move with them).
    #[serde(default)]
    pub relocatable: bool,
}

impl Placement {
    /// The rule in a plan's `metadata` (none: any engine, spread, not relocatable).
    pub fn of_plan(metadata: Option<&Value>) -> Result<Self, String> {
        match metadata.and_then(|m| m.get("placement")) {
            None => Ok(Self::default()),
            Some(rule) => Self::deserialize(rule).map_err(|e| format!("metadata.placement: {e}")),
        }
    }
}

/// An engine as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its state (only `active` takes placements).
    pub state: EngineState,
    /// Its labels.
    pub labels: &'a Labels,
    /// Whether it deploys the plan's manifest type.
    pub deploys: bool,
    /// Instances placed on it.
    pub used: u64,
    /// The most it takes.
    pub capacity: Option<u32>,
}

impl Candidate<'_> {
    /// Why it cannot take the instance, if it cannot.
    fn passed_over(&self, placement: &Placement) -> Option<String> {
        if self.state != EngineState::Active {
            return Some(self.state.as_str().to_owned());
        }
        if !self.deploys {
            return Some("does not deploy this plan's manifest type".into());
        }
        for (key, want) in placement.requires.iter() {
            match self.labels.get(key) {
                Some(has) if has == want => {}
                Some(has) => return Some(format!("{key}={has}, the plan requires {key}={want}")),
                None => return Some(format!("no label {key}, the plan requires {key}={want}")),
            }
        }
        match self.capacity {
            Some(capacity) if self.used >= u64::from(capacity) => Some(format!("full ({} of {capacity})", self.used)),
            _ => None,
        }
    }

    /// How many of the preferred labels it has.
    fn preferred(&self, placement: &Placement) -> usize {
        placement.prefers.iter().filter(|(k, v)| self.labels.get(k) == Some(v)).count()
    }

    /// The share of its capacity in use (none for an engine without a limit).
    fn load(&self) -> f64 {
        self.capacity.map_or(0.0, |c| self.used as f64 / f64::from(c.max(1)))
    }
}

/// The engines that can take an instance under `placement`, best first; or, when
/// none can, why each was passed over (in one message).
pub fn rank<'a>(placement: &Placement, candidates: &[Candidate<'a>]) -> Result<Vec<&'a str>, String> {
    let mut fit = Vec::new();
    let mut passed = Vec::new();
    for candidate in candidates {
        match candidate.passed_over(placement) {
            None => fit.push(candidate),
            Some(why) => passed.push(format!("{}: {why}", candidate.name)),
        }
    }
    if fit.is_empty() {
        return Err(refusal(passed));
    }
    fit.sort_by(|a, b| {
        let by_load = match placement.strategy {
            Strategy::Spread => a.load().total_cmp(&b.load()).then(a.used.cmp(&b.used)),
            Strategy::Binpack => b.load().total_cmp(&a.load()).then(b.used.cmp(&a.used)),
        };
        b.preferred(placement).cmp(&a.preferred(placement)).then(by_load).then(a.name.cmp(b.name))
    });
    Ok(fit.into_iter().map(|c| c.name).collect())
}

/// "no engine can take it" with the reasons, at most `MAX_REASONS` (20) of them.
pub fn refusal(mut passed: Vec<String>) -> String {
    if passed.is_empty() {
        return "no engine can take it: there are none".into();
    }
    let more = passed.len().saturating_sub(MAX_REASONS);
    passed.truncate(MAX_REASONS);
    let mut text = format!("no engine can take it: {}", passed.join("; "));
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn placement(value: Value) -> Placement {
        Placement::of_plan(Some(&json!({ "placement": value }))).unwrap()
    }

    struct Fleet(Vec<(&'static str, EngineState, Labels, u64, Option<u32>)>);

    impl Fleet {
        fn candidates(&self) -> Vec<Candidate<'_>> {
            self.0
                .iter()
                .map(|(name, state, labels, used, capacity)| Candidate {
                    name,
                    state: *state,
                    labels,
                    deploys: true,
                    used: *used,
                    capacity: *capacity,
                })
                .collect()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::of(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn spread_takes_the_least_loaded_share_and_binpack_the_fullest_that_fits() {
        let fleet = Fleet(vec![
            ("a", EngineState::Active, labels(&[]), 5, Some(10)),
            ("b", EngineState::Active, labels(&[]), 2, Some(10)),
            ("c", EngineState::Active, labels(&[]), 9, Some(10)),
            ("d", EngineState::Active, labels(&[]), 10, Some(10)),
        ]);
        assert_eq!(rank(&Placement::default(), &fleet.candidates()).unwrap(), ["b", "a", "c"]);
        assert_eq!(rank(&placement(json!({"strategy": "binpack"})), &fleet.candidates()).unwrap(), ["c", "a", "b"]);
    }

    #[test]
    fn required_labels_filter_and_preferred_ones_rank_first() {
        let fleet = Fleet(vec![
            ("a", EngineState::Active, labels(&[("zone", "a"), ("tier", "hdd")]), 0, None),
            ("b", EngineState::Active, labels(&[("zone", "a"), ("tier", "ssd")]), 7, None),
            ("c", EngineState::Active, labels(&[("zone", "b"), ("tier", "ssd")]), 0, None),
        ]);
        let rule = placement(json!({"requires": {"zone": "a"}, "prefers": {"tier": "ssd"}}));
        assert_eq!(rank(&rule, &fleet.candidates()).unwrap(), ["b", "a"]);
    }

    #[test]
    fn no_fit_says_why_each_engine_was_passed_over() {
        let fleet = Fleet(vec![
            ("a", EngineState::Cordoned, labels(&[("zone", "a")]), 0, None),
            ("b", EngineState::Active, labels(&[("zone", "b")]), 0, None),
            ("c", EngineState::Active, labels(&[]), 0, None),
            ("d", EngineState::Active, labels(&[("zone", "a")]), 3, Some(3)),
            ("e", EngineState::Unreachable, labels(&[("zone", "a")]), 0, None),
        ]);
        let why = rank(&placement(json!({"requires": {"zone": "a"}})), &fleet.candidates()).unwrap_err();
        for part in [
            "a: cordoned",
            "b: zone=b, the plan requires zone=a",
            "c: no label zone",
            "d: full (3 of 3)",
            "e: unreachable",
        ] {
            assert!(why.contains(part), "{why}");
        }
    }

    #[test]
    fn a_refusal_lists_at_most_twenty_reasons() {
        let why = refusal((0..1000).map(|n| format!("e{n}: full")).collect());
        assert!(why.ends_with("; and 980 more"), "{why}");
        assert!(why.len() < 1000);
    }

    #[test]
    fn a_malformed_rule_is_refused() {
        for bad in
            [json!({"strategy": "random"}), json!({"requires": {"Zone": "a"}}), json!({"spread": true}), json!(3)]
        {
            assert!(Placement::of_plan(Some(&json!({ "placement": bad }))).is_err(), "{bad}");
        }
        assert_eq!(Placement::of_plan(Some(&json!({"costs": []}))).unwrap(), Placement::default());
    }
}
