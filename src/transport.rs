//! How the client reaches the other side: an agent process over a pipe, or over SSH.
//! Everything above sees a [`RemoteEndpoint`](crate::endpoint::RemoteEndpoint).

pub mod pipe;
pub mod ssh;
