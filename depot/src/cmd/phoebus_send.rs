//! PHOEBUS_SEND (17) and PHOEBUS_SEND_CHKSUM (26): a depot-to-depot copy through a Phoebus
//! overlay. This depot has no Phoebus transport (ACCRE builds it only on request, and no
//! gateway is reachable from here), so the rule is:
//! * path token `auto`, or no path token (LStore's empty one collapses, PROTOCOL.md §2): the
//!   client lets the depot choose, and plain TCP is a valid choice, so the command is served
//!   as SEND (5/25) by the copy code (`cmd::copy`); until that is wired here it answers −43,
//!   as a command that is not installed does;
//! * an explicit gateway list: the client asked for a path we cannot provide; we answer −43
//!   (IBP_E_UNKNOWN_FUNCTION, "not supported here") rather than silently copying over a route
//!   the client did not ask for. No connection to the target is attempted.

use ibp_client::proto::request::DepotCopy;
use ibp_client::proto::ErrorCode;

use super::{reply_error, Ctx, Next};

/// How a PHOEBUS_SEND is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// No gateway named: a plain TCP copy (SEND).
    PlainCopy,
    /// Explicit gateways we cannot use.
    Unsupported,
}

/// Chooses the route from the path token.
pub fn route(req: &DepotCopy) -> Route {
    match req.path.as_deref() {
        None | Some("") | Some("auto") => Route::PlainCopy,
        Some(_) => Route::Unsupported,
    }
}

pub async fn run(ctx: &mut Ctx<'_>, req: DepotCopy) -> (Next, bool) {
    match route(&req) {
        // The plain copy belongs to `cmd::copy` (SEND); until it is wired, not installed.
        Route::PlainCopy => reply_error(ctx.conn, ErrorCode::UnknownFunction, Next::Continue).await,
        Route::Unsupported => {
            reply_error(ctx.conn, ErrorCode::UnknownFunction, Next::Continue).await
        }
    }
}
