//! How the client reaches the other side: an agent process over a pipe (this module), or
//! over SSH (to come). Everything above sees a [`RemoteEndpoint`](crate::endpoint::RemoteEndpoint).

pub mod pipe;
