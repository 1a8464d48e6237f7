//! Following a continuation token (`NextToken`, `nextToken`) without ever writing a page twice,
//! shared by every token-paginated API.
//!
//! A server that returns a token the unit already sent has replayed an earlier page. That page
//! must not reach the decoder (its records would be written twice), the same request is made
//! again, and after [`MAX_REPLAYS`] replays in a row the unit fails instead of looping forever.

use std::collections::HashSet;

use etl_core::FetchStats;

/// Replays in a row after which a unit gives up.
pub const MAX_REPLAYS: u32 = 3;

/// What to do with the page just received.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Forward the page; `last` when it carried no token.
    Deliver { last: bool },
    /// Drop the page and repeat the request; the count of replays in a row.
    Replayed(u32),
}

/// The continuation state of one unit.
#[derive(Debug, Default)]
pub struct TokenPaging {
    sent: HashSet<String>,
    current: Option<String>,
    replays: u32,
}

impl TokenPaging {
    /// The token to send with the next request (none for the first page).
    pub fn token(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Classifies a page by the token it carries; on `Deliver` that token becomes the next one.
    pub fn on_page(&mut self, next: Option<String>) -> Step {
        let next = next.filter(|t| !t.is_empty());
        if let Some(t) = &next
            && self.sent.contains(t)
        {
            self.replays += 1;
            return Step::Replayed(self.replays);
        }
        self.replays = 0;
        let last = next.is_none();
        if let Some(t) = next {
            self.sent.insert(t.clone());
            self.current = Some(t);
        }
        Step::Deliver { last }
    }
}

/// Adds one response (with its retries) to a unit's counters.
pub fn count(stats: &mut FetchStats, resp: &etl_http::Response) {
    stats.requests += u64::from(resp.attempts);
    stats.retries += u64::from(resp.attempts.saturating_sub(1));
    stats.bytes += resp.body.len() as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_seen_before_is_a_replay() {
        let mut p = TokenPaging::default();
        assert_eq!(p.token(), None);
        assert_eq!(p.on_page(Some("A".into())), Step::Deliver { last: false });
        assert_eq!(p.token(), Some("A"));
        assert_eq!(p.on_page(Some("A".into())), Step::Replayed(1));
        assert_eq!(p.on_page(Some("A".into())), Step::Replayed(2));
        assert_eq!(p.token(), Some("A"), "a replay does not move the cursor");
        assert_eq!(p.on_page(Some("B".into())), Step::Deliver { last: false });
        assert_eq!(
            p.on_page(Some("A".into())),
            Step::Replayed(1),
            "the count restarts after progress"
        );
        assert_eq!(p.on_page(None), Step::Deliver { last: true });
        assert_eq!(
            p.on_page(Some(String::new())),
            Step::Deliver { last: true },
            "an empty token ends the unit"
        );
    }
}
