//! Which worker of N runs which unit, decided by every worker alone from the plan.
//!
//! Workers of one pipeline share nothing but the object store, so the assignment must be a
//! pure function of a key and the shard count, equal on every machine and every build: no
//! `std` hasher (its algorithm may change between Rust releases), no randomness. Rendezvous
//! (highest random weight) hashing gives each key to the shard with the highest score
//! `hash(key, shard)`; going from N to N+1 shards moves only the keys the new shard wins
//! (about 1/(N+1) of them), so a resized Indexed Job redoes little and never runs a unit twice
//! at once for long (a claim covers that moment anyway).
//!
//! The key is chosen by the caller: the rate budget a unit draws on, so that a budget is
//! spent by one process only, or the unit id where there is no budget to keep together.

use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count` (`--shard I/N`, `0 <= I < N`, as Kubernetes' `JOB_COMPLETION_INDEX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether this shard runs the units of `key`.
    pub fn owns(&self, key: &str) -> bool {
        owner(key, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N` with `N >= 1` and `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not I/N (for example 0/4: the first of four shards)"))?;
        let parse = |v: &str, what: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?}: {what} {v:?} is not a whole number"))
        };
        let (index, count) = (parse(i, "the index")?, parse(n, "the count")?);
        if count == 0 {
            return Err(format!("{s:?}: the shard count must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "{s:?}: the index must be below the count (shards are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }
}

/// The shard in `0..count` that owns `key`: the one with the highest rendezvous score (ties,
/// which need a 64-bit collision, go to the lowest index).
pub fn owner(key: &str, count: u32) -> u32 {
    (0..count.max(1))
        .max_by_key(|&i| (score(key, i), std::cmp::Reverse(i)))
        .unwrap_or(0)
}

/// FNV-1a over the key, a separator and the shard index, finished with the SplitMix64 mixer
/// so that scores of neighbouring indexes are unrelated. Stable by construction: changing it
/// would reshuffle every running deployment, so a test pins its values.
fn score(key: &str, shard: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0xff]).chain(shard.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("mail_delivery-2025-{:02}-{:02}", 1 + i / 28, 1 + i % 28))
            .collect()
    }

    #[test]
    fn parses_i_of_n_and_names_what_is_wrong() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("0/1".parse::<Shard>().unwrap().to_string(), "0/1");
        for (bad, says) in [
            ("4/4", "below the count"),
            ("1/0", "at least 1"),
            ("x/2", "not a whole number"),
            ("-1/2", "not a whole number"),
            ("3", "is not I/N"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn every_key_has_exactly_one_owner() {
        for n in 1..=8 {
            for k in keys(200) {
                let owners = (0..n).filter(|&i| Shard { index: i, count: n }.owns(&k)).count();
                assert_eq!(owners, 1, "{k} with {n} shards");
            }
        }
    }

    #[test]
    fn keys_spread_evenly() {
        let ks = keys(4000);
        for n in [2u32, 4, 7] {
            let mut per = vec![0usize; n as usize];
            for k in &ks {
                per[owner(k, n) as usize] += 1;
            }
            let mean = ks.len() / n as usize;
            for (i, c) in per.iter().enumerate() {
                assert!(
                    c.abs_diff(mean) * 10 < mean,
                    "shard {i}/{n} got {c} of {} keys: {per:?}",
                    ks.len()
                );
            }
        }
    }

    #[test]
    fn adding_a_shard_moves_only_the_keys_the_new_shard_takes() {
        let ks = keys(4000);
        for n in [1u32, 2, 4, 7] {
            let moved: Vec<&String> = ks.iter().filter(|k| owner(k, n) != owner(k, n + 1)).collect();
            assert!(
                moved.iter().all(|k| owner(k, n + 1) == n),
                "a key moved between old shards"
            );
            let share = moved.len() as f64 / ks.len() as f64;
            let ideal = 1.0 / f64::from(n + 1);
            assert!(
                (share - ideal).abs() < ideal * 0.15,
                "{n}->{}: {share} moved, ideal {ideal}",
                n + 1
            );
        }
    }

    #[test]
    fn the_assignment_is_pinned() {
        // Workers of different builds must agree: these values may never change.
        let got: Vec<u32> = [
            "mail_delivery-2025-09-11",
            "cdn_logs listing http://127.0.0.1/",
            "a",
            "",
        ]
        .iter()
        .map(|k| owner(k, 4))
        .collect();
        assert_eq!(got, PINNED);
        assert_eq!(score("a", 0), PINNED_SCORE);
    }

    // Computed by an independent Python transcription of `score` (FNV-1a over the key, 0xff
    // and the little-endian index, then SplitMix64's finalizer), not by this code.
    const PINNED: [u32; 4] = [3, 0, 1, 0];
    const PINNED_SCORE: u64 = 0x1e59_43dd_c963_dc1f;
}
