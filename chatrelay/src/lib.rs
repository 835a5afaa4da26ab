//! The all-in-one `chatrelay` program: core and edge in one process, plus
//! the operator commands. The binary parses arguments and calls in here.

pub mod admin;
pub mod serve;
pub mod simulate;
pub mod watch;
pub mod webhooks;
