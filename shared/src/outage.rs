//! Regional outages for the stand-ins and test backends: which regions are
//! dark now. A backend given [`DarkRegions`] fails every call addressed to
//! a dark region as an unreachable regional endpoint would (a transient
//! error, never a refusal), so tests can prove that nothing on the recovery
//! path needs the failed region (the design's static stability).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// A rule that says whether a region is dark, for a cloud whose outages are
/// kept elsewhere (the local cloud's faults file).
type Rule = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The regions that are dark now: those darkened by hand, and those a
/// rule, if any, says are. Cheap to clone; clones share the same set.
#[derive(Clone, Default)]
pub struct DarkRegions {
    darkened: Arc<RwLock<BTreeSet<String>>>,
    rule: Option<Rule>,
}

impl fmt::Debug for DarkRegions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DarkRegions")
            .field("darkened", &*self.read())
            .field("rule", &self.rule.is_some())
            .finish()
    }
}

/// A call that could not reach its region, because the region is dark.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{region} is unreachable (regional outage): {call}")]
pub struct RegionUnreachable {
    /// The dark region.
    pub region: String,
    /// The call, with what it is about.
    pub call: String,
}

impl DarkRegions {
    /// Dark regions that follow `rule` (besides those darkened by hand).
    pub fn following(rule: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self {
            darkened: Arc::default(),
            rule: Some(Arc::new(rule)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<String>> {
        self.darkened.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `region` dark: every call addressed to it fails from now on.
    pub fn darken(&self, region: &str) {
        self.darkened
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region.to_string());
    }

    /// Brings `region` back (unless the rule keeps it dark).
    pub fn restore(&self, region: &str) {
        self.darkened
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(region);
    }

    /// Whether `region` is dark now.
    pub fn is_dark(&self, region: &str) -> bool {
        self.read().contains(region) || self.rule.as_ref().is_some_and(|rule| rule(region))
    }

    /// Passes when `region` is reachable; otherwise the error `call` (a
    /// description made only then) gets.
    pub fn reach(
        &self,
        region: &str,
        call: impl FnOnce() -> String,
    ) -> Result<(), RegionUnreachable> {
        if self.is_dark(region) {
            return Err(RegionUnreachable {
                region: region.to_string(),
                call: call(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_darken_and_come_back_across_clones_and_by_rule() {
        let dark = DarkRegions::following(|region| region == "asia-east1");
        let clone = dark.clone();
        assert!(dark.reach("us-central1", || "get".into()).is_ok());
        clone.darken("us-central1");
        let error = dark
            .reach("us-central1", || "get model m".into())
            .expect_err("dark");
        assert_eq!(
            error.to_string(),
            "us-central1 is unreachable (regional outage): get model m"
        );
        assert!(dark.is_dark("asia-east1"));
        assert!(!dark.is_dark("us-east1"));
        dark.restore("us-central1");
        assert!(!clone.is_dark("us-central1"));
        assert!(!DarkRegions::default().is_dark("asia-east1"));
    }
}
