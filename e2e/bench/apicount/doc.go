// Package apicount counts the API requests of a process under test: an
// HTTPS reverse proxy in front of an apiserver (one per process, so their
// requests are told apart) tallies every request by verb and resource and
// whether it failed. The benchmark's scenarios read writes per JobSet and
// "quiet" (no write for a while: the work is done) from it.
package apicount
