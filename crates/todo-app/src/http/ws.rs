//! `GET /api/{user_id}/ws`: the user's live event stream, one CloudEvent JSON per message.
//!
//! Authentication happens before the upgrade, so a bad token gets a plain 401 (403 for
//! another user's path). Before that, a handshake carrying an `Origin` that is not in
//! `TODO_CORS_ORIGINS` is refused with 403; one without `Origin` (not from a browser)
//! passes. The server pings every `TODO_WS_PING_SECS` and drops a client that misses two
//! pongs; a client that falls `TODO_WS_QUEUE` messages behind is closed with code 1008;
//! shutdown closes every client with 1001.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};

use super::auth::AuthUser;
use super::cors::OriginAllowed;
use super::error::ApiError;
use crate::services::sync::{CloseReason, Registration};
use crate::state::AppState;
use todo_telemetry::WsCloseReason;

/// Opens the WebSocket.
#[utoipa::path(
    get, path = "/api/{user_id}/ws", tag = "sync",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        ("access_token" = Option<String>, Query, description = "The JWT, for clients that cannot set headers"),
    ),
    responses(
        (status = 101, description = "Switching Protocols: then one CloudEvent JSON per text message"),
    )
)]
pub async fn connect(
    State(state): State<AppState>,
    // Before the token: a page of another origin is refused whatever it sends.
    _origin: OriginAllowed,
    user: AuthUser,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::BadRequest(format!("a WebSocket handshake is required: {rejection}"))
                .into_response();
        }
    };
    // Register before answering 101: a client that acts as soon as it is connected must not
    // miss the event its own action causes. Messages wait in the queue until the session runs.
    let registration = state.hub.register(&user.user_id);
    let (hub, user_id, id) = (state.hub.clone(), user.user_id.clone(), registration.id);
    upgrade
        // tungstenite's defaults (128 KiB read and write buffers, 64 MiB messages) cost an
        // idle client about 134 KiB; the server sends small JSON events and ignores what
        // clients send beyond control frames, so small buffers and small limits suffice.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_failed_upgrade(move |error| {
            hub.unregister(&user_id, id);
            tracing::debug!(%error, "WebSocket upgrade failed");
        })
        .on_upgrade(move |socket| session(socket, state, user.user_id, registration))
        .into_response()
}

/// Read buffer per connection: a client sends only control frames worth reading.
const READ_BUFFER: usize = 4 * 1024;
/// Largest message or frame accepted from a client; a larger one closes the connection.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// A client that stops reading fills the socket buffers and would block a plain send for
/// ever; past this the connection is dropped, so the session still sees closes and shutdown.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: Message,
) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

async fn session(
    socket: WebSocket,
    state: AppState,
    user_id: String,
    mut registration: Registration,
) {
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(state.ws_ping);
    ping.tick().await; // the first tick is immediate
    let mut unanswered = 0u32;
    tracing::info!(user_id, client = registration.id, "WebSocket connected");
    // Why the connection ends: counted in `todo_ws_closes_total`, once per connection.
    let mut ended = WsCloseReason::Client;
    let mut lost: Option<&'static str> = None;
    let close = loop {
        tokio::select! {
            message = registration.messages.recv() => match message {
                Some(text) => {
                    if !send(&mut sink, Message::Text(text.as_ref().into())).await {
                        lost = Some("sending failed or timed out");
                        break None;
                    }
                }
                // The hub drops a slow client's queue as it signals `closed`; both are ready
                // and `select!` may pick this one first, so ask why before choosing a code.
                None => break Some(match registration.closed.try_recv() {
                    Ok(CloseReason::Slow) => {
                        ended = WsCloseReason::SlowConsumer;
                        (close_code::POLICY, "client too slow: send queue overflowed")
                    }
                    _ => {
                        ended = WsCloseReason::Shutdown;
                        (close_code::AWAY, "server closed the stream")
                    }
                }),
            },
            reason = &mut registration.closed => break Some(match reason {
                Ok(CloseReason::Slow) => {
                    ended = WsCloseReason::SlowConsumer;
                    (close_code::POLICY, "client too slow: send queue overflowed")
                }
                Ok(CloseReason::Shutdown) | Err(_) => {
                    ended = WsCloseReason::Shutdown;
                    (close_code::AWAY, "server shutting down")
                }
            }),
            () = shutdown.wait() => {
                ended = WsCloseReason::Shutdown;
                break Some((close_code::AWAY, "server shutting down"));
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Pong(_))) => unanswered = 0,
                Some(Ok(Message::Ping(payload))) => {
                    if !send(&mut sink, Message::Pong(payload)).await {
                        lost = Some("sending failed or timed out");
                        break None;
                    }
                }
                Some(Err(_)) => {
                    lost = Some("reading failed");
                    break None;
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Ok(_)) => {} // clients have nothing to say; ignore
            },
            _ = ping.tick() => {
                if unanswered >= 2 {
                    lost = Some("no pong received");
                    break Some((close_code::AWAY, "no pong received"));
                }
                unanswered += 1;
                if !send(&mut sink, Message::Ping(Default::default())).await {
                    lost = Some("sending failed or timed out");
                    break None;
                }
            }
        }
    };
    if let Some(error) = lost {
        ended = WsCloseReason::Error;
        tracing::warn!(
            user_id,
            client = registration.id,
            error,
            "WebSocket connection lost"
        );
    }
    state.metrics.ws.closed(ended);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        send(&mut sink, Message::Close(Some(frame))).await;
    }
    state.hub.unregister(&user_id, registration.id);
    tracing::info!(user_id, client = registration.id, close = ?close.map(|(c, _)| c), reason = ended.as_str(), "WebSocket disconnected");
}
