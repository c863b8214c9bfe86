//! Console sessions: signing in with an API token, the session cookie, idle
//! expiry and the CSRF token every form posts back.
//!
//! A session acts as the user of the token it was signed in with: the
//! [`Signed`] extractor turns it into the same [`Caller`] the API's bearer
//! tokens give, and every page and form goes through the API's own handlers
//! and checks with it. The browser holds only a random secret in an
//! HttpOnly, SameSite=Strict cookie (Secure under TLS); the store keeps its
//! sha256.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore as _;

use crate::ApiState;
use crate::auth::{Caller, hash_token};
use crate::problem::ApiError;
use steward_store::{ConsoleSession, Store, Timestamp, User};

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "steward_session";
/// The cookie tying the sign-in form to the browser that loaded it.
pub(super) const LOGIN_COOKIE: &str = "steward_login";

/// A session unused this long has ended; the next page asks to sign in.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however busy.
pub const LONGEST: Duration = Duration::from_secs(12 * 60 * 60);
/// How often a busy session's last use is written to the store.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// How long a looked-up session is trusted without asking the store (a
/// session ended or a token revoked through another process shows within
/// this time; through this process, at once).
const CACHE_TTL: Duration = Duration::from_secs(5);

/// A random secret, hex.
pub(super) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares two secrets in time that does not depend on where they differ.
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name`, if the request sent it.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole console;
/// Secure when the server speaks TLS. `max_age` 0 deletes it; `None` makes
/// it last until the browser closes.
pub(super) fn set_cookie(
    name: &str,
    value: &str,
    secure: bool,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&text).expect("cookie values are hex")
}

/// Sessions recently looked up, by the hash of their secret.
#[derive(Debug, Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, (Instant, ConsoleSession, User)>>,
}

impl SessionCache {
    /// The live session whose secret is `secret`; an expired one is ended
    /// (in the store) and is `None`.
    async fn lookup(&self, store: &Store, secret: &str) -> Result<Option<Signed>, ApiError> {
        let hash = hash_token(secret);
        let cached = self
            .entries
            .lock()
            .expect("session cache lock")
            .get(&hash)
            .filter(|(at, _, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, s, u)| (s.clone(), u.clone()));
        let (mut session, user) = match cached {
            Some(found) => found,
            None => match store.console_session(&hash).await? {
                Some(found) => found,
                None => {
                    self.forget(&hash);
                    return Ok(None);
                }
            },
        };
        let now = Timestamp::now();
        let age =
            |t: Timestamp| Duration::from_millis((now.as_millis() - t.as_millis()).max(0) as u64);
        if age(session.last_seen_at) > IDLE || age(session.created_at) > LONGEST {
            store.end_console_session(&session.id, now).await?;
            self.forget(&hash);
            return Ok(None);
        }
        if age(session.last_seen_at) > TOUCH_EVERY {
            store.touch_console_session(&session.id, now).await?;
            session.last_seen_at = now;
        }
        let signed = Signed {
            caller: Caller {
                scope: user.scope(),
                token_id: session.token_id.clone(),
                user: user.clone(),
            },
            session_id: session.id.clone(),
            csrf: session.csrf.clone(),
        };
        let mut entries = self.entries.lock().expect("session cache lock");
        if entries.len() > 10_000 {
            entries.retain(|_, (at, _, _)| at.elapsed() < CACHE_TTL);
        }
        entries.insert(hash, (Instant::now(), session, user));
        Ok(Some(signed))
    }

    /// Forgets a session (signed out, expired).
    pub(super) fn forget(&self, hash: &str) {
        self.entries
            .lock()
            .expect("session cache lock")
            .remove(hash);
    }

    /// Forgets every session signed in with API token `token_id` (after
    /// revoking it).
    pub fn forget_token_id(&self, token_id: &str) {
        self.entries
            .lock()
            .expect("session cache lock")
            .retain(|_, (_, s, _)| s.token_id != token_id);
    }
}

/// A signed-in console user.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// Who the pages and forms act for, exactly as through the API.
    pub(crate) caller: Caller,
    /// The session's id.
    pub(crate) session_id: String,
    /// The token every form of this session posts back.
    pub(crate) csrf: String,
}

impl Signed {
    /// The fields of a form this session posted, once its CSRF token and
    /// origin are checked. A missing or wrong token, a cross-site post, a
    /// body that is not a form and a control character in a field are
    /// refused.
    fn form(&self, headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
        let fields = parse_form(headers, body)?;
        match fields.get("csrf") {
            Some(token) if same_secret(token, &self.csrf) => Ok(fields),
            _ => Err(ApiError::forbidden(
                "the form's CSRF token is missing or out of date; reload the page and try again",
            )
            .with_field("csrf")),
        }
    }
}

/// A url-encoded form's fields, refusing cross-site posts and control
/// characters (other than tab and line breaks).
pub(super) fn parse_form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, ApiError> {
    check_same_origin(headers)?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the form as application/x-www-form-urlencoded",
        ));
    }
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if k.chars()
            .chain(v.chars())
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(ApiError::invalid(
                crate::printable(&k, 64),
                "control characters are not accepted",
            ));
        }
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}

/// Refuses a post a browser marks as coming from another site (`Origin`
/// naming another host, or `Sec-Fetch-Site: cross-site`). The CSRF token
/// is the check that does not depend on the browser; this one is beside it.
fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if text("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Err(ApiError::forbidden(
            "a form posted from another site is refused",
        ));
    }
    if let (Some(origin), Some(host)) = (text("origin"), text("host")) {
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        if origin == "null" || !authority.eq_ignore_ascii_case(host) {
            return Err(ApiError::forbidden(
                "a form posted from another site is refused",
            ));
        }
    }
    Ok(())
}

/// Where a request without a live session goes: the sign-in page, back
/// here afterwards.
fn to_sign_in(parts: &Parts) -> Response {
    let back = parts
        .uri
        .path_and_query()
        .map_or("/fleet", |p| p.as_str())
        .to_owned();
    let target = format!(
        "/login?next={}",
        form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    Redirect::to(&target).into_response()
}

impl FromRequestParts<ApiState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in(parts));
        };
        match state.inner.sessions.lookup(state.store(), secret).await {
            Ok(Some(signed)) => Ok(signed),
            Ok(None) => Err(to_sign_in(parts)),
            Err(e) => Err(super::error_page(None, &e)),
        }
    }
}

/// A form a signed-in user posted, its CSRF token and origin checked
/// ([`Signed::form`]): every console handler that changes anything takes
/// its fields through this extractor, so none can skip the check. A
/// refused post is an error page.
pub(crate) struct Posted {
    /// Who posted it.
    pub(crate) signed: Signed,
    /// Its fields.
    pub(crate) fields: HashMap<String, String>,
}

impl axum::extract::FromRequest<ApiState> for Posted {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &ApiState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let req = axum::extract::Request::from_parts(parts, body);
        let headers = req.headers().clone();
        let bytes =
            <axum::body::Bytes as axum::extract::FromRequest<ApiState>>::from_request(req, state)
                .await
                .map_err(IntoResponse::into_response)?;
        match signed.form(&headers, &bytes) {
            Ok(fields) => Ok(Self { signed, fields }),
            Err(e) => Err(super::error_page(Some(&signed), &e)),
        }
    }
}

/// Where to go after signing in: a path on this server, else the fleet.
pub(super) fn local_target(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/login")
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/fleet".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with an owner and a token; the token's id.
    async fn store_with_token(dir: &std::path::Path) -> (Store, String) {
        let store = Store::open(&format!("sqlite://{}", dir.join("s.db").display()))
            .await
            .unwrap();
        let now = Timestamp::now();
        let user = store
            .create_user(
                &steward_store::NewUser {
                    name: "alice".into(),
                    role: steward_store::Role::Technician,
                    tenants: None,
                },
                now,
            )
            .await
            .unwrap();
        let token = store
            .create_token(&user.id, "t", &hash_token("stw_x"), now)
            .await
            .unwrap();
        (store, token.id)
    }

    #[tokio::test]
    async fn sessions_end_when_idle_too_long_too_old_or_their_token_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, token) = store_with_token(dir.path()).await;
        let now = Timestamp::now().as_millis();
        let ago = |d: Duration| Timestamp::from_millis(now - d.as_millis() as i64);
        let make = |secret: &'static str, at: Timestamp| {
            let (store, token) = (store.clone(), token.clone());
            async move {
                store
                    .create_console_session(&token, &hash_token(secret), "c", at)
                    .await
                    .unwrap()
            }
        };
        let cache = SessionCache::default();
        // Fresh: found, acting as the token's user.
        make("fresh", ago(Duration::from_secs(5))).await;
        let signed = cache.lookup(&store, "fresh").await.unwrap().expect("live");
        assert_eq!(signed.caller.user.name, "alice");
        // Unused for longer than IDLE: ended, in the store too.
        let idle = make("idle", ago(IDLE + Duration::from_secs(1))).await;
        assert!(cache.lookup(&store, "idle").await.unwrap().is_none());
        assert!(
            store
                .console_session(&hash_token("idle"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store
                .end_console_session(&idle.id, Timestamp::now())
                .await
                .unwrap()
        );
        // Used a minute ago but signed in longer than LONGEST ago: ended.
        let old = make("old", ago(LONGEST + Duration::from_secs(1))).await;
        store
            .touch_console_session(&old.id, ago(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(cache.lookup(&store, "old").await.unwrap().is_none());
        // Its token revoked: the fresh session ends at once in this process.
        assert!(store.revoke_token(&token, Timestamp::now()).await.unwrap());
        cache.forget_token_id(&token);
        assert!(cache.lookup(&store, "fresh").await.unwrap().is_none());
        assert!(cache.lookup(&store, "never-made").await.unwrap().is_none());
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_target(Some("/runs/abc")), "/runs/abc");
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil",
            "runs",
            "/login?next=/x",
        ] {
            assert_eq!(local_target(Some(bad)), "/fleet", "{bad}");
        }
        assert_eq!(local_target(None), "/fleet");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; steward_session=abc; x=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "steward"), None);
    }

    #[test]
    fn a_cross_site_post_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("console.example:8080"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(parse_form(&headers, b"a=1").is_err());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://console.example:8080"),
        );
        assert_eq!(parse_form(&headers, b"a=1").unwrap()["a"], "1");
        assert!(parse_form(&headers, b"a=%00").is_err());
    }
}
