//! Issue 13: hostile input against running servers, over real sockets,
//! bounded in bytes and seconds. Each case checks that the server answered
//! sensibly, that a fresh client is served at once afterwards, and that a
//! message delivered before is still there.

mod messages;
