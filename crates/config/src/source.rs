//! The `source:` section: which vendor API to read and how to reach it.
//!
//! One variant per source type. Adding a source means a variant in [`SourceConfig`], its name in
//! `KINDS` and one arm in `variant`; its struct derives `Deserialize` with `deny_unknown_fields`,
//! and checks its values in `deserialize_with` functions so that errors keep their positions.

use std::fmt;

use etl_core::Secret;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::de::{Tagged, int_in, non_empty_secret, str_with, tagged};

/// Where records come from. Written as a mapping whose first key is `type`:
///
/// ```yaml
/// source:
///   type: mail_delivery
///   url: ${MAIL_DELIVERY_URL}
///   token: ${MAIL_DELIVERY_TOKEN}
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// `type: mail_delivery`: the mail delivery log API (delivery results per recipient).
    MailDelivery(MailDeliveryConfig),
    /// `type: mail_tracking`: the mail tracking log API (accepted and blocked traffic).
    MailTracking(MailTrackingConfig),
}

impl SourceConfig {
    /// The `type` as written in the file (`mail_delivery`).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::MailDelivery(_) => "mail_delivery",
            SourceConfig::MailTracking(_) => "mail_tracking",
        }
    }

    /// Every secret of this source, for the HTTP client's redactor.
    pub fn secrets(&self) -> Vec<Secret> {
        match self {
            SourceConfig::MailDelivery(c) => vec![c.token.clone()],
            SourceConfig::MailTracking(c) => vec![c.api_key.clone()],
        }
    }
}

impl Tagged for SourceConfig {
    const SECTION: &'static str = "source";
    const KINDS: &'static [&'static str] = &["mail_delivery", "mail_tracking"];

    fn variant<'de, A: MapAccess<'de>>(kind: &'static str, rest: A) -> Result<Self, A::Error> {
        match kind {
            "mail_delivery" => {
                MailDeliveryConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::MailDelivery)
            }
            "mail_tracking" => {
                MailTrackingConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::MailTracking)
            }
            other => Err(de::Error::custom(format!("unknown source type `{other}`"))),
        }
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged(d)
    }
}

/// `type: mail_delivery`: the mail delivery log API. One request is a form POST with a window
/// of at most 24 hours; the API returns at most `max_items` records per page and a `NextToken`
/// for the rest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the mail_delivery keys (url, token, status, max_items)"
)]
pub struct MailDeliveryConfig {
    /// `url` (required): the URL the search form is POSTed to, `http://` or `https://`.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// `token` (required, non-empty): the API token, sent as the `X-Auth-Token` header. Write it
    /// as `${VAR}` so that it stays out of the file; it is never printed.
    #[serde(deserialize_with = "non_empty_secret")]
    pub token: Secret,
    /// `status` (optional): only fetch records with this delivery result: `sent`, `retry` or
    /// `faild` (the vendor's spelling; `failed` and the codes 1, 2, 3 are accepted too). Default:
    /// every status.
    #[serde(default)]
    pub status: Option<DeliveryStatus>,
    /// `max_items` (optional, 1..=10000, default 10000): records per page (the API's `MaxItems`).
    #[serde(default = "default_max_items", deserialize_with = "max_items")]
    pub max_items: u32,
}

/// `type: mail_tracking`: the mail tracking log API. A GET per traffic type with `start`/`end`
/// (at most 72 hours, reaching back at most 72 hours), `limit` records per page and a
/// `nextToken` for the rest; HTTP Basic authentication.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the mail_tracking keys (url, user, api_key, traffic_types, domains, direction, limit)"
)]
pub struct MailTrackingConfig {
    /// `url` (required): the service URL; `/api/v1/log/mailtrackinglog` is appended.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// `user` (required): the HTTP Basic user name.
    #[serde(deserialize_with = "crate::de::non_empty_string")]
    pub user: String,
    /// `api_key` (required, non-empty): the HTTP Basic password; never printed.
    #[serde(deserialize_with = "non_empty_secret")]
    pub api_key: Secret,
    /// `traffic_types` (optional, default both): `accepted_traffic` and/or `blocked_traffic`.
    /// The API takes one type per request; each type is its own unit and partition.
    #[serde(default = "default_traffic_types")]
    pub traffic_types: Vec<TrafficType>,
    /// `domains` (optional, default: all domains in one query): query each of these domains
    /// separately (the API's `domain` filter); each domain is its own unit.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `direction` (optional): `in` or `out` (the API's `direction` filter). Default: both.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// `limit` (optional, 1..=10000, default 500): records per page (the API's `limit`).
    #[serde(default = "default_limit", deserialize_with = "tracking_limit")]
    pub limit: u32,
}

fn default_traffic_types() -> Vec<TrafficType> {
    vec![TrafficType::Accepted, TrafficType::Blocked]
}

fn default_limit() -> u32 {
    500
}

fn tracking_limit<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, 10_000).map(|v| v as u32)
}

/// The mail tracking API's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum TrafficType {
    #[serde(rename = "accepted_traffic")]
    Accepted,
    #[serde(rename = "blocked_traffic")]
    Blocked,
}

impl TrafficType {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::Accepted => "accepted_traffic",
            TrafficType::Blocked => "blocked_traffic",
        }
    }
}

/// The mail tracking API's `direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

pub(crate) const MAX_ITEMS: u32 = 10_000;

fn default_max_items() -> u32 {
    MAX_ITEMS
}

fn max_items<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    // In range by construction.
    int_in(d, 1, i64::from(MAX_ITEMS)).map(|v| v as u32)
}

/// `deserialize_with`: an absolute `http://` or `https://` URL with a host.
pub(crate) fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    str_with(d, "an http:// or https:// URL", |v| {
        if v.trim().is_empty() {
            return Err("must not be empty; expected an http:// or https:// URL".to_string());
        }
        let parsed = url::Url::parse(v).map_err(|e| format!("invalid URL `{v}`: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{v}` is not an http:// or https:// URL"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{v}` has no host"));
        }
        Ok(v.to_string())
    })
}

/// The delivery result a mail delivery query can be restricted to (the API's `Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Sent,
    Retry,
    /// The vendor spells it `faild`.
    Faild,
}

impl DeliveryStatus {
    /// The code the API expects in the `Status` form field.
    pub fn code(self) -> u8 {
        match self {
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Retry => 2,
            DeliveryStatus::Faild => 3,
        }
    }

    /// The vendor's name of the status (`sent`, `retry`, `faild`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Retry => "retry",
            DeliveryStatus::Faild => "faild",
        }
    }

    fn from_name(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "sent" | "1" => Some(DeliveryStatus::Sent),
            "retry" | "2" => Some(DeliveryStatus::Retry),
            "faild" | "failed" | "3" => Some(DeliveryStatus::Faild),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const STATUS_FORMS: &str = "expected one of: sent, retry, faild (or 1, 2, 3)";

impl<'de> Deserialize<'de> for DeliveryStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StatusVisitor)
    }
}

struct StatusVisitor;

impl Visitor<'_> for StatusVisitor {
    type Value = DeliveryStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a delivery status: sent, retry or faild (or 1, 2, 3)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DeliveryStatus, E> {
        DeliveryStatus::from_name(v).ok_or_else(|| E::custom(format!("unknown status `{v}`; {STATUS_FORMS}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeliveryStatus, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DeliveryStatus, E> {
        self.visit_str(&v.to_string())
    }
}
