//! The scenarios, each an `async fn` generic over the [`crate::Harness`] it runs on.

mod discovery;
mod tcp;
mod utp;

pub use discovery::*;
pub use tcp::*;
pub use utp::*;
