//! Hostile input against running servers, over real sockets, bounded in
//! bytes and seconds: connections and sessions (`connections`), messages
//! (`messages`). Each case checks that the server answered sensibly, that a
//! fresh client is served at once afterwards, and that a message delivered
//! before is still there.

mod connections;
mod messages;
