//! labdns
