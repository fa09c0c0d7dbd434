//! Issue 13: hostile input against running servers over real sockets,
//! bounded in bytes and seconds. Each test asserts the server answered
//! sensibly, a fresh client is served at once afterwards, and a message
//! delivered before the attack is still there.

mod connections;
