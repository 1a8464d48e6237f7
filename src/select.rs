//! Which of the planned units this worker runs: all of them, the ones named by `--unit`, or
//! shard I of N (`--shard I/N`).
//!
//! Every worker plans the whole range itself and keeps its share, so workers need no
//! coordinator and agree by construction. A shard owns a unit by its *shard key*: the rate
//! budget the unit draws on ([`etl_core::Source::budget_key`]), so that one budget is spent by
//! one process and never overrun by N of them; where the API limits no rate, the unit id, so
//! units spread evenly. `--rate-share 1/K` says that K workers share each budget on purpose
//! (each takes 1/K of it), and then units are assigned one by one as well.

use etl_core::{Shard, Source, Unit};

/// What `--unit`, `--shard` and `--rate-share` asked for.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `--unit ID` (repeatable): exactly these units.
    pub units: Vec<String>,
    pub shard: Option<Shard>,
    /// `--rate-share 1/K`: K.
    pub rate_share: Option<u32>,
}

/// `--rate-share 1/K`.
pub fn parse_rate_share(s: &str) -> Result<u32, String> {
    let k = s
        .strip_prefix("1/")
        .ok_or_else(|| format!("{s:?} is not 1/K (for example 1/4: this worker takes a quarter of each rate limit)"))?;
    match k.trim().parse::<u32>() {
        Ok(k) if k >= 1 => Ok(k),
        _ => Err(format!("{s:?}: K must be a whole number of at least 1")),
    }
}

impl Selection {
    /// Checks that the options together keep every rate budget: N shards that each take 1/K of
    /// a budget overrun it when K < N.
    pub fn check(&self) -> Result<(), String> {
        if let (Some(shard), Some(k)) = (self.shard, self.rate_share)
            && k < shard.count
        {
            return Err(format!(
                "--shard {shard} with --rate-share 1/{k}: {n} workers each taking 1/{k} of a rate limit would use {n}/{k} of it; \
                 use --rate-share 1/{n} (or more) with {n} shards",
                n = shard.count
            ));
        }
        Ok(())
    }

    /// The key `--shard` assigns `unit` by.
    pub fn shard_key(&self, source: &dyn Source, unit: &Unit) -> String {
        match source.budget_key(unit) {
            Some(budget) if self.rate_share.is_none() => budget,
            _ => unit.id.clone(),
        }
    }

    /// Keeps this worker's units of `planned`, in plan order. A `--unit` id that the plan does
    /// not have is an error naming it (a typo, or a range that does not cover its window).
    pub fn apply(&self, source: &dyn Source, planned: Vec<Unit>) -> Result<Vec<Unit>, String> {
        if !self.units.is_empty() {
            let missing: Vec<&str> = self
                .units
                .iter()
                .filter(|id| !planned.iter().any(|u| &u.id == *id))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "--unit {}: not in the plan of this range ({} unit(s){}); `etl plan` with the same --from/--to lists the ids",
                    missing.join(", "),
                    planned.len(),
                    match (planned.first(), planned.last()) {
                        (Some(a), Some(b)) => format!(", {} .. {}", a.id, b.id),
                        _ => String::new(),
                    }
                ));
            }
            return Ok(planned.into_iter().filter(|u| self.units.contains(&u.id)).collect());
        }
        match self.shard {
            Some(shard) => Ok(planned
                .into_iter()
                .filter(|u| shard.owns(&self.shard_key(source, u)))
                .collect()),
            None => Ok(planned),
        }
    }

    /// Whether this worker reports what is lost for `key` (a stream, or the source's kind for
    /// losses a listing found): every stream is reported by exactly one shard, so that N
    /// workers raise one alert, not N. A `--unit` run reports losses but is not failed by them:
    /// its exit code is its unit's.
    pub fn reports_lost(&self, key: &str) -> bool {
        self.shard.is_none_or(|s| s.owns(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_share_is_one_over_k() {
        assert_eq!(parse_rate_share("1/4"), Ok(4));
        assert!(parse_rate_share("2/4").unwrap_err().contains("is not 1/K"));
        assert!(parse_rate_share("1/0").unwrap_err().contains("at least 1"));
    }

    #[test]
    fn each_lost_stream_is_reported_by_exactly_one_shard() {
        for stream in [
            "mail_delivery",
            "mail_tracking-accepted_traffic-example.com",
            "webdav_logs",
        ] {
            let reporters = (0..4)
                .filter(|&index| {
                    Selection {
                        shard: Some(Shard { index, count: 4 }),
                        ..Selection::default()
                    }
                    .reports_lost(stream)
                })
                .count();
            assert_eq!(reporters, 1, "{stream}");
        }
        assert!(
            Selection::default().reports_lost("mail_delivery"),
            "one worker reports everything"
        );
    }

    #[test]
    fn shards_that_would_overrun_a_shared_budget_are_refused() {
        let sel = |n, k| Selection {
            shard: Some(Shard { index: 0, count: n }),
            rate_share: Some(k),
            ..Selection::default()
        };
        assert!(sel(4, 4).check().is_ok());
        assert!(sel(2, 4).check().is_ok());
        let e = sel(4, 2).check().unwrap_err();
        assert!(e.contains("4/2") && e.contains("--rate-share 1/4"), "{e}");
    }
}
