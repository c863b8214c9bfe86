//! Remote agents: enrollment tokens (admin), enrollment (an endpoint with a
//! token), revocation (admin) and the agents' connection.
//!
//! The connection (`GET /api/v1/agent/connect`, a WebSocket) carries no
//! bearer secret: the server sends a fresh nonce, the agent signs it with
//! the key it made at enrollment (whose public half the server keeps), and
//! only then does the server register it and send provider calls. Every
//! frame is bounded and typed; a malformed one closes the connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use steward_control::agents::Connection;
use steward_runtime::device::remote::{
    AgentMessage, MAX_FRAME_BYTES, ServerMessage, challenge_payload,
};
use steward_store::{
    DeviceId, NewAgent, NewEnrollment, Role, SiteId, StoreError, TenantId, Timestamp,
};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::{Caller, hash_token, new_token};
use super::body::{Json, Path};
use super::problem::{ApiError, ApiResult, Problem};

/// Seconds between an agent's heartbeats; three missed end the connection.
pub const HEARTBEAT_SECONDS: u64 = 15;

/// The refusal an agent that waits for approval gets (it retries).
pub const PENDING_APPROVAL: &str = "this agent is waiting for an admin's approval";

/// How long the server waits for the answer to its challenge.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest an enrollment token may live: 90 days.
const MAX_EXPIRY_SECONDS: u64 = 90 * 24 * 3600;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_enrollment))
        .routes(routes!(enroll))
        .routes(routes!(revoke_device))
        .routes(routes!(approve_device))
        .routes(routes!(connect))
}

/// An enrollment token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollment {
    /// The tenant enrolled devices join.
    pub tenant_id: TenantId,
    /// Their site.
    #[serde(default)]
    pub site_id: Option<SiteId>,
    /// Tags every enrolled device gets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Seconds until the token stops working (default 7 days, at most 90).
    #[schema(minimum = 1, maximum = 7_776_000)]
    #[serde(default = "default_expiry")]
    pub expires_in_seconds: u64,
    /// How many devices may enroll with it (default 1).
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default = "one")]
    pub uses: u32,
    /// Whether devices enrolled with it wait for an admin's approval
    /// (`POST /devices/{id}/approve`) before their agents may connect.
    #[serde(default)]
    pub approve: bool,
}

fn default_expiry() -> u64 {
    7 * 24 * 3600
}

fn one() -> u32 {
    1
}

/// A new enrollment token: shown once, stored hashed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedEnrollment {
    /// The enrollment's id.
    pub id: String,
    /// The token (`ste_…`), never shown again.
    pub token: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The site.
    pub site_id: Option<SiteId>,
    /// Tags enrolled devices get.
    pub tags: Vec<String>,
    /// Enrollments left.
    pub uses_left: u32,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// Whether enrolled devices wait for an admin's approval.
    pub approve: bool,
}

/// Makes an enrollment token for a tenant (admin).
#[utoipa::path(post, path = "/api/v1/enrollments", tag = "agents", request_body = CreateEnrollment,
    responses((status = 201, body = CreatedEnrollment), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_enrollment(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateEnrollment>,
) -> ApiResult<(StatusCode, axum::Json<CreatedEnrollment>)> {
    caller.require(Role::Admin)?;
    state.tenant(&caller, &body.tenant_id).await?;
    if body.expires_in_seconds == 0 || body.expires_in_seconds > MAX_EXPIRY_SECONDS {
        return Err(ApiError::invalid(
            "expires_in_seconds",
            format!("must be 1 to {MAX_EXPIRY_SECONDS} seconds (90 days)"),
        ));
    }
    if body.uses == 0 || body.uses > 100_000 {
        return Err(ApiError::invalid("uses", "must be 1 to 100000"));
    }
    crate::check_tags(&body.tags)?;
    let token = new_token().replacen("stw_", "ste_", 1);
    let now = Timestamp::now();
    let enrollment = state
        .store()
        .create_enrollment(
            &NewEnrollment {
                tenant_id: body.tenant_id.clone(),
                site_id: body.site_id.clone(),
                tags: body.tags.clone(),
                token_hash: hash_token(&token),
                uses: body.uses,
                expires_at: now + Duration::from_secs(body.expires_in_seconds),
                created_by: caller.actor(),
                needs_approval: body.approve,
            },
            now,
        )
        .await?;
    state
        .audit(
            &caller,
            Some(&enrollment.tenant_id),
            "enrollment.create",
            json!({ "enrollment": enrollment.id, "uses": enrollment.uses_left,
                    "expires_at": enrollment.expires_at, "site": enrollment.site_id,
                    "tags": enrollment.tags, "approve": enrollment.needs_approval }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedEnrollment {
            id: enrollment.id,
            token,
            tenant_id: enrollment.tenant_id,
            site_id: enrollment.site_id,
            tags: enrollment.tags,
            uses_left: enrollment.uses_left,
            expires_at: enrollment.expires_at,
            approve: enrollment.needs_approval,
        }),
    ))
}

/// An endpoint asking to join.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token.
    pub token: String,
    /// Base64 ed25519 public key, made on the endpoint.
    pub public_key: String,
    /// The endpoint's host name.
    pub hostname: String,
    /// What the endpoint reports of itself (OS, kernel, …).
    #[serde(default = "empty_object")]
    pub facts: serde_json::Value,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: String,
}

fn empty_object() -> serde_json::Value {
    json!({})
}

/// Who the endpoint is now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Enrolled {
    /// The device it was enrolled as.
    pub device_id: DeviceId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Whether it may connect now; `false` until an admin approves it
    /// (the token asked for approval).
    pub approved: bool,
}

/// Enrolls an endpoint with an enrollment token (no bearer token: the
/// enrollment token is the credential, spent once per device).
#[utoipa::path(post, path = "/api/v1/agent/enroll", tag = "agents", security(()), request_body = EnrollRequest,
    responses((status = 201, body = Enrolled), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn enroll(
    State(state): State<ApiState>,
    Json(body): Json<EnrollRequest>,
) -> ApiResult<(StatusCode, axum::Json<Enrolled>)> {
    steward_contract::signing::decode_public_key(&body.public_key)
        .map_err(|e| ApiError::invalid("public_key", e.to_string()))?;
    if body.facts.to_string().len() > 64 << 10 {
        return Err(ApiError::invalid("facts", "at most 64 KiB of facts"));
    }
    if body.agent_version.len() > 64 || body.agent_version.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "agent_version",
            "at most 64 printable characters",
        ));
    }
    let enrolled = state
        .store()
        .enroll(
            &hash_token(body.token.trim()),
            &NewAgent {
                public_key: body.public_key.trim().to_owned(),
                hostname: body.hostname,
                facts: body.facts,
                agent_version: body.agent_version,
            },
            Timestamp::now(),
        )
        .await;
    let (device_id, tenant_id, approved) = match enrolled {
        Ok(ids) => ids,
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                steward_contract::codes::ALREADY_EXISTS,
                "this public key is enrolled already; an agent enrolls once",
            )
            .with_field("public_key"));
        }
        Err(e) => return Err(e.into()),
    };
    state
        .store()
        .append_audit(&[steward_store::AuditEvent {
            at: Timestamp::now(),
            actor: format!("agent:{device_id}"),
            tenant_id: Some(tenant_id.clone()),
            run_id: None,
            job_id: None,
            attempt: None,
            device_id: Some(device_id.clone()),
            plugin: None,
            plugin_digest: None,
            action: "agent.enroll".into(),
            detail: json!({ "device": device_id, "approved": approved }),
            outcome: "ok".into(),
        }])
        .await?;
    tracing::info!(device = %device_id, tenant = %tenant_id, "agent enrolled");
    Ok((
        StatusCode::CREATED,
        axum::Json(Enrolled {
            device_id,
            tenant_id,
            approved,
        }),
    ))
}

/// What a revocation did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// The device.
    pub device_id: DeviceId,
    /// Whether this server process closed the agent's connection.
    pub disconnected: bool,
}

/// Revokes a device's agent (admin): it is refused from now on, and its
/// connection is closed at once.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "agents",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = Revoked), (status = 404, body = Problem)))]
async fn revoke_device(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Revoked>> {
    caller.require(Role::Admin)?;
    let device = state.device(&caller, &DeviceId::from(id)).await?;
    if !state
        .store()
        .revoke_agent(&device.id, Timestamp::now())
        .await?
    {
        return Err(ApiError::not_found("agent of device", device.id.as_str()));
    }
    let disconnected = state
        .agents()
        .close(device.id.as_str(), "this agent was revoked");
    state
        .audit(
            &caller,
            Some(&device.tenant_id),
            "device.revoke",
            json!({ "device": device.id }),
        )
        .await?;
    Ok(axum::Json(Revoked {
        device_id: device.id,
        disconnected,
    }))
}

/// What an approval did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Approved {
    /// The device.
    pub device_id: DeviceId,
    /// Its agent's state now (`active`).
    pub agent: String,
}

/// Approves a device's agent enrolled with a token that needs approval
/// (admin): from now on it may connect, and the device's jobs run.
#[utoipa::path(post, path = "/api/v1/devices/{id}/approve", tag = "agents",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = Approved), (status = 404, body = Problem)))]
async fn approve_device(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Approved>> {
    caller.require(Role::Admin)?;
    let device = state.device(&caller, &DeviceId::from(id)).await?;
    if device.agent.as_deref() == Some("revoked") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            steward_contract::codes::REVOKED,
            "this device's agent was revoked; enroll the endpoint again",
        ));
    }
    if !state
        .store()
        .approve_agent(&device.id, Timestamp::now())
        .await?
    {
        return Err(ApiError::not_found("agent of device", device.id.as_str()));
    }
    state
        .audit(
            &caller,
            Some(&device.tenant_id),
            "device.approve",
            json!({ "device": device.id }),
        )
        .await?;
    Ok(axum::Json(Approved {
        device_id: device.id,
        agent: "active".into(),
    }))
}

/// An agent's connection (WebSocket). The server sends a challenge; the
/// agent answers with its device id and a signature of the challenge by
/// its enrolled key; then the server sends provider calls and the agent
/// answers them and heartbeats.
#[utoipa::path(get, path = "/api/v1/agent/connect", tag = "agents", security(()),
    responses((status = 101, description = "Switching to the agent protocol"), (status = 400, body = Problem)))]
async fn connect(
    State(state): State<ApiState>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => {
            return ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "not-websocket",
                format!("connect with a WebSocket upgrade: {}", e.body_text()),
            )
            .into_response();
        }
    };
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // The default reserves 128 KiB per connection up front: 6 GiB for
        // 50,000 idle agents. Frames are small; a large one grows it.
        .read_buffer_size(8 << 10)
        .max_write_buffer_size(2 * MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            if let Err(reason) = serve_agent(state, socket).await {
                tracing::info!(%reason, "agent connection ended");
            }
        })
}

async fn send<S>(socket: &mut S, message: &ServerMessage) -> Result<(), String>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("sending failed: {e}"))
}

async fn goodbye<S>(socket: &mut S, reason: &str)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let _ = send(
        socket,
        &ServerMessage::Goodbye {
            reason: reason.to_owned(),
        },
    )
    .await;
    let _ = socket.send(Message::Close(None)).await;
}

/// The next agent message, or why there is none.
async fn receive<S>(socket: &mut S) -> Result<AgentMessage, String>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        match socket.next().await {
            None => return Err("the agent closed the connection".into()),
            Some(Err(e)) => return Err(format!("the connection failed: {e}")),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .map_err(|e| format!("a malformed message: {e}"));
            }
            Some(Ok(Message::Close(_))) => return Err("the agent closed the connection".into()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Binary(_))) => return Err("a binary frame".into()),
        }
    }
}

async fn serve_agent(state: ApiState, mut socket: WebSocket) -> Result<(), String> {
    let nonce = new_token().replacen("stw_", "", 1);
    send(
        &mut socket,
        &ServerMessage::Challenge {
            nonce: nonce.clone(),
        },
    )
    .await?;
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, receive(&mut socket)).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            goodbye(&mut socket, "no answer to the challenge").await;
            return Err("no answer to the challenge".into());
        }
    };
    let AgentMessage::Hello {
        device_id,
        signature,
        agent_version,
    } = hello
    else {
        goodbye(&mut socket, "the first message must be `hello`").await;
        return Err("the first message was not `hello`".into());
    };
    let device = DeviceId::from(device_id.clone());
    let refused = match state.store().agent(&device).await {
        Err(e) => {
            tracing::error!(error = %e, "reading an agent failed");
            Some("the server cannot check agents now; try again later")
        }
        Ok(None) => Some("unknown device or bad signature"),
        Ok(Some(agent)) if agent.revoked => Some("this agent was revoked"),
        Ok(Some(agent)) => {
            match steward_contract::signing::verify(
                &agent.public_key,
                &challenge_payload(&nonce, &device_id),
                &signature,
            ) {
                Err(_) => Some("unknown device or bad signature"),
                // Said only to the key's holder, after the signature.
                Ok(()) if !agent.approved => Some(PENDING_APPROVAL),
                Ok(()) => None,
            }
        }
    };
    if let Some(reason) = refused {
        tracing::warn!(device = %crate::printable(&device_id, 64), %reason, "agent refused");
        goodbye(&mut socket, reason).await;
        return Err(reason.into());
    }
    let agent_version = crate::printable(&agent_version, 64);
    let (tx, mut outgoing) = mpsc::channel::<ServerMessage>(64);
    let hub = state.agents().clone();
    let connection = hub.connect(&device_id, tx);
    if let Err(e) = state
        .store()
        .agent_connected(
            &device,
            state.holder(),
            true,
            &agent_version,
            Timestamp::now(),
        )
        .await
    {
        tracing::error!(error = %e, "recording an agent's connection failed");
        hub.disconnect(&device_id, &connection);
        goodbye(&mut socket, "the server cannot record the connection now").await;
        return Err(e.to_string());
    }
    tracing::info!(device = %device_id, version = %agent_version, "agent connected");
    send(
        &mut socket,
        &ServerMessage::Welcome {
            device_id: device_id.clone(),
            heartbeat_seconds: HEARTBEAT_SECONDS,
        },
    )
    .await?;
    let (mut sink, mut stream) = socket.split();
    let ended = connected(
        &state,
        &connection,
        &device,
        (&mut sink, &mut stream),
        &mut outgoing,
    )
    .await;
    if hub.disconnect(&device_id, &connection) {
        let _ = state
            .store()
            .agent_connected(&device, state.holder(), false, "", Timestamp::now())
            .await;
    }
    tracing::info!(device = %device_id, reason = %ended, "agent disconnected");
    Ok(())
}

/// The authenticated part of a connection; returns why it ended.
async fn connected(
    state: &ApiState,
    connection: &Arc<Connection>,
    device: &DeviceId,
    (socket, incoming): (
        &mut SplitSink<WebSocket, Message>,
        &mut SplitStream<WebSocket>,
    ),
    outgoing: &mut mpsc::Receiver<ServerMessage>,
) -> String {
    let silence = Duration::from_secs(HEARTBEAT_SECONDS * 3);
    loop {
        tokio::select! {
            reason = connection.closed() => {
                goodbye(socket, &reason).await;
                return reason;
            }
            message = outgoing.recv() => {
                let Some(message) = message else { return "the server stopped".into() };
                if let Err(e) = send(socket, &message).await {
                    return e;
                }
            }
            received = tokio::time::timeout(silence, receive(incoming)) => {
                match received {
                    Err(_) => {
                        goodbye(socket, "no heartbeat").await;
                        return "no heartbeat".into();
                    }
                    Ok(Err(e)) => {
                        goodbye(socket, &e).await;
                        return e;
                    }
                    Ok(Ok(AgentMessage::Reply { id, result })) => {
                        connection.resolve(id, result);
                    }
                    Ok(Ok(AgentMessage::Heartbeat {})) => {
                        // Written with the others at the next flush, which
                        // also closes this connection if the agent was
                        // revoked through another server process.
                        state.agents().heartbeat(device.as_str());
                    }
                    Ok(Ok(AgentMessage::Hello { .. })) => {
                        goodbye(socket, "`hello` is only the first message").await;
                        return "a second hello".into();
                    }
                }
            }
        }
    }
}
