//! A configured webhook and its validation.

use std::fmt;

use reqwest::Url;
use serde::{Deserialize, Serialize};

/// The shortest secret a webhook may have, in bytes. 32 random bytes,
/// hex-encoded, is a good secret.
pub const MIN_SECRET_BYTES: usize = 16;

/// Where alerts go: an HTTP(S) endpoint, the secret its deliveries are
/// signed with, and which tenants' alerts it receives.
///
/// `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// A name unique among webhooks, used in logs and reports.
    pub id: String,
    /// The endpoint, `http://` or `https://` with a host.
    pub url: String,
    /// The HMAC-SHA256 key for `X-Steward-Signature`, at least
    /// [`MIN_SECRET_BYTES`] bytes.
    pub secret: String,
    /// The tenants whose alerts this webhook receives; `None` (or absent)
    /// for every tenant.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// A disabled webhook receives nothing. Defaults to true.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("tenants", &self.tenants)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl Webhook {
    /// Checks every field; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), WebhookError> {
        self.checked_url().map(drop)
    }

    /// Whether this webhook receives alerts of `tenant_id`: it is enabled
    /// and its tenant filter is absent or lists the tenant.
    pub fn receives(&self, tenant_id: &str) -> bool {
        self.enabled
            && self
                .tenants
                .as_ref()
                .is_none_or(|tenants| tenants.iter().any(|t| t == tenant_id))
    }

    /// Checks every field and returns the parsed URL.
    pub(super) fn checked_url(&self) -> Result<Url, WebhookError> {
        if self.id.trim().is_empty() {
            return Err(WebhookError::EmptyId);
        }
        let url = parse_url(&self.url)?;
        if self.secret.len() < MIN_SECRET_BYTES {
            return Err(WebhookError::SecretTooShort {
                len: self.secret.len(),
            });
        }
        if let Some(tenants) = &self.tenants {
            if tenants.is_empty() {
                return Err(WebhookError::EmptyTenants);
            }
            if let Some(index) = tenants.iter().position(|t| t.trim().is_empty()) {
                return Err(WebhookError::EmptyTenant { index });
            }
        }
        Ok(url)
    }
}

/// Checks that a webhook added through the API may post to `raw`: it
/// embeds no credentials (they would be shown to every admin who lists
/// webhooks; the secret authenticates deliveries), and, unless
/// `allow_local`, it names no loopback, link-local (cloud metadata at
/// 169.254.169.254 among them), unspecified, broadcast or multicast
/// address, directly or through any address its host name resolves to now.
/// Webhooks in the server's configuration file are the operator's and are
/// not checked. A name re-pointed after this check is not caught here.
pub async fn check_api_target(raw: &str, allow_local: bool) -> Result<(), WebhookError> {
    let url = parse_url(raw)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::Credentials);
    }
    if allow_local {
        return Ok(());
    }
    let local = |ip: std::net::IpAddr| WebhookError::LocalTarget {
        host: url.host_str().unwrap_or_default().to_owned(),
        address: ip.to_string(),
    };
    let addresses: Vec<std::net::IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(local(std::net::Ipv4Addr::LOCALHOST.into()));
            }
            let port = url.port_or_known_default().unwrap_or(443);
            // A name that does not resolve now (or within 3 s) is kept:
            // deliveries to it fail and are retried like any unreachable
            // receiver's.
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            match tokio::time::timeout(std::time::Duration::from_secs(3), lookup).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                _ => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    match addresses.into_iter().find(|ip| is_local(*ip)) {
        Some(ip) => Err(local(ip)),
        None => Ok(()),
    }
}

/// Addresses a webhook added through the API may not reach by default.
fn is_local(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // Alibaba Cloud's metadata service.
                || v4 == std::net::Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
                // AWS's IPv6 metadata service.
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn parse_url(raw: &str) -> Result<Url, WebhookError> {
    // The WHATWG parser refuses an `http` or `https` URL without a host
    // (`empty host`), so a parsed one always has one.
    let url = Url::parse(raw).map_err(|err| WebhookError::InvalidUrl {
        url: raw.to_owned(),
        reason: err.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::UrlScheme {
            url: raw.to_owned(),
            scheme: url.scheme().to_owned(),
        });
    }
    Ok(url)
}

/// Why a webhook's configuration was refused. [`field`](Self::field) names
/// the [`Webhook`] field at fault as spelled in configuration; the message
/// quotes the bad value (never the secret) and says what is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// `id` is empty.
    #[error("`id` is empty; expected a name for the webhook, such as `pagerduty`")]
    EmptyId,
    /// Two webhooks share an `id`.
    #[error("`id` `{id}` is used by more than one webhook; expected unique ids")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// `url` is not an absolute URL with a host.
    #[error(
        "`url` `{url}` is not a valid URL ({reason}); expected an absolute URL such as `https://alerts.example.com/steward`"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What the parser objected to.
        reason: String,
    },
    /// `url` is not `http` or `https`.
    #[error("`url` `{url}` has scheme `{scheme}`; expected `http` or `https`")]
    UrlScheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// `url` embeds a user name or password.
    #[error(
        "`url` embeds credentials, which every admin listing webhooks would see; deliveries are authenticated by the webhook's secret (X-Steward-Signature)"
    )]
    Credentials,
    /// `url` reaches this machine, a link-local or a metadata address.
    #[error(
        "`url` host `{host}` is {address}, a loopback, link-local, metadata, broadcast or multicast address; a webhook added through the API may not reach it unless the server's configuration sets `allow-local-webhooks = true`"
    )]
    LocalTarget {
        /// The URL's host.
        host: String,
        /// The address it is or resolves to.
        address: String,
    },
    /// `secret` is shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "`secret` is {len} bytes long; expected at least {MIN_SECRET_BYTES} bytes (32 random bytes, hex-encoded, is a good secret)"
    )]
    SecretTooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// `tenants` is an empty list, which would match nothing.
    #[error(
        "`tenants` is an empty list, which matches no tenant; expected tenant ids, or no `tenants` to receive every tenant's alerts"
    )]
    EmptyTenants,
    /// An entry of `tenants` is empty.
    #[error("`tenants[{index}]` is empty; expected a tenant id")]
    EmptyTenant {
        /// Its position in the list.
        index: usize,
    },
}

impl WebhookError {
    /// The field at fault: `id`, `url`, `secret` or `tenants`.
    pub fn field(&self) -> &'static str {
        match self {
            WebhookError::EmptyId | WebhookError::DuplicateId { .. } => "id",
            WebhookError::InvalidUrl { .. }
            | WebhookError::UrlScheme { .. }
            | WebhookError::Credentials
            | WebhookError::LocalTarget { .. } => "url",
            WebhookError::SecretTooShort { .. } => "secret",
            WebhookError::EmptyTenants | WebhookError::EmptyTenant { .. } => "tenants",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Webhook {
        Webhook {
            id: "ops".into(),
            url: "https://alerts.example.com/steward".into(),
            secret: "0123456789abcdef".into(),
            tenants: None,
            enabled: true,
        }
    }

    #[test]
    fn receives_by_tenant_filter_and_enabled() {
        let mut hook = valid();
        assert!(hook.receives("acme"));
        hook.tenants = Some(vec!["acme".into(), "globex".into()]);
        assert!(hook.receives("globex"));
        assert!(!hook.receives("initech"));
        hook.enabled = false;
        assert!(!hook.receives("acme"));
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let shown = format!("{:?}", valid());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn deserialises_with_defaults() {
        let hook: Webhook = serde_json::from_str(
            r#"{"id":"ops","url":"https://a.example/x","secret":"0123456789abcdef"}"#,
        )
        .unwrap();
        assert!(hook.enabled);
        assert_eq!(hook.tenants, None);
        hook.validate().unwrap();
    }
}
