//! Request bodies read under a cap, and drained when a request is refused: a reply sent while
//! the client is still sending makes the server drop the connection under it, so the client
//! sees a reset (or, on its next pooled request, a broken connection) instead of the problem.

use axum::body::Body;
use http_body_util::BodyExt;

/// The most a refused request's body is read (and thrown away) to keep its connection: past
/// this, reading costs more than a new connection, and the reply closes it instead.
pub const DRAIN_LIMIT: usize = super::MAX_JSON_BODY;

/// A body larger than its cap.
#[derive(Debug)]
pub struct Oversize {
    /// Its size if it was drained to the end, else what was read before giving up.
    pub size: usize,
    /// The whole body was read: the connection can serve the next request.
    pub drained: bool,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    Oversize(Oversize),
    /// The client broke off, or sent what is not HTTP.
    Broken(String),
}

/// Reads `body` whole if it is at most `cap` bytes; a larger one is drained up to
/// [`DRAIN_LIMIT`] so the refusal can be answered on a connection that stays usable.
pub async fn read_capped(body: Body, cap: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| ReadError::Broken(error.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if bytes.len() + data.len() > cap {
            let read = bytes.len() + data.len();
            let (size, drained) = drain_counting(body, read).await;
            return Err(ReadError::Oversize(Oversize { size, drained }));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// Reads and drops the rest of `body`, up to [`DRAIN_LIMIT`]; whether it reached the end.
pub async fn drain(body: Body) -> bool {
    drain_counting(body, 0).await.1
}

/// Drains `body`, `read` bytes of which were read already: the total seen, and whether
/// that was all of it.
async fn drain_counting(mut body: Body, mut read: usize) -> (usize, bool) {
    while read <= DRAIN_LIMIT {
        match body.frame().await {
            None => return (read, true),
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len()),
            Some(Err(_)) => return (read, false),
        }
    }
    (read, false)
}
