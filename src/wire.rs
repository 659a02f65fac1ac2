//! The wire: frames, the handshake, one request/response pair per endpoint method, and
//! the agent's serve loop that answers them from a local endpoint. It runs over any
//! byte stream (a pipe, an SSH channel, the system ssh's stdio): no SSH library here.

pub mod agent;
pub mod protocol;
