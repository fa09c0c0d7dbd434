//! Reading what the lab left behind, for students (`inspect`, `trace`) and
//! for `verify`: the header fields of a delivered message explained, and the
//! session transcripts of the servers grouped into the hops of one message.

pub mod headers;
pub mod trace;
