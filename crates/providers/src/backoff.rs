//! Capped exponential backoff with jitter: it lives in `patchbay_core` so that front doors
//! that reconnect (the endpoint dialer) share it without depending on providers.

pub use patchbay_core::backoff::Backoff;
