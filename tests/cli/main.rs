//! Integration tests: the real `arq-lockdown` binary against a real AWS emulator (moto, started
//! once for this test binary with IAM enforcement on) and real files.
//!
//! - `support`: the moto fixture, temporary Arq homes and credential stores, the command builder;
//! - `bad_input`: every malformed input gets one clear line, its class's exit code, and no write;
//! - `dialogs`: the Keychain dialogs each deployment would show a Mac's user;
//! - `emulator`: the emulator behaves like AWS where it matters (listing conditions, the boundary,
//!   inactive and new keys, last use, an account's clock and throttling);
//! - `policy`: the policy's content, an independent IAM evaluator for its listing conditions, a linter;
//! - `verify`: the verdicts for a scoped key, the main key and the 2012 example's key, against moto;
//! - `apply`: the lockdown end to end, idempotency, rotation, the fault matrix, refusals;
//! - `service`: the provisioning service, its client, and hostile requests;
//! - `service_attacks`: another account, another Mac, raced and replayed requests, floods;
//! - `service_insiders`: a fleet member squatting another Mac's computer, limits that hold, small denials of service;
//! - `service_lifecycle`: the service under systemd: certificates reloaded on SIGHUP, a drain on SIGTERM;
//! - `audit`: a fleet's computers in every state, --fix-policies, least rights, the main-key verdict;
//! - `main_keys`: the main-key verdict as AWS records key use, and `retire-main-keys`;
//! - `audit`: a fleet's computers in every state, --fix-policies, least rights, the main-key verdict,
//!   a squat the inventory shows;
//! - `pin`: a computer given back to the Mac that reported it; conflicts left to the admin;
//! - `audit_html`: the page (`--html`, `--history`) in headless Chromium: counts, rows, escaping;
//! - `logs`: what the agent's runs leave in the user's log (nothing, when there is nothing to do);
//! - `quit_arq`: Arq that does not quit when asked is forced only with consent, never when busy;
//! - `root`: acting for a user when run as root, and refusing users' symlinks;
//! - `rollout`: a whole fleet rehearsed, from the first Mac to the main keys retired;
//! - `packaging`: the LaunchAgent and the example profile agree with the code;
//! - `readme`: the README's source tree, macOS-only list and exit codes match the code;
//! - `snapshots`: whole outputs an admin sees (`--help`, `verify`, dry run, `status`), reviewed as diffs.

mod apply;
mod audit;
mod audit_html;
mod bad_input;
mod dialogs;
mod emulator;
mod logs;
mod main_keys;
mod packaging;
mod pin;
mod policy;
mod quit_arq;
mod readme;
mod rollout;
mod root;
mod service;
mod service_attacks;
mod service_insiders;
mod service_lifecycle;
mod snapshots;
mod support;
mod verify;
