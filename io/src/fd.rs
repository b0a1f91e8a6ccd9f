//! Shared ownership of a file descriptor between its handle and in-flight operations.
//!
//! Closing an fd while an SQE that names it is still queued (not yet submitted) would let the
//! kernel apply the operation to whatever file reuses that number. Every operation therefore
//! holds a clone of the `SharedFd`; the fd is closed when the last clone is dropped, which for
//! an abandoned operation is when its completion arrives.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub(crate) struct SharedFd(Arc<OwnedFd>);

impl SharedFd {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        SharedFd(Arc::new(fd))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The owned fd if no operation still holds it, else the shared handle back.
    pub(crate) fn try_unwrap(self) -> Result<OwnedFd, SharedFd> {
        Arc::try_unwrap(self.0).map_err(SharedFd)
    }
}
