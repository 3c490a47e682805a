//! Leadership: one process at a time does a job that must not run twice at once (the
//! outbox relay), without a coordinator of its own.

use std::any::Any;

use tokio::sync::oneshot;

/// Held while this process leads; dropping it gives the lead up.
pub struct Leadership {
    lost: Option<oneshot::Receiver<()>>,
    gone: bool,
    _hold: Option<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("revocable", &self.lost.is_some())
            .finish()
    }
}

impl Leadership {
    /// A lead nobody else can take (one process owns the store).
    pub fn unconditional() -> Self {
        Leadership {
            lost: None,
            gone: false,
            _hold: None,
        }
    }

    /// A lead that lasts while `hold` lives and until `lost` fires (or its sender drops).
    pub fn new(lost: oneshot::Receiver<()>, hold: Box<dyn Any + Send + Sync>) -> Self {
        Leadership {
            lost: Some(lost),
            gone: false,
            _hold: Some(hold),
        }
    }

    /// Resolves when the lead is lost (say, the connection holding it broke); never, for an
    /// unconditional one.
    pub async fn lost(&mut self) {
        match &mut self.lost {
            Some(_) if self.gone => {}
            Some(lost) => {
                let _ = lost.await;
                self.gone = true;
            }
            None => std::future::pending().await,
        }
    }
}
