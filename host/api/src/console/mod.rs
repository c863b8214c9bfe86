//! The web console, served at `/` on the API's port.
//!
//! Pages are HTML rendered on the server (maud: every interpolated value is
//! escaped); reading works without JavaScript. One small script of our own
//! (`/console.js`) re-reads a page marked live every two seconds, so a run
//! or the approval queue moves while it is watched.
//!
//! Invariant: the console has no path to the store of its own. A session
//! becomes the API's [`Caller`](crate::auth::Caller) ([`session::Signed`]),
//! and every page and form calls the API's handlers or the same tenant- and
//! role-checked [`ApiState`] lookups the handlers use. So another tenant's
//! object is a 404 page, and a viewer's forged post is refused by the
//! handler it reaches, exactly as through the API.

mod pages;
pub(crate) mod session;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::json;

use crate::ApiState;
use crate::auth::hash_token;
use crate::body::Query;
use crate::problem::ApiError;
use session::{
    LOGIN_COOKIE, Posted, SESSION_COOKIE, Signed, cookie, random_hex, same_secret, set_cookie,
};
use steward_store::{Role, Timestamp};

pub(crate) use session::SessionCache;

/// The console's routes (added beside the API's).
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/fleet") }))
        .route("/login", get(sign_in_page).post(sign_in))
        .route("/logout", post(sign_out))
        .route("/console.css", get(stylesheet))
        .route("/console.js", get(script))
        .route("/fleet", get(pages::fleet))
        .route("/devices/{id}", get(pages::device))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/cancel", post(pages::cancel))
        .route("/approvals", get(pages::approvals))
        .route("/approvals/{job}/{decision}", post(pages::decide))
        .route("/playbooks", get(pages::playbooks))
        .route("/playbooks/{id}/run", post(pages::start))
        .route("/schedules", get(pages::schedules))
        .route("/plugins", get(pages::plugins))
        .route("/plugins/{name}/upgrade", post(pages::upgrade))
        .route("/audit", get(pages::audit))
        .route("/reports", get(pages::reports))
        .route("/reports/{tenant}", get(pages::report))
}

const STYLESHEET: &str = include_str!("console.css");
const SCRIPT: &str = include_str!("console.js");

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", SCRIPT)
}

fn static_file(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Headers every page carries: only our own script and style, no framing,
/// no caching of pages that show clients' data.
fn page_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The navigation, in the order a technician's day goes.
const NAV: &[(&str, &str)] = &[
    ("/fleet", "Fleet"),
    ("/approvals", "Approvals"),
    ("/runs", "Runs"),
    ("/playbooks", "Playbooks"),
    ("/schedules", "Schedules"),
    ("/plugins", "Plugins"),
    ("/audit", "Audit"),
    ("/reports", "Reports"),
];

/// A whole page. `live`: the script re-reads it while it is shown.
fn page(signed: Option<&Signed>, title: &str, live: bool, body: Markup) -> Response {
    page_with_status(StatusCode::OK, signed, title, live, body)
}

fn page_with_status(
    status: StatusCode,
    signed: Option<&Signed>,
    title: &str,
    live: bool,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Steward" }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/fleet" { "Steward" }
                    @if let Some(s) = signed {
                        nav {
                            @for (href, label) in NAV {
                                a href=(href) { (label) }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            span.who { (s.caller.user.name) " · " (s.caller.user.role) }
                            (csrf_field(s))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main data-live=[live.then_some("1")] {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    page_headers(&mut response);
    response
}

/// The hidden field carrying the session's CSRF token.
fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// Whether the signed-in user may change things (technician and up); a
/// viewer's pages show no buttons that would.
fn may_change(signed: &Signed) -> bool {
    signed.caller.user.role.at_least(Role::Technician)
}

/// An error as a page with the error's status: a 404 for another tenant's
/// object, a 403 for a viewer's post, and so on.
pub(crate) fn error_page(signed: Option<&Signed>, err: &ApiError) -> Response {
    let status = err.status();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        s if s.is_client_error() => "Not accepted",
        _ => "Something went wrong",
    };
    if status.is_server_error() {
        tracing::warn!(detail = %err.detail(), "a console page failed");
    }
    page_with_status(
        status,
        signed,
        title,
        false,
        html! {
            p.error { (err.detail()) }
            p { a href="/fleet" { "Back to the fleet" } }
        },
    )
}

/// A time as the console shows it.
fn when(t: Timestamp) -> String {
    t.to_utc().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time, or a dash.
fn when_opt(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "—".to_owned(), when)
}

#[derive(Debug, Default, Deserialize)]
struct SignInQuery {
    next: Option<String>,
    error: Option<String>,
}

/// The sign-in form, tied to this browser by a one-time cookie.
async fn sign_in_page(Query(q): Query<SignInQuery>) -> Response {
    let nonce = random_hex();
    let mut response = sign_in_form(&nonce, q.next.as_deref(), q.error.is_some(), StatusCode::OK);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &nonce, false, Some(600)),
    );
    response
}

fn sign_in_form(nonce: &str, next: Option<&str>, failed: bool, status: StatusCode) -> Response {
    page_with_status(
        status,
        None,
        "Sign in",
        false,
        html! {
            @if failed {
                p.error { "That token is unknown or revoked." }
            }
            form.signin method="post" action="/login" {
                input type="hidden" name="csrf" value=(nonce);
                input type="hidden" name="next" value=(session::local_target(next));
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p.hint { "Make a token with " code { "steward tokens create" } " or ask an admin for one. The session ends after 30 minutes unused, or 12 hours after sign-in." }
        },
    )
}

/// Signs in with an API token: a new session for its user.
async fn sign_in(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fields = match session::parse_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => return error_page(None, &e),
    };
    let nonce_ok = matches!(
        (cookie(&headers, LOGIN_COOKIE), fields.get("csrf")),
        (Some(c), Some(f)) if same_secret(c, f)
    );
    if !nonce_ok {
        return error_page(
            None,
            &ApiError::forbidden(
                "the sign-in form is out of date or was not loaded from this server; reload it",
            )
            .with_field("csrf"),
        );
    }
    let next = session::local_target(fields.get("next").map(String::as_str));
    let token = fields.get("token").map_or("", |t| t.trim());
    let caller = match state.inner.tokens.lookup(state.store(), token).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let nonce = random_hex();
            let mut response = sign_in_form(&nonce, Some(&next), true, StatusCode::UNAUTHORIZED);
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, &nonce, false, Some(600)),
            );
            return response;
        }
        Err(e) => return error_page(None, &e),
    };
    let secret = format!("sts_{}", random_hex());
    let now = Timestamp::now();
    let made = state
        .store()
        .create_console_session(&caller.token_id, &hash_token(&secret), &random_hex(), now)
        .await;
    let session = match made {
        Ok(s) => s,
        Err(e) => return error_page(None, &e.into()),
    };
    if let Err(e) = state
        .audit(
            &caller,
            None,
            "console.sign-in",
            json!({ "session": session.id }),
        )
        .await
    {
        return error_page(None, &e);
    }
    let secure = state.inner.secure_cookies;
    let mut response = Redirect::to(&next).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &secret, secure, None),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", false, Some(0)),
    );
    response
}

/// Ends the session.
async fn sign_out(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Posted { signed, .. }: Posted,
) -> Response {
    if let Err(e) = state
        .store()
        .end_console_session(&signed.session_id, Timestamp::now())
        .await
    {
        return error_page(Some(&signed), &e.into());
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        state.inner.sessions.forget(&hash_token(secret));
    }
    if let Err(e) = state
        .audit(
            &signed.caller,
            None,
            "console.sign-out",
            json!({ "session": signed.session_id }),
        )
        .await
    {
        return error_page(Some(&signed), &e);
    }
    let mut response = Redirect::to("/login").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", state.inner.secure_cookies, Some(0)),
    );
    response
}

/// An inline SVG bar of a run's jobs by state (the share of each).
fn progress_bar(done: u64, failed: u64, total: u64) -> Markup {
    let total = total.max(1);
    let w = |n: u64| (n as f64 / total as f64 * 200.0).round();
    html! {
        svg.progress width="200" height="10" viewBox="0 0 200 10" role="img"
            aria-label=(format!("{done} succeeded, {failed} failed of {total}")) {
            rect width="200" height="10" fill="#e5e7eb" {}
            rect width=(w(done)) height="10" fill="#16a34a" {}
            rect x=(w(done)) width=(w(failed)) height="10" fill="#dc2626" {}
        }
    }
}
